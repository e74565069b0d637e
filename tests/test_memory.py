"""The memory planner: the 8B configs compiled abstractly on 8 fake devices fit their hardware."""

import pathlib

import jax
import pytest

from psycho_jax import memory
from psycho_jax.core import sharding
from psycho_jax.core.model import LlamaConfig
from tests.helpers import config_module

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name: str, variant: str):
    return config_module(name).get_config(variant)


def test_optimizer_moments_are_sharded_like_their_parameters():
    """Adam's moments follow the FSDP sharding (replicated moments would cost 8x on 8 devices)."""
    import optax
    from flax import nnx

    from psycho_jax.core.model import Llama

    mesh = sharding.make_mesh((1, 8, 1))
    model = sharding.init_sharded(
        lambda: Llama(LlamaConfig.tiny(dim=64, ffn_dim=128), rngs=nnx.Rngs(0)),
        mesh,
        sharding.DEFAULT_RULES,
    )
    params = nnx.state(model, nnx.Param)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    shardings = sharding.optimizer_shardings(tx, params, mesh)
    with jax.set_mesh(mesh):
        state = jax.jit(tx.init, out_shardings=shardings)(params)
    mu = state[1][0].mu
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mu), strict=True):
        assert m.sharding.spec == p.sharding.spec


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sft", "reward", "dpo"])
def test_8b_configs_fit_their_hardware(name):
    c = load(name, "llama3_8b")
    assert jax.device_count() == 8
    plan = memory.plan(c)
    gb = memory.device_memory_gb(c.hardware)
    compiled, analytic = plan.compiled["total"] / memory.GB, plan.analytic["total"] / memory.GB
    assert compiled <= gb and analytic <= gb, plan.table()
    # The analytic estimate tracks what XLA allocates (within 40% either way).
    assert 0.6 <= analytic / compiled <= 1.4, plan.table()
    # Parameters and Adam moments are exact: float32, sharded over the 8 devices.
    # A reward model has a 1-output score head instead of the LM head.
    lm_head, score = 128_256 * 4096, 4096 * (8 if c.reward.principle_head else 1)
    assert plan.num_params == 8_030_261_248 - (lm_head - score if name == "reward" else 0)
    n = plan.num_params
    assert abs(plan.analytic["parameters"] - 4 * n / 8) / (4 * n / 8) < 0.01
    assert abs(plan.analytic["optimizer"] - 8 * n / 8) / (8 * n / 8) < 0.01


def test_hardware_names():
    assert memory.device_memory_gb("8xH100") == 80
    assert memory.device_memory_gb("TPU v5p-16") == 95
    with pytest.raises(ValueError, match="unknown hardware"):
        memory.device_memory_gb("abacus")
