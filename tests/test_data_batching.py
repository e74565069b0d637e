"""Batches: packing without cross-segment attention, [B, 2, T] pairs, buckets."""

import numpy as np
import pytest
from flax import nnx

from psycho_jax.core.model import Llama, LlamaConfig
from psycho_jax.data import batching, formats, sources, templating
from psycho_jax.data import tokenizer as tk


@pytest.fixture(scope="module")
def ct():
    return templating.ChatTokenizer(tk.sample_tokenizer())


@pytest.fixture(scope="module")
def convs(ct):
    examples = sources.load_source("sample:sft_test")[:12]
    return templating.tokenize_examples(examples, ct, templating.Truncation(512))


def test_pack_first_fit_is_deterministic_and_bounded():
    rows = batching.pack([5, 4, 3, 6, 2, 7], seq_len=10, max_open=2)
    assert rows == [[0, 1], [2, 3], [4, 5]]
    assert sorted(i for r in rows for i in r) == list(range(6))
    with pytest.raises(ValueError, match="item 1 has 11 tokens, more than seq_len 10"):
        batching.pack([3, 11], 10)


def test_pack_best_fit_closes_the_fullest_row():
    # 3 fits both open rows; it goes where it leaves the least room (first fit: row [0]).
    assert batching.pack([5, 7, 3], 10) == [[0], [1, 2]]
    # No room for the second 9: the fullest open row ([1], room 1) closes, not the oldest ([0]);
    # the 1 then fills the new row exactly.
    assert batching.pack([2, 9, 9, 1], 10, max_open=2) == [[1], [0], [2, 3]]
    # Parallel rows (pairs): room is summed over both; (2, 2) fits both rows, the second is fuller.
    assert batching.pack([(5, 5), (6, 7), (2, 2)], 10) == [[0], [1, 2]]


def test_packed_segments_and_positions(convs):
    lengths = [len(c.tokens) for c in convs]
    rows = batching.pack(lengths, 512)
    batch = batching.collate_sft([[convs[i] for i in r] for r in rows], 512, pad_id=7)
    for b, row in enumerate(rows):
        t = 0
        for s, i in enumerate(row, start=1):
            n = lengths[i]
            assert (batch["segment_ids"][b, t : t + n] == s).all()
            assert batch["positions"][b, t : t + n].tolist() == list(range(n))
            assert batch["tokens"][b, t : t + n].tolist() == convs[i].tokens.tolist()
            assert (batch["loss_mask"][b, t : t + n] == convs[i].loss_mask).all()
            assert (
                batch["loss_mask"][b, t] == 0
            )  # BOS is never a target: the shift stays in-segment
            t += n
        assert (batch["segment_ids"][b, t:] == 0).all() and (batch["tokens"][b, t:] == 7).all()
        assert (batch["attention_mask"][b] == (batch["segment_ids"][b] > 0)).all()
        assert (batch["loss_mask"][b, t:] == 0).all()
    assert {k: v.dtype.name for k, v in batch.items()} == {
        "tokens": "int32",
        "positions": "int32",
        "segment_ids": "int32",
        "attention_mask": "int32",
        "loss_mask": "float32",
    }


def test_packed_logits_equal_separate_runs(ct):
    cfg = LlamaConfig.tiny(vocab_size=2048)
    model = Llama(cfg, rngs=nnx.Rngs(0))
    chats = [
        formats.Conversation((formats.Message("user", u), formats.Message("assistant", a)), str(i))
        for i, (u, a) in enumerate(
            [
                ("I can't sleep.", "That sounds hard."),
                ("Work is a lot.", "Tell me more."),
                ("I feel alone.", "I'm glad you said so. Who do you talk to?"),
            ]
        )
    ]
    three = templating.tokenize_examples(chats, ct, templating.Truncation(64))
    packed_batch = batching.collate_sft([three], 96, pad_id=0)
    # Each conversation on its own row (right padding only, no segments): the reference.
    alone_batch = batching.collate_sft([[c] for c in three], 48, pad_id=0)

    @nnx.jit
    def both(model, p, a):
        packed, _ = model(
            p["tokens"],
            positions=p["positions"],
            attention_mask=p["attention_mask"],
            segment_ids=p["segment_ids"],
        )
        alone, _ = model(a["tokens"], attention_mask=a["attention_mask"])
        return packed, alone

    packed, alone = both(model, packed_batch, alone_batch)
    t = 0
    for k, c in enumerate(three):
        n = len(c.tokens)
        np.testing.assert_allclose(
            np.asarray(packed[0, t : t + n]), np.asarray(alone[k, :n]), atol=2e-5, rtol=2e-5
        )
        t += n
    assert t > 64  # three segments really share the row


def test_pair_batch_layout(ct):
    pairs = sources.load_source("sample:preference_test")[:5]
    tp = templating.tokenize_examples(pairs, ct, templating.Truncation(512))
    batch = batching.collate_pairs(tp, 384, ct.pad_id, with_ratings=True)
    assert batch["tokens"].shape == (5, 2, 384) and batch["ratings"].shape == (5, 2, 7)
    assert batch["margin"].tolist() == [0.0] * 5 and batch["example_index"].tolist() == [
        0,
        1,
        2,
        3,
        4,
    ]
    for i, p in enumerate(tp):
        n_p = len(p.prompt)
        for k, reply in enumerate((p.chosen, p.rejected)):
            n = n_p + len(reply)
            assert batch["tokens"][i, k, :n].tolist() == p.prompt.tolist() + reply.tolist()
            assert (batch["tokens"][i, k, n:] == ct.pad_id).all()
            assert batch["loss_mask"][i, k].tolist() == [0.0] * n_p + [1.0] * len(reply) + [0.0] * (
                384 - n
            )
            assert batch["attention_mask"][i, k].sum() == n
            assert batch["positions"][i, k, :n].tolist() == list(range(n))
        assert (batch["tokens"][i, 0, :n_p] == batch["tokens"][i, 1, :n_p]).all()  # shared prompt
        assert batch["ratings"][i].tolist() == [
            list(pairs[i].chosen_ratings),
            list(pairs[i].rejected_ratings),
        ]
    no_ratings = batching.collate_pairs(tp, 384, ct.pad_id, with_ratings=False)
    assert "ratings" not in no_ratings and "has_ratings" not in no_ratings


def test_buckets():
    assert batching.default_buckets(1024) == (128, 256, 512, 1024)
    assert batching.bucket_length(129, (128, 256)) == 256
    with pytest.raises(ValueError, match="longer than the largest bucket 256"):
        batching.bucket_length(300, (128, 256))


def test_margin_from_pairs(ct):
    pair = formats.PreferencePair(
        (formats.Message("user", "Hi."),), "A kind reply.", "No.", "m", margin=1.5
    )
    tp = templating.tokenize_examples([pair], ct, templating.Truncation(64))
    assert batching.collate_pairs(tp, 64, ct.pad_id, False)["margin"].tolist() == [1.5]
