"""What differs between SFT, the reward model and DPO: how a batch becomes a loss and metrics.

A task is three pure functions of the model and a batch; the train loop never asks which task it runs.
Every loss and metric a task returns is a *contribution* to the global-batch mean: it is divided by the
global denominator (target tokens for SFT, pairs for reward and DPO) computed on the whole global batch
before it is split into micro-batches, so summing the contributions of the micro-batches gives exactly
the big-batch value (accumulating 8 micro-batches of 1 equals one batch of 8).

Batches (see `psycho_jax.data`): SFT `tokens`, `positions`, `attention_mask` or `segment_ids`,
`loss_mask`, all [B,T]; preference batches the same keys shaped [B,2,T] (chosen, rejected), optional
`ratings` [B,2,P] with `has_ratings` [B], and for DPO with precomputed references `ref_logps` [B,2]
(and `ref_counts` [B,2]). Packed preference batches (`segment_ids` [B,2,T] with `example_index`
[B,S]: up to S pairs per two-row unit, each sequence in either row) carry the per-pair arrays with an extra slot axis ([B,S], [B,S,2],
[B,S,2,P]); the reward and DPO losses work on pair slots ([B*S] pairs, empty slots masked out),
so a packed batch gives the losses and metrics of the same pairs unpacked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.train import losses

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, Array]

MODEL_KEYS = ("tokens", "positions", "attention_mask", "segment_ids")
# Metrics over a subset of rows (e.g. pairs with a rating gap) travel as a numerator and a
# denominator, summed over micro-batches and eval batches, and are divided by `finalize`.
RATIO_NUM, RATIO_DEN = "_num:", "_den:"


def finalize(metrics: dict[str, Any]) -> dict[str, Any]:
    """Turns summed `_num:x` / `_den:x` pairs into `x` (nan where the denominator is 0)."""
    out = {k: v for k, v in metrics.items() if not k.startswith((RATIO_NUM, RATIO_DEN))}
    for k in metrics:
        if k.startswith(RATIO_NUM):
            name = k[len(RATIO_NUM) :]
            den = metrics[RATIO_DEN + name]
            out[name] = metrics[k] / jnp.where(den > 0, den, jnp.nan)
    return out


def _flatten_pairs(batch: Batch) -> Batch:
    """[B,2,T] model inputs -> [2B,T] (rows b*2 + {0: chosen, 1: rejected})."""
    return {k: batch[k].reshape((-1, batch[k].shape[-1])) for k in MODEL_KEYS if k in batch}


def _model_inputs(batch: Batch) -> dict[str, Array]:
    return {k: batch[k] for k in MODEL_KEYS[1:] if k in batch}


def target_logprobs(model: nnx.Module, batch: Batch) -> tuple[Array, Array]:
    """Per-token log-probs of the `loss_mask` targets ([B,T], 0 elsewhere and at position 0) and
    the target count per row ([B]): `Llama.target_logprobs` (chunked output projection, targets
    only), or the logits of any other causal LM."""
    mask = batch["loss_mask"].at[:, 0].set(0).astype(jnp.bool_)
    if hasattr(model, "target_logprobs"):
        logp = model.target_logprobs(batch["tokens"], mask, **_model_inputs(batch))
    else:
        logits, _ = model(batch["tokens"], **_model_inputs(batch))
        logp = jnp.where(mask, losses.token_logprobs(logits, batch["tokens"]), 0.0)
    return logp, jnp.sum(mask, axis=-1, dtype=jnp.float32)


def sequence_logps(model: nnx.Module, batch: Batch) -> tuple[Array, Array]:
    """Summed reply log-probs and reply token counts of a preference batch. -> ([B,2], [B,2])."""
    flat = _flatten_pairs(batch)
    flat["loss_mask"] = batch["loss_mask"].reshape(flat["tokens"].shape)
    logps, counts = target_logprobs(model, flat)
    b = batch["tokens"].shape[0]
    return jnp.sum(logps, axis=-1).reshape(b, 2), counts.reshape(b, 2)


def is_packed_pairs(batch: Batch) -> bool:
    """A preference batch with several pairs per row (`batching.collate_packed_pairs`)."""
    return batch["tokens"].ndim == 3 and "segment_ids" in batch


def _slot_valid(batch: Batch) -> Array:
    """[P] float32: 1 for a pair slot holding a pair (P = B, or B*S when packed)."""
    if "example_index" in batch:  # empty rows / slots (-1) pad a last batch or a packed unit
        return (batch["example_index"].reshape(-1) >= 0).astype(jnp.float32)
    return jnp.ones((batch["tokens"].shape[0],), jnp.float32)


def _per_slot(batch: Batch, x: Array) -> Array:
    """A per-pair array ([B,...] or packed [B,S,...]) as [P,...]."""
    lead = 2 if is_packed_pairs(batch) else 1
    return x.reshape((-1,) + x.shape[lead:])


def unit_segments(batch: Batch) -> tuple[Array, int]:
    """A packed preference batch's rows' segment ids ([2B,T]) and the sequences per unit (2S:
    segments 1..2S, `2 * slot + 1` chosen and `+ 2` rejected, `batching.collate_packed_pairs`)."""
    return batch["segment_ids"].reshape(-1, batch["segment_ids"].shape[-1]), 2 * (
        batch["example_index"].shape[-1]
    )


def pair_values(batch: Batch, per_row: Array, present: Array | None = None) -> Array:
    """Per-row values of segments 1..2S ([2B,2S,...]) -> each pair slot's (chosen, rejected)
    values [B*S,2,...]. A segment lives in one row of its two-row unit: the other row's value is
    dropped where `present` ([2B,2S] bool) says so, else it must already be 0 (a sum over an
    absent segment)."""
    b, s = batch["example_index"].shape
    if present is not None:
        per_row = jnp.where(present.reshape(present.shape + (1,) * (per_row.ndim - 2)), per_row, 0)
    v = per_row.reshape((b, 2, 2 * s) + per_row.shape[2:]).sum(axis=1)
    return v.reshape((b * s, 2) + per_row.shape[2:])


def segments_present(batch: Batch) -> Array:
    """[2B,2S] bool: which of segments 1..2S each row of a packed preference batch holds."""
    seg, n = unit_segments(batch)
    ids = jnp.arange(1, n + 1, dtype=seg.dtype)
    return jnp.any(seg[:, :, None] == ids[None, None, :], axis=1)


def slot_logps(model: nnx.Module, batch: Batch) -> tuple[Array, Array]:
    """Summed reply log-probs and reply token counts per pair slot. -> ([P,2], [P,2])."""
    if not is_packed_pairs(batch):
        return sequence_logps(model, batch)
    flat = _flatten_pairs(batch)
    flat["loss_mask"] = batch["loss_mask"].reshape(flat["tokens"].shape)
    logp, _ = target_logprobs(model, flat)  # [2B,T]
    mask = flat["loss_mask"].at[:, 0].set(0).astype(jnp.float32)
    seg, n = unit_segments(batch)
    ids = jnp.arange(1, n + 1, dtype=seg.dtype)
    onehot = (seg[:, :, None] == ids[None, None, :]).astype(jnp.float32)  # [2B,T,2S]
    sums = jnp.einsum("RT,RTS->RS", logp, onehot)
    counts = jnp.einsum("RT,RTS->RS", mask, onehot)
    return pair_values(batch, sums), pair_values(batch, counts)


def _one_pair_at_a_time(fn: Callable[..., tuple[Array, Metrics]], *args: Array):
    """Runs a loss of batch-mean metrics (`losses.*`) on each pair alone: ([P], {name: [P]})."""
    per_example, metrics = jax.vmap(lambda *a: fn(*(x[None] for x in a)))(*args)
    return per_example[:, 0], metrics


def _slot_sums(
    per_example: Array, metrics: Metrics, valid: Array, denominator: Array
) -> tuple[Array, Metrics]:
    """Per-pair losses and metrics summed over the real pair slots, as contributions to the
    global-batch mean (divided by the global pair count)."""
    loss = jnp.sum(jnp.where(valid > 0, per_example, 0.0)) / denominator
    out = {
        k: jnp.sum(jnp.where(valid > 0, jnp.asarray(v, jnp.float32), 0.0)) / denominator
        for k, v in metrics.items()
    }
    return loss, out


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: the global denominator and the loss of a micro-batch.

    `loss(model, batch, denominator, reference)` returns (loss contribution, metric contributions);
    `reference` is the frozen reference model for DPO with a live reference, else None.
    """

    name: str
    denominator: Callable[[Batch], Array]
    loss: Callable[..., tuple[Array, Metrics]]
    num_labels: int = 1  # reward-model head outputs
    needs_reference: bool = False


