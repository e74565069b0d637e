"""Layer pieces with hand-written backward passes: the fast path of a training step on XLA:CPU.

Each function here equals its plain `jnp` formulation (tests/test_kernels.py holds values and
gradients to float32 round-off against it); what differs is the backward pass, written out so that
XLA gets canonical matrix products over arrays it already holds, instead of what autodiff of the
plain form produces on CPU: transposes fused with the activation's derivative, the same
sin/cos recomputed per use, and a vmapped attention with a copy per head group. Profiles of a
small SFT step on a 2-core CPU show them removing most of the transposes and the attention's
copies; the step stays bound by its matrix products (bench/RESULTS.md has the measured effect,
`--options=xla_attention=model.attention=xla` in bench/suite.py).

Two of them are about memory more than speed: `attention` holds no [B,N,T,S] probabilities between
the passes (it recomputes them, as flash attention does), and `head_logprobs` holds no [B,T,V]
logits (it applies the output projection chunk by chunk, to target positions only).

Einsum letters as in `psycho_jax.core.model`: B batch, T queries, S keys, N query heads, K kv heads,
G = N / K, H head dim, D model dim, F MLP dim, V vocab, C positions per chunk.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


# ----------------------------------------------------------------------------- matrix products


def on_cpu(platform: str = "") -> bool:
    """Whether a program compiled for `platform` ("" = the default backend, else "cpu", "tpu",
    "gpu": the mesh's devices, `LlamaConfig.platform`) runs on XLA:CPU: the CPU-only paths below
    follow the target a program is compiled for, not the machine compiling it."""
    return (platform or jax.default_backend()) == "cpu"


def on_tpu(platform: str = "") -> bool:
    """Whether a program compiled for `platform` ("" = the default backend) runs on a TPU."""
    return (platform or jax.default_backend()) == "tpu"


def _wide_result(dtype, platform: str = "") -> bool:
    """Whether a product of `dtype` operands should be computed with a float32 result and then
    rounded. XLA:CPU computes a bfloat16 x bfloat16 -> bfloat16 product by converting both operands
    to float32, but a bfloat16 -> float32 one with bfloat16 kernels (2048x512x1408 on an
    AVX-512-BF16 core pair: 167 GFLOP/s, against 196 for float32 and 298 for bf16 -> f32);
    accelerators round inside the product, so only CPU asks."""
    return jnp.dtype(dtype).itemsize < 4 and on_cpu(platform)


def mm(eq: str, a: Array, b: Array, out_dtype=None, platform: str = "") -> Array:
    """`einsum(eq, a, b)` in `out_dtype` (default a's dtype), accumulated in float32 when the
    operands are low precision on CPU (see `_wide_result`). No gradient: for kernels' backward
    passes."""
    out_dtype = out_dtype or a.dtype
    if _wide_result(a.dtype, platform):
        return jnp.einsum(eq, a, b, preferred_element_type=jnp.float32).astype(out_dtype)
    return jnp.einsum(eq, a, b).astype(out_dtype)


def _transposed(eq: str) -> tuple[str, str]:
    """The einsums of `eq`'s two operand gradients: for "X,Y->Z", ("Z,Y->X", "X,Z->Y")."""
    ins, z = eq.replace(" ", "").split("->")
    x, y = ins.split(",")
    return f"{z},{y}->{x}", f"{x},{z}->{y}"


def project(eq: str, x: Array, w: Array, out_dtype=None, platform: str = "") -> Array:
    """`einsum(eq, x, w)` in `out_dtype` (default x's dtype) of activations x and weights w of the
    same dtype, for a differentiable projection. Low-precision operands on CPU take float32 results
    in the forward and both gradients (`_wide_result`), and the incoming gradient is rounded to the
    operands' dtype (as autocast does); otherwise this is the plain einsum. Each index of `eq` must
    appear in exactly two of its three terms (a plain contraction with batch axes). `platform`:
    the target (`on_cpu`). For a TPU target, the plain einsum under autodiff: the TPU compiler's
    estimate of a small SFT step is 12.6% faster with it (and with `gated_mlp`'s), for 21% more
    memory (bench/RESULTS.md, "custom backward passes on TPU")."""
    if on_tpu(platform):
        return jnp.einsum(eq, x, w, preferred_element_type=out_dtype).astype(out_dtype or x.dtype)
    return _project(eq, x, w, out_dtype, platform)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3, 4))
