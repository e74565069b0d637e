"""Where rows come from: local files, Hugging Face datasets, the embedded sample, CounselChat.

A source is named by a string (`parse_source`), so configs and command lines can list them:

    data/pairs.jsonl                      a local JSONL / JSON / Parquet / CSV file, or a
                                          directory of them (read in name order)
    data/pairs.parquet@0.3                ... with mixture weight 0.3 (default 1)
    hf:Psychotherapy-LLM/PsychoCounsel-Preference:train
                                          `datasets.load_dataset(name, split=...)`; a local
                                          directory of data files works the same way, offline
    tfds:counsel_pairs:train              `tfds.data_source(name, split=...)`: a prepared TensorFlow
                                          Datasets dataset in ArrayRecord format (random access, the
                                          grain-native path); `$TFDS_DATA_DIR` or
                                          `~/tensorflow_datasets`; needs `pip install psycho_jax[tfds]`
    sample:preference_train               a file shipped in `psycho_jax/data/sample/`
    counselchat:/path/counsel_chat.csv:train:sft   CounselChat SFT (`:pairs` for weak preferences)

The row format (conversations, generic preference pairs, PsychoCounsel-Preference) is detected from
the columns (`formats.detect_format`) unless the spec gives `format=...` via `Source`. A file that
cannot be decoded is a `DataError` naming it (and the line, for JSONL).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from psycho_jax.data import formats, shipped
from psycho_jax.data.files import data_files, read_file, read_hf, read_tfds
from psycho_jax.data.formats import DataError, Example, OnError, SkipCounter


@dataclasses.dataclass(frozen=True)
class Source:
    """One source of examples.

    Attributes:
        kind: "file", "hf", "tfds", "sample" or "counselchat".
        location: path, hub name (or local directory), TFDS name (`name[/config][:version]`), or
            sample file name.
        split: dataset split (hf, tfds, counselchat); None: the only/default one.
        weight: relative share in a mixture.
        format: row format, or None to detect from the columns.
        counselchat_mode: "sft" or "pairs" (counselchat only).
    """

    kind: str
    location: str
    split: str | None = None
    weight: float = 1.0
    format: formats.Format | None = None
    counselchat_mode: str = "sft"

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.location}" + (f":{self.split}" if self.split else "")


def parse_source(spec: str) -> Source:
    """A `Source` from its string form (module docstring)."""
    weight = 1.0
    if "@" in spec:
        spec, w = spec.rsplit("@", 1)
        try:
            weight = float(w)
        except ValueError:
            raise ValueError(f"source {spec!r}: weight {w!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"source {spec!r}: weight must be positive, got {weight}")
    kind, _, rest = spec.partition(":")
    if kind == "hf":
        name, _, split = rest.partition(":")
        return Source("hf", name, split or None, weight)
    if kind == "tfds":  # name[/config][:version][:split]; a version is digits and dots, or "*"
        name, *tail = rest.split(":")
        if tail and (tail[0] == "*" or tail[0].replace(".", "").isdigit()):
            name = f"{name}:{tail.pop(0)}"
        if len(tail) > 1:
            raise ValueError(f"source {spec!r}: expected tfds:NAME[/CONFIG][:VERSION][:SPLIT]")
        return Source("tfds", name, tail[0] if tail else None, weight)
    if kind == "sample":
        return Source("sample", rest, None, weight)
    if kind == "counselchat":
        parts = rest.split(":")
        mode = parts.pop() if parts[-1] in ("sft", "pairs") else "sft"
        split = parts.pop() if len(parts) > 1 else None
        return Source("counselchat", ":".join(parts), split, weight, None, mode)
    return Source("file", spec, None, weight)


# ---------------------------------------------------------------------------- reading rows
def read_rows(source: Source) -> tuple[str, list[dict[str, Any]]]:
    """(display name, rows) of a file, hf or sample source."""
    if source.kind == "file":  # a directory: its files' rows, in name order
        return source.location, [r for f in data_files(source.location) for r in read_file(f)]
    if source.kind == "hf":
        return source.name, read_hf(source.location, source.split)
    if source.kind == "tfds":
        return source.name, read_tfds(source.location, source.split)
    if source.kind == "sample":
        path = shipped.sample_path(source.location)
        return path.name, read_file(path)
    raise ValueError(f"source kind {source.kind!r} has no plain rows")


def load_source(
    source: Source | str,
    *,
    on_error: OnError = "raise",
    skips: SkipCounter | None = None,
    options: formats.ConversationOptions | None = None,
) -> list[Example]:
    """Validated examples of one source (bad rows raise, or are counted when `on_error="skip"`);
    `options` say how transcripts' messages are read (speaker names, merging)."""
    source = parse_source(source) if isinstance(source, str) else source
    if source.kind == "counselchat":
        from psycho_jax.data import counsel_chat

        examples = counsel_chat.load(
            source.location,
            split=source.split,
            mode=source.counselchat_mode,
            skips=skips,
            on_error=on_error,
        )
    elif source.kind == "file":  # each file parsed on its own, so errors name it
        examples = []
        for f in data_files(source.location):
            examples += _parse(str(f), read_file(f), source, on_error, skips, options)
    else:
        examples = _parse(*read_rows(source), source, on_error, skips, options)
    report_duplicate_ids(examples, source.name, skips)
    return examples


