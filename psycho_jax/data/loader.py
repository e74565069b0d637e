"""Deterministic, resumable, per-host batches over tokenized examples (grain).

The global batch stream is a pure function of (examples, `LoaderConfig`), never of the number of
hosts: step `s` covers units `[s*B, (s+1)*B)` of one stream, where a unit is a pair, a conversation,
or (packing) a row of packed conversations, and the stream is the examples shuffled by
`grain.MapDataset.shuffle(seed)` anew each epoch, epoch after epoch. Host `h` of `P` takes units
`[h*B/P, (h+1)*B/P)` of every global batch: the hosts' shards are disjoint and together are the
global batch, so `sharding.shard_batch` assembles exactly it, on any number of hosts.

Examples are tokenized once, up front (`templating.tokenize_examples`, ~2,000+ pairs/s on one
core): every skip is counted before training starts, packing plans and bucket lengths come from
known lengths, and each host can compute the shape of the global batch without talking to the
others.

The loader's stages, one screen each: the examples are checked and the `batching.BatchLayout`
chosen once (`Loader.__init__`); `UnitStream` orders them into units (shuffle per epoch, and the
packing plan when the layout packs); `Loader.batch` takes a step's units, this host's share and
collates them by the layout; `get_state` / `set_state` save and restore the iterator.

Resuming: `loader.get_state()` is a small JSON-serialisable dict (grain's iterator state plus a
fingerprint of the data and config); `set_state` on a loader built from the same data and config
continues with exactly the batches the first run would have seen, and refuses a state from other
data or another config with a message saying what differs. Grain's prefetch thread builds the next
batches while the accelerator works.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import threading
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import logging

from psycho_jax.data import batching
from psycho_jax.data.batching import BatchLayout
from psycho_jax.data.templating import Tokenized, TokenizedPair

STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """How tokenized examples become batches.

    Attributes:
        global_batch_size: rows (SFT) or pairs (preference) per step over all hosts.
        seq_len: maximum (and, when packing, exact) batch length `T`.
        pad_id: token id written after the real tokens (the tokenizer's pad token).
        seed: shuffling seed; the order of epoch `e` depends only on (seed, e).
        num_epochs: passes over the data; None repeats forever.
        packing: SFT only: pack several conversations per row (`segment_ids`), else one per row.
        pairs_per_row: preference pairs only: 1 gives one pair per row (bucketed lengths); S > 1
            packs up to S pairs per unit of two rows of exactly `seq_len`, each sequence in
            either row (`batching.collate_packed_pairs`), and `global_batch_size` counts units.
        buckets: allowed batch lengths when not packing; () means `default_buckets(seq_len)`.
        max_open_rows: how many partly filled rows the packer keeps open (`batching.pack`: best
            fit, the fullest row closed when none has room).
        pad_last_batch: with `num_epochs`, fill the last partial global batch with empty rows (all
            padding, zero loss mask, `example_index` -1) instead of dropping its examples: for
            evaluation, where every example counts.
        prefetch: batches grain builds ahead in a background thread (0: none, build on demand).
    """

    global_batch_size: int
    seq_len: int
    pad_id: int
    seed: int = 0
    num_epochs: int | None = 1
    packing: bool = True
    buckets: tuple[int, ...] = ()
    max_open_rows: int = 32
    pad_last_batch: bool = False
    prefetch: int = 2
    pairs_per_row: int = 1

    def __post_init__(self):
        if self.global_batch_size <= 0 or self.seq_len <= 0:
            raise ValueError(
                f"LoaderConfig: global_batch_size ({self.global_batch_size}) and seq_len "
                f"({self.seq_len}) must be positive"
            )
        if self.num_epochs is not None and self.num_epochs <= 0:
            raise ValueError(
                f"LoaderConfig.num_epochs must be positive or None, got {self.num_epochs}"
            )
        if self.pairs_per_row < 1:
            raise ValueError(f"LoaderConfig.pairs_per_row must be >= 1, got {self.pairs_per_row}")
        if self.buckets and max(self.buckets) > self.seq_len:
            raise ValueError(f"LoaderConfig.buckets {self.buckets} exceed seq_len {self.seq_len}")


def _checked(examples: Sequence[Tokenized]) -> list[Tokenized]:
    if not examples:
        raise ValueError("no examples to load (all skipped? see the skip report)")
    if len({type(e) for e in examples}) > 1:
        raise ValueError("examples mix pairs and conversations")
    return list(examples)


def _lengths(examples: Sequence[Tokenized]) -> np.ndarray:
    if isinstance(examples[0], TokenizedPair):
        return np.asarray([batching.pair_length(p) for p in examples], np.int64)
    return np.asarray([len(c.tokens) for c in examples], np.int64)


def _fingerprint(examples: Sequence[Tokenized]) -> str:
    """A hash of all token ids and masks: a restored state must be for the same data."""
    h = hashlib.sha256()
    for ex in examples:
        if isinstance(ex, TokenizedPair):
            for a in (ex.prompt, ex.chosen, ex.rejected):
                h.update(np.int64(len(a)).tobytes())
                h.update(a.tobytes())
        else:
            h.update(np.int64(len(ex.tokens)).tobytes())
            h.update(ex.tokens.tobytes())
            h.update(ex.loss_mask.tobytes())
    return h.hexdigest()[:16]


class UnitStream:
    """The global stream of units: unit `k` is one example, or a packed row of several (a unit
    of two rows for packed pairs) when the layout packs. The examples are shuffled anew each
    epoch by `grain.MapDataset.shuffle(seed)`; a packing layout cuts each epoch's order into rows
    (`batching.pack`). Random access; row counts of all epochs so far are kept, packing plans only
    for the last few epochs (older ones are recomputed, identically, if asked for again).

    Args:
        examples: the tokenized examples.
        lengths: their lengths (`_lengths`).
        layout: the batch layout (packs or not; pairs packed by their two sequences).
        config: the loader's config (`seed`, `num_epochs`, `seq_len`, `max_open_rows`, ...).
    """

    def __init__(
        self,
        examples: Sequence[Tokenized],
        lengths: np.ndarray,
        layout: BatchLayout,
        config: LoaderConfig,
    ):
        self.examples, self.lengths, self.layout, self.config = examples, lengths, layout, config
        n = len(examples)
        order = grain.MapDataset.range(n).shuffle(seed=config.seed)
        self._order = order.repeat(config.num_epochs) if config.num_epochs else order.repeat()
        self._plans: dict[int, list[list[int]]] = {}  # packed rows of recent epochs
        self._plan_starts: list[int] = [0]
        self._lock = threading.Lock()
        self.units_per_epoch = len(self._epoch_plan(0)) if layout.packed else n

    def _pack_epoch(self, e: int) -> list[list[int]]:
        n = len(self.examples)
        idx = np.asarray([self._order[e * n + i] for i in range(n)], np.int64)
        if self.layout is BatchLayout.PACKED_PAIRS:  # chosen and rejected rows fill up separately
            lengths = [batching.packed_pair_lengths(self.examples[k]) for k in idx]
            max_items = self.config.pairs_per_row
        else:
            lengths, max_items = self.lengths[idx], None
        rows = batching.pack(lengths, self.config.seq_len, self.config.max_open_rows, max_items)
        return [[int(idx[k]) for k in row] for row in rows]

    def _epoch_plan(self, epoch: int) -> list[list[int]]:
        """Packed rows of `epoch` (computing the row counts of the epochs before it)."""
        with self._lock:
            while len(self._plan_starts) <= epoch + 1:
                e = len(self._plan_starts) - 1
                self._plans[e] = self._pack_epoch(e)
                self._plan_starts.append(self._plan_starts[-1] + len(self._plans[e]))
            if epoch not in self._plans:
                self._plans[epoch] = self._pack_epoch(epoch)
            plan = self._plans[epoch]
            for old in [e for e in self._plans if e < epoch - 1 or e > epoch + 1]:
                del self._plans[old]
            return plan

    def total(self, epochs: int) -> int:
        """Units in the first `epochs` epochs."""
        if not self.layout.packed:
            return epochs * len(self.examples)
        self._epoch_plan(epochs - 1)
        return self._plan_starts[epochs]

    def unit(self, k: int) -> list[int]:
        """Example indices of unit `k` of the global stream (one, or a packed row)."""
        if not self.layout.packed:
            return [int(self._order[k])]
        epoch = self.epoch_of_unit(k)
        return self._epoch_plan(epoch)[k - self._plan_starts[epoch]]

    def epoch_of_unit(self, k: int) -> int:
        if not self.layout.packed:
            return k // len(self.examples)
        while self._plan_starts[-1] <= k:  # extend the row counts far enough
            self._epoch_plan(len(self._plan_starts) - 1)
        return int(np.searchsorted(self._plan_starts, k, side="right")) - 1


class Loader:
    """Iterator of this host's share of each global batch (format: `batching` module docstring).

    Args:
        examples: tokenized pairs, or tokenized conversations (not both).
        config: a `LoaderConfig`.
        process_index, process_count: this host and the number of hosts; default
            `jax.process_index()` and `jax.process_count()` (parameters for tests).
    """

    def __init__(
        self,
        examples: Sequence[Tokenized],
        config: LoaderConfig,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.examples = _checked(examples)
        self.config = config
        self.is_pairs = isinstance(self.examples[0], TokenizedPair)
        self._set_hosts(process_index, process_count)
        self.lengths = _lengths(self.examples)
        if self.lengths.max() > config.seq_len:
            raise ValueError(
                f"an example has {self.lengths.max()} tokens, more than seq_len {config.seq_len}: "
                "tokenize with Truncation(max_len <= seq_len)"
            )
        self.layout = BatchLayout.choose(self.is_pairs, config.packing, config.pairs_per_row)
        self.buckets = config.buckets or batching.default_buckets(config.seq_len)
        self.with_ratings = self.is_pairs and any(p.ratings is not None for p in self.examples)
        # Per-turn labels (e.g. strategies) of conversations: `turn_label` ids in SFT batches.
        self.label_vocab = (
            ()
            if self.is_pairs
            else tuple(sorted({name for c in self.examples for _, _, name in c.labels}))
        )
        self.units = UnitStream(self.examples, self.lengths, self.layout, config)
        self.units_per_epoch = self.units.units_per_epoch
        self._num_units = None if config.num_epochs is None else self.units.total(config.num_epochs)
        self.num_steps = None if self._num_units is None else self._count_steps(self._num_units)
        self.fingerprint = self._make_fingerprint()
        steps = self.num_steps if self.num_steps is not None else sys.maxsize
        self._dataset = grain.MapDataset.range(steps).map(self.batch)
        self._iter = None

    def _set_hosts(self, process_index: int | None, process_count: int | None) -> None:
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"process_index {self.process_index} not in [0, {self.process_count})")
        if self.config.global_batch_size % self.process_count:
            raise ValueError(
                f"global_batch_size {self.config.global_batch_size} is not divisible by the "
                f"{self.process_count} hosts"
            )
        self.host_batch_size = self.config.global_batch_size // self.process_count

    def _count_steps(self, units: int) -> int:
        """Global batches in `units` units: a last partial one is padded (`pad_last_batch`) or
        dropped (logged)."""
        size, what = self.config.global_batch_size, "rows" if self.layout.packed else "examples"
        steps, rest = divmod(units, size)
        if rest and self.config.pad_last_batch:
            steps += 1
        elif rest:
            logging.info(
                "loader: the last %d of %d %s do not fill a global batch of %d and are dropped",
                rest,
                units,
                what,
                size,
            )
        if steps == 0:
            raise ValueError(f"{units} {what} do not fill one global batch of {size}")
        return steps

    def _make_fingerprint(self) -> dict[str, Any]:
        """What a saved state must match: the data, the config (not `prefetch`), the layout."""
        fingerprint = {
            "version": STATE_VERSION,
            "data": _fingerprint(self.examples),
            "num_examples": len(self.examples),
            "kind": "pairs" if self.is_pairs else "conversations",
            **{k: v for k, v in dataclasses.asdict(self.config).items() if k != "prefetch"},
        }
        fingerprint["buckets"] = list(self.buckets)
        if self.layout is BatchLayout.PACKED_PAIRS:  # a pair's sequences in either row of its unit
            fingerprint["pair_layout"] = "free"
        return fingerprint

    # -------------------------------------------------------------------- the unit stream

    def unit(self, k: int) -> list[int]:
        """Example indices of unit `k` of the global stream (one, or a packed row)."""
        return self.units.unit(k)

    def epoch_of(self, step: int) -> int:
        """The epoch the first unit of global batch `step` belongs to."""
        return self.units.epoch_of_unit(step * self.config.global_batch_size)

    # -------------------------------------------------------------------- batches

    def batch(self, step: int, process_index: int | None = None) -> dict[str, np.ndarray]:
        """This host's part of global batch `step` (random access; no iterator state involved)."""
        h = self.process_index if process_index is None else process_index
        cfg = self.config
        first = step * cfg.global_batch_size
        end = first + cfg.global_batch_size
        if self._num_units is not None:
            end = min(end, self._num_units)  # pad_last_batch: the rest are empty rows
        units = [self.unit(k) for k in range(first, end)]
        units += [[]] * (cfg.global_batch_size - len(units))
        if self.layout.packed:
            seq_len = cfg.seq_len
        else:  # same bucket on every host: from the longest row of the global batch
            longest = max(int(self.lengths[u[0]]) for u in units if u)
            seq_len = batching.bucket_length(longest, self.buckets)
        mine = units[h * self.host_batch_size : (h + 1) * self.host_batch_size]
        return self.layout.collate(
            [[self.examples[i] for i in u] for u in mine],
            seq_len,
            cfg.pad_id,
            with_ratings=self.with_ratings,
            pairs_per_row=cfg.pairs_per_row,
            label_vocab=self.label_vocab,
        )

    def global_batch(self, step: int) -> dict[str, np.ndarray]:
        """All hosts' parts of batch `step`, concatenated (what `shard_batch` assembles)."""
        parts = [self.batch(step, h) for h in range(self.process_count)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # -------------------------------------------------------------------- iteration and state

    def _iterator(self):
        if self._iter is None:
            opts = grain.ReadOptions(
                num_threads=1 if self.config.prefetch else 0,
                prefetch_buffer_size=self.config.prefetch,
            )
            self._iter = iter(self._dataset.to_iter_dataset(opts))
        return self._iter

    def __iter__(self) -> Loader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._iterator())

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position of the iterator (save it with a checkpoint)."""
        return {"grain": self._iterator().get_state(), "fingerprint": dict(self.fingerprint)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from a `get_state()` of a loader over the same data and config.

        Raises:
            ValueError: the state comes from other data or another config (names what differs).
        """
        saved = {"pairs_per_row": 1, **state.get("fingerprint", {})}  # states before the field
        diff = {
            k: (saved.get(k), v)
            for k, v in self.fingerprint.items()
            if (list(saved.get(k) or []) if k == "buckets" else saved.get(k)) != v
        }
        if diff:
            detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"the loader state does not match this data/config ({detail})")
        self._iter = None
        self._iterator().set_state(state["grain"])

    @property
    def step(self) -> int:
        """Index of the next global batch this iterator yields."""
        return int(self._iterator().get_state()["next_index"])