# ----------------------------------------------------------------------------- SFT


def _sft_denominator(batch: Batch) -> Array:
    # Targets are tokens 1..T-1 (token 0 has no prediction); the same count losses.sft_loss uses.
    return jnp.maximum(jnp.sum(batch["loss_mask"][..., 1:]), 1).astype(jnp.float32)


def _sft_loss(model, batch: Batch, denominator: Array, reference=None) -> tuple[Array, Metrics]:
    del reference
    if hasattr(model, "target_logprob_sum"):  # gradients in the forward pass: no recomputation
        mask = batch["loss_mask"].at[:, 0].set(0)
        logp_sum = model.target_logprob_sum(batch["tokens"], mask, **_model_inputs(batch))
        num_tokens = jnp.sum(mask, dtype=jnp.float32)
    else:
        logp, counts = target_logprobs(model, batch)
        logp_sum, num_tokens = jnp.sum(logp), jnp.sum(counts)
    loss = -logp_sum / denominator
    return loss, {"loss": loss, "num_tokens": num_tokens}


# ----------------------------------------------------------------------------- reward model


def _pairs(batch: Batch) -> Array:
    if "example_index" in batch:  # real pairs only (a padded last eval batch has empty rows)
        return jnp.maximum(jnp.sum(batch["example_index"] >= 0), 1).astype(jnp.float32)
    return jnp.asarray(batch["tokens"].shape[0], jnp.float32)


