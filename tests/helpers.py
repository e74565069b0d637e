"""Helpers the tests share: the shipped configs (loaded as `main --config=` loads them), the small
test shape, the typed settings of a config, and a fresh train state."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

import jax.numpy as jnp
import ml_collections

from psycho_jax.train import step as step_lib
from psycho_jax.train.settings import TrainSettings

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def config_module(name: str) -> ModuleType:
    """`configs/<name>.py` as a module (what `--config=configs/<name>.py` reads)."""
    spec = importlib.util.spec_from_file_location(
        f"psycho_jax_test_cfg_{name}", CONFIGS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def override(c: ml_collections.ConfigDict, **overrides) -> ml_collections.ConfigDict:
    """`c` with `a__b=value` set as `c.a.b = value` (in place; returned for chaining)."""
    for key, value in overrides.items():
        node = c
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    return c


def load_config(task: str, variant: str = "tiny", **overrides) -> ml_collections.ConfigDict:
    """`configs/<task>.py:<variant>` at the tests' small shape (64-wide tiny model, 8-row batches,
    3 steps, 320 tokens, no periodic evaluation), then `overrides`."""
    c = config_module(task).get_config(variant)
    c.model.dim, c.model.head_dim, c.model.ffn_dim = 64, 16, 128
    c.batch_size, c.num_steps, c.eval_every, c.eval_batches, c.log_every = 8, 3, 0, 1, 1
    c.data.max_len = 320
    return override(c, **overrides)


def settings(c: ml_collections.ConfigDict | TrainSettings) -> TrainSettings:
    """The typed settings library code takes (what the programs build at start-up)."""
    return c if isinstance(c, TrainSettings) else TrainSettings.from_config(c)


def fresh_state(c, params, rest):
    """(optimizer, step-0 `TrainState`) on the host, without a mesh: for steps jitted by a test."""
    tx = step_lib.make_optimizer(settings(c), params)
    state = step_lib.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rest=rest,
        skipped=jnp.zeros((), jnp.int32),
    )
    return tx, state
