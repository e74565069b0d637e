"""From a run config to the batches a task trains on: tokenizer, sources, tokenizing, the loader.

The training loop's one entry into `psycho_jax.data`:

    tokenizer = tokenizer_lib.load_tokenizer(config.tokenizer)
    loader = make_loader(config, tokenizer, "train", task="sft")   # iterator of host batches

Tokenized examples are cached in memory per (source, tokenizer, max length, task), so periodic
evaluation does not tokenize the eval split again.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from absl import logging

from psycho_jax.data import sources
from psycho_jax.data.formats import Conversation, Message, PreferencePair, SkipCounter
from psycho_jax.data.pipeline import Loader, LoaderConfig
from psycho_jax.data.templating import ChatTokenizer, Truncation, tokenize_examples

_CACHE: dict[tuple, list[Any]] = {}


def as_conversation(ex: PreferencePair | Conversation) -> Conversation:
    """SFT on a preference pair trains on its prompt and chosen reply."""
    if isinstance(ex, Conversation):
        return ex
    messages = (*ex.prompt, Message("assistant", ex.chosen))
    return Conversation(messages, ex.id, ex.file, ex.row)


def tokenized_examples(
    spec: str, tokenizer, max_len: int, task: str, truncation: str, on_bad_row: str
) -> list[Any]:
    """Validated, tokenized examples of a source spec (see `sources.parse_source`); skips logged."""
    key = (spec, id(tokenizer), max_len, task, truncation, on_bad_row)
    if key not in _CACHE:
        skips = SkipCounter()
        specs = [s.strip() for s in spec.split(",") if s.strip()]
        examples = sources.load_mixture(specs, on_error=on_bad_row, skips=skips)
        if task == "sft":
            examples = [as_conversation(e) for e in examples]
        elif not all(isinstance(e, PreferencePair) for e in examples):
            raise ValueError(
                f"data {spec!r}: task {task} needs preference pairs, found conversations"
            )
        ct = ChatTokenizer(tokenizer)
        out = tokenize_examples(
            examples, ct, Truncation(max_len, truncation), on_error=on_bad_row, skips=skips
        )
        logging.info(
            "data %s: %d of %d examples; %s", spec, len(out), len(examples), skips.summary(spec)
        )
        _CACHE[key] = out
    return _CACHE[key]


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
    """This host's batches of `c.data.train` or `c.data.eval` for `task` ("sft", "reward", "dpo").

    `epochs=None` repeats the data forever (training); evaluation passes `epochs=1`.
    """
    spec = c.data.train if split == "train" else c.data.eval
    kind = "sft" if task == "sft" else "pairs"
    examples = tokenized_examples(
        spec, tokenizer, c.data.max_len, kind, c.data.truncation, c.data.on_bad_row
    )
    config = LoaderConfig(
        global_batch_size=c.batch_size,
        seq_len=c.data.max_len,
        pad_id=tokenizer.pad_token_id,
        seed=c.seed,
        num_epochs=epochs,
        packing=c.data.packing,
        pairs_per_row=c.data.get("pairs_per_row", 1),
    )
    return Loader(examples, config, process_index, process_count)
