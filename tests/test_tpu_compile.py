"""Compiling for TPU slices on a machine without TPUs (`psycho_jax.core.topology`, `memory.plan`), and
kernel choices that follow the target platform rather than this machine's default backend.

The compile tests need the TPU compiler (`pip install 'psycho_jax[tpu]'`: libtpu) and skip without
it; the slice names, the HLO walk and the target-keyed choices are checked everywhere."""

from __future__ import annotations

import importlib.util
import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from psycho_jax import memory
from psycho_jax.core import kernels, topology
from psycho_jax.core.model import Llama, LlamaConfig, resolve_attention
from psycho_jax.train import step as step_lib
from tests.test_memory import load

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed (pip install 'psycho_jax[tpu]'): no TPU compiler",
)


def test_slice_names_map_to_jax_topologies():
    want = {"v5p-16": "v5p:2x2x2", "v5p-128": "v5p:4x4x4", "v5p-8": "v5p:2x2x1",
            "v6e-8": "v6e:2x4", "v5e-16": "v5e:4x4", "v4-8": "v4:2x2x1",
            "v5litepod-16": "v5e:4x4", "v5p:2x2x4": "v5p:2x2x4"}  # fmt: skip
    for name, topo in want.items():
        assert topology.parse(name).topology == topo, name
    assert topology.parse("v5p-16").chips == 8 and topology.parse("v6e-8").chips == 8
    for bad in ("v5p-12", "v7-8", "v5p:2x2", "h100-8"):
        with pytest.raises(ValueError, match="valid: v4-8, .*v5p-16"):
            topology.parse(bad)


def test_hlo_walk_counts_loop_trips():
    """A scan of 5 matrix products: the unoptimized program's dots counted 5 times, as analytic."""

    def f(w, x):
        return jax.lax.scan(lambda x, w: (jnp.tanh(x @ w), None), x, w)[0]

    w = jax.ShapeDtypeStruct((5, 64, 64), jnp.float32)
    x = jax.ShapeDtypeStruct((16, 64), jnp.float32)
    h = topology.summarize_hlo(jax.jit(f).lower(w, x).as_text(dialect="hlo"))
    assert h.loops == [5]
    assert h.dot_flops == 5 * 2 * 16 * 64 * 64 and h.dot_flops_once == 2 * 16 * 64 * 64


def _jaxpr(platform: str) -> str:
    cfg = LlamaConfig.tiny(platform=platform)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0))))
    forward = lambda state, tokens: nnx.merge(graphdef, state)(tokens)[0]  # noqa: E731
    return str(jax.make_jaxpr(forward)(state, jnp.zeros((2, 16), jnp.int32)))


def test_kernel_choices_follow_the_target_not_the_host():
    """This host's default backend is CPU; a model compiled for a TPU takes the TPU choices."""
    assert jax.default_backend() == "cpu"
    assert resolve_attention("auto", cached=False, platform="tpu") == "xla"
    assert resolve_attention("auto", cached=False, platform="cpu") == "custom"
    assert resolve_attention("auto", cached=False) == "custom"  # "": the default backend
    assert not kernels.on_cpu("tpu") and not kernels.on_cpu("gpu") and kernels.on_cpu("")
    cpu, tpu = _jaxpr("cpu"), _jaxpr("tpu")
    # CPU: the custom causal attention kernel and the mask materialized by a conditional.
    assert "name=_causal_attention" in cpu and re.search(r"\bcond\[", cpu)
    # TPU: jax.nn.dot_product_attention, no CPU-only conditional.
    assert "_causal_attention" not in tpu and not re.search(r"\bcond\[", tpu)
    # The hand-written backward passes of the projections and the MLP: CPU only (on TPU the
    # compiler's estimate of the step is 12.6% faster with autodiff of the plain forms).
    for name in ("_project", "_gated_mlp"):
        assert f"name={name}" in cpu and f"name={name}" not in tpu, name
    # bf16 projections: float32 results only for CPU (`kernels._wide_result`).
    x, w = jnp.ones((2, 4, 8), jnp.bfloat16), jnp.ones((8, 8), jnp.bfloat16)
    for platform, wide in (("cpu", True), ("tpu", False)):
        project = lambda x, w: kernels.project("BTD,DE->BTE", x, w, None, platform)  # noqa: E731,B023
        text = str(jax.make_jaxpr(project)(x, w))
        assert ("preferred_element_type=float32" in text) == wide, platform


@needs_libtpu
def test_tiny_sft_compiles_for_v5p_16():
    """The real train step of the tiny SFT config, compiled by the TPU compiler for 8 v5p chips."""
    c = load("sft", "tiny")
    tpu, devices = topology.devices("v5p-16")
    assert len(devices) == 8 and devices[0].platform == "tpu"
    p = memory.plan(c, devices)
    assert p.platform == "tpu" and p.mesh == {"data": 1, "fsdp": 8, "tensor": 1}
    report = memory.tpu_report(p, c, tpu)
    assert report["fits"] and 0 < p.compiled["total"] < 0.1 * memory.GB
    # FSDP: the weights are gathered; the program's dots match the analytic count.
    assert report["collectives"]["all-gather"]["ops"] > 0
    assert 0.8 < p.hlo_flops / p.analytic_flops["hardware"] < 1.25, report
    assert report["step_seconds"] > 0 and 0 < report["mfu"] < 1
    assert "fits, headroom" in report["text"]


def test_compiler_options_follow_the_target_not_the_host():
    """`cpu_scheduler` is an XLA:CPU option: set for a CPU target only, whatever this host is."""
    c = load("sft", "tiny")
    assert c.cpu_scheduler == "memory" and jax.default_backend() == "cpu"
    assert step_lib.compiler_options(c, "cpu") == {
        "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"
    }
    assert (
        step_lib.compiler_options(c, "tpu") is None and step_lib.compiler_options(c, "gpu") is None
    )


