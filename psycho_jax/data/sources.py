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
import io
import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from psycho_jax.data import formats, shipped
from psycho_jax.data.formats import DataError, Example, OnError, SkipCounter

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


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


def data_files(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The data files a local path names: the file itself, or a directory's `FILE_SUFFIXES` files
    (sorted by name, not recursive; hidden files ignored).

    Raises:
        DataError: the path is missing, or a directory with no data file (says what is accepted).
    """
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(str(path), None, None, "no such file or directory")
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in FILE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        seen = sorted(p.name for p in path.iterdir())[:5]
        raise DataError(
            str(path),
            None,
            None,
            f"directory has no data files: a data directory holds {'/'.join(FILE_SUFFIXES)} files "
            f"(read in name order; found {seen or 'nothing'}); or name one file, or use "
            "hf:<directory> for a Hugging Face dataset folder",
        )
    return files


def _decode(data: bytes, file: str) -> str:
    """UTF-8 text (a byte-order mark dropped); a bad byte is reported with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            file,
            None,
            None,
            f"line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8",
        ) from None


def read_file(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Rows of a local JSONL / JSON / Parquet / CSV file, values as stored.

    Raises:
        DataError: the file is missing, of an unknown type, or cannot be decoded (names the file,
            and the line for JSONL and for bytes that are not UTF-8).
    """
    path = pathlib.Path(path)
    file = str(path)
    if path.is_dir():
        raise DataError(file, None, None, "is a directory: name a file (sources read directories)")
    if not path.is_file():
        raise DataError(file, None, None, "no such file")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            file, None, None, f"unknown file type {suffix!r}; use one of {FILE_SUFFIXES}"
        )
    if suffix in (".jsonl", ".json", ".csv"):
        text = _decode(path.read_bytes(), file)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(file, None, None, f"not valid JSON ({e})") from None
        if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}: one list inside
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(file, None, None, "expected a JSON list of objects")
        return data
    if suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    file, len(rows), None, f"line {lineno} is not valid JSON ({e})"
                ) from None
            if not isinstance(row, dict):
                raise DataError(file, len(rows), None, f"line {lineno} is not a JSON object")
            rows.append(row)
        return rows
    import pandas as pd

    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[])
    except Exception as e:  # pyarrow / pandas parser errors
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        raise DataError(
            file, None, None, f"not a readable {kind} file ({type(e).__name__}: {e})"
        ) from None
    return [_plain(r) for r in df.to_dict(orient="records")]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars and arrays (from Parquet/CSV) -> Python values, so checks see plain types."""
    out = {}
    for k, v in row.items():
        if isinstance(v, np.ndarray):
            v = [_plain(x) if isinstance(x, dict) else x for x in v.tolist()]
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def read_hf(name: str, split: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset (`datasets.load_dataset(name, split=...)`), columns as they
    are. `name` is a hub id (`Psychotherapy-LLM/PsychoCounsel-Preference`) or a local directory of
    data files; with no split, a dataset with one split gives it, more splits are an error.
    """
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, **kwargs)
    except Exception as e:
        raise DataError(
            name, None, None, f"datasets.load_dataset failed ({type(e).__name__}: {e})"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise DataError(
                name, None, None, f"has splits {sorted(ds)}; name one (hf:{name}:SPLIT)"
            )
        ds = next(iter(ds.values()))
    return [_plain(dict(r)) for r in ds]


def hf_splits(name: str, **kwargs: Any) -> list[str]:
    """Split names of a hub dataset or local data directory."""
    import datasets

    return sorted(datasets.load_dataset(name, **kwargs))


def read_tfds(name: str, split: str | None = None, data_dir: str | None = None) -> list[dict]:
    """Rows of a prepared TensorFlow Datasets dataset through `tfds.data_source` (ArrayRecord files,
    read by random access as grain reads them). `name` is `name[/config][:version]`; text comes back
    as `str`, numbers as Python scalars, a `Sequence` of dicts (a conversation's `messages`) as a
    list of dicts. With no split, a dataset with one split gives it, more splits are an error.
    `data_dir` defaults to `$TFDS_DATA_DIR` as set now (tfds itself reads it once, at import), then
    tfds's default. Nothing is downloaded: prepare the dataset first
    (`tfds build NAME --file_format=array_record`).
    """
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            f"source tfds:{name} needs TensorFlow Datasets: pip install 'psycho_jax[tfds]'"
        ) from None
    try:
        if split is None:
            splits = sorted(tfds.builder(name, data_dir=data_dir).info.splits)
            if len(splits) != 1:
                raise DataError(
                    name, None, None, f"has splits {splits}; name one (tfds:{name}:SPLIT)"
                )
            split = splits[0]
        ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except DataError:
        raise
    except Exception as e:  # not prepared, unknown name or split, not ArrayRecord
        raise DataError(
            f"tfds:{name}",
            None,
            None,
            f"tfds.data_source failed ({type(e).__name__}: {e}); the dataset must be prepared in "
            f"ArrayRecord format under data_dir={data_dir or 'tfds default'} "
            f"(tfds build {name.split(':')[0]} --file_format=array_record)",
        ) from e
    rows = []
    for start in range(0, len(ds), 1024):  # batched random access: one read per chunk of records
        rows.extend(
            _plain_tfds(r) for r in ds.__getitems__(range(start, min(start + 1024, len(ds))))
        )
    return rows


def _plain_tfds(value: Any, nested: bool = False) -> Any:
    """A decoded TFDS example -> plain Python: bytes -> str, numpy -> lists/scalars, and a dict of
    equal-length lists (how TFDS returns a `Sequence` of dicts) -> a list of dicts."""
    if isinstance(value, dict):
        out = {k: _plain_tfds(v, nested=True) for k, v in value.items()}
        lengths = {len(v) if isinstance(v, list) else -1 for v in out.values()}
        if nested and out and len(lengths) == 1 and lengths != {-1}:
            return [dict(zip(out, items)) for items in zip(*out.values())]
        return out
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain_tfds(v) for v in value.tolist()] if value.ndim else _plain_tfds(value.item())
    if isinstance(value, np.generic):
        return _plain_tfds(value.item())
    if isinstance(value, list):
        return [_plain_tfds(v) for v in value]
    return value


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
