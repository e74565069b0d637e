"""psycho_jax.train.losses against TRL 1.16 / transformers (PyTorch, CPU) and hand-checked values.

Tolerance: rtol = atol = 1e-5 (float32 on both sides, the same math in a different order).

TRL's own code is the reference wherever it can run without a model: `DPOTrainer._compute_loss`,
`CPOTrainer.get_batch_loss_metrics` / `cpo_loss`, `ORPOTrainer.get_batch_loss_metrics` and
`RewardTrainer.compute_loss` are called unbound on a `SimpleNamespace` stub that carries the attributes
they read, with a fake model that returns the log-probs / rewards under test. Metrics TRL does not log
(Bradley-Terry's per-side rewards, ipo's averaged metrics, ratings helpers) use float64 NumPy formulas.
"""

import functools
import math
import os
from collections import defaultdict
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from psycho_jax.train import losses

TOL = dict(rtol=1e-5, atol=1e-5)
B, T = 6, 9

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trl(torch):
    trl = pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    return SimpleNamespace(
        DPOTrainer=trl.DPOTrainer,
        RewardTrainer=trl.RewardTrainer,
        CPOTrainer=CPOTrainer,
        ORPOTrainer=ORPOTrainer,
    )


class _Accelerator:
    """What TRL's loss code asks of `accelerate.Accelerator` on one process."""

    def __init__(self, torch):
        self.device = torch.device("cpu")

    def gather(self, x):
        return x

    gather_for_metrics = gather


def _stub(torch, **attrs) -> SimpleNamespace:
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_Accelerator(torch),
        aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        **attrs,
    )


def _rng(seed=0):
    return np.random.RandomState(seed)


def _logps(seed=0, n=B, low=-40.0, high=-5.0):
    """Random summed log-probs: policy chosen/rejected, reference chosen/rejected (float32)."""
    return _rng(seed).uniform(low, high, (4, n)).astype(np.float32)


def _np(metrics):
    return {k: np.asarray(v).tolist() for k, v in metrics.items()}


def _means(metrics):
    """Per-example metrics -> their batch means (what TRL logs)."""
    return {k: float(jnp.mean(v)) for k, v in metrics.items()}


def _assert_metrics(ours, ref, keys):
    for k in keys:
        np.testing.assert_allclose(np.asarray(ours[k]), np.asarray(ref[k]), err_msg=k, **TOL)


PREF_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


# ----------------------------------------------------------------------------- DPO family vs TRL


def _trl_dpo(trl, torch, loss_type, beta, eps, per_token, completion_mask, ref_c, ref_r):
    """TRL's `DPOTrainer._compute_loss` on given per-token log-probs. -> (loss, metrics)."""
    stub = _stub(
        torch,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=eps,
        use_weighting=False,
        args=SimpleNamespace(),
    )
    zeros = torch.zeros_like(per_token)

    def model(**kwargs):
        return SimpleNamespace(
            log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )

    mask = torch.from_numpy(completion_mask)
    inputs = {
        "input_ids": torch.zeros(mask.shape, dtype=torch.long),
        "attention_mask": torch.ones(mask.shape, dtype=torch.long),
        "completion_mask": mask,
        "ref_chosen_logps": torch.from_numpy(ref_c),
        "ref_rejected_logps": torch.from_numpy(ref_r),
    }
    loss = trl.DPOTrainer._compute_loss(stub, model, inputs, return_outputs=False)
    return loss.item(), {k: v[-1] for k, v in stub._metrics["train"].items()}


