"""The README's main job: the whole demo pipeline on the embedded data, with the issue's thresholds."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_pipeline_learns(tmp_path):
    """SFT -> reward -> DPO -> online DPO -> evaluation as the README runs it (a fresh process, one
    CPU device)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "psycho_jax.pipeline",
            "--config=configs/pipeline.py:demo",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "summary.md").is_file() and "| metric | value |" in out.stdout
    assert summary["sft/eval_loss_end"] < summary["sft/eval_loss_start"] - 1.0
    assert summary["reward/eval_accuracy"] >= 0.90
    assert summary["dpo/eval_rewards/accuracies"] >= 0.80
    for stage in ("sft", "reward", "dpo"):
        assert list((tmp_path / stage / "checkpoints").iterdir())
        assert (tmp_path / stage / "metrics.jsonl").is_file()
    # Online DPO: the reward model's score of the policy's held-out replies rises across rounds.
    curve = json.loads((tmp_path / "online_dpo" / "final_metrics.json").read_text())
    curve = curve["heldout_reward_curve"]
    assert curve[-1] > curve[0], curve
    # Evaluation: the final policy beats SFT by the reward model: the reward model's Bradley-Terry
    # preference probability with its 95% interval above 50%, a higher mean reward on the same
    # prompts, and a head-to-head win rate whose interval is not wholly below 50%. (On 150 prompts
    # the tiny demo's win count sits near half: 75/75 with the data order of the best-fit packer,
    # interval [0.41, 0.58]; a bare `> 0.5` there tests the seed, not the pipeline.)
    lo = float(summary["win_rate/online_dpo_vs_sft/bt_ci"].strip("[]").split(",")[0])
    assert summary["win_rate/online_dpo_vs_sft/bt"] > 0.5 and lo > 0.5, summary
    comparisons = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    (online,) = [c for c in comparisons["comparisons"] if c["system_a"] == "online_dpo"]
    assert online["mean_score"]["online_dpo"] > online["mean_score"]["sft"], online
    assert online["ci"][1] > 0.5, online
    assert "win_rate/dpo_vs_sft" in summary
    evaluation = tmp_path / "evaluation"
    for name in ("report.md", "report.html", "evaluation.json", "replies.jsonl", "win_rates.png"):
        assert (evaluation / name).is_file(), name
    assert "Safety" in (evaluation / "report.md").read_text()
