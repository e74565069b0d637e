"""Pairwise win rates of system A against system B, with bootstrap intervals and a length control.

Shapes: N prompts; every per-prompt array is 1-D [N], one value per prompt, in the same prompt order.
An *outcome* is system A's result on one prompt, in [0, 1]: 1 a win, 0.5 a tie, 0 a loss (averaged
judge verdicts can also give 0.25 / 0.75). A win rate is the mean outcome, so ties count half.

Lengths are in whatever unit the caller measures (tokens or words); only their differences and
standard deviation are used, so the unit does not change the length-controlled rate.

The length-controlled (LC) win rate follows AlpacaEval 2 in simplified form: a logistic regression of
the outcome on an intercept and the length feature tanh((len_a - len_b) / std(len_a - len_b)), with a
small L2 penalty (fractional targets allowed, so a tie is 0.5); the LC rate is sigmoid(intercept), the
predicted win rate when both replies have the same length. (AlpacaEval 2 also models instruction
difficulty across many systems; with one pair of systems that term has nothing to fit.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray

_CHUNK = 4_000_000  # bootstrap indices drawn per chunk ([n_boot, N] int64 would be large for big N)
_P_EPS = 1e-6  # fitted probabilities are clipped to [eps, 1 - eps]: no log(0), no NaN


def _vector(x: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """`x` as a finite 1-D float64 array (of length `n` when given), or a ValueError naming `name`."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but {n} were expected (one per prompt)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} holds non-finite values at index {np.flatnonzero(~np.isfinite(arr))[:5]}"
        )
    return arr


def _outcomes(outcomes: ArrayLike) -> np.ndarray:
    out = _vector(outcomes, "outcomes")
    if out.size == 0:
        raise ValueError("outcomes is empty: no prompts to compare")
    if np.any((out < 0) | (out > 1)):
        raise ValueError(f"outcomes must lie in [0, 1], got min {out.min()} and max {out.max()}")
    return out


def compare(scores_a: ArrayLike, scores_b: ArrayLike, tie_tol: float = 0.0) -> np.ndarray:
    """Per-prompt outcomes of A against B from scalar scores (e.g. reward-model scores).

    Args:
      scores_a, scores_b: [N] scores of each system's reply to the same N prompts; higher is better.
      tie_tol: |a - b| <= tie_tol is a tie (>= 0).

    Returns:
      [N] float64 outcomes: 1.0 where A scores higher, 0.0 where lower, 0.5 for a tie.
    """
    a = _vector(scores_a, "scores_a")
    b = _vector(scores_b, "scores_b", a.shape[0])
    if not tie_tol >= 0:
        raise ValueError(f"tie_tol must be >= 0, got {tie_tol}")
    diff = a - b
    return np.where(np.abs(diff) <= tie_tol, 0.5, (diff > 0).astype(np.float64))


def win_rate(outcomes: ArrayLike) -> dict[str, float | int]:
    """Counts and the win rate of A: `n`, `wins` (outcome > 0.5), `ties` (== 0.5), `losses`, `win_rate`.

    `win_rate` is the mean outcome (ties count half).
    """
    out = _outcomes(outcomes)
    return {
        "n": int(out.size),
        "wins": int(np.sum(out > 0.5)),
        "ties": int(np.sum(out == 0.5)),
        "losses": int(np.sum(out < 0.5)),
        "win_rate": float(out.mean()),
    }


def _resample_counts(n: int, n_boot: int, seed: int):
    """Yields [b, n] int arrays: how often each prompt appears in each of `n_boot` resamples."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK // n)
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)


def _interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    outcomes: ArrayLike, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval (over prompts) of the win rate, at level 1 - alpha.

    Resamples the N prompts with replacement `n_boot` times (vectorised, in chunks).
    """
    out = _outcomes(outcomes)
    _check_boot(n_boot, alpha)
    n = out.size
    stats = np.concatenate([c @ out / n for c in _resample_counts(n, n_boot, seed)])
    return _interval(stats, alpha)