@pytest.mark.parametrize(
    "loss_type,beta,eps",
    [("sigmoid", 0.1, 0.0), ("hinge", 0.05, 0.0), ("ipo", 0.3, 0.0), ("robust", 0.1, 0.2)],
)
def test_dpo_losses_match_trl_dpo_trainer(trl, torch, loss_type, beta, eps):
    r = _rng(6)
    counts = r.randint(1, T, 2 * B)  # reply lengths, chosen rows first
    completion_mask = np.zeros((2 * B, T), np.int64)
    for i, c in enumerate(counts):
        completion_mask[i, T - c :] = 1  # token 0 is prompt, so shifted and unshifted counts agree
    per_token = r.uniform(-5.0, 0.0, (2 * B, T - 1)).astype(np.float32) * completion_mask[:, 1:]
    per_token = torch.from_numpy(per_token.astype(np.float32))
    sums = per_token.sum(1).numpy()
    ref_c, ref_r = (sums + r.uniform(-3, 3, 2 * B).astype(np.float32)).reshape(2, B)
    ref_loss, ref_metrics = _trl_dpo(
        trl, torch, loss_type, beta, eps, per_token, completion_mask, ref_c, ref_r
    )
    pc, pr = sums.reshape(2, B)
    if losses.wants_average_logps(loss_type):  # ipo: policy and reference over the same length
        nc, nr = counts.reshape(2, B).astype(np.float32)
        pc, pr, ref_c, ref_r = pc / nc, pr / nr, ref_c / nc, ref_r / nr
    per_example, metrics = losses.preference_loss(
        pc, pr, ref_c, ref_r, loss_type=loss_type, beta=beta, label_smoothing=eps
    )
    assert per_example.shape == (B,)
    assert all(v.shape == (B,) for v in metrics.values())
    metrics = _means(metrics)
    np.testing.assert_allclose(jnp.mean(per_example), ref_loss, **TOL)
    if loss_type != "ipo":
        _assert_metrics(metrics, ref_metrics, PREF_METRICS)
    else:  # metrics describe the averaged log-probs passed in (TRL's DPOTrainer logs the sums)
        c64, r64 = beta * (pc - ref_c).astype(np.float64), beta * (pr - ref_r).astype(np.float64)
        ref = {
            "rewards/chosen": c64.mean(),
            "rewards/rejected": r64.mean(),
            "rewards/accuracies": (c64 > r64).mean(),
            "rewards/margins": (c64 - r64).mean(),
            "logps/chosen": pc.mean(),
            "logps/rejected": pr.mean(),
        }
        _assert_metrics(metrics, ref, PREF_METRICS)


def test_cdpo_matches_trl_conservative_sigmoid(trl, torch):
    """TRL 1.16's DPOTrainer ignores label smoothing for sigmoid; its CPOTrainer keeps the cDPO form,
    which on the log-ratios (policy - reference) is the cDPO loss."""
    pc, pr, rc, rr = _logps(7)
    beta, eps = 0.2, 0.15
    stub = _stub(torch, alpha=0.0, loss_type="sigmoid", beta=beta, label_smoothing=eps)
    ref, ref_chosen_rewards, ref_rejected_rewards = trl.CPOTrainer.cpo_loss(
        stub, torch.from_numpy(pc - rc), torch.from_numpy(pr - rr)
    )
    ours, metrics = losses.preference_loss(
        pc, pr, rc, rr, loss_type="sigmoid", beta=beta, label_smoothing=eps
    )
    np.testing.assert_allclose(ours, ref.numpy(), **TOL)
    np.testing.assert_allclose(metrics["rewards/chosen"], ref_chosen_rewards.numpy(), **TOL)
    np.testing.assert_allclose(metrics["rewards/rejected"], ref_rejected_rewards.numpy(), **TOL)


def _trl_batch_metrics(trl_cls, stub, loss_method, torch, pc, pr, nll):
    """TRL's CPO/ORPO `get_batch_loss_metrics` with the forward pass replaced by given log-probs."""
    zeros = torch.zeros(len(pc), 3, 5)
    stub.concatenated_forward = lambda model, batch: (
        torch.from_numpy(pc),
        torch.from_numpy(pr),
        zeros,
        zeros,
        torch.tensor(nll),
    )
    setattr(stub, loss_method, functools.partial(getattr(trl_cls, loss_method), stub))
    loss, metrics = trl_cls.get_batch_loss_metrics(stub, None, {})
    return loss.item(), metrics


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_simpo_matches_trl_cpo_trainer(trl, torch, eps):
    pc, pr, _, _ = _logps(8, low=-3.0, high=-0.2)  # per-token averages
    beta, gamma = 2.0, 0.8
    stub = _stub(
        torch,
        alpha=0.0,
        loss_type="simpo",
        beta=beta,
        label_smoothing=eps,
        simpo_gamma=gamma,
        cpo_alpha=0.0,
    )
    ref_loss, ref_metrics = _trl_batch_metrics(trl.CPOTrainer, stub, "cpo_loss", torch, pc, pr, 0.0)
    ours, metrics = losses.preference_loss(
        pc, pr, loss_type="simpo", beta=beta, label_smoothing=eps, simpo_gamma=gamma
    )
    np.testing.assert_allclose(jnp.mean(ours), ref_loss, **TOL)
    _assert_metrics(_means(metrics), ref_metrics, PREF_METRICS)


