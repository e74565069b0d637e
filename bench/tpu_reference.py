"""A plain `jnp` Llama SFT train step, as a MaxText user would write it, compiled for a TPU slice
beside psycho_jax's step of the same shapes (the TPU compiler's memory, estimated time and
collectives: `psycho_jax.core.topology`, `memory.tpu_report`). No TPU is needed; libtpu is.

    python bench/tpu_reference.py --topology=v5p-8 --dim=1024 --ffn=4096 --heads=8 --kv=4 \
        --layers=2 --vocab=8192 --seq=256 --batch=16

The reference: parameters stacked over layers and sharded over every chip on the model
dimension (FSDP), bf16 compute, float32 parameters and AdamW moments, `jax.lax.scan` over the
layers with full remat, `jax.nn.dot_product_attention` (causal), full [B,T,V] float32 logits and
a masked mean cross-entropy. psycho_jax's step is the real one (`memory.plan`) with the same
shapes (`configs/sft.py:tiny` resized, bf16, full remat, scanned layers, no accumulation).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from psycho_jax import memory, topology  # noqa: E402

GIB = 1024**3


def param_specs(a) -> dict[str, P]:
    """FSDP: every matrix split over the chips on its model dimension; norms replicated."""
    return {
        "embed": P(None, "fsdp"), "head": P("fsdp", None), "norm": P(),
        "wq": P(None, "fsdp", None), "wk": P(None, "fsdp", None), "wv": P(None, "fsdp", None),
        "wo": P(None, None, "fsdp"), "w1": P(None, "fsdp", None), "w3": P(None, "fsdp", None),
        "w2": P(None, None, "fsdp"), "ln1": P(), "ln2": P(),
    }  # fmt: skip


def param_shapes(a) -> dict[str, tuple[int, ...]]:
    L, D, F, N, K, H, V = a.layers, a.dim, a.ffn, a.heads, a.kv, a.head_dim, a.vocab
    return {
        "embed": (V, D), "head": (D, V), "norm": (D,),
        "wq": (L, D, N * H), "wk": (L, D, K * H), "wv": (L, D, K * H), "wo": (L, N * H, D),
        "w1": (L, D, F), "w3": (L, D, F), "w2": (L, F, D), "ln1": (L, D), "ln2": (L, D),
    }  # fmt: skip


def rms(x, w):
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-5) * w


def rope(x, positions, theta=500000.0):
    h = x.shape[-1]
    freq = 1.0 / theta ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h)
    angle = positions[..., None, None].astype(jnp.float32) * freq
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, -1)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


def loss_fn(params, batch, a):
    dt = jnp.bfloat16
    tokens, mask = batch["tokens"], batch["loss_mask"]
    b, t = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    x = params["embed"].astype(dt)[tokens]
    x = jax.lax.with_sharding_constraint(x, P("fsdp"))

    def layer(x, w):
        h = rms(x, w["ln1"]).astype(dt)
        q = (h @ w["wq"].astype(dt)).reshape(b, t, a.heads, a.head_dim)
        k = (h @ w["wk"].astype(dt)).reshape(b, t, a.kv, a.head_dim)
        v = (h @ w["wv"].astype(dt)).reshape(b, t, a.kv, a.head_dim)
        o = jax.nn.dot_product_attention(rope(q, positions), rope(k, positions), v, is_causal=True)
        x = x + o.reshape(b, t, -1) @ w["wo"].astype(dt)
        h = rms(x, w["ln2"]).astype(dt)
        g = jax.nn.silu(h @ w["w1"].astype(dt)) * (h @ w["w3"].astype(dt))
        x = x + g @ w["w2"].astype(dt)
        return jax.lax.with_sharding_constraint(x, P("fsdp")), None

    stacked = {k: params[k] for k in ("wq", "wk", "wv", "wo", "w1", "w3", "w2", "ln1", "ln2")}
    x, _ = jax.lax.scan(jax.checkpoint(layer), x, stacked)
    logits = jnp.einsum(
        "btd,dv->btv", rms(x, params["norm"]).astype(dt), params["head"].astype(dt),
        preferred_element_type=jnp.float32,
    )  # fmt: skip
    logp = jax.nn.log_softmax(logits[:, :-1])
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    m = mask[:, 1:].astype(jnp.float32)
    return -jnp.sum(picked * m) / jnp.maximum(jnp.sum(m), 1.0)


def compile_reference(a, devices):
    mesh = jax.make_mesh((len(devices),), ("fsdp",), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))  # fmt: skip
    specs, shapes = param_specs(a), param_shapes(a)
    shard = {k: NamedSharding(mesh, specs[k]) for k in specs}
    params = {k: jax.ShapeDtypeStruct(shapes[k], jnp.float32, sharding=shard[k]) for k in specs}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-5))
    opt_state = jax.eval_shape(tx.init, params)
    opt_shard = optax.tree_map_params(
        tx, lambda _, s: s, opt_state, shard,
        transform_non_params=lambda _: NamedSharding(mesh, P()),
    )  # fmt: skip
    opt_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), opt_state, opt_shard
    )
    rows = NamedSharding(mesh, P("fsdp", None))
    batch = {k: jax.ShapeDtypeStruct((a.batch, a.seq), d, sharding=rows)
             for k, d in (("tokens", jnp.int32), ("loss_mask", jnp.bool_))}  # fmt: skip

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, a)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    jitted = jax.jit(step, out_shardings=(shard, opt_shard, None), donate_argnums=(0, 1))
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        lowered = jitted.lower(params, opt_state, batch)
        compiled = lowered.compile()
    seconds = time.perf_counter() - start
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    total += m.temp_size_in_bytes
    cost = compiled.cost_analysis() or {}
    flops = topology.summarize_hlo(lowered.as_text(dialect="hlo")).dot_flops / len(devices)
    once = float(cost.get("flops", 0.0)) or flops
    est = max(float(cost.get("optimal_seconds", 0.0)), 0.0) * flops / max(once, 1.0)
    return {
        "memory_gib": total / GIB,
        "step_ms": 1e3 * est,
        "flops_per_chip": flops,
        "compile_s": seconds,
        "collectives": topology.summarize_hlo(compiled.as_text()).collectives,
    }


def compile_psycho(a, tpu, devices):
    spec = importlib.util.spec_from_file_location("cfg_sft", ROOT / "configs" / "sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("tiny")
    m = c.model
    m.dim, m.ffn_dim, m.n_heads, m.n_kv_heads = a.dim, a.ffn, a.heads, a.kv
    m.head_dim, m.vocab_size, m.n_layers = a.head_dim, a.vocab, a.layers
    m.dtype, m.remat, m.scan_layers = "bfloat16", "full", True
    c.batch_size, c.grad_accum, c.data.max_len = a.batch, 1, a.seq
    p = memory.plan(c, devices)
    r = memory.tpu_report(p, c, tpu)
    return {
        "memory_gib": p.compiled["total"] / GIB,
        "step_ms": 1e3 * r["step_seconds"],
        "flops_per_chip": p.hlo_flops,
        "compile_s": p.compile_seconds,
        "collectives": p.hlo.collectives,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topology", default="v5p-8")
    for name, default in (("dim", 1024), ("ffn", 4096), ("heads", 8), ("kv", 4), ("head_dim", 128),
                          ("layers", 2), ("vocab", 8192), ("seq", 256), ("batch", 16)):  # fmt: skip
        ap.add_argument(f"--{name}", type=int, default=default)
    a = ap.parse_args()
    tpu, devices = topology.devices(a.topology)
    rows = {"reference (plain jnp)": compile_reference(a, devices),
            "psycho_jax": compile_psycho(a, tpu, devices)}  # fmt: skip
    print(f"{a.topology}: D={a.dim} F={a.ffn} N={a.heads} K={a.kv} L={a.layers} V={a.vocab} "
          f"T={a.seq} B={a.batch}; per chip")  # fmt: skip
    print("| step | memory GiB | est. step ms | dot FLOPs/chip | collectives (ops, runs, MiB) |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        coll = ", ".join(f"{op} {v[0]}/{v[1]}/{v[2] / 2**20:.1f}"
                         for op, v in r["collectives"].items() if v[0])  # fmt: skip
        print(f"| {name} | {r['memory_gib']:.3f} | {r['step_ms']:.3f} | "
              f"{r['flops_per_chip'] / 1e9:.1f} G | {coll} |")  # fmt: skip
    print(json.dumps({k: {x: y for x, y in v.items() if x != "collectives"}
                      for k, v in rows.items()}))  # fmt: skip


if __name__ == "__main__":
    main()
