"""Losses and their metrics: pure functions of arrays, float32 math; none of them touches a model.

Shapes: `...` any leading batch dims (e.g. [B] for SFT, [B, 2] for chosen/rejected stacks), T length,
V vocab, B pairs, P principles. Token conventions follow `psycho_jax.data.batching`: the logit at t
predicts token t+1, and `loss_mask` is aligned with `tokens` (1 on each token to predict: reply or
assistant tokens), so token 0 is never a target.

The DPO family and the Bradley-Terry loss reproduce TRL 1.16 (`DPOTrainer._compute_loss`,
`CPOTrainer.cpo_loss` for SimPO and the cDPO smoothing, `ORPOTrainer.odds_ratio_loss`,
`RewardTrainer.compute_loss`), with TRL's metric names; `tests/test_losses.py` holds them to 1e-5
against TRL itself. Where this module differs from TRL, `preference_loss` says so.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from psycho_jax.core.kernels import token_logprobs

Array = jax.Array
Metrics = dict[str, Array]

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust", "simpo", "orpo")
"""Valid `loss_type`s of `preference_loss`. cDPO is `sigmoid` with `label_smoothing > 0`."""

# Loss types that read length-averaged (per-token mean) log-probs; the others read sums.
_AVERAGED = ("ipo", "simpo", "orpo")
# Loss types that use `label_smoothing` (the others require it to be 0).
_SMOOTHED = ("sigmoid", "robust", "simpo")
_REFERENCE_FREE = ("simpo", "orpo")
# ORPO's odds p / (1 - p) are undefined at p = 1 (an average log-prob of exactly 0, which float32
# can round to); averaged log-probs are capped just below 0 so the log-odds stay finite.
_ORPO_MAX_LOGP = -1e-6


# ----------------------------------------------------------------------------- token log-probs


def sequence_logprobs(logits: Array, tokens: Array, loss_mask: Array) -> tuple[Array, Array]:
    """Summed log-probs of the masked tokens of each sequence.

    Args:
      logits: [..., T, V] next-token logits.
      tokens: [..., T] token ids.
      loss_mask: [..., T] 1 on the tokens to score (aligned with `tokens`), 0 elsewhere.

    Returns:
      (logp_sum [...], num_tokens [...]), both float32. `num_tokens` counts mask positions 1..T-1
      (position 0 is never a target). Divide the two for the per-token average that
      `wants_average_logps` loss types read (guarding against 0 tokens).
    """
    mask = loss_mask[..., 1:].astype(bool)
    # `where`, not a product: a padding id the vocab does not hold must not leak NaN into the sum.
    logp = jnp.where(mask, token_logprobs(logits, tokens)[..., 1:], 0.0)
    return jnp.sum(logp, axis=-1), jnp.sum(mask, axis=-1, dtype=jnp.float32)


def sft_loss(
    logits: Array, tokens: Array, loss_mask: Array, num_targets: Array | float
) -> tuple[Array, Metrics]:
    """Next-token cross-entropy on the masked tokens, normalised by the global target count.

    With `num_targets` the number of target tokens in the whole global batch (all devices and
    accumulation steps), the losses of the micro-batches of a global batch add up to the loss of the
    global batch, so accumulating 8 micro-batches of 1 equals one batch of 8. With `num_targets`
    the mask count of this batch it is Hugging Face's `LlamaForCausalLM(labels=...)` loss.

    Args:
      logits: [..., T, V] next-token logits.
      tokens: [..., T] token ids.
      loss_mask: [..., T] 1 on target tokens (aligned with `tokens`).
      num_targets: scalar > 0, the global count of targets (mask positions 1..T-1).

    Returns:
      (loss, metrics): loss = nll_sum / num_targets, a scalar float32. metrics: `loss` (the same
      contribution), `num_tokens` (targets in this batch) and `nll_sum` (their summed NLL).
    """
    logp_sum, num_tokens = sequence_logprobs(logits, tokens, loss_mask)
    nll_sum = -jnp.sum(logp_sum)
    loss = nll_sum / jnp.asarray(num_targets, jnp.float32)
    return loss, {"loss": loss, "num_tokens": jnp.sum(num_tokens), "nll_sum": nll_sum}


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
      (per_example_loss [B], metrics) in float32. Metrics are batch means: `accuracy`
      (chosen > rejected, ties count as wrong, margin not applied), `margin` (chosen - rejected),
      `reward/chosen`, `reward/rejected`, `reward/mean` (over all 2B rewards: TRL's `mean_reward`).
    """
    if isinstance(center_coef, int | float) and not center_coef >= 0:
        raise ValueError(f"center_coef={center_coef!r}; valid: a number >= 0 (0 turns it off)")
    chosen = jnp.asarray(chosen, jnp.float32)
    rejected = jnp.asarray(rejected, jnp.float32)
    diff = chosen - rejected
    logits = diff if margin is None else diff - jnp.asarray(margin, jnp.float32)
    loss = -jax.nn.log_sigmoid(logits) + center_coef * jnp.square(chosen + rejected)
    metrics = {
        "accuracy": jnp.mean(chosen > rejected, dtype=jnp.float32),
        "margin": jnp.mean(diff),
        "reward/chosen": jnp.mean(chosen),
        "reward/rejected": jnp.mean(rejected),
        "reward/mean": 0.5 * (jnp.mean(chosen) + jnp.mean(rejected)),
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


def principle_accuracy(
    chosen_scores: Array,
    rejected_scores: Array,
    chosen_ratings: Array,
    rejected_ratings: Array,
    valid: Array | None = None,
) -> tuple[Array, Array]:
    """Per principle, how often the scores order a pair as its ratings on that principle do.

    Only pairs whose ratings differ on the principle (and that are `valid`) count; a score tie counts
    as wrong.

    Args:
      chosen_scores: [B] (the scalar reward, checked against every principle) or [B, P] (a
        per-principle head's predictions).
      rejected_scores: same shape as `chosen_scores`.
      chosen_ratings: [B, P].
      rejected_ratings: [B, P].
      valid: optional [B] 1 where the pair has ratings.

    Returns:
      (accuracy [P], count [P]) float32; accuracy is 0 where count is 0. To aggregate over batches
      sum `accuracy * count` and `count`.
    """
    score_gap = jnp.asarray(chosen_scores, jnp.float32) - jnp.asarray(rejected_scores, jnp.float32)
    if score_gap.ndim == 1:
        score_gap = score_gap[:, None]
    rating_gap = jnp.asarray(chosen_ratings, jnp.float32) - jnp.asarray(
        rejected_ratings, jnp.float32
    )
    decided = rating_gap != 0
    if valid is not None:
        decided = decided & (jnp.asarray(valid)[:, None] != 0)
    correct = decided & (jnp.sign(score_gap) == jnp.sign(rating_gap))
    count = jnp.sum(decided, axis=0, dtype=jnp.float32)
    accuracy = jnp.sum(correct, axis=0, dtype=jnp.float32) / jnp.maximum(count, 1.0)
    return accuracy, count


# ----------------------------------------------------------------------------- DPO family


def _check_loss_type(loss_type: str) -> None:
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}; valid: {', '.join(LOSS_TYPES)}")


