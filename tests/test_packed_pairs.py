"""Packed preference pairs (`data.pairs_per_row` > 1): several pairs per row, the same losses,
metrics and updates as the same pairs one per row."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from psycho_jax.core.model import Llama, LlamaConfig, RewardModel
from psycho_jax.data import batching
from psycho_jax.data import training as data_training
from psycho_jax.data.loader import Loader, LoaderConfig
from psycho_jax.data.tokenizer import sample_tokenizer
from psycho_jax.train import loop as train
from psycho_jax.train import step as step_lib
from psycho_jax.train import tasks
from tests.helpers import fresh_state, load_config, settings

N_PAIRS = 12
SEQ = 320  # one pair per row (the sample pairs have 100-200 tokens)
PACKED_SEQ = 640  # packed rows: 3-4 pairs


@pytest.fixture(scope="module")
def tokenizer():
    return sample_tokenizer()


@pytest.fixture(scope="module")
def pairs(tokenizer):
    c = load_config("dpo")
    examples = data_training.tokenized_examples(
        c.data.train, tokenizer, SEQ, "pairs", c.data.truncation, c.data.on_bad_row
    )
    # Varied lengths, so the packer puts 2-4 pairs in a row and leaves rows partly empty.
    return examples[:N_PAIRS]


def test_pack_max_items():
    rows = batching.pack([10, 10, 10, 10, 10], 100, max_items=2)
    assert rows == [[0, 1], [2, 3], [4]]
    assert batching.pack([10, 10, 10], 100, max_items=1) == [[0], [1], [2]]
    assert batching.pack([60, 30, 50, 20], 100) == [[0, 1], [2, 3]]  # unchanged without a limit
    # Two lengths an item (a pair's chosen and rejected sequences): a unit of two rows, each
    # sequence in either row. 60 + 30, then 50 + 10 both beside the 30 (the tightest fit), then
    # 40 + 80 fits nowhere in what is left (40, 10): a new unit.
    assert batching.pack([(60, 30), (50, 10), (40, 80)], 100) == [[0, 1], [2]]
    # In lockstep rows (chosen row, rejected row) (70, 30) and (20, 80) could not share a unit
    # (30 + 80 > 100); here they fill it exactly.
    assert batching.pack([(70, 30), (20, 80), (10, 10)], 100) == [[0, 1], [2]]
    with pytest.raises(ValueError, match="item 1 has 120 tokens"):
        batching.pack([(10, 10), (5, 120)], 100)


def test_place_pair_best_fit():
    assert batching.place_pair([100, 100], [60, 30]) == (0, 0)  # one row left with 10
    assert batching.place_pair([40, 70], [50, 10]) == (1, 1)  # 50 + 10 in the 70: 10 left
    assert batching.place_pair([40, 70], [50, 30]) == (1, 0)
    assert batching.place_pair([40, 70], [50, 50]) is None
    assert batching.place_pair([100, 100], [100, 100]) == (0, 1)


def test_collate_packed_pairs_segments_are_the_unpacked_rows(tokenizer, pairs):
    rows = [pairs[:3], pairs[3:4], []]
    packed = batching.collate_packed_pairs(rows, PACKED_SEQ, tokenizer.pad_token_id, True, 4)
    assert packed["tokens"].shape == (3, 2, PACKED_SEQ)
    assert packed["example_index"].tolist() == [
        [p.index for p in pairs[:3]] + [-1],
        [pairs[3].index, -1, -1, -1],
        [-1] * 4,
    ]
    assert packed["ratings"].shape == (3, 4, 2, 7)
    flat = batching.collate_pairs(pairs[:4], SEQ, tokenizer.pad_token_id, True)
    for slot in range(3):
        for k in range(2):
            # each sequence is one segment (2 * slot + k + 1) of one of the unit's two rows
            seg = packed["segment_ids"][0] == 2 * slot + k + 1
            rows = np.flatnonzero(seg.any(axis=1))
            assert len(rows) == 1
            r = rows[0]
            n = int(flat["attention_mask"][slot, k].sum())
            assert seg[r].sum() == n
            for key in ("tokens", "positions", "loss_mask"):
                np.testing.assert_array_equal(packed[key][0, r][seg[r]], flat[key][slot, k, :n])
        np.testing.assert_array_equal(packed["ratings"][0, slot], flat["ratings"][slot])
    assert not packed["attention_mask"][2].any()
    with pytest.raises(ValueError, match="more than pairs_per_row 2"):
        batching.collate_packed_pairs([pairs[:3]], SEQ, 0, False, 2)
    with pytest.raises(ValueError, match=f"pair {pairs[1].index} .* does not fit"):
        batching.collate_packed_pairs([pairs[:2]], 250, 0, False, 2)


def _packed_batch(pairs, pad_id, per_row=4):
    lengths = [batching.packed_pair_lengths(p) for p in pairs]
    rows = batching.pack(lengths, PACKED_SEQ, max_open=4, max_items=per_row)
    return batching.collate_packed_pairs(
        [[pairs[i] for i in r] for r in rows], PACKED_SEQ, pad_id, True, per_row
    )


def _step(c, batch, model, reference=None):
    task = tasks.make_task(settings(c))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, state = fresh_state(c, params, rest)
    step = jax.jit(
        functools.partial(step_lib.train_step, graphdef=graphdef, task=task, tx=tx, accum=1)
    )
    new_state, metrics = step(state, jax.tree.map(jnp.asarray, batch), reference)
    return new_state, {k: float(v) for k, v in metrics.items()}


CASES = {
    "reward": ("reward", dict(reward__principle_head=True, reward__margin="ratings")),
    "dpo_live": ("dpo", dict()),
    "dpo_precomputed": ("dpo", dict(dpo__reference="precomputed")),
    "ipo": ("dpo", dict(dpo__loss_type="ipo")),
}


@pytest.mark.parametrize(  # one case in the quick run, all in CI
    "name",
    [n if n == "dpo_precomputed" else pytest.param(n, marks=pytest.mark.slow) for n in CASES],
)
def test_packed_step_equals_unpacked_step(tokenizer, pairs, name):
    task_name, overrides = CASES[name]
    c = load_config(task_name, **overrides)
    task = tasks.make_task(settings(c))
    cfg = LlamaConfig.tiny(vocab_size=len(tokenizer), dim=64, head_dim=16, ffn_dim=128)

    def model():
        if task.name == "reward":
            return RewardModel(cfg, num_labels=task.num_labels, rngs=nnx.Rngs(0))
        return Llama(cfg, rngs=nnx.Rngs(0))

    reference = None
    if task.needs_reference:  # another model than the policy, so the reference term matters
        reference = nnx.split(Llama(cfg, rngs=nnx.Rngs(1)), nnx.Param, ...)[1]
    pad = tokenizer.pad_token_id
    flat = batching.collate_pairs(pairs, SEQ, pad, True)
    packed = _packed_batch(pairs, pad)
    n_rows = packed["tokens"].shape[0]
    assert n_rows < N_PAIRS and (packed["example_index"] >= 0).sum() == N_PAIRS
    assert (packed["example_index"] < 0).any()  # an empty slot is masked out, not counted
    # both layouts occur: a pair's two sequences in one row, and in the unit's two rows
    rows_of = packed["segment_ids"][:, :, :, None] == np.arange(1, 9)  # [B,2,T,2S]
    rows_of = rows_of.any(axis=2).argmax(axis=1).reshape(n_rows, 4, 2)  # the row of each sequence
    real = packed["example_index"] >= 0
    same = rows_of[..., 0] == rows_of[..., 1]
    assert (same & real).any() and (~same & real).any()
    if c.dpo.reference == "precomputed":
        table = np.random.default_rng(0).normal(-300, 20, (max(p.index for p in pairs) + 1, 2))
        table = table.astype(np.float32)
        flat["ref_logps"] = table[flat["example_index"]]
        packed["ref_logps"] = table[packed["example_index"]]
    s_flat, m_flat = _step(c, flat, model(), reference)
    s_packed, m_packed = _step(c, packed, model(), reference)
    assert set(m_flat) == set(m_packed)
    for k in m_flat:
        # DPO rewards are beta * (policy - reference) differences of ~1000-nat float32 sums,
        # summed in another order when packed: 1e-4 absolute is their rounding.
        atol = 1e-4 if k.startswith("rewards/") else 1e-5
        np.testing.assert_allclose(m_packed[k], m_flat[k], rtol=1e-4, atol=atol, err_msg=k)
    for x, y in zip(jax.tree.leaves(s_packed.params), jax.tree.leaves(s_flat.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


def test_loader_packs_every_pair_once_per_epoch(pairs):
    config = LoaderConfig(
        global_batch_size=2,
        seq_len=PACKED_SEQ,
        pad_id=0,
        num_epochs=1,
        pairs_per_row=3,
        prefetch=0,
    )
    loader = Loader(pairs, config, process_index=0, process_count=1)
    seen = []
    for batch in loader:
        assert batch["tokens"].shape == (2, 2, PACKED_SEQ)
        assert batch["example_index"].shape == (2, 3)
        seen += [int(i) for i in batch["example_index"].ravel() if i >= 0]
    # Rows that do not fill the last global batch are dropped, as for packed SFT rows.
    assert len(seen) == len(set(seen)) and len(seen) >= N_PAIRS - 2 * 3
    assert set(seen) <= {p.index for p in pairs}
    # A state saved before the free layout (chosen and rejected rows in lockstep) would resume
    # into other batches: refused, naming the field.
    state = loader.get_state()
    del state["fingerprint"]["pair_layout"]
    fresh = Loader(pairs, config, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="pair_layout: saved None"):
        fresh.set_state(state)


def test_config_pairs_per_row_reaches_the_loader(tokenizer):
    c = load_config("reward")
    c.data.pairs_per_row = 3
    c.data.max_len = PACKED_SEQ
    c.batch_size = 2
    loader = data_training.make_loader(
        settings(c), tokenizer, "train", "reward", process_index=0, process_count=1
    )
    batch = next(iter(loader))
    assert batch["segment_ids"].shape == (2, 2, c.data.max_len)
    assert batch["example_index"].shape == (2, 3)
    assert (batch["example_index"] >= 0).sum() > 2  # more than one pair per row


@pytest.mark.slow
def test_packed_pairs_train_and_evaluate(tmp_path):
    """The training loop, evaluation and the precomputed DPO reference on packed pair batches."""
    packed = dict(data__pairs_per_row=3, data__max_len=PACKED_SEQ, batch_size=8, num_steps=2)
    rm = train.train_and_evaluate(load_config("reward", eval_every=2, **packed), tmp_path / "rm")
    assert np.isfinite(rm["loss"]) and "eval/accuracy" in rm and rm["skipped_steps"] == 0
    train.train_and_evaluate(load_config("sft", num_steps=1), tmp_path / "sft")
    packed["init_from"] = str(tmp_path / "sft")
    live = train.train_and_evaluate(load_config("dpo", **packed), tmp_path / "dpo")
    pre = load_config(
        "dpo",
        dpo__reference="precomputed",
        dpo__reference_cache=str(tmp_path / "refcache"),
        **packed,
    )
    first = train.train_and_evaluate(pre, tmp_path / "dpo_pre")
    for k in ("loss", "rewards/chosen", "rewards/margins", "logps/chosen"):
        np.testing.assert_allclose(first[k], live[k], rtol=1e-4, atol=1e-4, err_msg=k)


def test_reward_statistics_read_every_packed_pair(tokenizer, pairs):
    """OpenRLHF normalisation statistics: the same mean and std from packed and unpacked batches
    (one reward per reply; empty slots not counted)."""
    from psycho_jax.core import sharding

    cfg = LlamaConfig.tiny(vocab_size=len(tokenizer), dim=64, head_dim=16, ffn_dim=128)
    model = RewardModel(cfg, num_labels=1, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = step_lib.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=(),
        rest=rest,
        skipped=jnp.zeros((), jnp.int32),
    )
    mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
    pad = tokenizer.pad_token_id
    flat = train.reward_statistics(
        state, graphdef, [batching.collate_pairs(pairs, SEQ, pad, False)], mesh
    )
    packed = train.reward_statistics(state, graphdef, [_packed_batch(pairs, pad)], mesh)
    for k in ("reward_mean", "reward_std"):
        np.testing.assert_allclose(
            float(packed.rest[k][...]), float(flat.rest[k][...]), rtol=1e-5, err_msg=k
        )
