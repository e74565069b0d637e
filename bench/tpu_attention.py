"""Attention implementations on one TPU chip, by the TPU compiler: memory and estimated time of
one layer's attention forward and backward at a chip's share of a training batch (no TPU needed;
libtpu is).

    python bench/tpu_attention.py --topology=v5p-8 --rows=2 --seq=4096 --heads=32 --kv=8

Packed rows: the mask is causal within each of `--segments` equal segments per row.
  xla      `jax.nn.dot_product_attention` with the [B,1,T,T] boolean mask (psycho_jax's TPU path,
           `attention="auto"`/`"xla"`)
  causal   the same with `is_causal=True` and no mask (cannot keep packed segments apart: the
           cost of the mask alone)
  einsum   the plain two-einsum form under autodiff (`attention="einsum"`)
  splash   Pallas splash attention (`jax.experimental.pallas.ops.tpu.splash_attention`), causal
           with segment ids, grouped heads native
  flash    Pallas flash attention (`...ops.tpu.flash_attention`), causal with segment ids, the
           key/value heads repeated to the query heads

The compiler cannot see inside a Pallas kernel (a Mosaic custom call): its `optimal_seconds` and
FLOPs leave the kernel's work out, so for splash and flash the time column is not comparable; their
memory column is. The FLOPs at the chip's peak are printed beside.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from psycho_jax import topology  # noqa: E402

GIB = 1024**3


def masks(b, t, segments):
    seg = jnp.repeat(jnp.arange(segments, dtype=jnp.int32), t // segments)[None].repeat(b, 0)
    i = jnp.arange(t)
    causal = i[None, :] <= i[:, None]
    mask = causal[None] & (seg[:, :, None] == seg[:, None, :])
    return seg, mask


def xla(q, k, v, seg, mask):
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], implementation="xla")


def causal(q, k, v, seg, mask):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")


def einsum(q, k, v, seg, mask):
    b, t, n, h = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, n // kv, h)
    s = jnp.einsum("btkgh,bskh->bkgts", qg, k, preferred_element_type=jnp.float32) / h**0.5
    s = jnp.where(mask[:, None, None], s, -1e30)
    p = jax.nn.softmax(s, axis=-1).astype(q.dtype)
    return jnp.einsum("bkgts,bskh->btkgh", p, v).reshape(b, t, n, h)


def splash(q, k, v, seg, mask):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    b, t, n, h = q.shape
    multi = sm.MultiHeadMask([sm.CausalMask((t, t))] * n)
    kernel = sk.make_splash_mha(multi, head_shards=1, q_seq_shards=1)

    def one(q, k, v, s):  # [T,N,H] -> [N,T,H]
        ids = sk.SegmentIds(q=s, kv=s)
        out = kernel(q.transpose(1, 0, 2) / h**0.5, k.transpose(1, 0, 2), v.transpose(1, 0, 2),
                     segment_ids=ids)  # fmt: skip
        return out.transpose(1, 0, 2)

    return jax.vmap(one)(q, k, v, seg)


def flash(q, k, v, seg, mask):
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    n, kv = q.shape[2], k.shape[2]
    k, v = (jnp.repeat(x, n // kv, axis=2) for x in (k, v))
    to = lambda x: x.transpose(0, 2, 1, 3)  # noqa: E731  [B,T,N,H] -> [B,N,T,H]
    out = fa.flash_attention(to(q), to(k), to(v), segment_ids=fa.SegmentIds(seg, seg),
                             causal=True, sm_scale=q.shape[-1] ** -0.5)  # fmt: skip
    return to(out)


IMPLS = {"xla": xla, "causal": causal, "einsum": einsum, "splash": splash, "flash": flash}


def compile_one(fn, a, device):
    b, t, n, kv, h = a.rows, a.seq, a.heads, a.kv, a.head_dim
    one = jax.sharding.SingleDeviceSharding(device)
    sds = lambda shape, dt: jax.ShapeDtypeStruct(shape, dt, sharding=one)  # noqa: E731
    q, ct = sds((b, t, n, h), jnp.bfloat16), sds((b, t, n, h), jnp.bfloat16)
    k, v = sds((b, t, kv, h), jnp.bfloat16), sds((b, t, kv, h), jnp.bfloat16)

    def step(q, k, v, ct):
        seg, mask = masks(b, t, a.segments)
        out, vjp = jax.vjp(lambda q, k, v: fn(q, k, v, seg, mask), q, k, v)
        return vjp(ct)

    compiled = jax.jit(step).lower(q, k, v, ct).compile()
    m = compiled.memory_analysis()
    cost = compiled.cost_analysis() or {}
    return (
        m.temp_size_in_bytes,
        float(cost.get("optimal_seconds", 0.0)),
        float(cost.get("flops", 0)),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topology", default="v5p-8")
    for name, default in (("rows", 2), ("seq", 4096), ("heads", 32), ("kv", 8), ("head_dim", 128),
                          ("segments", 4)):  # fmt: skip
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--impls", default=",".join(IMPLS))
    a = ap.parse_args()
    tpu, devices = topology.devices(a.topology)
    # forward 2 products, backward 4 (plus the forward's 2 again inside flash/splash): causal half
    useful = 6 * 2 * a.rows * a.seq * a.seq * a.heads * a.head_dim / 2
    print(f"{a.topology} one chip: B={a.rows} T={a.seq} N={a.heads} K={a.kv} H={a.head_dim}, "
          f"{a.segments} packed segments per row; attention forward + backward; the causal "
          f"products at peak: {useful / tpu.chip.peak_bf16_flops * 1e3:.3f} ms")  # fmt: skip
    print("| attention | temporaries GiB | compiler estimate ms | compiler FLOPs |")
    print("|---|---|---|---|")
    for name in a.impls.split(","):
        try:
            temp, seconds, flops = compile_one(IMPLS[name], a, devices[0])
            print(f"| {name} | {temp / GIB:.3f} | {seconds * 1e3:.3f} | {flops / 1e9:.1f} G |")
        except Exception as e:  # noqa: BLE001  report and go on: one kernel may not compile
            print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
