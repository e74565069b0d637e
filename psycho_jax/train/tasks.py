"""What differs between SFT, the reward model and DPO: how a batch becomes a loss and metrics.

A task is one of three small classes, `SFT`, `Reward` and `DPO`, with the same three methods; the train
loop never asks which task it runs:

  denominator(batch)                        the global count the losses are divided by (target tokens
                                            for SFT, real pairs for reward and DPO)
  forward(model, batch)                     the model outputs the loss reads, one per pair slot (SFT:
                                            the summed target log-prob of the batch)
  loss(model, batch, denominator, reference)  forward, the per-example `losses.*`, then one reduction:
                                            (loss contribution, metric contributions)

Every loss and metric a task returns is a *contribution* to the global-batch mean: it is divided by the
global denominator computed on the whole global batch before it is split into micro-batches, so summing
the contributions of the micro-batches gives exactly the big-batch value (accumulating 8 micro-batches
of 1 equals one batch of 8).

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
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from psycho_jax.data.batching import BatchLayout
from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.train import losses
from psycho_jax.train.settings import TrainSettings

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


def _targets(loss_mask: Array) -> Array:
    """The `loss_mask` positions that are targets: all but position 0, which has no prediction."""
    return loss_mask.at[..., 0].set(False)


def is_packed_pairs(batch: Batch) -> bool:
    """A preference batch with several pairs per row (the loader's `BatchLayout.PACKED_PAIRS`)."""
    return BatchLayout.of_batch(batch) is BatchLayout.PACKED_PAIRS


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


def _pairs(batch: Batch) -> Array:
    """The real pairs of a preference batch (a padded last eval batch has empty rows), >= 1."""
    if "example_index" in batch:
        return jnp.maximum(jnp.sum(batch["example_index"] >= 0), 1).astype(jnp.float32)
    return jnp.asarray(batch["tokens"].shape[0], jnp.float32)


def _reduce(
    per_example: Array, metrics: Metrics, valid: Array, denominator: Array
) -> tuple[Array, Metrics]:
    """The one reduction: per-pair losses and metrics summed over the real pair slots and divided
    by the global pair count, as contributions to the global-batch mean."""
    real = valid > 0
    loss = jnp.sum(jnp.where(real, per_example, 0.0)) / denominator
    out = {
        k: jnp.sum(jnp.where(real, jnp.asarray(v, jnp.float32), 0.0)) / denominator
        for k, v in metrics.items()
    }
    out["loss"] = loss
    return loss, out


# ----------------------------------------------------------------------------- SFT


@dataclasses.dataclass(frozen=True)
class SFT:
    """Next-token cross-entropy on the `loss_mask` targets, normalised by the global target count.

    With `denominator` the targets of the whole global batch, the micro-batches' losses add up to
    the global batch's loss; with a single batch it is Hugging Face's
    `LlamaForCausalLM(labels=...)` loss.
    """

    name: ClassVar[str] = "sft"
    num_labels: ClassVar[int] = 1
    needs_reference: ClassVar[bool] = False

    def denominator(self, batch: Batch) -> Array:
        """Target tokens (positions 1..T-1 of `loss_mask`) in the batch, >= 1."""
        return jnp.maximum(jnp.sum(batch["loss_mask"][..., 1:]), 1).astype(jnp.float32)

    @staticmethod
    def forward(model: nnx.Module, batch: Batch) -> tuple[Array, Array]:
        """The batch's summed target log-prob and its target count (two float32 scalars). The
        head's fused kernel reduces the per-token values and computes their gradients in its
        forward pass (`Llama.target_logprob_sum`)."""
        mask = _targets(batch["loss_mask"])
        logp_sum = model.target_logprob_sum(batch["tokens"], mask, **_model_inputs(batch))
        return logp_sum, jnp.sum(mask, dtype=jnp.float32)

    def loss(
        self, model: nnx.Module, batch: Batch, denominator: Array, reference=None
    ) -> tuple[Array, Metrics]:
        """-sum(target log-probs) / denominator; metrics `loss` and `num_tokens` (a plain count)."""
        del reference
        logp_sum, num_tokens = self.forward(model, batch)
        loss = -logp_sum / denominator
        return loss, {"loss": loss, "num_tokens": num_tokens}


# ----------------------------------------------------------------------------- reward model


@dataclasses.dataclass(frozen=True)
class Reward:
    """A Bradley-Terry reward model (`losses.bradley_terry_loss`), optionally with a margin and a
    head that predicts each reply's per-principle ratings (`config.reward`)."""

    margin: str = "none"  # none | constant | ratings
    margin_value: float = 0.0
    center_coef: float = 0.0
    principle_head: bool = False
    principle_coef: float = 0.1

    name: ClassVar[str] = "reward"
    needs_reference: ClassVar[bool] = False

    @property
    def num_labels(self) -> int:
        """Reward-head outputs: the reward, then one rating prediction per principle."""
        return 1 + (len(PRINCIPLES) if self.principle_head else 0)

    def denominator(self, batch: Batch) -> Array:
        return _pairs(batch)

    @staticmethod
    def forward(model: nnx.Module, batch: Batch) -> Array:
        """Head outputs of each pair slot's chosen and rejected reply: [P,2,labels] float32."""
        flat = _flatten_pairs(batch)
        if is_packed_pairs(batch):
            _, n = unit_segments(batch)
            scores = model(flat["tokens"], num_segments=n, **_model_inputs(flat))  # [2B,2S,L]
            return pair_values(batch, scores, segments_present(batch))
        return model(flat["tokens"], **_model_inputs(flat)).reshape(batch["tokens"].shape[0], 2, -1)

    def loss(
        self, model: nnx.Module, batch: Batch, denominator: Array, reference=None
    ) -> tuple[Array, Metrics]:
        del reference
        scores = self.forward(model, batch)  # [P,2,L]
        valid = _slot_valid(batch)  # [P]
        chosen, rejected = scores[:, 0, 0], scores[:, 1, 0]
        ratings = batch.get("ratings")
        if ratings is not None:
            ratings = _per_slot(batch, ratings)  # [P,2,principles]
            has = _per_slot(batch, batch["has_ratings"]).astype(jnp.float32) * valid
        margin = jnp.zeros_like(chosen)
        if self.margin == "constant":
            margin = jnp.full_like(chosen, self.margin_value)
        elif self.margin == "ratings" and ratings is not None:
            margin = losses.margin_from_ratings(ratings[:, 0], ratings[:, 1], self.margin_value)
            margin = margin * has
        per_example, metrics = losses.bradley_terry_loss(chosen, rejected, margin, self.center_coef)
        ratios = {}
        if self.principle_head and ratings is not None:
            mse = losses.principle_mse(scores[..., 1:], ratings) * has
            per_example = per_example + self.principle_coef * mse
            correct, counted = losses.principle_accuracy(
                scores[:, 0, 1:], scores[:, 1, 1:], ratings[:, 0], ratings[:, 1], valid=has
            )
            ratios["principle_mse"] = (jnp.sum(mse), jnp.sum(has))
            for i, p in enumerate(PRINCIPLES):
                ratios[f"principle_accuracy/{p}"] = (
                    jnp.sum(correct[:, i]),
                    jnp.sum(counted[:, i]),
                )
        loss, out = _reduce(per_example, metrics, valid, denominator)
        for name, (num, den) in ratios.items():  # summed over micro-batches, divided at the end
            out[f"{RATIO_NUM}{name}"] = num.astype(jnp.float32)
            out[f"{RATIO_DEN}{name}"] = den.astype(jnp.float32)
        return loss, out


# ----------------------------------------------------------------------------- DPO family


@dataclasses.dataclass(frozen=True)
class DPO:
    """A preference loss of the DPO family (`losses.PREFERENCE_LOSSES`, `config.dpo`) on the
    policy's reply log-probs, against a live reference model, precomputed reference log-probs
    (`ref_logps` in the batch), or none (the reference-free losses)."""

    loss_type: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    reference: str = "live"  # live | precomputed

    name: ClassVar[str] = "dpo"
    num_labels: ClassVar[int] = 1

    def __post_init__(self):
        losses.preference_spec(self.loss_type)  # an unknown loss_type names the valid ones

    @property
    def needs_reference(self) -> bool:
        """Whether the step takes a live reference model."""
        return self.reference == "live" and losses.needs_reference(self.loss_type)

    def denominator(self, batch: Batch) -> Array:
        return _pairs(batch)

    @staticmethod
    def forward(model: nnx.Module, batch: Batch) -> tuple[Array, Array]:
        """Summed reply log-probs and reply token counts of each pair slot: ([P,2], [P,2])."""
        flat = _flatten_pairs(batch)
        mask = _targets(batch["loss_mask"].reshape(flat["tokens"].shape))
        logp = model.target_logprobs(flat["tokens"], mask, **_model_inputs(flat))  # [2B,T]
        if not is_packed_pairs(batch):
            b = batch["tokens"].shape[0]
            counts = jnp.sum(mask.astype(jnp.bool_), axis=-1, dtype=jnp.float32)
            return jnp.sum(logp, axis=-1).reshape(b, 2), counts.reshape(b, 2)
        seg, n = unit_segments(batch)
        ids = jnp.arange(1, n + 1, dtype=seg.dtype)
        onehot = (seg[:, :, None] == ids[None, None, :]).astype(jnp.float32)  # [2B,T,2S]
        sums = jnp.einsum("RT,RTS->RS", logp, onehot)
        counts = jnp.einsum("RT,RTS->RS", mask.astype(jnp.float32), onehot)
        return pair_values(batch, sums), pair_values(batch, counts)

    def loss(
        self, model: nnx.Module, batch: Batch, denominator: Array, reference=None
    ) -> tuple[Array, Metrics]:
        """`reference`: the frozen reference model (a live reference), else None."""
        logps, counts = self.forward(model, batch)  # [P,2]
        counts = jnp.maximum(counts, 1).astype(jnp.float32)
        if reference is not None:
            ref_logps = jax.lax.stop_gradient(self.forward(reference, batch)[0])
        elif "ref_logps" in batch:
            ref_logps = _per_slot(batch, batch["ref_logps"])
        else:
            ref_logps = jnp.zeros_like(logps)
        policy, ref = logps, ref_logps
        if losses.wants_average_logps(self.loss_type):
            policy, ref = logps / counts, ref_logps / counts
        per_example, metrics = losses.preference_loss(
            policy[:, 0],
            policy[:, 1],
            ref[:, 0],
            ref[:, 1],
            loss_type=self.loss_type,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            simpo_gamma=self.simpo_gamma,
            chosen_nll=-logps[:, 0] / counts[:, 0],
        )
        return _reduce(per_example, metrics, _slot_valid(batch), denominator)


Task = SFT | Reward | DPO


def make_task(cfg: TrainSettings) -> Task:
    """The task a config names (reads `cfg.task`, `cfg.reward.*` and `cfg.dpo.*`)."""
    if cfg.task == "sft":
        return SFT()
    if cfg.task == "reward":
        r = cfg.reward
        return Reward(
            margin=r.margin,
            margin_value=r.margin_value,
            center_coef=r.center_coef,
            principle_head=r.principle_head,
            principle_coef=r.principle_coef,
        )
    if cfg.task == "dpo":
        d = cfg.dpo
        return DPO(
            loss_type=d.loss_type,
            beta=d.beta,
            label_smoothing=d.label_smoothing,
            simpo_gamma=d.simpo_gamma,
            reference=d.reference,
        )
    raise ValueError(f"config.task={cfg.task!r}; valid: sft, reward, dpo")


def summarize(metrics: dict[str, Any]) -> str:
    """A concise log line: the loss first, then the rest sorted."""
    keys = ["loss"] + sorted(k for k in metrics if k != "loss")
    return " ".join(f"{k}={float(metrics[k]):.4g}" for k in keys if k in metrics)
