"""Tokenized examples -> fixed-shape numpy batches: SFT packing or padding, preference pairs.

Batch format (the one place it is defined; every array is right-padded with `pad_id`):

SFT (`collate_sft`), `B` rows of length `T`:
    tokens          [B, T] int32   token ids; `pad_id` after the last segment
    positions       [B, T] int32   position within the token's segment (0 at each BOS), 0 on padding
    segment_ids     [B, T] int32   1, 2, ... for the packed sequences of a row, 0 on padding; the
                                   model attends only within a segment (block-diagonal causal mask)
    attention_mask  [B, T] int32   1 on real tokens, 0 on padding
    loss_mask       [B, T] float32 1 where the token is a training target (assistant tokens: each
                                   reply and its end-of-turn token); 0 on prompts, headers, padding

Preference (`collate_pairs`), `B` pairs, axis 1 = (chosen, rejected):
    tokens          [B, 2, T] int32   prompt + reply; both rows of a pair share the prompt tokens
    positions       [B, 2, T] int32   0, 1, 2, ... on real tokens, 0 on padding
    attention_mask  [B, 2, T] int32
    loss_mask       [B, 2, T] float32 1 on reply tokens only
    margin          [B] float32       the pair's margin, 0 where it has none
    example_index   [B] int32         position of the pair in the tokenized dataset (for ids, audits);
                                      -1 for an empty row (`LoaderConfig.pad_last_batch`)
    ratings         [B, 2, 7] float32 per-principle ratings (`formats.PRINCIPLES` order), 0 where
                                      absent. Only when the dataset has ratings, with:
    has_ratings     [B] float32       1 where the pair has ratings

Packed preference pairs (`collate_packed_pairs`, `LoaderConfig.pairs_per_row` = S > 1), `B` units
of two rows, each unit holding up to `S` pairs. A pair's two sequences (prompt + chosen reply, prompt
+ rejected reply) are segments `2s + 1` (chosen) and `2s + 2` (rejected) of its unit, s its pair slot;
each sequence goes to whichever of the unit's two rows `place_pair` picks (both may share a row), so
the rows fill up like SFT rows rather than in lockstep:
    tokens, positions, attention_mask, loss_mask   [B, 2, T] as above, positions per segment
    segment_ids     [B, 2, T] int32   1..2S: the sequence (2 * slot + 1 chosen, + 2 rejected), 0 on
                                      padding; each id is in one row of its unit only
    margin          [B, S] float32
    example_index   [B, S] int32      -1 for an empty slot (the slot mask of the losses)
    ratings         [B, S, 2, 7] float32 and has_ratings [B, S] float32, as above
Losses and metrics are per pair slot (`tasks`), so a packed batch of N pairs gives the values of an
unpacked batch of the same N pairs (tested).

Targets are the tokens themselves: the logit at t predicts token t+1, so a next-token loss reads
`logits[..., :-1, :]` against `tokens[..., 1:]` weighted by `loss_mask[..., 1:]`. A segment's first
token (BOS) is never a target, so the shift never crosses from one packed sequence into the next.
The reward model reads the last real token of each row (`model.last_token_index(attention_mask)`).

`T` is `seq_len` when packing, else the smallest of a few bucket lengths that holds the longest row
of the *global* batch, so every host builds the same shape and compilations stay few.

Which of these a run uses is its `BatchLayout` (SFT packed or padded, pairs one per row or packed),
decided once from the data and the config; the loader packs and collates by it, and `of_batch`
reads it back from a batch's arrays.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.data.templating import TokenizedConversation, TokenizedPair


def bucket_length(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n. Raises ValueError if none is."""
    for b in sorted(buckets):
        if b >= n:
            return b
    raise ValueError(f"a row of {n} tokens is longer than the largest bucket {max(buckets)}")


def default_buckets(seq_len: int, n: int = 4) -> tuple[int, ...]:
    """`n` bucket lengths up to `seq_len`, halving: e.g. 1024 -> (128, 256, 512, 1024)."""
    out = {seq_len}
    b = seq_len
    for _ in range(n - 1):
        b //= 2
        if b < 8:
            break
        out.add(b)
    return tuple(sorted(out))


