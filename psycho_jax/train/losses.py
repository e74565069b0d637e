"""Losses and their metrics: pure functions of arrays, float32 math; none of them touches a model.

Every loss returns *per-example* values: (loss [B], metrics {name: [B]}), one entry per pair. The
task (`psycho_jax.train.tasks`) reduces them once, over the real pairs of the global batch. The SFT
loss has no function here: it is the summed target log-prob of the model's head
(`Llama.target_logprob_sum`), reduced inside the fused kernel.

Preference losses (`PREFERENCE_LOSSES`, chosen by `config.dpo.loss_type`). With c, r the chosen and
rejected log-ratios (policy - reference) or, for the reference-free losses, the policy log-probs;
d = c - r, β = `beta`, ε = `label_smoothing`, γ = `simpo_gamma`, logσ = log_sigmoid:

  name     per-pair loss                                          reference  averaged  ε
  sigmoid  -(1-ε)·logσ(β·d) - ε·logσ(-β·d)   (DPO; ε > 0: cDPO)   yes        no        yes
  ipo      (d - 1/(2β))²                     (IPO eq. 17, τ = β)   yes        yes       no
  hinge    relu(1 - β·d)                     (SLiC)               yes        no        no
  robust   (-(1-ε)·logσ(β·d) + ε·logσ(-β·d)) / (1 - 2ε)  (rDPO)   yes        no        yes
  simpo    -(1-ε)·logσ(β·d - γ) - ε·logσ(-(β·d - γ))              no         yes       yes
  orpo     nll - β·logσ(d - (log(1-eᶜ) - log(1-eʳ)))  (β: ORPO's λ)  no       yes       no

"averaged": the loss reads per-token average log-probs (`wants_average_logps`), else sums.
"reference": it reads a reference model's log-probs (`needs_reference`).

The DPO family and the Bradley-Terry loss reproduce TRL 1.16 (`DPOTrainer._compute_loss`,
`CPOTrainer.cpo_loss` for SimPO and the cDPO smoothing, `ORPOTrainer.odds_ratio_loss`,
`RewardTrainer.compute_loss`), with TRL's metric names; `tests/test_losses.py` holds them to 1e-5
against TRL itself. Where this module differs from TRL, `preference_loss` says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Metrics = dict[str, Array]

# ORPO's odds p / (1 - p) are undefined at p = 1 (an average log-prob of exactly 0, which float32
# can round to); averaged log-probs are capped just below 0 so the log-odds stay finite.
_ORPO_MAX_LOGP = -1e-6


# ----------------------------------------------------------------------------- reward model


def bradley_terry_loss(
    chosen: Array,
    rejected: Array,
    margin: Array | float | None = None,
    center_coef: float = 0.0,
) -> tuple[Array, Metrics]:
    """Bradley-Terry loss of a reward model, as TRL's `RewardTrainer`.

    per_example = -log_sigmoid(chosen - rejected - margin) + center_coef * (chosen + rejected)**2;
    its batch mean is TRL's loss with `center_rewards_coefficient=center_coef` (reward centering,
    Eisenstein et al. 2023; TRL adds `coef * mean((chosen + rejected)**2)`).

    Args:
      chosen: [B] rewards of the chosen replies.
      rejected: [B] rewards of the rejected replies.
      margin: None, a scalar or [B]: how far chosen must beat rejected (Llama 2's margin loss).
      center_coef: >= 0, weight of the reward-centering term (0: off).

    Returns:
      (per_example_loss [B], metrics {name: [B]}) in float32; the metrics' batch means are TRL's:
      `accuracy` (chosen > rejected, ties count as wrong, margin not applied), `margin`
      (chosen - rejected), `reward/chosen`, `reward/rejected`, `reward/mean` (the mean of the
      pair's two rewards: TRL's `mean_reward` over all 2B).
    """
    if isinstance(center_coef, int | float) and not center_coef >= 0:
        raise ValueError(f"center_coef={center_coef!r}; valid: a number >= 0 (0 turns it off)")
    chosen = jnp.asarray(chosen, jnp.float32)
    rejected = jnp.asarray(rejected, jnp.float32)
    diff = chosen - rejected
    logits = diff if margin is None else diff - jnp.asarray(margin, jnp.float32)
    loss = -jax.nn.log_sigmoid(logits) + center_coef * jnp.square(chosen + rejected)
    metrics = {
        "accuracy": (chosen > rejected).astype(jnp.float32),
        "margin": diff,
        "reward/chosen": chosen,
        "reward/rejected": rejected,
        "reward/mean": 0.5 * (chosen + rejected),
    }
    return loss, metrics


def margin_from_ratings(chosen_ratings: Array, rejected_ratings: Array, scale: float) -> Array:
    """Bradley-Terry margin from per-principle ratings: scale * mean rating gap, never negative.

    A pair whose ratings favour the rejected reply (a noisy label) gets margin 0 rather than a
    negative one, which would reward the model for ranking it *against* the label.

    Args:
      chosen_ratings: [B, P] ratings of the chosen replies.
      rejected_ratings: [B, P] ratings of the rejected replies.
      scale: >= 0, margin per rating point.

    Returns:
      [B] float32 margins, max(0, scale * mean_p(chosen - rejected)).
    """
    if isinstance(scale, int | float) and not scale >= 0:
        raise ValueError(f"scale={scale!r}; valid: a number >= 0")
    gap = jnp.mean(
        jnp.asarray(chosen_ratings, jnp.float32) - jnp.asarray(rejected_ratings, jnp.float32),
        axis=-1,
    )
    return jnp.maximum(scale * gap, 0.0)


def principle_mse(scores: Array, ratings: Array) -> Array:
    """Squared error of a per-principle head against ratings 1..5 mapped to [-1, 1].

    Args:
      scores: [B, 2, P] the head's predictions for the chosen and rejected replies.
      ratings: [B, 2, P] their ratings, 1..5.

    Returns:
      [B] float32: the mean over both replies and all principles of (score - (rating - 3) / 2)**2.
    """
    target = (jnp.asarray(ratings, jnp.float32) - 3.0) / 2.0
    return jnp.mean(jnp.square(jnp.asarray(scores, jnp.float32) - target), axis=(1, 2))


def principle_accuracy(
    chosen_scores: Array,
    rejected_scores: Array,
    chosen_ratings: Array,
    rejected_ratings: Array,
    valid: Array | None = None,
) -> tuple[Array, Array]:
    """Per pair and principle, whether the scores order the pair as its ratings on that principle.

    Only pairs whose ratings differ on the principle (and that are `valid`) count; a score tie counts
    as wrong. The accuracy of principle p over a batch is sum(correct[:, p]) / sum(counted[:, p]).

    Args:
      chosen_scores: [B] (the scalar reward, checked against every principle) or [B, P] (a
        per-principle head's predictions).
      rejected_scores: same shape as `chosen_scores`.
      chosen_ratings: [B, P].
      rejected_ratings: [B, P].
      valid: optional [B], nonzero where the pair has ratings.

    Returns:
      (correct [B, P], counted [B, P]) float32 0/1; `correct` is 0 where `counted` is.
    """
    score_gap = jnp.asarray(chosen_scores, jnp.float32) - jnp.asarray(rejected_scores, jnp.float32)
    if score_gap.ndim == 1:
        score_gap = score_gap[:, None]
    rating_gap = jnp.asarray(chosen_ratings, jnp.float32) - jnp.asarray(
        rejected_ratings, jnp.float32
    )
    counted = rating_gap != 0
    if valid is not None:
        counted = counted & (jnp.asarray(valid)[:, None] != 0)
    correct = counted & (jnp.sign(score_gap) == jnp.sign(rating_gap))
    return correct.astype(jnp.float32), counted.astype(jnp.float32)


# ----------------------------------------------------------------------------- DPO family


class LossArgs(NamedTuple):
    """The hyperparameters a preference loss may read (see the table in the module docstring)."""

    beta: float
    label_smoothing: float
    simpo_gamma: float
    chosen_nll: Array | None  # orpo only: [B] (or a scalar) NLL of the chosen replies


def _log1mexp(x: Array) -> Array:
    """log(1 - exp(x)) for x < 0, branching at -log 2 to avoid cancellation (TRL's `log1mexp`)."""
    return jnp.where(x < -math.log(2.0), jnp.log1p(-jnp.exp(x)), jnp.log(-jnp.expm1(x)))


def _smoothed_sigmoid(logits: Array, label_smoothing: float) -> Array:
    """-(1 - eps) log sigmoid(z) - eps log sigmoid(-z): the conservative (cDPO) logistic loss."""
    loss = -jax.nn.log_sigmoid(logits)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * jax.nn.log_sigmoid(-logits)
    return loss


def _sigmoid(c: Array, r: Array, a: LossArgs) -> tuple[Array, Metrics]:
    return _smoothed_sigmoid(a.beta * (c - r), a.label_smoothing), {}


def _ipo(c: Array, r: Array, a: LossArgs) -> tuple[Array, Metrics]:
    return jnp.square((c - r) - 1.0 / (2.0 * a.beta)), {}


def _hinge(c: Array, r: Array, a: LossArgs) -> tuple[Array, Metrics]:
    return jax.nn.relu(1.0 - a.beta * (c - r)), {}


def _robust(c: Array, r: Array, a: LossArgs) -> tuple[Array, Metrics]:
    eps, z = a.label_smoothing, a.beta * (c - r)
    clean = -(1.0 - eps) * jax.nn.log_sigmoid(z)
    flipped = -eps * jax.nn.log_sigmoid(-z)
    return (clean - flipped) / (1.0 - 2.0 * eps), {}


def _simpo(c: Array, r: Array, a: LossArgs) -> tuple[Array, Metrics]:
    return _smoothed_sigmoid(a.beta * (c - r - a.simpo_gamma / a.beta), a.label_smoothing), {}


def _orpo(c: Array, r: Array, a: LossArgs) -> tuple[Array, Metrics]:
    if a.chosen_nll is None:
        raise ValueError("loss_type='orpo' needs chosen_nll (the chosen replies' NLL)")
    nll = jnp.broadcast_to(jnp.asarray(a.chosen_nll, jnp.float32), c.shape)
    c, r = jnp.minimum(c, _ORPO_MAX_LOGP), jnp.minimum(r, _ORPO_MAX_LOGP)
    log_odds = (c - r) - (_log1mexp(c) - _log1mexp(r))
    ratio = jax.nn.log_sigmoid(log_odds)
    metrics = {"nll_loss": nll, "log_odds_ratio": ratio, "log_odds_chosen": log_odds}
    return nll - a.beta * ratio, metrics


@dataclasses.dataclass(frozen=True)
class PreferenceLoss:
    """One row of the loss table: the per-pair function and the facts about its inputs."""

    fn: Callable[[Array, Array, LossArgs], tuple[Array, Metrics]]
    reference: bool  # reads reference log-probs (c, r are log-ratios), else policy log-probs
    average: bool  # reads per-token average log-probs, else sums
    smoothing: bool  # uses label_smoothing (the others require it to be 0)


PREFERENCE_LOSSES: dict[str, PreferenceLoss] = {
    "sigmoid": PreferenceLoss(_sigmoid, reference=True, average=False, smoothing=True),
    "ipo": PreferenceLoss(_ipo, reference=True, average=True, smoothing=False),
    "hinge": PreferenceLoss(_hinge, reference=True, average=False, smoothing=False),
    "robust": PreferenceLoss(_robust, reference=True, average=False, smoothing=True),
    "simpo": PreferenceLoss(_simpo, reference=False, average=True, smoothing=True),
    "orpo": PreferenceLoss(_orpo, reference=False, average=True, smoothing=False),
}
"""The preference losses by `loss_type` (the table in the module docstring)."""

LOSS_TYPES = tuple(PREFERENCE_LOSSES)
"""Valid `loss_type`s of `preference_loss`. cDPO is `sigmoid` with `label_smoothing > 0`."""


def preference_spec(loss_type: str) -> PreferenceLoss:
    """The table row of `loss_type`; an unknown name raises, naming the valid ones."""
    if loss_type not in PREFERENCE_LOSSES:
        raise ValueError(f"loss_type={loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    return PREFERENCE_LOSSES[loss_type]


def needs_reference(loss_type: str) -> bool:
    """Whether `preference_loss(loss_type=...)` reads reference log-probs (all but SimPO and ORPO)."""
    return preference_spec(loss_type).reference


def wants_average_logps(loss_type: str) -> bool:
    """Whether `preference_loss(loss_type=...)` reads per-token average log-probs instead of sums.

    True for `ipo` (TRL's DPOTrainer divides IPO's log-ratios by the completion length), `simpo`
    (length-normalised by definition; TRL's CPOTrainer averages) and `orpo` (TRL's ORPOTrainer
    averages); False for `sigmoid`, `hinge` and `robust`, which read summed log-probs.
    """
    return preference_spec(loss_type).average


def preference_loss(
    policy_chosen_logps: Array,
    policy_rejected_logps: Array,
    ref_chosen_logps: Array | None = None,
    ref_rejected_logps: Array | None = None,
    *,
    loss_type: str,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    chosen_nll: Array | float | None = None,
) -> tuple[Array, Metrics]:
    """The DPO family of preference losses (the module docstring's table), as TRL 1.16 computes them.

    `wants_average_logps(loss_type)` says which form of log-probs to pass (sums for sigmoid, hinge,
    robust; per-token averages for ipo, simpo, orpo). For ipo pass the policy and the reference
    averaged by the same reply length: that is exactly TRL's division of the log-ratios.

    Differences from TRL 1.16, all deliberate:
      * TRL's DPOTrainer ignores `label_smoothing` for `sigmoid`; here it gives cDPO (the form of
        TRL's CPOTrainer sigmoid and of earlier TRL DPO), identical at eps = 0.
      * Metrics describe the log-probs passed in, so for ipo `rewards/*` and `logps/*` are per-token
        averages (TRL's DPOTrainer logs the summed ones for ipo).
      * A `label_smoothing` that a loss type does not use raises instead of being ignored.
      * orpo caps the averaged log-probs at -1e-6 in its loss, where TRL's log-odds would be
        infinite (its `rewards/*` and `logps/*` metrics, like TRL's, are uncapped).
      * orpo's NLL is what the caller passes (TRL: the token-mean NLL over the whole chosen
        sequence, prompt included; passing that value for every example reproduces TRL exactly).

    Args:
      policy_chosen_logps: [B] policy log-probs of the chosen replies (summed or averaged, above).
      policy_rejected_logps: [B] the same for the rejected replies.
      ref_chosen_logps: [B] the reference model's, in the same form; required except for simpo and
        orpo, which ignore it.
      ref_rejected_logps: [B] likewise.
      loss_type: one of `LOSS_TYPES`.
      beta: a Python number > 0 (static under jit, like the other keywords). The KL weight β of
        DPO, hinge and robust; IPO's τ; SimPO's β; ORPO's λ.
      label_smoothing: eps in [0, 0.5), for sigmoid (cDPO), robust and simpo only.
      simpo_gamma: SimPO's target margin γ (TRL's default 0.5); read by simpo only.
      chosen_nll: orpo only (ignored otherwise): a scalar or [B] NLL of the chosen replies, e.g. the
        per-token mean NLL of each chosen reply (ORPO's L_SFT).

    Returns:
      (per_example_loss [B], metrics {name: [B]}) in float32, per pair with TRL's names (their
      batch means are TRL's): `rewards/chosen` and `rewards/rejected` (β·(policy - ref), or
      β·policy for simpo and orpo), `rewards/accuracies` (chosen reward > rejected reward),
      `rewards/margins`, `logps/chosen`, `logps/rejected`; orpo adds `nll_loss`, `log_odds_ratio`
      (logσ(log_odds)) and `log_odds_chosen` (log_odds).

    Raises:
      ValueError: an unknown `loss_type`, β <= 0, a `label_smoothing` out of range or unused by the
        loss type, a missing reference, or orpo without `chosen_nll`.
    """
    spec = preference_spec(loss_type)
    if not beta > 0:
        raise ValueError(f"beta={beta!r}; valid: a number > 0")
    if spec.smoothing:
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(
                f"label_smoothing={label_smoothing!r}; valid: 0 <= label_smoothing < 0.5"
            )
    elif label_smoothing != 0:
        smoothed = [name for name, s in PREFERENCE_LOSSES.items() if s.smoothing]
        raise ValueError(
            f"label_smoothing={label_smoothing!r} is not used by loss_type={loss_type!r}; valid: 0, "
            f"or a loss_type that uses it ({', '.join(smoothed)})"
        )
    pc = jnp.asarray(policy_chosen_logps, jnp.float32)
    pr = jnp.asarray(policy_rejected_logps, jnp.float32)
    c, r = pc, pr
    if spec.reference:
        if ref_chosen_logps is None or ref_rejected_logps is None:
            free = [name for name, s in PREFERENCE_LOSSES.items() if not s.reference]
            raise ValueError(
                f"loss_type={loss_type!r} needs ref_chosen_logps and ref_rejected_logps; "
                f"reference-free loss types: {', '.join(free)}"
            )
        c = pc - jnp.asarray(ref_chosen_logps, jnp.float32)
        r = pr - jnp.asarray(ref_rejected_logps, jnp.float32)
    args = LossArgs(beta, float(label_smoothing), simpo_gamma, chosen_nll)
    loss, extra = spec.fn(c, r, args)
    chosen_rewards, rejected_rewards = beta * c, beta * r
    metrics = {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/accuracies": (chosen_rewards > rejected_rewards).astype(jnp.float32),
        "rewards/margins": chosen_rewards - rejected_rewards,
        "logps/chosen": pc,
        "logps/rejected": pr,
        **extra,
    }
    return loss, metrics