def test_orpo_matches_trl_orpo_trainer(trl, torch):
    # Averaged log-probs on both sides of log1mexp's branch point at -log 2.
    pc, pr, _, _ = _logps(9, low=-2.5, high=-0.01)
    nll = 1.7
    beta = 0.25
    ref_loss, ref_metrics = _trl_batch_metrics(
        trl.ORPOTrainer, _stub(torch, beta=beta), "odds_ratio_loss", torch, pc, pr, nll
    )
    ours, metrics = losses.preference_loss(
        pc, pr, loss_type="orpo", beta=beta, chosen_nll=jnp.full((B,), nll)
    )
    np.testing.assert_allclose(jnp.mean(ours), ref_loss, **TOL)
    _assert_metrics(
        _means(metrics),
        ref_metrics,
        PREF_METRICS + ("nll_loss", "log_odds_ratio", "log_odds_chosen"),
    )


# ----------------------------------------------------------------------------- Bradley-Terry vs TRL


@pytest.mark.parametrize("margin,center", [(None, None), ("array", None), ("array", 0.01)])
def test_bradley_terry_matches_trl_reward_trainer(trl, torch, margin, center):
    r = _rng(10)
    chosen, rejected = r.randn(2, B).astype(np.float32) * 2
    m = r.uniform(0, 1, B).astype(np.float32) if margin else None
    stub = _stub(torch, args=SimpleNamespace(center_rewards_coefficient=center))
    rewards = torch.from_numpy(np.concatenate([chosen, rejected])[:, None])
    inputs = {"attention_mask": torch.ones(2 * B, 4, dtype=torch.long)}
    if m is not None:
        inputs["margin"] = torch.from_numpy(m)
    ref_loss = trl.RewardTrainer.compute_loss(
        stub, lambda **kw: SimpleNamespace(logits=rewards), inputs
    ).item()
    ref = {k: v[-1] for k, v in stub._metrics["train"].items()}
    ours, metrics = losses.bradley_terry_loss(chosen, rejected, m, center or 0.0)
    assert all(v.shape == (B,) for v in metrics.values())
    metrics = _means(metrics)
    np.testing.assert_allclose(jnp.mean(ours), ref_loss, **TOL)
    _assert_metrics(metrics, ref, ("accuracy", "margin"))
    np.testing.assert_allclose(metrics["reward/mean"], ref["mean_reward"], **TOL)
    np.testing.assert_allclose(metrics["reward/chosen"], chosen.astype(np.float64).mean(), **TOL)
    np.testing.assert_allclose(
        metrics["reward/rejected"], rejected.astype(np.float64).mean(), **TOL
    )


# ----------------------------------------------------------------------------- hand checks


def test_every_preference_loss_at_policy_equal_reference():
    """policy == reference (and chosen == rejected for the reference-free losses)."""
    x = jnp.asarray(_logps(11)[0])
    avg = jnp.asarray(_logps(11, low=-2.0, high=-0.1)[0])
    beta = 0.1
    expected = {
        ("sigmoid", 0.0): math.log(2),
        ("sigmoid", 0.2): math.log(2),  # cDPO: both labels give log 2
        ("hinge", 0.0): 1.0,
        ("ipo", 0.0): 1 / (4 * beta**2),
        ("robust", 0.2): math.log(2),
        ("simpo", 0.0): math.log(2),  # with gamma = 0
    }
    for (loss_type, eps), value in expected.items():
        loss, metrics = losses.preference_loss(
            x, x, x, x, loss_type=loss_type, beta=beta, label_smoothing=eps, simpo_gamma=0.0
        )
        np.testing.assert_allclose(loss, np.full(B, value), err_msg=loss_type, **TOL)
        np.testing.assert_array_equal(metrics["rewards/margins"], 0.0)
        np.testing.assert_array_equal(metrics["rewards/accuracies"], 0.0)  # ties are not correct
    # simpo's margin gamma: -log sigmoid(-gamma) when chosen == rejected.
    loss, _ = losses.preference_loss(x, x, loss_type="simpo", beta=beta, simpo_gamma=0.5)
    np.testing.assert_allclose(loss, np.full(B, math.log1p(math.exp(0.5))), **TOL)
    # orpo: log-odds 0, so the loss is the NLL plus beta * log 2.
    loss, metrics = losses.preference_loss(avg, avg, loss_type="orpo", beta=beta, chosen_nll=2.0)
    np.testing.assert_allclose(loss, np.full(B, 2.0 + beta * math.log(2)), **TOL)
    np.testing.assert_allclose(metrics["log_odds_chosen"], 0.0, atol=1e-6)