def _project(eq: str, x: Array, w: Array, out_dtype, platform: str) -> Array:
    return _project_forward(eq, x, w, out_dtype, platform)[0]


def _project_forward(eq, x, w, out_dtype, platform):
    return mm(eq, x, w, out_dtype, platform), (x, w)


def after(w: Array, g: Array) -> Array:
    """`w`, made to depend on the incoming gradient `g` (plus 0 * one of its elements) in a
    backward pass. Under FSDP sharding the forward pass all-gathers each layer's weights for its
    products; the backward pass's gather of the same weight would be merged with it (CSE) and
    the whole model's gathered weights held from the forward pass to the backward, a full copy
    of the parameters per device. Depending on `g`, the backward gathers again, just in time."""
    return w + (0.0 * g.reshape(-1)[0]).astype(w.dtype)


def _project_backward(eq, out_dtype, platform, res, dy):
    x, w = res
    eq_x, eq_w = _transposed(eq)
    dy = dy.astype(x.dtype)
    w = after(w, dy)
    return mm(eq_x, dy, w, x.dtype, platform), mm(eq_w, x, dy, w.dtype, platform)


_project.defvjp(_project_forward, _project_backward)


# ----------------------------------------------------------------------------- SwiGLU MLP


def gated_mlp(x: Array, w_gate: Array, w_up: Array, w_down: Array, platform: str = "") -> Array:
    """`(silu(x @ w_gate) * (x @ w_up)) @ w_down`. x [B,T,D], w_gate/w_up [D,F], w_down [F,D]
    -> [B,T,D] in x's dtype (weights cast to it). `platform`: the target (`on_cpu`); for a TPU
    target, the plain form under autodiff (`project`)."""
    if on_tpu(platform):
        dt = x.dtype
        gate = jnp.einsum("BTD,DF->BTF", x, w_gate.astype(dt))
        up = jnp.einsum("BTD,DF->BTF", x, w_up.astype(dt))
        return jnp.einsum("BTF,FD->BTD", jax.nn.silu(gate) * up, w_down.astype(dt))
    return _gated_mlp(x, w_gate, w_up, w_down, platform)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _gated_mlp(x: Array, w_gate: Array, w_up: Array, w_down: Array, platform: str) -> Array:
    return _mlp_forward(x, w_gate, w_up, w_down, platform)[0]


def _mlp_forward(x, w_gate, w_up, w_down, platform):
    dt = x.dtype
    gate = mm("BTD,DF->BTF", x, w_gate.astype(dt), platform=platform)
    up = mm("BTD,DF->BTF", x, w_up.astype(dt), platform=platform)
    y = mm("BTF,FD->BTD", jax.nn.silu(gate) * up, w_down.astype(dt), platform=platform)
    return y, (x, gate, up, w_gate, w_up, w_down)


def _mlp_backward(platform, res, dy):
    x, gate, up, w_gate, w_up, w_down = res
    dt = x.dtype
    w_gate, w_up, w_down = (after(w, dy) for w in (w_gate, w_up, w_down))
    g32 = gate.astype(jnp.float32)
    sig = jax.nn.sigmoid(g32)
    silu = g32 * sig
    act = (silu * up.astype(jnp.float32)).astype(dt)
    dact = mm("BTD,FD->BTF", dy.astype(dt), w_down.astype(dt), jnp.float32, platform)
    d_up = (dact * silu).astype(dt)
    d_gate = (dact * up.astype(jnp.float32) * (sig * (1.0 + g32 * (1.0 - sig)))).astype(dt)
    dx = mm("BTF,DF->BTD", d_gate, w_gate.astype(dt), jnp.float32, platform) + mm(
        "BTF,DF->BTD", d_up, w_up.astype(dt), jnp.float32, platform
    )
    f32 = dict(preferred_element_type=jnp.float32)
    dw_gate = jnp.einsum("BTD,BTF->DF", x, d_gate, **f32).astype(w_gate.dtype)
    dw_up = jnp.einsum("BTD,BTF->DF", x, d_up, **f32).astype(w_up.dtype)
    dw_down = jnp.einsum("BTF,BTD->FD", act, dy, **f32).astype(w_down.dtype)
    return dx.astype(dt), dw_gate, dw_up, dw_down


_gated_mlp.defvjp(_mlp_forward, _mlp_backward)