def needs_reference(loss_type: str) -> bool:
    """Whether `preference_loss(loss_type=...)` reads reference log-probs (all but SimPO and ORPO)."""
    _check_loss_type(loss_type)
    return loss_type not in _REFERENCE_FREE


def wants_average_logps(loss_type: str) -> bool:
    """Whether `preference_loss(loss_type=...)` reads per-token average log-probs instead of sums.

    True for `ipo` (TRL's DPOTrainer divides IPO's log-ratios by the completion length), `simpo`
    (length-normalised by definition; TRL's CPOTrainer averages) and `orpo` (TRL's ORPOTrainer
    averages); False for `sigmoid`, `hinge` and `robust`, which read summed log-probs.
    """
    _check_loss_type(loss_type)
    return loss_type in _AVERAGED


def _log1mexp(x: Array) -> Array:
    """log(1 - exp(x)) for x < 0, branching at -log 2 to avoid cancellation (TRL's `log1mexp`)."""
    return jnp.where(x < -math.log(2.0), jnp.log1p(-jnp.exp(x)), jnp.log(-jnp.expm1(x)))


def _smoothed_sigmoid(logits: Array, label_smoothing: float) -> Array:
    """-(1 - eps) log sigmoid(z) - eps log sigmoid(-z): the conservative (cDPO) logistic loss."""
    loss = -jax.nn.log_sigmoid(logits)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * jax.nn.log_sigmoid(-logits)
    return loss


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
    """The DPO family of preference losses, as TRL 1.16 computes them.

    With delta = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected), eps the label
    smoothing and logσ = log_sigmoid, the per-example losses are:

      sigmoid (DPO)  -logσ(β·delta); with eps > 0 cDPO: -(1-eps)·logσ(β·delta) - eps·logσ(-β·delta)
      hinge          relu(1 - β·delta)                                           (SLiC)
      ipo            (delta - 1/(2β))**2 on averaged log-probs                   (IPO eq. 17, τ = β)
      robust         (-(1-eps)·logσ(β·delta) + eps·logσ(-β·delta)) / (1 - 2·eps)   (rDPO)
      simpo          -(1-eps)·logσ(β·z) - eps·logσ(-β·z), z = pc - pr - γ/β, averaged log-probs,
                     no reference (TRL CPOTrainer with loss_type="simpo", cpo_alpha=0)
      orpo           chosen_nll - β·logσ(log_odds), log_odds = (pc - pr) - (log(1-e^pc) - log(1-e^pr)),
                     averaged log-probs, no reference; β is ORPO's λ (TRL ORPOTrainer)

    `wants_average_logps(loss_type)` says which form of log-probs to pass (sums for sigmoid, hinge,
    robust; per-token averages for ipo, simpo, orpo). For ipo pass the policy and the reference
    averaged by the same reply length: that is exactly TRL's division of the log-ratios.

    Differences from TRL 1.16, all deliberate:
      * TRL's DPOTrainer ignores `label_smoothing` for `sigmoid`; here it gives cDPO (the form of
        TRL's CPOTrainer sigmoid and of earlier TRL DPO), identical at eps = 0.
      * Metrics describe the log-probs passed in, so for ipo `rewards/*` and `logps/*` are per-token
        averages (TRL's DPOTrainer logs the summed ones for ipo).
      * A `label_smoothing` that a loss type does not use raises instead of being ignored.
      * orpo caps the averaged log-probs at -1e-6, where TRL's log-odds would be infinite.
      * orpo's NLL is what the caller passes (TRL: the token-mean NLL over the whole chosen
        sequence, prompt included; passing that value for every example reproduces TRL exactly).

    Args:
      policy_chosen_logps: [B] policy log-probs of the chosen replies (summed or averaged, above).
      policy_rejected_logps: [B] the same for the rejected replies.
      ref_chosen_logps: [B] the reference model's, in the same form; required except for simpo and
        orpo, which ignore it.
      ref_rejected_logps: [B] likewise.
      loss_type: one of `LOSS_TYPES`.
      beta: a Python number > 0 (static under jit, like the other keywords). The KL weight β of DPO, hinge and robust; IPO's τ; SimPO's β; ORPO's λ.
      label_smoothing: eps in [0, 0.5), for sigmoid (cDPO), robust and simpo only.
      simpo_gamma: SimPO's target margin γ (TRL's default 0.5); read by simpo only.
      chosen_nll: orpo only (ignored otherwise): a scalar or [B] NLL of the chosen replies, e.g. the
        per-token mean NLL of each chosen reply (ORPO's L_SFT).

    Returns:
      (per_example_loss [B], metrics) in float32; metrics are batch means with TRL's names:
      `rewards/chosen` and `rewards/rejected` (β·(policy - ref), or β·policy for simpo and orpo),
      `rewards/accuracies` (chosen reward > rejected reward), `rewards/margins`, `logps/chosen`,
      `logps/rejected`; orpo adds `nll_loss`, `log_odds_ratio` (mean logσ(log_odds)) and
      `log_odds_chosen` (mean log_odds).

    Raises:
      ValueError: an unknown `loss_type`, β <= 0, a `label_smoothing` out of range or unused by the
        loss type, a missing reference, or orpo without `chosen_nll`.
    """
    _check_loss_type(loss_type)
    if not beta > 0:
        raise ValueError(f"beta={beta!r}; valid: a number > 0")
    if loss_type in _SMOOTHED:
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(
                f"label_smoothing={label_smoothing!r}; valid: 0 <= label_smoothing < 0.5"
            )
    elif label_smoothing != 0:
        raise ValueError(
            f"label_smoothing={label_smoothing!r} is not used by loss_type={loss_type!r}; valid: 0, "
            f"or a loss_type that uses it ({', '.join(_SMOOTHED)})"
        )
    pc = jnp.asarray(policy_chosen_logps, jnp.float32)
    pr = jnp.asarray(policy_rejected_logps, jnp.float32)
    eps = float(label_smoothing)
    extra: Metrics = {}

    if loss_type in _REFERENCE_FREE:
        if loss_type == "simpo":
            loss = _smoothed_sigmoid(beta * (pc - pr - simpo_gamma / beta), eps)
        else:
            if chosen_nll is None:
                raise ValueError("loss_type='orpo' needs chosen_nll (the chosen replies' NLL)")
            nll = jnp.asarray(chosen_nll, jnp.float32)
            pc, pr = jnp.minimum(pc, _ORPO_MAX_LOGP), jnp.minimum(pr, _ORPO_MAX_LOGP)
            log_odds = (pc - pr) - (_log1mexp(pc) - _log1mexp(pr))
            ratio = jax.nn.log_sigmoid(log_odds)
            loss = nll - beta * ratio
            extra = {
                "nll_loss": jnp.mean(nll),
                "log_odds_ratio": jnp.mean(ratio),
                "log_odds_chosen": jnp.mean(log_odds),
            }
        chosen_rewards, rejected_rewards = beta * pc, beta * pr
    else:
        if ref_chosen_logps is None or ref_rejected_logps is None:
            raise ValueError(
                f"loss_type={loss_type!r} needs ref_chosen_logps and ref_rejected_logps; "
                f"reference-free loss types: {', '.join(_REFERENCE_FREE)}"
            )
        chosen_logratios = pc - jnp.asarray(ref_chosen_logps, jnp.float32)
        rejected_logratios = pr - jnp.asarray(ref_rejected_logps, jnp.float32)
        delta = chosen_logratios - rejected_logratios
        if loss_type == "sigmoid":
            loss = _smoothed_sigmoid(beta * delta, eps)
        elif loss_type == "hinge":
            loss = jax.nn.relu(1.0 - beta * delta)
        elif loss_type == "ipo":
            loss = jnp.square(delta - 1.0 / (2.0 * beta))
        else:  # robust
            clean = -(1.0 - eps) * jax.nn.log_sigmoid(beta * delta)
            flipped = -eps * jax.nn.log_sigmoid(-beta * delta)
            loss = (clean - flipped) / (1.0 - 2.0 * eps)
        chosen_rewards, rejected_rewards = beta * chosen_logratios, beta * rejected_logratios

    metrics = {
        "rewards/chosen": jnp.mean(chosen_rewards),
        "rewards/rejected": jnp.mean(rejected_rewards),
        "rewards/accuracies": jnp.mean(chosen_rewards > rejected_rewards, dtype=jnp.float32),
        "rewards/margins": jnp.mean(chosen_rewards - rejected_rewards),
        "logps/chosen": jnp.mean(pc),
        "logps/rejected": jnp.mean(pr),
        **extra,
    }
    return loss, metrics
