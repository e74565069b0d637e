"""Win rates: hand-computed counts, bootstrap coverage, and the length-controlled rate."""

import json

import numpy as np
import pytest

from psycho_jax.evaluation import winrate


def test_compare_wins_ties_losses():
    out = winrate.compare([1.0, 2.0, 3.0, 0.5], [0.0, 2.0, 3.05, 1.0], tie_tol=0.1)
    np.testing.assert_array_equal(out, [1.0, 0.5, 0.5, 0.0])
    np.testing.assert_array_equal(winrate.compare([1.0, 1.0], [1.0, 0.9]), [0.5, 1.0])


def test_win_rate_hand_computed():
    assert winrate.win_rate([1, 1, 0, 0.5]) == {
        "n": 4,
        "wins": 2,
        "ties": 1,
        "losses": 1,
        "win_rate": 0.625,
    }
    # Averaged judge verdicts (0.25 / 0.75) count as a loss / win; the rate is still the mean.
    r = winrate.win_rate([0.75, 0.25, 0.5, 1.0])
    assert (r["wins"], r["ties"], r["losses"], r["win_rate"]) == (2, 1, 1, 0.625)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: winrate.compare([1.0, 2.0], [1.0]), "2 were expected"),
        (lambda: winrate.compare([[1.0]], [[1.0]]), "1-D"),
        (lambda: winrate.compare([1.0, np.nan], [1.0, 2.0]), "non-finite"),
        (lambda: winrate.compare([1.0], [1.0], tie_tol=-1), "tie_tol"),
        (lambda: winrate.win_rate([]), "empty"),
        (lambda: winrate.win_rate([1.5]), r"\[0, 1\]"),
        (lambda: winrate.bootstrap_ci([1, 0], n_boot=0), "n_boot"),
        (lambda: winrate.bootstrap_ci([1, 0], alpha=1.5), "alpha"),
        (lambda: winrate.length_controlled_win_rate([1, 0], [1, 2], [1]), "len_b"),
        (lambda: winrate.length_controlled_win_rate([1, 0, 1], [1, 2], [1, 2]), "lengths have 2"),
        (lambda: winrate.length_controlled_ci([1, 0], [1, 2], [2, 1], n_boot=0), "n_boot"),
        (lambda: winrate.length_controlled_win_rate([1, 0], [1, 2], [2, 1], l2=0), "l2"),
        (lambda: winrate.summarize_outcomes("x", "x", [1], [1], [1]), "different names"),
    ],
)
def test_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bootstrap_ci_deterministic_and_degenerate():
    out = np.array([1, 0, 0.5, 1, 1, 0, 1, 0.5])
    lo, hi = winrate.bootstrap_ci(out, n_boot=300, seed=3)
    assert (lo, hi) == winrate.bootstrap_ci(out, n_boot=300, seed=3)
    assert 0 <= lo <= out.mean() <= hi <= 1
    assert winrate.bootstrap_ci(np.ones(20), n_boot=50) == (1.0, 1.0)


def test_bootstrap_ci_chunks_match_one_pass(monkeypatch):
    out = np.random.default_rng(0).integers(0, 3, 50) / 2
    whole = winrate.bootstrap_ci(out, n_boot=400, seed=1)
    monkeypatch.setattr(winrate, "_CHUNK", 50 * 7)  # 7 resamples per chunk
    assert winrate.bootstrap_ci(out, n_boot=400, seed=1) == whole


def test_bootstrap_ci_covers_true_win_probability():
    # Outcomes 1 / 0.5 / 0 with probabilities 0.5 / 0.2 / 0.3: the true win rate is 0.6.
    rng = np.random.default_rng(0)
    truth, covered, repeats = 0.6, 0, 200
    for i in range(repeats):
        out = rng.choice([1.0, 0.5, 0.0], size=100, p=[0.5, 0.2, 0.3])
        lo, hi = winrate.bootstrap_ci(out, n_boot=500, seed=i)
        covered += lo <= truth <= hi
    assert covered / repeats >= 0.9, covered