def make_reward_loss(cfg: ml_collections.ConfigDict):
    rc = cfg.reward

    def loss_fn(model, batch: Batch, denominator: Array, reference=None) -> tuple[Array, Metrics]:
        del reference
        flat = _flatten_pairs(batch)
        b = batch["tokens"].shape[0]
        if is_packed_pairs(batch):
            _, n = unit_segments(batch)
            scores = model(flat["tokens"], num_segments=n, **_model_inputs(flat))  # [2B,2S,L]
            scores = pair_values(batch, scores, segments_present(batch))  # [P,2,L]
        else:
            scores = model(flat["tokens"], **_model_inputs(flat)).reshape(b, 2, -1)
        valid = _slot_valid(batch)  # [P]
        chosen, rejected = scores[:, 0, 0], scores[:, 1, 0]
        ratings = batch.get("ratings")
        if ratings is not None:
            ratings = _per_slot(batch, ratings)  # [P,2,principles]
            has = _per_slot(batch, batch["has_ratings"]).astype(jnp.float32) * valid
        margin = jnp.zeros_like(chosen)
        if rc.margin == "constant":
            margin = jnp.full_like(chosen, rc.margin_value)
        elif rc.margin == "ratings" and ratings is not None:
            margin = losses.margin_from_ratings(ratings[:, 0], ratings[:, 1], rc.margin_value)
            margin = margin * has

        def one_pair(c, r, m):
            return losses.bradley_terry_loss(c, r, m, rc.center_coef)

        per_example, metrics = _one_pair_at_a_time(one_pair, chosen, rejected, margin)
        loss, out = _slot_sums(per_example, metrics, valid, denominator)
        ratios = {}
        if rc.principle_head and ratings is not None:
            # Ratings 1..5 -> [-1, 1]; squared error on rated pairs only.
            target = (ratings.astype(jnp.float32) - 3.0) / 2.0
            err = jnp.mean(jnp.square(scores[..., 1:] - target), axis=(1, 2))
            loss = loss + rc.principle_coef * jnp.sum(err * has) / denominator
            gap_pred = scores[:, 0, 1:] - scores[:, 1, 1:]
            gap_true = (ratings[:, 0] - ratings[:, 1]).astype(jnp.float32)
            decided = (gap_true != 0) & (has[:, None] > 0)
            agree = jnp.sign(gap_pred) == jnp.sign(gap_true)
            ratios["principle_mse"] = (jnp.sum(err * has), jnp.sum(has))
            for i, p in enumerate(PRINCIPLES):
                ratios[f"principle_accuracy/{p}"] = (
                    jnp.sum(agree[:, i] & decided[:, i]),
                    jnp.sum(decided[:, i]),
                )
        out["loss"] = loss
        for name, (num, den) in ratios.items():  # summed over micro-batches, divided at the end
            out[f"{RATIO_NUM}{name}"] = num.astype(jnp.float32)
            out[f"{RATIO_DEN}{name}"] = den.astype(jnp.float32)
        return loss, out

    return loss_fn


