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

import ml_collections
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


def conversation_options(c: ml_collections.ConfigDict) -> ConversationOptions:
    """How a run reads transcripts (`data.role_map`, `data.merge_consecutive`)."""
    return ConversationOptions(parse_role_map(c.data.role_map), c.data.merge_consecutive)


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


def eval_spec(c: ml_collections.ConfigDict) -> str:
    """The eval split a run evaluates on, or "" for none: `data.eval`, except that the embedded
    sample never stands in for the user's own data (a run on a file or hub dataset whose
    `data.eval` is still a `sample:` split has no eval split). The caller says so once."""
    train, held_out = c.data.train.strip(), c.data.eval.strip()
    user_train = bool(train) and not all(
        s.strip().startswith("sample:") for s in train.split(",") if s.strip()
    )
    if user_train and held_out.startswith("sample:"):
        return ""
    return held_out


def make_loader(
    c: ml_collections.ConfigDict,
    tokenizer,
    split: str,
    task: str,
    *,
    epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Loader:
    """This host's batches of `c.data.train` or the eval split (`eval_spec`) for `task` ("sft",
    "reward", "dpo").

    `epochs=None` repeats the data forever (training); a finite pass (`epochs=1`: evaluation,
    reward statistics) gives every example once, the last batch padded with empty rows (masked
    out), never dropped, so a split of any size works. Eval batches hold `eval_batch_size`.
    """
    spec = c.data.train if split == "train" else eval_spec(c)
    if not spec:
        raise ValueError(f"no {split} split (data.{split} is empty)")
    kind = "sft" if task == "sft" else "pairs"
    examples = tokenized_examples(
        spec,
        tokenizer,
        c.data.max_len,
        kind,
        c.data.truncation,
        c.data.on_bad_row,
        options=conversation_options(c),
        windows=c.data.windows,
        label_prefix=c.data.label_prefix,
    )
    is_eval = split != "train"
    config = LoaderConfig(
        global_batch_size=(c.eval_batch_size or c.batch_size) if is_eval else c.batch_size,
        seq_len=c.data.max_len,
        pad_id=tokenizer.pad_token_id,
        seed=c.seed,
        num_epochs=epochs,
        packing=c.data.packing,
        pairs_per_row=c.data.get("pairs_per_row", 1),
        pad_last_batch=epochs is not None,  # one pass: every example counts
    )
    return Loader(examples, config, process_index, process_count)