def place_pair(room: Sequence[int], lengths: Sequence[int]) -> tuple[int, ...] | None:
    """Where a pair's sequences go in a unit of parallel rows with `room` tokens left each: the
    row of each sequence (several may share one), or None if they do not fit. Of the assignments
    that fit, the one that leaves some row the least room (best fit), the first in
    `itertools.product` order on ties. Deterministic: `collate_packed_pairs` replays the packer's
    choices by calling it again."""
    best, best_left = None, None
    for rows in itertools.product(range(len(room)), repeat=len(lengths)):
        left = list(room)
        for n, r in zip(lengths, rows, strict=True):
            left[r] -= n
        if min(left) >= 0 and (best_left is None or min(left) < best_left):
            best, best_left = rows, min(left)
    return best


def pack(
    lengths: Sequence[int] | Sequence[Sequence[int]],
    seq_len: int,
    max_open: int = 32,
    max_items: int | None = None,
) -> list[list[int]]:
    """Groups items (in the given order) into rows of at most `seq_len` tokens.

    Best fit among up to `max_open` open rows: an item goes to the open row it leaves with the
    least room (the first such row on ties); when none has room and `max_open` rows are open, the
    fullest open row is closed. A row that reaches `max_items` items (None: no limit) is closed at
    once. Deterministic; rows come out in the order they are closed, then the rows still open.

    An item's length may be a tuple (a pair's chosen and rejected sequences): the "row" is then a
    unit of that many parallel rows, each sequence goes to any of them (`place_pair`), and a unit's
    room is the sum over its rows.

    With CounselChat's lengths this fills about 95% of an SFT row's tokens and 86% of a pair
    unit's (`bench/train_step.py --data=counsel`); first fit closing the oldest of 8 open rows
    filled 90% and, with each pair's sequences in lockstep rows, 75%.

    Returns:
        Rows, each a list of item positions in `lengths`.
    Raises:
        ValueError: an item is longer than `seq_len`.
    """
    rows: list[list[int]] = []
    open_rows: list[list[int]] = []
    room: list[tuple[int, ...]] = []
    for i, item in enumerate(lengths):
        n = tuple(item) if isinstance(item, Sequence | np.ndarray) else (item,)
        if max(n) > seq_len:
            raise ValueError(f"item {i} has {max(n)} tokens, more than seq_len {seq_len}")
        best, best_left = -1, None
        for k, r in enumerate(room):
            after = sum(r) - sum(n)
            if after < 0 or best_left is not None and after >= sum(best_left):
                continue
            left = _left_after(r, n)
            if left is not None:
                best, best_left = k, left
        if best >= 0:
            open_rows[best].append(i)
            room[best] = best_left
            if max_items is not None and len(open_rows[best]) >= max_items:
                rows.append(open_rows.pop(best))
                room.pop(best)
            continue
        if len(open_rows) == max_open:
            fullest = min(range(len(room)), key=lambda k: sum(room[k]))
            rows.append(open_rows.pop(fullest))
            room.pop(fullest)
        if max_items == 1:
            rows.append([i])
            continue
        open_rows.append([i])
        room.append(_left_after((seq_len,) * len(n), n))
    return rows + open_rows


def _left_after(room: tuple[int, ...], n: tuple[int, ...]) -> tuple[int, ...] | None:
    """A row's (or unit's) room after item `n` goes in, None if it does not fit."""
    if len(n) == 1:
        return (room[0] - n[0],) if n[0] <= room[0] else None
    rows = place_pair(room, n)
    if rows is None:
        return None
    left = list(room)
    for m, r in zip(n, rows, strict=True):
        left[r] -= m
    return tuple(left)


def packed_pair_lengths(p: TokenizedPair) -> tuple[int, int]:
    """A pair's (chosen, rejected) sequence lengths: what it takes of each row when packed."""
    return len(p.prompt) + len(p.chosen), len(p.prompt) + len(p.rejected)