def _parse(
    name: str,
    rows: list[dict[str, Any]],
    source: Source,
    on_error: OnError,
    skips: SkipCounter | None,
    options: formats.ConversationOptions | None,
) -> list[Example]:
    if not rows:
        raise DataError(name, None, None, "no rows")
    columns = set().union(*(r.keys() for r in rows))
    fmt = source.format or formats.detect_format(columns, name)
    formats.check_columns(columns, fmt, name)
    return formats.parse_rows(rows, fmt, name, on_error=on_error, skips=skips, options=options)


def duplicate_ids(examples: Sequence[Example], keep: int = 5) -> tuple[int, list[str]]:
    """How many examples repeat an earlier example's id, and the first `keep` repeated ids."""
    seen: set[str] = set()
    repeated: list[str] = []
    count = 0
    for e in examples:
        if e.id in seen:
            count += 1
            if e.id not in repeated and len(repeated) < keep:
                repeated.append(e.id)
        seen.add(e.id)
    return count, repeated


def report_duplicate_ids(examples: Sequence[Example], name: str, skips: SkipCounter | None) -> None:
    """Training data may repeat an id (kept: ids only name rows); the count and first ids are
    logged and counted in `skips`. Evaluation prompts with a repeated id are an error instead
    (`scoring.load_prompts`)."""
    count, ids = duplicate_ids(examples)
    if not count:
        return
    logging.warning("%s: %d example(s) repeat an earlier id, e.g. %s", name, count, ids)
    if skips is not None:
        skips.count(f"duplicate example ids in {name} (kept; e.g. {', '.join(ids)})", count)


# ---------------------------------------------------------------------------- mixtures


def mixture_counts(
    sizes: Sequence[int], weights: Sequence[float], total: int | None = None
) -> list[int]:
    """How many examples each source contributes: proportional to `weights`, summing to `total`
    (default: the sum of `sizes`), rounded by largest remainder."""
    if len(sizes) != len(weights) or not sizes:
        raise ValueError("mixture: one weight per source")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"mixture: every source needs examples, got sizes {list(sizes)}")
    total = sum(sizes) if total is None else total
    w = np.asarray(weights, np.float64) / np.sum(weights)
    exact = w * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def mix(
    sources: Sequence[Sequence[Any]],
    weights: Sequence[float],
    seed: int = 0,
    total: int | None = None,
) -> list[Any]:
    """A deterministic weighted mixture of lists (examples, or tokenized examples).

    Source `i` contributes `mixture_counts(...)[i]` items: whole passes over it, then a seeded
    random subset for the rest, so a small source given a large weight is repeated evenly. The
    result is in source order; the loader shuffles it.
    """
    counts = mixture_counts([len(s) for s in sources], weights, total)
    out: list[Any] = []
    for i, (items, n) in enumerate(zip(sources, counts)):
        reps, rest = divmod(n, len(items))
        out.extend(list(items) * reps)
        pick = np.sort(np.random.default_rng([seed, i]).permutation(len(items))[:rest])
        out.extend(items[j] for j in pick)
    return out


def load_mixture(
    specs: Sequence[Source | str],
    *,
    seed: int = 0,
    total: int | None = None,
    on_error: OnError = "raise",
    skips: SkipCounter | None = None,
    options: formats.ConversationOptions | None = None,
) -> list[Example]:
    """Examples of several sources mixed by their weights (one source: returned as is)."""
    sources = [parse_source(s) if isinstance(s, str) else s for s in specs]
    loaded = [load_source(s, on_error=on_error, skips=skips, options=options) for s in sources]
    if len(loaded) == 1 and total is None:
        return loaded[0]
    return mix(loaded, [s.weight for s in sources], seed, total)