def test_hlo_walk_counts_the_tpu_reduce_scatter_fusion_as_a_reduce_scatter():
    """The TPU compiler writes a reduce-scatter as a custom fusion of an all-reduce and a slice."""
    hlo = """
%all-reduce-scatter (input: f32[4096,1024]) -> f32[1024,1024] {
  %input = f32[4096,1024]{1,0} parameter(0)
  %all-reduce.2 = f32[4096,1024]{1,0} all-reduce(%input), replica_groups={{0,1,2,3}}
  ROOT %dynamic-slice.3 = f32[1024,1024]{1,0} dynamic-slice(%all-reduce.2, %a, %b)
}

ENTRY %main (p: f32[4096,1024]) -> f32[1024,1024] {
  %p = f32[4096,1024]{1,0} parameter(0)
  ROOT %fusion = f32[1024,1024]{1,0} fusion(%p), kind=kCustom, calls=%all-reduce-scatter
}
"""
    h = topology.summarize_hlo(hlo)
    assert h.collectives["reduce-scatter"] == (1, 1, 1024 * 1024 * 4)
    assert h.collectives["all-reduce"] == (0, 0, 0)


@needs_libtpu
def test_fsdp_weight_gradients_are_reduce_scattered_on_v5p_8():
    """FSDP: each layer weight's gradient leaves the backward pass as a reduce-scatter (each chip
    receives its shard), never as an all-reduce of the whole matrix. A 1-layer bf16 model whose
    model dimension shards into whole TPU tiles (1024 / 4 chips = 2 x 128; at 512 the compiler
    all-reduces the attention output projection's 512 KiB gradient whole instead)."""
    c = load("sft", "tiny")
    m = c.model
    m.dim, m.ffn_dim, m.n_heads, m.n_kv_heads, m.head_dim = 1024, 2048, 8, 4, 128
    m.vocab_size = 4096
    m.n_layers, m.dtype, m.remat, m.scan_layers = 1, "bfloat16", "full", True
    c.batch_size, c.data.max_len = 8, 256
    tpu, devices = topology.devices("v5p-8")
    p = memory.plan(c, devices)
    report = memory.tpu_report(p, c, tpu)
    scattered = report["collectives"].get("reduce-scatter", {"ops": 0})
    # the seven projections of the layer and the output head
    assert scattered["ops"] >= 8, report["text"]
    # what is still all-reduced is small: the replicated norms' gradients, the loss's scalars
    whole = report["collectives"].get("all-reduce", {"bytes": 0})["bytes"]
    assert whole < 1024 * 4 * 16, report["text"]


@needs_libtpu
@pytest.mark.slow
def test_llama3_1b_layer_fits_v5p_and_not_v5e():
    """One Llama 3.2 1B layer (the full 128k vocabulary and head) at 2048 tokens. With full remat,
    4 sequences per chip fit a v5p-8's 95 GiB chips, and the compiled memory and FLOPs agree with
    the planner's analytic figures; without remat, 64 sequences per chip do not fit a v5e-4's
    16 GiB chips (the attention's float32 scores alone: 32 heads x 2048^2 x 4 bytes = 512 MiB per
    sequence)."""
    c = load("sft", "llama3_1b")
    c.model.n_layers, c.mesh, c.grad_accum, c.batch_size = 1, (1, -1, 1), 1, 16
    c.data.max_len = 2048
    tpu, devices = topology.devices("v5p-8")
    p = memory.plan(c, devices)
    report = memory.tpu_report(p, c, tpu)
    assert report["fits"], report["text"]
    assert 0.75 < p.compiled["total"] / p.analytic["total"] < 1.25, p.table()
    assert 0.8 < p.hlo_flops / p.analytic_flops["hardware"] < 1.2, report["text"]

    # The TPU compiler fits what it can by rematerializing on its own (16 sequences per chip
    # compiled to 14.5 GiB of a v5e's 16); past that it refuses the program.
    c.model.remat, c.batch_size = "none", 256
    tpu, devices = topology.devices("v5e-4")
    with pytest.raises(memory.DoesNotFit, match="RESOURCE_EXHAUSTED|Ran out of memory"):
        memory.plan(c, devices)


DECODE_ON_MESH = """
import jax, numpy as np
jax.config.update("jax_num_cpu_devices", 8)
from flax import nnx
from psycho_jax.core import decode, sharding
from psycho_jax.core.model import Llama, LlamaConfig
mesh = sharding.make_mesh((2, 2, 2))
cfg = LlamaConfig.tiny(dim=64, ffn_dim=128, vocab_size=512)
model = sharding.init_sharded(lambda: Llama(cfg, rngs=nnx.Rngs(0)), mesh)
sampler = decode.Sampler(model, mesh=mesh, stop_ids=[1], bucket=8)
out = sampler.generate(np.ones((4, 8), np.int32), np.ones((4, 8), bool), decode.Sampling(max_new_tokens=4))
print("tokens", out.tokens[0].tolist())
"""


def test_decode_on_a_2x2x2_mesh_keeps_the_embedding_lookup_sharded():
    """XLA's partitioner warns (on stderr, from C++) when it falls back to copying a whole array to
    every device; the decode loop's embedding lookup did (`model.embed_lookup` spells it out)."""
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", DECODE_ON_MESH], capture_output=True, text=True,
                         env=env, timeout=300, cwd=root)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tokens" in out.stdout
    assert "Involuntary full rematerialization" not in out.stderr, out.stderr[-3000:]