def test_dpo_gradient_direction_and_orpo_at_certainty():
    x = jnp.asarray(_logps(12)[0])

    def loss(pc):
        return jnp.mean(losses.preference_loss(pc, x, x, x, loss_type="sigmoid", beta=0.1)[0])

    assert bool((jax.grad(loss)(x) < 0).all())  # raising the chosen log-prob lowers the loss
    # An averaged log-prob of exactly 0 (p = 1 in float32) keeps ORPO finite.
    zero = jnp.zeros((B,))
    out, metrics = losses.preference_loss(zero, x / 40, loss_type="orpo", beta=0.1, chosen_nll=0.0)
    assert np.isfinite(out).all() and np.isfinite(metrics["log_odds_chosen"]).all()


def test_bradley_terry_antisymmetry_and_margin_shift():
    r = _rng(13)
    a, b = r.randn(2, 16).astype(np.float32) * 3
    ab, m_ab = losses.bradley_terry_loss(a, b)
    ba, m_ba = losses.bradley_terry_loss(b, a)
    # -log s(x) + log s(-x) = -x, so loss(a, b) - loss(b, a) = b - a.
    np.testing.assert_allclose(ab - ba, b - a, **TOL)
    np.testing.assert_allclose(m_ab["accuracy"] + m_ba["accuracy"], 1.0)
    np.testing.assert_allclose(m_ab["margin"], -m_ba["margin"], **TOL)
    np.testing.assert_allclose(ab[0], np.log1p(np.exp(np.float64(b[0] - a[0]))), **TOL)
    # A margin m is a shift of the chosen reward by -m; it changes the loss, not the metrics.
    m = r.uniform(0, 2, 16).astype(np.float32)
    shifted, m_shift = losses.bradley_terry_loss(a, b, m)
    np.testing.assert_allclose(shifted, losses.bradley_terry_loss(a - m, b)[0], **TOL)
    assert bool((shifted > ab).all())
    assert _np(m_shift) == _np(m_ab)
    np.testing.assert_allclose(
        losses.bradley_terry_loss(a, b, 0.5)[0], losses.bradley_terry_loss(a - 0.5, b)[0], **TOL
    )
    # Centering adds coef * (a + b)^2 per pair.
    centered, _ = losses.bradley_terry_loss(a, b, None, 0.1)
    np.testing.assert_allclose(centered - ab, 0.1 * (a + b) ** 2, **TOL)