# ----------------------------------------------------------------------------- RMSNorm


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """RMSNorm in float32, as HF's: x / sqrt(mean(x^2) + eps) * weight. x [..., D], weight [D]
    -> [..., D] float32.

    The backward pass keeps x and the [..., 1] reciprocal RMS only; autodiff of the plain form
    keeps x^2, x / rms and the output as well (three more [..., D] buffers per norm, two norms per
    layer, held from the forward pass to the backward)."""
    return _rms_norm_forward(x, weight, eps)[0]


def _rms_norm_forward(x, weight, eps):
    x32 = x.astype(jnp.float32)
    r = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    w32 = weight.astype(jnp.float32).reshape((1,) * (x.ndim - 1) + (-1,))
    return x32 * r * w32, (x, weight, r)


def _rms_norm_backward(eps, res, dy):
    del eps
    x, weight, r = res
    x32, dy = x.astype(jnp.float32), dy.astype(jnp.float32)
    g = dy * weight.astype(jnp.float32).reshape((1,) * (x.ndim - 1) + (-1,))
    dx = r * g - x32 * (r**3) * jnp.mean(g * x32, axis=-1, keepdims=True)
    dw = jnp.sum((dy * x32 * r).reshape(-1, x.shape[-1]), axis=0)
    return dx.astype(x.dtype), dw.astype(weight.dtype)


rms_norm.defvjp(_rms_norm_forward, _rms_norm_backward)


# ----------------------------------------------------------------------------- rotary embedding


def rope_tables(positions: Array, inv_freq: Array) -> tuple[Array, Array]:
    """cos and sin of the rotary angles, [B,T,1,H/2] float32, computed once per forward pass."""
    angles = positions[:, :, None].astype(jnp.float32) * inv_freq[None, None, :]
    return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]


def _rotate(x: Array, cos: Array, sin: Array) -> Array:
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


@jax.custom_vjp
def rope(x: Array, cos: Array, sin: Array) -> Array:
    """HF rotate-half rotary embedding: x [B,T,N,H], cos/sin [B,T,1,H/2] -> [B,T,N,H].

    A rotation: its backward is the rotation by the opposite angle (one elementwise pass). The
    tables are constants of the positions: no gradient flows to them.
    """
    return _rotate(x, cos, sin)


def _rope_forward(x, cos, sin):
    return _rotate(x, cos, sin), (cos, sin)


def _rope_backward(res, dy):
    cos, sin = res
    return _rotate(dy, cos, -sin), jnp.zeros_like(cos), jnp.zeros_like(sin)


rope.defvjp(_rope_forward, _rope_backward)


def materialized(x: Array, platform: str = "") -> Array:
    """`x` itself, computed once into its own buffer rather than fused into its consumers.

    XLA fuses cheap element-wise producers into every consumer and recomputes them per element:
    the [B,T,S] attention mask (iotas and segment-id compares) would be rebuilt inside each layer's
    score fusions, forward and backward, broadcast over every head (~20% of the attention's time on
    CPU). XLA:CPU drops `optimization_barrier`s before fusion, but a conditional on a value known
    only at run time is a fusion boundary it keeps; `any(x != 0)` is that value, and the other
    branch returns zeros, which is `x` whenever it is taken: the result equals `x` exactly.
    For any other target (`platform`, see `on_cpu`) `x` is returned as it is: the effect was
    measured on CPU only, and an XLA:GPU conditional may copy its predicate to the host (a
    synchronisation per use).
    """
    if not on_cpu(platform):
        return x
    return jax.lax.cond(jnp.any(x != 0), lambda: x, lambda: jnp.zeros_like(x))


# ----------------------------------------------------------------------------- attention


def _to_groups(x: Array, kv_heads: int) -> Array:
    """[B,T,N,H] -> [B,K,G*T,H]: the G query heads that share a kv head, stacked along queries."""
    b, t, n, h = x.shape
    g = n // kv_heads
    return x.reshape(b, t, kv_heads, g, h).transpose(0, 2, 3, 1, 4).reshape(b, kv_heads, g * t, h)


