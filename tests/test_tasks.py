"""psycho_jax.train.tasks: each task is its forward pass, the per-example `losses.*` and one reduction.

The SFT loss and the summed reply log-probs are held against transformers' Llama loss and TRL's
`get_batch_logps` (rtol = atol = 1e-5, float32 on both sides); the reward and DPO losses against the
per-example losses they reduce, with padding rows that must not count.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from psycho_jax.core import hf
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel
from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.train import losses, tasks

TOL = dict(rtol=1e-5, atol=1e-5)
VOCAB, B, T = 61, 4, 12

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _llama(head_chunk=4, seed=0, vocab=VOCAB):
    return Llama(LlamaConfig.tiny(vocab_size=vocab, head_chunk=head_chunk), rngs=nnx.Rngs(seed))


def _pairs(seed=0, padded_rows=1):
    """A [B,2,T] preference batch: right-padded sequences, a prompt then a reply of 1..T-3 tokens;
    the last `padded_rows` rows are empty slots (example_index -1) that must not count."""
    r = np.random.RandomState(seed)
    tokens = r.randint(1, VOCAB, (B, 2, T)).astype(np.int32)
    attention = np.zeros((B, 2, T), np.int32)
    loss_mask = np.zeros((B, 2, T), np.int32)
    for b in range(B):
        for k in range(2):
            prompt = r.randint(1, 4)
            length = r.randint(prompt + 2, T + 1)
            attention[b, k, :length] = 1
            loss_mask[b, k, prompt:length] = 1
    ratings = r.randint(1, 6, (B, 2, len(PRINCIPLES))).astype(np.int32)
    index = np.arange(B, dtype=np.int32)
    index[B - padded_rows :] = -1
    batch = dict(
        tokens=tokens,
        attention_mask=attention,
        loss_mask=loss_mask,
        example_index=index,
        ratings=ratings,
        has_ratings=np.array([1, 0] + [1] * (B - 2), np.int32),
        ref_logps=r.uniform(-60, -20, (B, 2)).astype(np.float32),
    )
    return jax.tree.map(jnp.asarray, batch)


# ----------------------------------------------------------------------------- SFT


def test_sft_loss_matches_transformers_llama(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tm = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    r = np.random.RandomState(4)
    tokens = r.randint(0, 50, (3, 12))
    mask = np.zeros((3, 12), np.int32)
    mask[0, 4:12], mask[1, 7:10], mask[2, 1:5] = 1, 1, 1
    with torch.no_grad():
        want = tm(torch.from_numpy(tokens), labels=torch.from_numpy(np.where(mask, tokens, -100)))
    batch = {"tokens": jnp.asarray(tokens), "loss_mask": jnp.asarray(mask)}
    for head_chunk in (0, 4):  # full logits, and the fused chunked head
        model = hf.load_llama(tmp_path, head_chunk=head_chunk)
        task = tasks.SFT()
        denominator = task.denominator(batch)
        assert float(denominator) == mask[:, 1:].sum()  # token 0 is never a target
        loss, metrics = jax.jit(task.loss)(model, batch, denominator)
        np.testing.assert_allclose(loss, want.loss.item(), err_msg=str(head_chunk), **TOL)
        assert float(metrics["num_tokens"]) == mask[:, 1:].sum()


def test_sft_loss_of_micro_batches_adds_up_to_the_full_batch():
    r = np.random.RandomState(5)
    batch = {
        "tokens": jnp.asarray(r.randint(0, VOCAB, (8, T))),
        "loss_mask": jnp.asarray(r.rand(8, T) < 0.6, jnp.int32),
    }
    task = tasks.SFT()
    denominator = task.denominator(batch)
    graphdef, params = nnx.split(_llama())

    @jax.jit
    def value_and_grad(params, micro):
        fn = lambda p: task.loss(nnx.merge(graphdef, p), micro, denominator)[0]
        return jax.value_and_grad(fn)(params)

    full, full_grad = value_and_grad(params, batch)
    rows = [{k: v[i : i + 1] for k, v in batch.items()} for i in range(8)]
    micro = [value_and_grad(params, row) for row in rows]
    np.testing.assert_allclose(sum(v for v, _ in micro), full, **TOL)
    summed = jax.tree.map(lambda *g: sum(g), *(g for _, g in micro))
    for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(full_grad), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- reply log-probs


@pytest.mark.parametrize("head_chunk", [0, 4])
def test_pair_logps_match_trl_get_batch_logps(head_chunk):
    """`DPO.forward`'s summed and averaged reply log-probs are TRL's `get_batch_logps` of the
    model's logits (labels -100 off the loss mask; a mask on token 0 is not a target)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer

    batch = _pairs(2)
    batch["loss_mask"] = batch["loss_mask"].at[0, 0, 0].set(1)
    model = _llama(head_chunk)
    logps, counts = tasks.DPO.forward(model, batch)
    assert logps.shape == counts.shape == (B, 2)
    flat = {k: batch[k].reshape(2 * B, T) for k in ("tokens", "attention_mask", "loss_mask")}
    logits, _ = model(flat["tokens"], attention_mask=flat["attention_mask"])
    labels = np.where(np.asarray(flat["loss_mask"]) > 0, np.asarray(flat["tokens"]), -100)
    logits = torch.from_numpy(np.asarray(logits))
    want_sum = CPOTrainer.get_batch_logps(logits, torch.from_numpy(labels), False)
    want_avg = CPOTrainer.get_batch_logps(logits, torch.from_numpy(labels), True)
    np.testing.assert_allclose(logps.reshape(-1), want_sum.numpy(), **TOL)
    np.testing.assert_allclose((logps / counts).reshape(-1), want_avg.numpy(), **TOL)
    np.testing.assert_array_equal(counts.reshape(-1), np.asarray(flat["loss_mask"])[:, 1:].sum(-1))