def collate_sft(
    rows: Sequence[Sequence[TokenizedConversation]],
    seq_len: int,
    pad_id: int,
    label_vocab: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """An SFT batch (format above); row `b` holds the conversations `rows[b]` packed in order.

    One conversation per row gives plain right padding; an empty row is all padding. With a
    `label_vocab` (the per-turn labels of the data, e.g. support strategies) the batch also has
    `turn_label` [B,T] int32: 1 + the label's index on the target tokens of a labelled turn, else 0.
    """
    label_id = {name: k + 1 for k, name in enumerate(label_vocab)}
    turn_label = np.zeros((len(rows), seq_len), np.int32)
    b = len(rows)
    tokens = np.full((b, seq_len), pad_id, np.int32)
    positions = np.zeros((b, seq_len), np.int32)
    segment_ids = np.zeros((b, seq_len), np.int32)
    loss_mask = np.zeros((b, seq_len), np.float32)
    for i, row in enumerate(rows):
        t = 0
        for s, ex in enumerate(row, start=1):
            n = len(ex.tokens)
            if t + n > seq_len:
                raise ValueError(f"row {i}: {t + n} tokens do not fit seq_len {seq_len}")
            tokens[i, t : t + n] = ex.tokens
            positions[i, t : t + n] = np.arange(n, dtype=np.int32)
            segment_ids[i, t : t + n] = s
            loss_mask[i, t : t + n] = ex.loss_mask
            for a, e, name in ex.labels if label_id else ():
                turn_label[i, t + a : t + e] = label_id[name] * ex.loss_mask[a:e]
            t += n
    batch = {
        "tokens": tokens,
        "positions": positions,
        "segment_ids": segment_ids,
        "attention_mask": (segment_ids > 0).astype(np.int32),
        "loss_mask": loss_mask,
    }
    if label_id:
        batch["turn_label"] = turn_label
    return batch


def pair_length(p: TokenizedPair) -> int:
    """Length of the longer of a pair's two rows."""
    return len(p.prompt) + max(len(p.chosen), len(p.rejected))


def collate_pairs(
    pairs: Sequence[TokenizedPair | None], seq_len: int, pad_id: int, with_ratings: bool
) -> dict[str, np.ndarray]:
    """A preference batch (format above) of length `seq_len`; a None pair is an empty row
    (all padding, zero masks, `example_index` -1)."""
    b = len(pairs)
    tokens = np.full((b, 2, seq_len), pad_id, np.int32)
    attention = np.zeros((b, 2, seq_len), np.int32)
    loss_mask = np.zeros((b, 2, seq_len), np.float32)
    margin = np.zeros((b,), np.float32)
    index = np.zeros((b,), np.int32)
    ratings = np.zeros((b, 2, len(PRINCIPLES)), np.float32)
    has_ratings = np.zeros((b,), np.float32)
    for i, p in enumerate(pairs):
        if p is None:
            index[i] = -1
            continue
        n_p = len(p.prompt)
        for k, reply in enumerate((p.chosen, p.rejected)):
            n = n_p + len(reply)
            if n > seq_len:
                raise ValueError(f"pair {p.index}: {n} tokens do not fit seq_len {seq_len}")
            tokens[i, k, :n_p] = p.prompt
            tokens[i, k, n_p:n] = reply
            attention[i, k, :n] = 1
            loss_mask[i, k, n_p:n] = 1.0
        margin[i] = 0.0 if p.margin is None else p.margin
        index[i] = p.index
        if p.ratings is not None:
            ratings[i] = p.ratings
            has_ratings[i] = 1.0
    positions = np.maximum(np.cumsum(attention, axis=-1, dtype=np.int32) - 1, 0) * attention
    batch = {
        "tokens": tokens,
        "positions": positions.astype(np.int32),
        "attention_mask": attention,
        "loss_mask": loss_mask,
        "margin": margin,
        "example_index": index,
    }
    if with_ratings:
        batch["ratings"] = ratings
        batch["has_ratings"] = has_ratings
    return batch


def collate_packed_pairs(
    rows: Sequence[Sequence[TokenizedPair]],
    seq_len: int,
    pad_id: int,
    with_ratings: bool,
    pairs_per_row: int,
) -> dict[str, np.ndarray]:
    """A packed preference batch (format above): unit `b` holds the pairs `rows[b]` (at most
    `pairs_per_row`), each sequence in the row `place_pair` gives it as the pairs are added in
    order (the packer's own choice, replayed); an empty unit is all padding with every slot's
    `example_index` -1."""
    b, s_max = len(rows), pairs_per_row
    tokens = np.full((b, 2, seq_len), pad_id, np.int32)
    positions = np.zeros((b, 2, seq_len), np.int32)
    segment_ids = np.zeros((b, 2, seq_len), np.int32)
    loss_mask = np.zeros((b, 2, seq_len), np.float32)
    margin = np.zeros((b, s_max), np.float32)
    index = np.full((b, s_max), -1, np.int32)
    ratings = np.zeros((b, s_max, 2, len(PRINCIPLES)), np.float32)
    has_ratings = np.zeros((b, s_max), np.float32)
    for i, row in enumerate(rows):
        if len(row) > s_max:
            raise ValueError(f"row {i}: {len(row)} pairs, more than pairs_per_row {s_max}")
        ends = [0, 0]
        for slot, p in enumerate(row):
            n_p = len(p.prompt)
            lengths = packed_pair_lengths(p)
            where = place_pair([seq_len - e for e in ends], lengths)
            if where is None:
                raise ValueError(
                    f"row {i}: pair {p.index} ({lengths[0]} + {lengths[1]} tokens) does not fit "
                    f"beside {ends[0]} + {ends[1]} tokens in rows of seq_len {seq_len}"
                )
            for k, (reply, r) in enumerate(zip((p.chosen, p.rejected), where, strict=True)):
                t, n = ends[r], lengths[k]
                tokens[i, r, t : t + n_p] = p.prompt
                tokens[i, r, t + n_p : t + n] = reply
                positions[i, r, t : t + n] = np.arange(n, dtype=np.int32)
                segment_ids[i, r, t : t + n] = 2 * slot + k + 1
                loss_mask[i, r, t + n_p : t + n] = 1.0
                ends[r] = t + n
        for slot, p in enumerate(row):
            margin[i, slot] = 0.0 if p.margin is None else p.margin
            index[i, slot] = p.index
            if p.ratings is not None:
                ratings[i, slot] = p.ratings
                has_ratings[i, slot] = 1.0
    batch = {
        "tokens": tokens,
        "positions": positions,
        "segment_ids": segment_ids,
        "attention_mask": (segment_ids > 0).astype(np.int32),
        "loss_mask": loss_mask,
        "margin": margin,
        "example_index": index,
    }
    if with_ratings:
        batch["ratings"] = ratings
        batch["has_ratings"] = has_ratings
    return batch


class BatchLayout(enum.Enum):
    """How examples become batches: the four layouts, chosen once (`choose`).

    SFT_PACKED    conversations, packed several to a row of `seq_len` (`collate_sft`)
    SFT_PADDED    conversations, one per row, padded to a bucket length (`collate_sft`)
    PAIRS         preference pairs, one per two rows, padded to a bucket length (`collate_pairs`)
    PACKED_PAIRS  preference pairs, up to `pairs_per_row` per unit of two rows of `seq_len`
                  (`collate_packed_pairs`)
    """

    SFT_PACKED = "sft_packed"
    SFT_PADDED = "sft_padded"
    PAIRS = "pairs"
    PACKED_PAIRS = "packed_pairs"

    @classmethod
    def choose(cls, pairs: bool, packing: bool, pairs_per_row: int) -> BatchLayout:
        """The layout of a dataset of pairs (or conversations): `pairs_per_row > 1` packs pairs,
        `packing` packs conversations; each setting is ignored for the other kind of data."""
        if pairs:
            return cls.PACKED_PAIRS if pairs_per_row > 1 else cls.PAIRS
        return cls.SFT_PACKED if packing else cls.SFT_PADDED

    @classmethod
    def of_batch(cls, batch: Mapping[str, Any]) -> BatchLayout:
        """The layout a batch was collated in, from its keys and ranks only (so it works on traced
        arrays inside `jit`). Padded and packed SFT batches are the same arrays (a padded row is a
        packed row of one conversation): an SFT batch reads as SFT_PACKED."""
        if batch["tokens"].ndim == 2:
            return cls.SFT_PACKED
        return cls.PACKED_PAIRS if "segment_ids" in batch else cls.PAIRS

    @property
    def pairs(self) -> bool:
        """Preference pairs ([B, 2, T] batches), not conversations."""
        return self in (BatchLayout.PAIRS, BatchLayout.PACKED_PAIRS)

    @property
    def packed(self) -> bool:
        """Rows of exactly `seq_len` holding several examples (else one example, bucket length)."""
        return self in (BatchLayout.SFT_PACKED, BatchLayout.PACKED_PAIRS)

    def collate(
        self,
        rows: Sequence[Sequence[TokenizedConversation | TokenizedPair]],
        seq_len: int,
        pad_id: int,
        *,
        with_ratings: bool = False,
        pairs_per_row: int = 1,
        label_vocab: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """A batch of this layout: row (or unit) `b` holds the examples `rows[b]` (at most one
        unless packed; none: an empty row). `with_ratings` and `pairs_per_row` concern pairs,
        `label_vocab` conversations."""
        if self is BatchLayout.PACKED_PAIRS:
            return collate_packed_pairs(rows, seq_len, pad_id, with_ratings, pairs_per_row)
        if self is BatchLayout.PAIRS:
            pairs = [row[0] if row else None for row in rows]
            return collate_pairs(pairs, seq_len, pad_id, with_ratings)
        return collate_sft(rows, seq_len, pad_id, label_vocab)
