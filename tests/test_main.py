"""The command-line main job on the tiny model and the memory dry run of a full-size preset."""

import pathlib

from ml_collections import config_flags  # noqa: F401  (registers the config loader)

from psycho_jax import main
from tests.helpers import config_module

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _config(arg):
    return config_module("model").get_config(arg)


def test_tiny_demo_runs_sharded():
    config = _config("tiny")
    config.mesh = (2, 2, 2)
    summary = main.run_model_demo(config)
    assert summary["finite"] and summary["logits_shape"] == [8, 32, 256]
    assert summary["params"] == 34_976 and summary["sharded_fraction"] > 0.9


def test_8b_dry_run_fits_in_eighth_per_device():
    config = _config("llama3_8b")
    summary = main.run_model_demo(config, dry_run=True)
    assert summary["params"] == 8_030_261_248
    assert summary["param_bytes_per_device"] <= 8_030_261_248 * 4 / 8 * 1.01


def test_loads_hf_directory(tmp_path):
    from flax import nnx

    from psycho_jax.core import hf
    from psycho_jax.core.model import Llama, LlamaConfig

    hf.save_llama(Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0)), tmp_path)
    config = _config("tiny")
    config.hf_path = str(tmp_path)
    assert main.run_model_demo(config)["params"] == 34_976


def test_readme_main_command_runs():
    import json
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "psycho_jax.main", "--config=configs/model.py:tiny"],
        cwd=CONFIGS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert summary["params"] == 34_976 and summary["finite"]


def test_every_command_line_module_imports_together():
    """Flags are defined only when a module runs as a program: importing all CLIs never clashes."""
    import importlib

    for name in ("main", "pipeline", "export", "data.audit", "data.tokenizer"):
        importlib.import_module(f"psycho_jax.{name}")