def test_margin_from_ratings_and_principle_accuracy():
    chosen = np.array([[5, 4, 3], [2, 2, 2], [4, 4, 1]], np.float32)
    rejected = np.array([[3, 4, 1], [4, 3, 5], [4, 2, 1]], np.float32)
    margin = losses.margin_from_ratings(chosen, rejected, 0.5)
    np.testing.assert_allclose(margin, [0.5 * 4 / 3, 0.0, 0.5 * 2 / 3], **TOL)  # never negative

    # Scalar reward checked against each principle: pair 0 ordered right, pair 1 wrong, pair 2 right.
    correct, counted = losses.principle_accuracy(
        np.array([1.0, 1.0, 2.0]), np.array([0.0, 0.5, 1.0]), chosen, rejected
    )
    assert correct.shape == counted.shape == (3, 3)
    np.testing.assert_array_equal(counted.sum(0), [2, 2, 2])  # principle ties are not counted
    np.testing.assert_array_equal(counted, [[1, 0, 1], [1, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(correct, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    # Per-principle scores, and a pair without ratings left out.
    scores_c = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    correct, counted = losses.principle_accuracy(
        scores_c, np.zeros_like(scores_c), chosen, rejected, valid=np.array([1, 0, 1])
    )
    np.testing.assert_array_equal(counted.sum(0), [1, 1, 1])
    np.testing.assert_array_equal(correct, counted)  # every counted pair ordered right


def test_principle_mse_maps_ratings_to_unit_range():
    ratings = np.array([[[1, 3, 5], [5, 3, 1]]], np.float32)  # [B=1, 2, P=3]
    exact = np.array([[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]]], np.float32)
    np.testing.assert_allclose(losses.principle_mse(exact, ratings), [0.0], **TOL)
    np.testing.assert_allclose(losses.principle_mse(exact + 0.5, ratings), [0.25], **TOL)


# ----------------------------------------------------------------------------- errors and jit


def test_bad_arguments_raise_naming_valid_values():
    x = jnp.zeros((2,))
    with pytest.raises(ValueError, match="valid: sigmoid, ipo, hinge, robust, simpo, orpo"):
        losses.preference_loss(x, x, x, x, loss_type="dpo", beta=0.1)
    with pytest.raises(ValueError, match="valid: sigmoid, ipo, hinge, robust, simpo, orpo"):
        losses.wants_average_logps("kto")
    for beta in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"beta=.*valid: a number > 0"):
            losses.preference_loss(x, x, x, x, loss_type="sigmoid", beta=beta)
    with pytest.raises(ValueError, match=r"label_smoothing.*valid: 0 <= label_smoothing < 0.5"):
        losses.preference_loss(x, x, x, x, loss_type="robust", beta=0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="sigmoid, robust, simpo"):
        losses.preference_loss(x, x, x, x, loss_type="hinge", beta=0.1, label_smoothing=0.1)
    with pytest.raises(ValueError, match="needs ref_chosen_logps"):
        losses.preference_loss(x, x, loss_type="ipo", beta=0.1)
    with pytest.raises(ValueError, match="chosen_nll"):
        losses.preference_loss(x - 1, x - 1, loss_type="orpo", beta=0.1)
    with pytest.raises(ValueError, match="center_coef"):
        losses.bradley_terry_loss(x, x, None, -1.0)
    assert [losses.wants_average_logps(t) for t in losses.LOSS_TYPES] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]
    assert [t for t in losses.LOSS_TYPES if not losses.needs_reference(t)] == ["simpo", "orpo"]
    with pytest.raises(ValueError, match="loss_type"):
        losses.needs_reference("dpo")


@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_preference_losses_jit_and_grad(loss_type):
    pc, pr, rc, rr = (jnp.asarray(v) for v in _logps(14, low=-3.0, high=-0.1))
    kw = dict(loss_type=loss_type, beta=0.1, chosen_nll=1.0)
    if loss_type in ("sigmoid", "robust", "simpo"):
        kw["label_smoothing"] = 0.1
    fn = functools.partial(losses.preference_loss, **kw)
    eager = fn(pc, pr, rc, rr)
    jitted = jax.jit(fn)(pc, pr, rc, rr)
    np.testing.assert_allclose(jitted[0], eager[0], **TOL)
    _assert_metrics(jitted[1], eager[1], eager[1])
    grads = jax.grad(lambda a, b: jnp.mean(fn(a, b, rc, rr)[0]), argnums=(0, 1))(pc, pr)
    assert all(np.isfinite(g).all() for g in grads)


def test_bradley_terry_jit():
    r = _rng(15)
    chosen, rejected = jnp.asarray(r.randn(2, B), jnp.float32)
    eager = losses.bradley_terry_loss(chosen, rejected, 0.5, 0.01)
    jitted = jax.jit(losses.bradley_terry_loss)(chosen, rejected, 0.5, 0.01)
    assert jitted[0].shape == (B,)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(j, e, **TOL)


def test_loss_table_in_the_docstring_is_the_table():
    """The module docstring's table (reference? averaged? label smoothing?) says what
    `PREFERENCE_LOSSES` holds, row for row."""
    rows = {}
    for line in losses.__doc__.splitlines():
        words = line.split()
        if words and words[0] in losses.PREFERENCE_LOSSES:
            rows[words[0]] = tuple(w == "yes" for w in words[-3:])
    assert list(rows) == list(losses.LOSS_TYPES)
    for name, spec in losses.PREFERENCE_LOSSES.items():
        assert rows[name] == (spec.reference, spec.average, spec.smoothing), name
    with pytest.raises(ValueError, match="loss_type='kto'; valid: sigmoid, ipo, hinge, robust"):
        losses.preference_spec("kto")
