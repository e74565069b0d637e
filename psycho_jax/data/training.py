"""From a run config to the batches a task trains on: tokenizer, sources, tokenizing, the loader.

The training loop's one entry into `psycho_jax.data`:

    tokenizer = tokenizer_lib.load_tokenizer(config.tokenizer)
    loader = make_loader(config, tokenizer, "train", task="sft")   # iterator of host batches

Tokenized examples are cached in memory per (source, tokenizer, max length, task), so periodic
evaluation does not tokenize the eval split again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl import logging

from psycho_jax.data import sources
from psycho_jax.data.formats import (
    Conversation,
    ConversationOptions,
    Message,
    PreferencePair,
    SkipCounter,
    parse_role_map,
)
from psycho_jax.data.loader import Loader, LoaderConfig
from psycho_jax.data.templating import ChatTokenizer, Truncation, tokenize_examples
from psycho_jax.data.typed import invalid

_CACHE: dict[tuple, list[Any]] = {}


def as_conversation(ex: PreferencePair | Conversation) -> Conversation:
    """SFT on a preference pair trains on its prompt and chosen reply."""
    if isinstance(ex, Conversation):
        return ex
    messages = (*ex.prompt, Message("assistant", ex.chosen))
    return Conversation(messages, ex.id, ex.file, ex.row)


def with_label_prefix(conv: Conversation) -> Conversation:
    """A conversation whose labelled assistant turns start with `[label] ` (a conditioning prefix
    the model learns to write, then follow)."""
    messages = tuple(
        Message(m.role, f"[{m.label}] {m.content}", m.label)
        if m.role == "assistant" and m.label
        else m
        for m in conv.messages
    )
    return dataclasses.replace(conv, messages=messages)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """A run's data (the config's `data.*` keys; checked once at start-up)."""

    train: str  # source specs (`sources.parse_source`), comma-separated for a mixture
    eval: str
    max_len: int
    packing: bool  # SFT: pack conversations into rows of max_len
    pairs_per_row: int  # reward/DPO: > 1 packs up to this many pairs into a row
    truncation: str  # keep_last_turns | skip | error
    on_bad_row: str  # raise | skip (counted and reported)
    windows: bool  # SFT: overlapping windows of a long conversation
    role_map: str  # "Name=role,..." on top of the common speaker names
    merge_consecutive: bool
    label_prefix: bool

    def __post_init__(self):
        if self.max_len <= 0:
            raise invalid("data.max_len", self.max_len, "a positive integer")
        if self.truncation not in ("keep_last_turns", "skip", "error"):
            raise invalid("data.truncation", self.truncation, "keep_last_turns, skip, error")
        if self.on_bad_row not in ("raise", "skip"):
            raise invalid("data.on_bad_row", self.on_bad_row, "raise, skip")
        try:
            parse_role_map(self.role_map)
        except ValueError as e:
            raise invalid("data.role_map", self.role_map, f"'name=role,...' ({e})") from None

    @property
    def conversation_options(self) -> ConversationOptions:
        """How the run reads transcripts (`role_map`, `merge_consecutive`)."""
        return ConversationOptions(parse_role_map(self.role_map), self.merge_consecutive)

    @property
    def held_out(self) -> str:
        """The eval split a run evaluates on, or "" for none: `eval`, except that the embedded
        sample never stands in for the user's own data (a run on a file or hub dataset whose
        `eval` is still a `sample:` split has no eval split). The caller says so once."""
        train, held_out = self.train.strip(), self.eval.strip()
        user_train = bool(train) and not all(
            s.strip().startswith("sample:") for s in train.split(",") if s.strip()
        )
        return "" if user_train and held_out.startswith("sample:") else held_out


def tokenized_examples(
    spec: str,
    tokenizer,
    max_len: int,
    task: str,
    truncation: str,
    on_bad_row: str,
    *,
    options: ConversationOptions | None = None,
    windows: bool = False,
    label_prefix: bool = False,
) -> list[Any]:
    """Validated, tokenized examples of a source spec (see `sources.parse_source`); skips logged."""
    options = options or ConversationOptions()
    key = (
        spec,
        id(tokenizer),
        max_len,
        task,
        truncation,
        on_bad_row,
        tuple(sorted(options.role_map.items())),
        options.merge_consecutive,
        windows,
        label_prefix,
    )
    if key not in _CACHE:
        skips = SkipCounter()
        specs = [s.strip() for s in spec.split(",") if s.strip()]
        examples = sources.load_mixture(specs, on_error=on_bad_row, skips=skips, options=options)
        if task == "sft":
            examples = [as_conversation(e) for e in examples]
            if label_prefix:
                examples = [with_label_prefix(e) for e in examples]
        elif not all(isinstance(e, PreferencePair) for e in examples):
            raise ValueError(
                f"data {spec!r}: task {task} needs preference pairs, found conversations"
            )
        ct = ChatTokenizer(tokenizer)
        trunc = Truncation(max_len, truncation, windows=windows)
        out = tokenize_examples(examples, ct, trunc, on_error=on_bad_row, skips=skips)
        logging.info(
            "data %s: %d sequences of %d examples; %s",
            spec,
            len(out),
            len(examples),
            skips.summary(spec),
        )
        _CACHE[key] = out
    return _CACHE[key]


def make_loader(
    run: Any,
    tokenizer,
    split: str,
    task: str,
    *,
    epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Loader:
    """This host's batches of `run.data.train` or the held-out split (`DataSettings.held_out`) for
    `task` ("sft", "reward", "dpo"); `run` is the run's settings (`train.settings.TrainSettings`:
    its `data`, `batch_size`, `eval_batch_size` and `seed`).

    `epochs=None` repeats the data forever (training); a finite pass (`epochs=1`: evaluation,
    reward statistics) gives every example once, the last batch padded with empty rows (masked
    out), never dropped, so a split of any size works. Eval batches hold `eval_batch_size`.
    """
    d: DataSettings = run.data
    spec = d.train if split == "train" else d.held_out
    if not spec:
        raise ValueError(f"no {split} split (data.{split} is empty)")
    kind = "sft" if task == "sft" else "pairs"
    examples = tokenized_examples(
        spec,
        tokenizer,
        d.max_len,
        kind,
        d.truncation,
        d.on_bad_row,
        options=d.conversation_options,
        windows=d.windows,
        label_prefix=d.label_prefix,
    )
    is_eval = split != "train"
    config = LoaderConfig(
        global_batch_size=(run.eval_batch_size or run.batch_size) if is_eval else run.batch_size,
        seq_len=d.max_len,
        pad_id=tokenizer.pad_token_id,
        seed=run.seed,
        num_epochs=epochs,
        packing=d.packing,
        pairs_per_row=d.pairs_per_row,
        pad_last_batch=epochs is not None,  # one pass: every example counts
    )
    return Loader(examples, config, process_index, process_count)