# ----------------------------------------------------------------------------- DPO family


def make_dpo_loss(cfg: ml_collections.ConfigDict):
    dc = cfg.dpo
    average = losses.wants_average_logps(dc.loss_type)

    def loss_fn(model, batch: Batch, denominator: Array, reference=None) -> tuple[Array, Metrics]:
        logps, counts = slot_logps(model, batch)  # [P,2]
        counts = jnp.maximum(counts, 1).astype(jnp.float32)
        if reference is not None:
            ref_logps, _ = slot_logps(reference, batch)
            ref_logps = jax.lax.stop_gradient(ref_logps)
        elif "ref_logps" in batch:
            ref_logps = _per_slot(batch, batch["ref_logps"])
        else:
            ref_logps = jnp.zeros_like(logps)
        if average:
            policy, ref = logps / counts, ref_logps / counts
        else:
            policy, ref = logps, ref_logps

        def one_pair(pc, pr, rc_, rr, nll):
            return losses.preference_loss(
                pc,
                pr,
                rc_,
                rr,
                loss_type=dc.loss_type,
                beta=dc.beta,
                label_smoothing=dc.label_smoothing,
                simpo_gamma=dc.simpo_gamma,
                chosen_nll=nll,
            )

        per_example, metrics = _one_pair_at_a_time(
            one_pair,
            policy[:, 0],
            policy[:, 1],
            ref[:, 0],
            ref[:, 1],
            -logps[:, 0] / counts[:, 0],
        )
        loss, out = _slot_sums(per_example, metrics, _slot_valid(batch), denominator)
        out["loss"] = loss
        return loss, out

    return loss_fn


def make_task(cfg: ml_collections.ConfigDict) -> Task:
    """The task a config names."""
    if cfg.task == "sft":
        return Task("sft", _sft_denominator, _sft_loss)
    if cfg.task == "reward":
        labels = 1 + (len(PRINCIPLES) if cfg.reward.principle_head else 0)
        return Task("reward", _pairs, make_reward_loss(cfg), num_labels=labels)
    if cfg.task == "dpo":
        live = cfg.dpo.reference == "live" and losses.needs_reference(cfg.dpo.loss_type)
        return Task("dpo", _pairs, make_dpo_loss(cfg), needs_reference=live)
    raise ValueError(f"config.task={cfg.task!r}; valid: sft, reward, dpo")


def summarize(metrics: dict[str, Any]) -> str:
    """A concise log line: the loss first, then the rest sorted."""
    keys = ["loss"] + sorted(k for k in metrics if k != "loss")
    return " ".join(f"{k}={float(metrics[k]):.4g}" for k in keys if k in metrics)
