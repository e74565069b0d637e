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
    """SFT -> reward -> DPO as the README runs it (a fresh process, one CPU device), ~4 minutes."""
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
        timeout=900,
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
