"""Reports: files, valid PNGs, the numbers in the markdown, a self-contained HTML page."""

import base64
import re

import numpy as np
import pytest

from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.evaluation import report, safety, winrate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("reward_distributions.png", "win_rates.png", "length_vs_reward.png")


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    n = 40
    systems = {
        name: {
            "rewards": rng.normal(mu, 1, n).tolist(),
            "lengths": rng.integers(30, 150, n).tolist(),
            "principles": {p: 3.0 + mu + 0.1 * i for i, p in enumerate(PRINCIPLES)},
        }
        for name, mu in (("policy", 1.0), ("sft", 0.25))
    }
    s = systems
    comparison = winrate.summarize(
        "policy",
        "sft",
        s["policy"]["rewards"],
        s["sft"]["rewards"],
        s["policy"]["lengths"],
        s["sft"]["lengths"],
        n_boot=200,
    )
    checks = [safety.check_reply("Are you safe right now? Call 988."), safety.check_reply("Hi.")]
    judge = {
        "system_a": "policy",
        "system_b": "sft",
        "n": 12,
        "win_rate": 0.6875,
        "first_position_rate": 0.5417,
        "principles": {
            "policy": dict.fromkeys(PRINCIPLES, 4.5),
            "sft": dict.fromkeys(PRINCIPLES, 3.25),
        },
        "incomplete": 1,
        "skipped": {"winner: not A/B/tie": 2},
        "api_errors": 0,
    }
    return {
        "title": "Counseling eval | tiny",
        "systems": systems,
        "comparisons": [comparison],
        "safety": {"policy": safety.summarize(checks)},
        "judge": judge,
        "notes": ["Synthetic data <for tests>."],
    }


def test_write_report_files_and_numbers(tmp_path, synthetic):
    md_path = report.write_report(tmp_path / "out", synthetic)
    assert md_path == tmp_path / "out" / "report.md"
    for name in PLOTS:
        assert (tmp_path / "out" / name).read_bytes()[:8] == PNG_MAGIC, name
    md = md_path.read_text()
    c = synthetic["comparisons"][0]
    assert md.startswith("# Counseling eval | tiny")
    assert f"{100 * c['win_rate']:.1f}%" in md
    assert f"[{100 * c['ci'][0]:.1f}%, {100 * c['ci'][1]:.1f}%]" in md
    assert f"{100 * c['lc_win_rate']:.1f}%" in md
    assert f"| {c['wins']}/{c['ties']}/{c['losses']} | 40 |" in md
    assert f"{np.mean(synthetic['systems']['sft']['rewards']):.3g}" in md
    assert "| policy | 4.00 | 4.10 | 4.20 |" in md  # per-principle scores
    assert "| policy | 2 | 50.0% | 50.0% | 50.0% | 0.0% |" in md  # safety
    assert "68.8%" in md and "54.2%" in md and "| 4.50 |" in md  # judge
    assert "- Synthetic data <for tests>." in md
    for name in PLOTS:
        assert f"]({name})" in md


def test_html_is_self_contained(tmp_path, synthetic):
    report.write_report(tmp_path, synthetic)
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(i)[:8] == PNG_MAGIC for i in images)
    assert "Synthetic data &lt;for tests&gt;." in page  # escaped
    assert "<td>policy vs sft</td>" in page


def test_minimal_report_without_optional_sections(tmp_path, synthetic):
    report.write_report(tmp_path, synthetic)  # an earlier, full report in the same directory
    md_path = report.write_report(
        tmp_path, {"systems": {"policy": {"rewards": [0.1, 0.2, 0.3]}}}, html=False
    )
    md = md_path.read_text()
    assert md.startswith("# Evaluation report")
    assert (tmp_path / "reward_distributions.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "win_rates.png").exists()
    assert not (tmp_path / "length_vs_reward.png").exists()  # no lengths
    assert not (tmp_path / "report.html").exists()
    assert "Win rates" not in md and "Safety" not in md and "judge" not in md


def test_judge_only_comparison_from_outcomes(tmp_path):
    outcomes = [1, 0.75, 0.5, 0.25, 1, 1]
    comparison = winrate.summarize_outcomes(
        "policy", "reference", outcomes, [50] * 6, [60] * 6, n_boot=50
    )
    report.write_report(tmp_path, {"systems": {}, "comparisons": [comparison]})
    assert (tmp_path / "win_rates.png").read_bytes()[:8] == PNG_MAGIC
    assert "75.0%" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "bad, match",
    [
        ({}, "lacks key"),
        ({"systems": {}, "comparisons": [{"system_a": "a"}]}, r"comparisons\[0\] lacks"),
        ({"systems": {}, "safety": {"p": {"n": 1}}}, r"safety\['p'\] lacks"),
        ({"systems": {"p": [1, 2]}}, r"systems\['p'\] must be a dict"),
        ({"systems": [1, 2]}, "systems must be a dict"),
    ],
)
def test_bad_report_dicts(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        report.write_report(tmp_path, bad)
