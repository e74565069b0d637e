"""The decode step (`decode.Sampler`'s, one token for every row through a KV cache) compiled for a
TPU slice by the TPU compiler, on a machine without TPUs: per-chip memory and the compiler's time
estimate against the bandwidth bound.

    python bench/tpu_decode.py --topology=v5p-16 --preset=llama3_8b --batch=64 --prompt=512 --new=256

The parameters are bfloat16 (a serving copy), FSDP over every chip as `configs/evaluate.py` meshes
them; the prefill program is compiled first, and its output shardings are the step's inputs.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

from psycho_jax.core import decode, sharding, topology
from psycho_jax.core.model import Llama, LlamaConfig

flags.DEFINE_string("topology", "v5p-16", "TPU slice (psycho_jax.core.topology names)")
flags.DEFINE_string("preset", "llama3_8b", "LlamaConfig preset")
flags.DEFINE_integer("batch", 64, "rows decoded together")
flags.DEFINE_integer("prompt", 512, "prompt tokens (the cache holds prompt + new)")
flags.DEFINE_integer("new", 256, "new tokens")
FLAGS = flags.FLAGS


def _abstract(tree, shardings):
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def main(argv):
    del argv
    topology.prepare_environment()
    jax.config.update("jax_platforms", "cpu")
    tpu, devices = topology.devices(FLAGS.topology)
    mesh = sharding.make_mesh((1, -1, 1), devices=devices)
    cfg = LlamaConfig.preset(
        FLAGS.preset, dtype="bfloat16", param_dtype="bfloat16", scan_layers=True, platform="tpu"
    )
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0))))
    state = _abstract(state, sharding.state_shardings(state, mesh))
    b, t, n = FLAGS.batch, FLAGS.prompt, FLAGS.new
    batch = sharding.batch_sharding(mesh, 2)
    tokens = jax.ShapeDtypeStruct((b, t), jnp.int32, sharding=batch)
    mask = jax.ShapeDtypeStruct((b, t), jnp.bool_, sharding=batch)

    def prefill(state, tokens, mask):
        model = nnx.merge(graphdef, state)
        logits, cache = decode._prefill(model, tokens, mask, t + n, None)
        return decode._initial_carry(logits, cache, mask, jax.random.key(0), n, jnp.int32(0))

    def step(state, carry):
        model = nnx.merge(graphdef, state)
        how = dict(greedy=True, top_k=0, use_top_p=False)
        stop = jnp.asarray([1], jnp.int32)
        return decode._step(model, carry, jnp.float32(1.0), jnp.float32(1.0), stop, 0, **how)

    report = {"topology": tpu.topology, "preset": FLAGS.preset, "batch": b, "cache": t + n}
    with jax.set_mesh(mesh):
        start = time.perf_counter()
        pre = jax.jit(prefill).lower(state, tokens, mask).compile()
        report["prefill_compile_s"] = round(time.perf_counter() - start, 1)
        carry = _abstract(jax.eval_shape(prefill, state, tokens, mask), pre.output_shardings)
        start = time.perf_counter()
        lowered = jax.jit(step, donate_argnums=1).lower(state, carry)
        compiled = lowered.compile()
        report["step_compile_s"] = round(time.perf_counter() - start, 1)
    m, cost = compiled.memory_analysis(), compiled.cost_analysis()
    total = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
             + m.temp_size_in_bytes)  # fmt: skip
    read = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(carry["cache"]))
    weights = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    bound = (read + weights) / len(devices) / tpu.chip.hbm_bytes_per_second
    hlo = topology.summarize_hlo(compiled.as_text())
    # optimal_seconds counts the scan over layers once: scaled by the dots' FLOPs with trip counts
    dots = topology.summarize_hlo(lowered.as_text(dialect="hlo"), dict(mesh.shape))
    scale = dots.dot_flops / max(dots.dot_flops_once, 1.0)
    report.update(
        step_memory_gib_per_chip=round(total / 2**30, 2),
        hbm_gib=tpu.chip.hbm_gib,
        step_ms_compiler_loop_once=round(cost.get("optimal_seconds", 0.0) * 1e3, 3),
        step_ms_compiler_scaled=round(cost.get("optimal_seconds", 0.0) * scale * 1e3, 3),
        step_ms_bandwidth_bound=round(bound * 1e3, 3),
        collectives={k: v for k, v in hlo.collectives.items() if v[0]},
        loops=hlo.loops,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    functools.partial(app.run, main)()