def _from_groups(x: Array, t: int) -> Array:
    """[B,K,G*T,H] -> [B,T,N,H]."""
    b, k, gt, h = x.shape
    g = gt // t
    return x.reshape(b, k, g, t, h).transpose(0, 3, 1, 2, 4).reshape(b, t, k * g, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def attention(q: Array, k: Array, v: Array, mask: Array, platform: str = "") -> Array:
    """Grouped-query softmax attention with a boolean mask, softmax in float32.

    Args:
      q: [B,T,N,H]; k, v: [B,S,K,H]; mask: [B,T,S] bool (True: may attend; every query row must
        allow at least one key).
    Returns:
      [B,T,N,H] in q's dtype.

    Computes per kv head one [G*T, H] x [H, S] product (the G query heads that share it stacked).
    The backward pass keeps only the softmax's log-normaliser [B,K,G*T] and recomputes the
    probabilities from q and k (one more [G*T, H] x [H, S] product), as flash attention and
    PyTorch's CPU `scaled_dot_product_attention` do: the [B,N,T,S] probabilities are not held for the
    backward pass (at 512 tokens, 12 heads, batch 8: 100 MB per layer). `platform`: the target
    (`on_cpu`).
    """
    return _attention_forward(q, k, v, mask, platform)[0]


def _attention_forward(q, k, v, mask, platform):
    b, t, n, h = q.shape
    kv = k.shape[2]
    scale = jnp.asarray(h**-0.5, q.dtype)
    qg = _to_groups(q * scale, kv)  # [B,K,G*T,H]
    kg, vg = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B,K,S,H]
    s = jnp.einsum("BKQH,BKSH->BKQS", qg, kg, preferred_element_type=jnp.float32)
    s = s.reshape(b, kv, n // kv, t, -1)
    s = jnp.where(mask[:, None, None], s, jnp.finfo(jnp.float32).min)
    lse = jax.nn.logsumexp(s, axis=-1)  # [B,K,G,T]
    p = jnp.exp(s - lse[..., None]).reshape(b, kv, n // kv * t, -1).astype(v.dtype)
    o = mm("BKQS,BKSH->BKQH", p, vg, platform=platform)
    return _from_groups(o, t), (qg, kg, vg, mask, lse.reshape(b, kv, -1), o)


def _attention_forward_rule(q, k, v, mask, platform):
    out, (qg, kg, vg, mask, lse, o) = _attention_forward(q, k, v, mask, platform)
    return out, (qg, kg, vg, _keys_first(mask, platform), lse, o)


def _keys_first(mask: Array, platform: str) -> Array:
    """[B,T,S] -> [B,S,T], the backward pass's layout, in its own buffer (see `materialized`)."""
    return materialized(mask.transpose(0, 2, 1), platform)


def _attention_backward(platform, res, dout):
    """Flash-attention's backward in the transposed [keys, queries] layout: the recomputed scores
    are a different product than the forward's (k q^T, not q k^T), so XLA cannot merge the two and
    keep the forward's [T,S] scores alive instead (XLA:CPU drops optimisation barriers before CSE)."""
    qg, kg, vg, mask_t, lse, o = res  # mask_t: [B,S,T]
    b, kv, gt, h = qg.shape
    t = dout.shape[1]
    dt = qg.dtype
    f32 = dict(preferred_element_type=jnp.float32)
    do = _to_groups(dout.astype(dt), kv)  # [B,K,G*T,H]
    delta = jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1)  # [B,K,G*T]
    # A data dependence on the incoming gradient: without it the scheduler may recompute every
    # layer's scores as soon as the forward pass ends and hold them all at once.
    qg = qg + (0.0 * delta[..., None]).astype(dt)
    # The mask repeated per query head of a group, [B,S,G*T] in qg's order, as its own buffer:
    # broadcast inside the exp fusion ([B,S,T] over the middle G of [B,K,S,G,T]) XLA:CPU's loop
    # runs ~6x slower than the same fusion over a 4-d layout.
    mask_g = materialized(jnp.tile(mask_t, (1, 1, gt // t)), platform)
    s_t = jnp.einsum("BKSH,BKQH->BKSQ", kg, qg, **f32)
    s_t = jnp.where(mask_g[:, None], s_t, jnp.finfo(jnp.float32).min)
    p_t = jnp.exp(s_t - lse[:, :, None, :])  # [B,K,S,G*T]
    dv = jnp.einsum("BKSQ,BKQH->BKSH", p_t.astype(dt), do, **f32)
    dp_t = jnp.einsum("BKSH,BKQH->BKSQ", vg, do, **f32)
    ds_t = (p_t * (dp_t - delta[:, :, None, :])).astype(dt)
    dq = jnp.einsum("BKSQ,BKSH->BKQH", ds_t, kg, **f32) * (h**-0.5)
    dk = jnp.einsum("BKSQ,BKQH->BKSH", ds_t, qg, **f32)
    return (
        _from_groups(dq.astype(dt), t),
        dk.transpose(0, 2, 1, 3).astype(dt),
        dv.transpose(0, 2, 1, 3).astype(dt),
        None,
    )


attention.defvjp(_attention_forward_rule, _attention_backward)


def causal_attention(
    q: Array, k: Array, v: Array, mask: Array, blocks: int = 1, platform: str = ""
) -> Array:
    """`attention` for self-attention under a causal mask, in `blocks` blocks of queries: block i
    attends to the keys up to its own end only, so the key blocks above the diagonal, which a
    causal mask hides entirely, are never computed (with 4 blocks, 10 of the 16 query x key
    blocks: 37.5% fewer score and probability products and element-wise work, forward and backward).

    Args:
      q: [B,T,N,H]; k, v: [B,T,K,H] (the same positions: no cache); mask: [B,T,T] bool, False
        wherever key > query (Transformer's masks always are); blocks: static; one block when it
        does not divide T.
    Returns:
      [B,T,N,H] in q's dtype, equal to `attention(q, k, v, mask)`.

    Memory: the backward pass keeps q, k, v, the log-normalisers and the output itself (which
    o_proj's backward keeps anyway: one buffer), whatever the block count; `attention` keeps the
    output a second time in its grouped [B,K,G*T,H] layout, and per-block `attention` calls would
    keep every block's key prefix ([T/2 + T] keys for 2 blocks).
    """
    t = q.shape[1]
    if k.shape[1] != t:
        return attention(q, k, v, mask, platform)
    blocks = blocks if blocks >= 1 and t % blocks == 0 else 1
    return _causal_attention(q, k, v, mask, blocks, platform)


def _block_bounds(t: int, blocks: int) -> list[tuple[int, int]]:
    c = t // blocks
    return [(i * c, (i + 1) * c) for i in range(blocks)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _causal_attention(q, k, v, mask, blocks, platform):
    return _causal_forward(q, k, v, mask, blocks, platform)[0]


def _causal_forward(q, k, v, mask, blocks, platform):
    outs, lses = [], []
    for lo, hi in _block_bounds(q.shape[1], blocks):
        o, (*_, lse, _) = _attention_forward(
            q[:, lo:hi], k[:, :hi], v[:, :hi], mask[:, lo:hi, :hi], platform
        )
        outs.append(o)
        lses.append(lse)  # [B,K,G*c]
    out = outs[0] if blocks == 1 else jnp.concatenate(outs, axis=1)
    return out, (q, k, v, _keys_first(mask, platform), tuple(lses), out)


def _causal_backward(blocks, platform, res, dout):
    q, k, v, mask_t, lses, out = res
    kv, h = k.shape[2], q.shape[-1]
    scale = jnp.asarray(h**-0.5, q.dtype)
    dqs, dk, dv = [], jnp.zeros_like(k), jnp.zeros_like(v)
    for (lo, hi), lse in zip(_block_bounds(q.shape[1], blocks), lses, strict=True):
        block = (
            _to_groups(q[:, lo:hi] * scale, kv),
            k[:, :hi].transpose(0, 2, 1, 3),
            v[:, :hi].transpose(0, 2, 1, 3),
            mask_t[:, :hi, lo:hi],
            lse,
            _to_groups(out[:, lo:hi], kv),
        )
        dq_i, dk_i, dv_i, _ = _attention_backward(platform, block, dout[:, lo:hi])
        dqs.append(dq_i)
        dk = dk.at[:, :hi].add(dk_i)
        dv = dv.at[:, :hi].add(dv_i)
    dq = dqs[0] if blocks == 1 else jnp.concatenate(dqs, axis=1)
    return dq, dk, dv, None


_causal_attention.defvjp(_causal_forward, _causal_backward)


# ----------------------------------------------------------------------------- LM head + log-probs


def token_logprobs(logits: Array, tokens: Array) -> Array:
    """Log-probability of each token given the tokens before it.

    Computes logsumexp minus the gathered label logit, so no second [..., T, V] (log-softmax)
    array is materialised, forward or backward; both partition over a vocab-sharded V (a local
    reduction or gather, then an all-reduce).

    Args:
      logits: [..., T, V] next-token logits (any float dtype; the math is float32).
      tokens: [..., T] int token ids.

    Returns:
      [..., T] float32: out[..., t] = log p(tokens[..., t] | tokens[..., :t]), read from
      logits[..., t-1, :]; out[..., 0] = 0 (the first token has no prediction).
    """
    logits = logits.astype(jnp.float32)
    # Position t scores token t+1; the last position scores nothing and is dropped below. Rolling the
    # small int array avoids slicing (and possibly copying) the large logits array.
    targets = jnp.roll(tokens, -1, axis=-1)
    label_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logp = label_logit - jax.nn.logsumexp(logits, axis=-1)
    return jnp.concatenate([jnp.zeros_like(logp[..., :1]), logp[..., :-1]], axis=-1)


def head_logprobs(
    hidden: Array,
    w: Array,
    targets: Array,
    mask: Array,
    chunk: int,
    vocab_major: bool = False,
    keep_probs: bool = False,
) -> Array:
    """log p(targets) under the output projection, computed in chunks of positions.

    Equals `log_softmax(hidden @ w)[..., targets]` where `mask`, 0 elsewhere, without the [B,T,V]
    logits: the forward pass keeps each position's log-normaliser, and the backward pass recomputes
    one chunk of logits at a time (memory O(B x chunk x V) instead of several [B,T,V] arrays:
    2 GiB of float32 logits and gradients at batch 8 x 512 tokens with Llama 3's 128k vocabulary).
    Each row's target positions are moved to its front first, and chunks that hold no target in
    any row are skipped in both passes: prompt tokens cost no output projection at all.

    Args:
      hidden: [B,T,D] final hidden states (compute dtype).
      w: the output projection, [D,V] (or [V,D] with `vocab_major`, a tied embedding).
      targets: [B,T] int, the token each position predicts.
      mask: [B,T] bool, the positions to score.
      chunk: positions per row per chunk (static).
      vocab_major: `w` is [V,D].
      keep_probs: the forward pass also keeps each chunk's softmax probabilities ([n,B,C,V]
        float32, n x C >= T: as much memory as the full logits) and the backward pass uses them
        instead of recomputing the chunk's logits: three of the head's matmuls instead of four,
        for a non-linear loss of the log-probs (DPO) where the batch's logits fit in memory.
    Returns:
      [B,T] float32 log-probabilities, 0 where `mask` is False.
    """
    return _head_logprobs(hidden, w, targets, mask, chunk, vocab_major, keep_probs)


class _Layout(NamedTuple):
    """Each row's target positions first (`order` [B,T]), padded to `n` chunks of `c` positions."""

    order: Array
    n: int
    c: int

    @classmethod
    def of(cls, mask: Array, chunk: int) -> _Layout:
        t = mask.shape[1]
        c = max(1, min(chunk, t))
        return cls(jnp.argsort(~mask, axis=1, stable=True), -(-t // c), c)

    def split(self, x: Array) -> Array:
        """[B,T,...] -> [n,B,C,...] in target-first order (padding zeros / False)."""
        b, t = x.shape[:2]
        x = jnp.take_along_axis(x, self.order.reshape((b, t) + (1,) * (x.ndim - 2)), axis=1)
        x = jnp.pad(x, [(0, 0), (0, self.n * self.c - t)] + [(0, 0)] * (x.ndim - 2))
        return x.reshape((b, self.n, self.c) + x.shape[2:]).swapaxes(0, 1)

    def merge(self, x: Array) -> Array:
        """[n,B,C,...] in target-first order -> [B,T,...] in the original order."""
        b, t = self.order.shape
        x = x.swapaxes(0, 1).reshape((b, self.n * self.c) + x.shape[3:])[:, :t]
        inverse = jnp.argsort(self.order, axis=1).reshape((b, t) + (1,) * (x.ndim - 2))
        return jnp.take_along_axis(x, inverse, axis=1)


def _chunk_logits(h, w, vocab_major):
    eq = "BCD,VD->BCV" if vocab_major else "BCD,DV->BCV"
    return jnp.einsum(eq, h, w.astype(h.dtype), preferred_element_type=jnp.float32)


def _head_logprobs_forward(hidden, w, targets, mask, chunk, vocab_major, keep_probs):
    layout = _Layout.of(mask, chunk)
    hs, ts, ms = layout.split(hidden), layout.split(targets), layout.split(mask)

    def run(hs, ts, ms, w_dt):
        def body(_, xs):
            h, tgt, m, on = xs

            def compute():
                logits = _chunk_logits(h, w_dt, vocab_major)
                lse = jax.nn.logsumexp(logits, axis=-1)
                picked = jnp.take_along_axis(logits, tgt[..., None], axis=-1, mode="clip")[..., 0]
                kept = (jnp.exp(logits - lse[..., None]),) if keep_probs else ()
                return (jnp.where(m, picked - lse, 0.0), lse, *kept)

            zeros = jnp.zeros(m.shape, jnp.float32)
            vocab = _vocab(w_dt, vocab_major)
            skip = (zeros, zeros) + ((jnp.zeros(m.shape + (vocab,), jnp.float32),) * keep_probs)
            return None, jax.lax.cond(on, compute, lambda: skip)

        active = jnp.any(ms, axis=(1, 2))  # [n]: some row (of this shard) has a target
        return jax.lax.scan(body, None, (hs, ts, ms, active))[1]

    w_dt = w.astype(hidden.dtype)
    out = _per_batch_shard(run, (hs, ts, ms), (w_dt,), reduced=0, outputs=2 + keep_probs)
    logp, lse, probs = out[0], out[1], (out[2] if keep_probs else None)
    return layout.merge(logp), (hidden, w, targets, mask, lse, probs)


def _per_batch_shard(fn, batched: tuple, shared: tuple, *, reduced: int, outputs: int) -> tuple:
    """`fn(*batched, *shared)` run by each device on its own rows, when a mesh with `data`/`fsdp`
    axes is in context: `batched` arrays [n,B,...] split along B as the batch is, `shared` arrays
    whole on every device (the output projection: gathered once, not once per chunk), and the
    first `reduced` of its `outputs` summed over the batch shards once at the end (the head's
    weight gradient: without this, the partitioner all-reduces each chunk's [D,V] partial sum
    inside the loop: measured on a TPU v5p-8 compile of a Llama 3.2 1B step, 256 all-reduces
    of 1 GiB per step). Without such a mesh, `fn` as it is."""
    mesh = jax.sharding.get_abstract_mesh()
    axes = () if mesh.empty else tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)
    axes = tuple(a for a in axes if mesh.shape[a] > 1)
    n = math.prod(mesh.shape[a] for a in axes) if axes else 1
    if not axes or batched[0].shape[1] % n:
        return tuple(fn(*batched, *shared))
    spec = jax.sharding.PartitionSpec(None, axes)
    replicated = jax.sharding.PartitionSpec()

    def local(*args):
        out = tuple(fn(*args))
        return tuple(jax.lax.psum(o, axes) for o in out[:reduced]) + out[reduced:]

    return jax.shard_map(
        local,
        in_specs=(spec,) * len(batched) + (replicated,) * len(shared),
        out_specs=(replicated,) * reduced + (spec,) * (outputs - reduced),
        axis_names=set(axes),
        check_vma=False,
    )(*batched, *shared)


def _vocab(w: Array, vocab_major: bool) -> int:
    return w.shape[0] if vocab_major else w.shape[1]


def _chunk_grads(logits, lse, h, w_dt, tgt, weight, vocab_major):
    """Gradients of sum(weight * log p(tgt)) for one chunk: dh [B,C,D] (h's dtype) and the
    chunk's float32 contribution to dw. logits [B,C,V] f32, lse/weight [B,C]."""
    probs = jnp.exp(logits - lse[..., None])
    return _chunk_grads_of_probs(probs, h, w_dt, tgt, weight, vocab_major)


def _chunk_grads_of_probs(probs, h, w_dt, tgt, weight, vocab_major):
    """`_chunk_grads` from the chunk's softmax probabilities [B,C,V] float32."""
    vocab = probs.shape[-1]
    onehot = jnp.arange(vocab, dtype=tgt.dtype)[None, None, :] == tgt[..., None]
    dlogits = (weight[..., None] * (onehot - probs)).astype(h.dtype)
    f32 = dict(preferred_element_type=jnp.float32)
    if vocab_major:
        dh = jnp.einsum("BCV,VD->BCD", dlogits, w_dt, **f32)
        dw = jnp.einsum("BCV,BCD->VD", dlogits, h, **f32)
    else:
        dh = jnp.einsum("BCV,DV->BCD", dlogits, w_dt, **f32)
        dw = jnp.einsum("BCD,BCV->DV", h, dlogits, **f32)
    return dh.astype(h.dtype), dw


def _head_logprobs_backward(chunk, vocab_major, keep_probs, res, g):
    hidden, w, targets, mask, lse, probs = res
    layout = _Layout.of(mask, chunk)
    hs, ts, ms, gs = (layout.split(x) for x in (hidden, targets, mask, g))

    def run(hs, ts, ms, gs, lse, *rest):
        *kept, w_dt = rest

        def body(dw, xs):
            h, tgt, m, g_c, lse_c, on, *p_c = xs

            def compute(dw):
                weight = jnp.where(m, g_c, 0.0)
                if keep_probs:
                    dh, dw_c = _chunk_grads_of_probs(p_c[0], h, w_dt, tgt, weight, vocab_major)
                else:  # recomputed: not held since the forward
                    logits = _chunk_logits(h, w_dt, vocab_major)
                    dh, dw_c = _chunk_grads(logits, lse_c, h, w_dt, tgt, weight, vocab_major)
                return dw + dw_c, dh

            return jax.lax.cond(on, compute, lambda dw: (dw, jnp.zeros_like(h)), dw)

        active = jnp.any(ms, axis=(1, 2))
        xs = (hs, ts, ms, gs, lse, active, *kept)
        return jax.lax.scan(body, jnp.zeros(w_dt.shape, jnp.float32), xs)

    w_dt = after(w, g).astype(hidden.dtype)
    batched = (hs, ts, ms, gs, lse) + ((probs,) if keep_probs else ())
    dw, dhs = _per_batch_shard(run, batched, (w_dt,), reduced=1, outputs=2)
    return layout.merge(dhs), dw.astype(w.dtype), None, None


_head_logprobs = jax.custom_vjp(
    lambda hidden, w, targets, mask, chunk, vocab_major, keep_probs: _head_logprobs_forward(
        hidden, w, targets, mask, chunk, vocab_major, False
    )[0],
    nondiff_argnums=(4, 5, 6),
)
_head_logprobs.defvjp(_head_logprobs_forward, _head_logprobs_backward)


def head_logprob_sum(
    hidden: Array, w: Array, targets: Array, mask: Array, chunk: int, vocab_major: bool = False
) -> Array:
    """`sum(head_logprobs(...))`, a float32 scalar (the SFT loss's numerator), with its gradients
    computed in the forward pass: the loss is linear in the log-probs, so each chunk's logits yield
    their gradient contribution at once and are dropped (no recomputation: the output projection
    costs what plain autodiff costs, with O(B x chunk x V) memory). Arguments as `head_logprobs`.
    """
    return _head_logprob_sum(hidden, w, targets, mask, chunk, vocab_major)


def _head_logprob_sum_forward(hidden, w, targets, mask, chunk, vocab_major):
    layout = _Layout.of(mask, chunk)
    hs, ts, ms = layout.split(hidden), layout.split(targets), layout.split(mask)

    def run(hs, ts, ms, w_dt):
        def body(carry, xs):
            h, tgt, m, on = xs

            def compute(carry):
                total, dw = carry
                logits = _chunk_logits(h, w_dt, vocab_major)
                lse = jax.nn.logsumexp(logits, axis=-1)
                picked = jnp.take_along_axis(logits, tgt[..., None], axis=-1, mode="clip")[..., 0]
                weight = m.astype(jnp.float32)
                dh, dw_c = _chunk_grads(logits, lse, h, w_dt, tgt, weight, vocab_major)
                total = total + jnp.sum(jnp.where(m, picked - lse, 0.0))
                return (total, dw + dw_c), dh

            return jax.lax.cond(on, compute, lambda carry: (carry, jnp.zeros_like(h)), carry)

        active = jnp.any(ms, axis=(1, 2))
        init = (jnp.zeros((), jnp.float32), jnp.zeros(w_dt.shape, jnp.float32))
        (total, dw), dhs = jax.lax.scan(body, init, (hs, ts, ms, active))
        return total, dw, dhs

    w_dt = w.astype(hidden.dtype)
    total, dw, dhs = _per_batch_shard(run, (hs, ts, ms), (w_dt,), reduced=2, outputs=3)
    return total, (layout.merge(dhs), dw, jnp.zeros((), w.dtype))


def _head_logprob_sum_backward(chunk, vocab_major, res, g):
    dh, dw, w_like = res
    return (g * dh).astype(dh.dtype), (g * dw).astype(w_like.dtype), None, None


_head_logprob_sum = jax.custom_vjp(
    lambda hidden, w, targets, mask, chunk, vocab_major: jnp.sum(
        _head_logprobs_forward(hidden, w, targets, mask, chunk, vocab_major, False)[0]
    ),
    nondiff_argnums=(4, 5),
)
_head_logprob_sum.defvjp(_head_logprob_sum_forward, _head_logprob_sum_backward)