def length_feature(len_a: ArrayLike, len_b: ArrayLike) -> np.ndarray:
    """[N] tanh((len_a - len_b) / std(len_a - len_b)) in (-1, 1); all zeros when the std is 0."""
    a = _vector(len_a, "len_a")
    d = a - _vector(len_b, "len_b", a.shape[0])
    std = d.std()
    return np.tanh(d / std) if std > 0 else np.zeros_like(d)


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float, iters: int = 100
) -> np.ndarray:
    """Penalised logistic regression of y on [1, x] by Newton's method, batched over fits.

    Maximises mean_w[y log p + (1 - y) log(1 - p)] - l2/2 |beta|^2 with p = sigmoid(b0 + b1 x);
    y may be fractional (ties = 0.5). The penalty makes the problem strictly concave, so a
    degenerate sample (all wins, perfect separation) still has a finite optimum.

    Args:
      x: [N] feature. y: [N] targets in [0, 1]. weights: [B, N] non-negative prompt weights
        (resample counts; ones for the plain fit). l2: penalty (> 0).

    Returns:
      [B, 2] coefficients (intercept, slope).
    """
    design = np.stack([np.ones_like(x), x], axis=-1)  # [N, 2]
    w = weights / weights.sum(axis=1, keepdims=True)  # [B, N]
    beta = np.zeros((w.shape[0], 2))
    eye = np.eye(2)
    for _ in range(iters):
        p = np.clip(_sigmoid(beta @ design.T), _P_EPS, 1 - _P_EPS)  # [B, N]
        grad = (w * (y - p)) @ design - l2 * beta  # [B, 2]
        hess = np.einsum("bn,ni,nj->bij", w * p * (1 - p), design, design) + l2 * eye  # [B, 2, 2]
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # Damped Newton: a near-separable sample can ask for a huge first step.
        norm = np.linalg.norm(step, axis=1, keepdims=True)
        beta = beta + step * np.minimum(1.0, 4.0 / np.maximum(norm, 1e-12))
        if np.max(norm) < 1e-8:
            break
    return beta


def _lc_inputs(outcomes, len_a, len_b, l2) -> tuple[np.ndarray, np.ndarray]:
    y = _outcomes(outcomes)
    x = length_feature(len_a, len_b)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"outcomes has {y.shape[0]} values but the lengths have {x.shape[0]}")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 (it keeps degenerate fits finite), got {l2}")
    return x, y


def length_controlled_win_rate(
    outcomes: ArrayLike, len_a: ArrayLike, len_b: ArrayLike, *, l2: float = 1e-4
) -> float:
    """AlpacaEval-2-style length-controlled win rate of A (see the module docstring).

    Args:
      outcomes: [N] outcomes of A in [0, 1]. len_a, len_b: [N] reply lengths.
      l2: L2 penalty on (intercept, slope), per prompt (the log-likelihood is a mean).

    Returns:
      sigmoid(intercept) in (0, 1): the fitted win rate of A at equal reply lengths.
    """
    x, y = _lc_inputs(outcomes, len_a, len_b, l2)
    return float(_sigmoid(_fit_logistic(x, y, np.ones((1, y.size)), l2)[0, 0]))


def length_controlled_ci(
    outcomes: ArrayLike,
    len_a: ArrayLike,
    len_b: ArrayLike,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    l2: float = 1e-4,
) -> tuple[float, float]:
    """Percentile bootstrap interval (over prompts) of `length_controlled_win_rate`.

    All resamples are fitted at once (batched Newton); the length feature keeps the scale
    (std of the length difference) of the full sample.
    """
    x, y = _lc_inputs(outcomes, len_a, len_b, l2)
    _check_boot(n_boot, alpha)
    fits = [
        _fit_logistic(x, y, c.astype(np.float64), l2)
        for c in _resample_counts(y.size, n_boot, seed)
    ]
    return _interval(_sigmoid(np.concatenate(fits)[:, 0]), alpha)


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def length_stats(lengths: ArrayLike) -> dict[str, float]:
    """`mean`, `median` and `p90` (90th percentile) of [N] reply lengths."""
    x = _vector(lengths, "lengths")
    if x.size == 0:
        raise ValueError("lengths is empty")
    return {
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "p90": float(np.quantile(x, 0.9)),
    }