@pytest.mark.parametrize("head_chunk", [0, 4])
def test_pair_logps_ignore_out_of_vocab_ids_outside_the_mask(head_chunk):
    batch = _pairs(3)
    batch["loss_mask"] = jnp.zeros((B, 2, T), jnp.int32).at[..., 2:6].set(1)
    padded = dict(batch, tokens=batch["tokens"].at[..., 6:].set(-1))  # ids the vocab does not hold
    model = _llama(head_chunk)
    a, _ = tasks.DPO.forward(model, batch)
    b, _ = tasks.DPO.forward(model, padded)
    assert np.isfinite(b).all()
    np.testing.assert_allclose(a, b, **TOL)


# ----------------------------------------------------------------------------- reward and DPO


def _real_mean(x, batch):
    real = np.asarray(batch["example_index"]) >= 0
    return np.asarray(x, np.float64)[real].mean(axis=0)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "orpo"])
def test_dpo_task_reduces_the_per_example_loss_once(loss_type):
    """The task's loss and metrics are the means over the real pairs (not the padded row) of
    `losses.preference_loss` on its forward pass's log-probs (averaged where the loss wants)."""
    batch = _pairs(6)
    task = tasks.DPO(loss_type=loss_type, beta=0.2, reference="precomputed")
    assert not task.needs_reference
    model = _llama()
    loss, metrics = task.loss(model, batch, task.denominator(batch))
    logps, counts = tasks.DPO.forward(model, batch)
    policy, ref = logps, batch["ref_logps"]
    if losses.wants_average_logps(loss_type):
        policy, ref = logps / counts, ref / counts
    if not losses.needs_reference(loss_type):
        ref = jnp.zeros_like(ref)
    per_example, want = losses.preference_loss(
        *policy.T, *ref.T, loss_type=loss_type, beta=0.2, chosen_nll=-logps[:, 0] / counts[:, 0]
    )
    assert float(task.denominator(batch)) == B - 1
    np.testing.assert_allclose(loss, _real_mean(per_example, batch), **TOL)
    assert set(metrics) == set(want) | {"loss"}
    for k, v in want.items():
        np.testing.assert_allclose(metrics[k], _real_mean(v, batch), err_msg=k, **TOL)


def test_reward_task_reduces_the_per_example_loss_once():
    batch = _pairs(7)
    task = tasks.Reward(margin="ratings", margin_value=0.5, principle_head=True, principle_coef=0.3)
    assert task.num_labels == 1 + len(PRINCIPLES)
    cfg = LlamaConfig.tiny(vocab_size=VOCAB)
    model = RewardModel(cfg, num_labels=task.num_labels, rngs=nnx.Rngs(0))
    loss, metrics = task.loss(model, batch, task.denominator(batch))
    scores = tasks.Reward.forward(model, batch)  # [B,2,labels]
    assert scores.shape == (B, 2, task.num_labels)
    has = np.asarray(batch["has_ratings"]) * (np.asarray(batch["example_index"]) >= 0)
    ratings = batch["ratings"]
    margin = losses.margin_from_ratings(ratings[:, 0], ratings[:, 1], 0.5) * has
    bt, want = losses.bradley_terry_loss(scores[:, 0, 0], scores[:, 1, 0], margin)
    mse = losses.principle_mse(scores[..., 1:], ratings) * has
    np.testing.assert_allclose(loss, _real_mean(bt + 0.3 * mse, batch), **TOL)
    for k, v in want.items():
        np.testing.assert_allclose(metrics[k], _real_mean(v, batch), err_msg=k, **TOL)
    correct, counted = losses.principle_accuracy(
        scores[:, 0, 1:], scores[:, 1, 1:], ratings[:, 0], ratings[:, 1], valid=has
    )
    finals = tasks.finalize(metrics)
    for i, p in enumerate(PRINCIPLES):
        got, n = finals[f"principle_accuracy/{p}"], float(np.sum(counted[:, i]))
        want_acc = float(np.sum(correct[:, i])) / n if n else np.nan
        np.testing.assert_allclose(got, want_acc, err_msg=p, **TOL)
    np.testing.assert_allclose(finals["principle_mse"], float(np.sum(mse)) / has.sum(), **TOL)


def test_make_task_reads_the_config_and_names_bad_values():
    from tests.test_train import load_config

    dpo = tasks.make_task(load_config("dpo", dpo__loss_type="simpo", dpo__beta=2.0))
    assert (dpo.name, dpo.loss_type, dpo.beta, dpo.needs_reference) == ("dpo", "simpo", 2.0, False)
    assert tasks.make_task(load_config("dpo")).needs_reference  # sigmoid, live reference
    assert not tasks.make_task(load_config("dpo", dpo__reference="precomputed")).needs_reference
    reward = tasks.make_task(load_config("reward", reward__principle_head=False))
    assert (reward.name, reward.num_labels) == ("reward", 1)
    assert tasks.make_task(load_config("sft")) == tasks.SFT()
    with pytest.raises(ValueError, match="loss_type='kto'; valid: sigmoid, ipo, hinge"):
        tasks.make_task(load_config("dpo", dpo__loss_type="kto"))
    c = load_config("sft")
    c.task = "ppo"
    with pytest.raises(ValueError, match="valid: sft, reward, dpo"):
        tasks.make_task(c)