def _lengths(rng, n, longer_a=20.0):
    return rng.normal(100 + longer_a, 40, n), rng.normal(100, 40, n)


def test_lc_removes_a_pure_length_preference():
    # True quality is equal; only length decides. Raw win rate is far from 0.5, LC is not.
    rng = np.random.default_rng(1)
    len_a, len_b = _lengths(rng, 500)
    x = winrate.length_feature(len_a, len_b)
    noisy = (rng.random(500) < 1 / (1 + np.exp(-4 * x))).astype(float)
    decided = (len_a > len_b).astype(float)  # longer always wins: perfect separation
    for out in (noisy, decided):
        assert abs(out.mean() - 0.5) > 0.1
        lc = winrate.length_controlled_win_rate(out, len_a, len_b)
        assert abs(lc - 0.5) < 0.15, (out.mean(), lc)


def test_lc_matches_raw_when_quality_is_independent_of_length():
    rng = np.random.default_rng(2)
    len_a, len_b = _lengths(rng, 600)
    out = rng.choice([1.0, 0.5, 0.0], size=600, p=[0.6, 0.1, 0.3])
    lc = winrate.length_controlled_win_rate(out, len_a, len_b)
    lo, hi = winrate.length_controlled_ci(out, len_a, len_b, n_boot=300)
    assert abs(lc - out.mean()) < 0.04
    assert lo < lc < hi


def test_lc_degenerate_cases_are_finite():
    same = np.full(10, 50.0)
    assert winrate.length_controlled_win_rate(np.ones(10), same, same) > 0.99  # std 0, all wins
    assert winrate.length_controlled_win_rate(np.zeros(10), np.arange(10.0), same) < 0.05
    assert winrate.length_controlled_win_rate(np.full(10, 0.5), same, same) == pytest.approx(0.5)
    np.testing.assert_array_equal(winrate.length_feature(same, same), np.zeros(10))
    ci = winrate.length_controlled_ci(np.ones(5), same[:5], same[:5], n_boot=20)
    assert np.isfinite(ci).all() and ci[0] <= ci[1]


def test_summarize_is_json_and_consistent():
    rng = np.random.default_rng(3)
    sa, sb = rng.normal(0.5, 1, 60), rng.normal(0, 1, 60)
    la, lb = rng.integers(20, 200, 60), rng.integers(20, 200, 60)
    s = winrate.summarize("policy", "sft", sa, sb, la, lb, tie_tol=0.0, n_boot=200, seed=0)
    json.dumps(s)  # plain Python types only
    assert s["system_a"] == "policy" and s["n"] == 60
    assert s["wins"] + s["ties"] + s["losses"] == 60
    assert s["win_rate"] == pytest.approx(np.mean(sa > sb))
    assert s["ci"][0] <= s["win_rate"] <= s["ci"][1]
    assert s["lc_ci"][0] <= s["lc_win_rate"] <= s["lc_ci"][1]
    assert s["lengths"]["sft"] == {
        "mean": pytest.approx(lb.mean()),
        "median": pytest.approx(np.median(lb)),
        "p90": pytest.approx(np.quantile(lb, 0.9)),
    }
    assert s["mean_score"]["policy"] == pytest.approx(sa.mean())


def test_bradley_terry_win_probability_is_the_mean_sigmoid_of_score_gaps():
    a, b = np.array([1.0, 0.0, 3.0, 2.0]), np.array([0.0, 0.0, 1.0, 2.0])
    expected = np.mean(1 / (1 + np.exp(-(a - b))))  # (0.7311 + 0.5 + 0.8808 + 0.5) / 4
    out = winrate.summarize("a", "b", a, b, [1, 2, 3, 4], [2, 2, 2, 2], n_boot=200)
    assert out["bt_win_rate"] == pytest.approx(expected, abs=1e-12)
    assert out["bt_win_rate"] == pytest.approx(0.65298, abs=1e-4)
    assert out["bt_ci"][0] <= out["bt_win_rate"] <= out["bt_ci"][1]
    np.testing.assert_allclose(winrate.bradley_terry_outcomes([800.0], [0.0]), [1.0])