def bradley_terry_outcomes(scores_a: ArrayLike, scores_b: ArrayLike) -> np.ndarray:
    """Soft outcomes [N]: sigmoid(score_a - score_b), the Bradley-Terry probability that A wins."""
    a = _vector(scores_a, "scores_a")
    b = _vector(scores_b, "scores_b", a.size)
    return 0.5 * (1.0 + np.tanh(0.5 * (a - b)))  # = sigmoid(a - b), no overflow


def summarize_outcomes(
    name_a: str,
    name_b: str,
    outcomes: ArrayLike,
    len_a: ArrayLike,
    len_b: ArrayLike,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """`summarize` from outcomes already decided (e.g. by an external judge); same keys, no scores."""
    if name_a == name_b:
        raise ValueError(f"the two systems need different names, got {name_a!r} twice")
    out = _outcomes(outcomes)
    la = _vector(len_a, "len_a", out.size)
    lb = _vector(len_b, "len_b", out.size)
    lc = length_controlled_win_rate(out, la, lb)
    lc_ci = length_controlled_ci(out, la, lb, n_boot=n_boot, alpha=alpha, seed=seed)
    return {
        "system_a": name_a,
        "system_b": name_b,
        **win_rate(out),
        "ci": list(bootstrap_ci(out, n_boot=n_boot, alpha=alpha, seed=seed)),
        "lc_win_rate": lc,
        "lc_ci": list(lc_ci),
        "alpha": alpha,
        "n_boot": n_boot,
        "lengths": {name_a: length_stats(la), name_b: length_stats(lb)},
    }


def summarize(
    name_a: str,
    name_b: str,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    len_a: ArrayLike,
    len_b: ArrayLike,
    *,
    tie_tol: float = 0.0,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Everything about one A-vs-B comparison, as a JSON-serialisable dict.

    Args:
      name_a, name_b: system names. scores_a, scores_b: [N] per-prompt scores (higher is better).
      len_a, len_b: [N] reply lengths. tie_tol: see `compare`. n_boot, alpha, seed: intervals.

    Returns:
      `{"system_a", "system_b", "n", "wins", "ties", "losses", "win_rate", "ci": [lo, hi],
      "lc_win_rate", "lc_ci": [lo, hi], "alpha", "n_boot", "tie_tol",
      "lengths": {name: {"mean", "median", "p90"}}, "mean_score": {name: float},
      "bt_win_rate", "bt_ci": [lo, hi]}`; rates are A's. `bt_win_rate` is the mean over prompts of
      the Bradley-Terry probability sigmoid(score_a - score_b) that A's reply is preferred: the
      reward model's own soft verdict (near-equal scores count as near-ties, not coin flips), with
      the same paired bootstrap interval.
    """
    outcomes = compare(scores_a, scores_b, tie_tol)
    out = summarize_outcomes(
        name_a, name_b, outcomes, len_a, len_b, n_boot=n_boot, alpha=alpha, seed=seed
    )
    out["tie_tol"] = tie_tol
    soft = bradley_terry_outcomes(scores_a, scores_b)
    out["bt_win_rate"] = float(np.mean(soft))
    out["bt_ci"] = list(bootstrap_ci(soft, n_boot=n_boot, alpha=alpha, seed=seed))
    out["mean_score"] = {name_a: float(np.mean(scores_a)), name_b: float(np.mean(scores_b))}
    return out
