"""The hand-written backward passes of `psycho_jax.core.kernels` equal autodiff of the plain formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from psycho_jax.core import kernels
from psycho_jax.core.model import LlamaConfig, attention, rope_frequencies

RTOL, ATOL = 1e-5, 1e-5  # float32, values and gradients


def _close(got, want, rtol=RTOL, atol=ATOL):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        scale = float(jnp.max(jnp.abs(w))) or 1.0
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol * scale)


def _value_and_grads(fn, args, cotangent, argnums):
    loss = lambda *a: jnp.sum(fn(*a).astype(jnp.float32) * cotangent)
    return jax.jit(jax.value_and_grad(loss, argnums=argnums))(*args)


def _plain_mlp(x, wg, wu, wd):
    return (jax.nn.silu(x @ wg) * (x @ wu)) @ wd


def test_gated_mlp_matches_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
    ws = [jnp.asarray(rng.standard_normal(s) * 0.3, jnp.float32) for s in ((16, 24),) * 2]
    wd = jnp.asarray(rng.standard_normal((24, 16)) * 0.3, jnp.float32)
    ct = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
    args = (x, *ws, wd)
    got = _value_and_grads(kernels.gated_mlp, args, ct, (0, 1, 2, 3))
    want = _value_and_grads(_plain_mlp, args, ct, (0, 1, 2, 3))
    _close(got, want)


def _plain_rope(x, positions, inv_freq):
    angles = positions[:, :, None].astype(jnp.float32) * inv_freq[None, None, :]
    sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def test_rope_matches_autodiff_and_numpy():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 7, 3, 8)), jnp.float32)
    positions = jnp.asarray(rng.integers(0, 50, size=(2, 7)), jnp.int32)
    inv_freq = rope_frequencies(LlamaConfig.tiny(head_dim=8))
    ct = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    tables = kernels.rope_tables(positions, inv_freq)
    got = _value_and_grads(lambda x: kernels.rope(x, *tables), (x,), ct, 0)
    want = _value_and_grads(lambda x: _plain_rope(x, positions, inv_freq), (x,), ct, 0)
    _close(got, want)
    # A float64 NumPy rotation: pairs (i, i + H/2) rotate by position * inv_freq[i].
    x64, p64 = np.asarray(x, np.float64), np.asarray(positions, np.float64)
    ang = p64[:, :, None, None] * np.asarray(inv_freq, np.float64)
    x1, x2 = x64[..., :4], x64[..., 4:]
    ref = np.concatenate(
        [x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)], -1
    )
    np.testing.assert_allclose(np.asarray(kernels.rope(x, *tables)), ref, atol=1e-5)


def _masks(b, t, rng):
    causal = np.tril(np.ones((t, t), bool))
    pad = np.ones((b, t), bool)
    pad[0, :2] = False  # left padding in row 0
    segments = np.repeat(np.arange(2), t // 2 + 1)[:t][None].repeat(b, 0)  # two packed segments
    mask = causal[None] & pad[:, None, :] & (segments[:, :, None] == segments[:, None, :])
    mask |= np.eye(t, dtype=bool)[None]
    return jnp.asarray(mask)


@pytest.mark.parametrize("n,k", [(4, 4), (4, 2), (6, 1)])
def test_attention_matches_autodiff(n, k):
    rng = np.random.default_rng(2)
    b, t, h = 2, 9, 8
    q = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32)
    kk = jnp.asarray(rng.standard_normal((b, t, k, h)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((b, t, k, h)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32)
    mask = _masks(b, t, rng)
    args = (q, kk, v)
    got = _value_and_grads(lambda *a: kernels.attention(*a, mask), args, ct, (0, 1, 2))
    for impl in ("einsum", "xla"):
        want = _value_and_grads(
            lambda *a, impl=impl: attention(*a, mask, impl), args, ct, (0, 1, 2)
        )
        _close(got, want)


@pytest.mark.parametrize("blocks", [2, 4, 3])
def test_causal_attention_blocks_match_one_block(blocks):
    """Query blocks that skip the keys above the diagonal give the same values and gradients as
    the whole [T,T] attention under causal masks with padding and packed segments (3 does not
    divide T=16: the kernel falls back to one block)."""
    rng = np.random.default_rng(6)
    b, t, n, k, h = 2, 16, 4, 2, 8
    q = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32)
    kk, v = (jnp.asarray(rng.standard_normal((b, t, k, h)), jnp.float32) for _ in range(2))
    ct = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32)
    mask = _masks(b, t, rng)
    got = _value_and_grads(
        lambda *a: kernels.causal_attention(*a, mask, blocks), (q, kk, v), ct, (0, 1, 2)
    )
    want = _value_and_grads(lambda *a: kernels.attention(*a, mask), (q, kk, v), ct, (0, 1, 2))
    _close(got, want)


def test_attention_block_count_automatic_and_explicit():
    from psycho_jax.core.model import attention_block_count

    auto = LlamaConfig.tiny()
    assert auto.attention_blocks == 0  # the default is automatic
    lengths = (32, 255, 256, 300, 511, 512, 513, 768, 1024, 4096, 1 << 14)
    got = {t: attention_block_count(auto, t) for t in lengths}
    want = {32: 1, 255: 1, 256: 2, 300: 2, 511: 1, 512: 2, 513: 1, 768: 3, 1024: 4, 4096: 8}
    assert got == {**want, 1 << 14: 8}
    assert attention_block_count(LlamaConfig.tiny(attention_blocks=3), 512) == 3
    with pytest.raises(ValueError, match="attention_blocks"):
        LlamaConfig.tiny(attention_blocks=-1)


def test_materialized_is_the_identity_and_a_fusion_boundary():
    """`materialized` returns its input exactly (an all-False mask and zeros included, gradients
    passing through), and the Llama's attention masks stay single buffers in the compiled step:
    one [B,T,T] mask for the whole stack, and per layer its keys-first copy and that copy repeated
    per query head of a group for the backward pass, instead of mask arithmetic and 5-d broadcasts
    fused into every score fusion."""
    import re

    from flax import nnx

    from psycho_jax.core.model import Llama

    rng = np.random.default_rng(8)
    for x in (
        jnp.asarray(rng.random((2, 5, 5)) > 0.5),
        jnp.zeros((2, 5, 5), jnp.bool_),
        jnp.asarray(rng.standard_normal((3, 4)), jnp.float32).at[0].set(0.0),
        jnp.zeros((3,), jnp.float32),
    ):
        np.testing.assert_array_equal(np.asarray(jax.jit(kernels.materialized)(x)), np.asarray(x))
    w = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
    grad = jax.grad(lambda x: jnp.sum(kernels.materialized(x) * w))(jnp.ones((3, 4)))
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(w))

    cfg = LlamaConfig.tiny(attention="custom")
    model = Llama(cfg, rngs=nnx.Rngs(0))
    tokens = jnp.ones((2, 16), jnp.int32)
    step = jax.jit(nnx.grad(lambda m, t: jnp.sum(m(t)[0])))
    hlo = step.lower(model, tokens).compile().as_text()

    def buffers(shape):
        return re.findall(rf"= \(pred\[{shape}\]\{{[\d,]*\}}\) conditional\(", hlo)

    assert len(buffers("2,16,16")) == 1 + cfg.n_layers  # [B,T,S] once, [B,S,T] per layer
    group = cfg.n_heads // cfg.n_kv_heads
    assert len(buffers(f"2,16,{16 * group}")) == cfg.n_layers  # [B,S,G*T] per layer (1 block)


def test_llama_attention_blocks_same_logits_and_grads():
    from flax import nnx

    from psycho_jax.core.model import Llama

    tokens = jnp.asarray(np.random.default_rng(7).integers(3, 256, (2, 32)), jnp.int32)
    mask = jnp.ones((2, 32), jnp.int32).at[0, :3].set(0)  # left padding

    def run(blocks):
        cfg = LlamaConfig.tiny(attention="custom", attention_blocks=blocks)
        graphdef, params = nnx.split(Llama(cfg, rngs=nnx.Rngs(0)))

        def loss(params):
            logits = nnx.merge(graphdef, params)(tokens, attention_mask=mask)[0]
            return jnp.sum(jnp.where(mask[..., None] > 0, jnp.tanh(logits), 0.0)), logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    _close(run(4), run(1))


def test_bfloat16_kernels_stay_close_to_float32():
    rng = np.random.default_rng(3)
    b, t, n, k, h = 2, 16, 4, 2, 16
    q, kk, v = (jnp.asarray(rng.standard_normal((b, t, m, h)), jnp.float32) for m in (n, k, k))
    mask = _masks(b, t, rng)
    f32 = kernels.attention(q, kk, v, mask)
    bf16 = kernels.attention(*(a.astype(jnp.bfloat16) for a in (q, kk, v)), mask)
    assert bf16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(bf16, np.float32), np.asarray(f32), atol=5e-2)
    grads = jax.grad(
        lambda a: jnp.sum(kernels.attention(a, kk.astype(a.dtype), v.astype(a.dtype), mask))
    )(q.astype(jnp.bfloat16))
    assert grads.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grads)))
    x = jnp.asarray(rng.standard_normal((2, 4, 16)), jnp.bfloat16)
    w = [
        jnp.asarray(rng.standard_normal(s) * 0.2, jnp.float32)
        for s in ((16, 32), (16, 32), (32, 16))
    ]
    g = jax.grad(lambda *a: jnp.sum(kernels.gated_mlp(*a).astype(jnp.float32)), argnums=(0, 1))(
        x, *w
    )
    assert g[0].dtype == jnp.bfloat16 and g[1].dtype == jnp.float32  # weight grads in param dtype
    np.testing.assert_allclose(
        np.asarray(kernels.gated_mlp(x, *w), np.float32),
        np.asarray(_plain_mlp(x.astype(jnp.float32), *w)),
        atol=0.1,
    )


PROJECTIONS = [  # the model's projections: q (and k/v), o, gate/up, down
    ("BTD,DNH->BTNH", (2, 5, 16), (16, 4, 8)),
    ("BTNH,NHD->BTD", (2, 5, 4, 8), (4, 8, 16)),
    ("BTD,DF->BTF", (2, 5, 16), (16, 24)),
    ("BTF,FD->BTD", (2, 5, 24), (24, 16)),
]


@pytest.mark.parametrize("eq,x_shape,w_shape", PROJECTIONS)
def test_project_matches_einsum_autodiff(eq, x_shape, w_shape):
    rng = np.random.default_rng(4)
    x, w = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x_shape, w_shape))
    ct = jnp.asarray(rng.standard_normal(jnp.einsum(eq, x, w).shape), jnp.float32)
    got = _value_and_grads(lambda x, w: kernels.project(eq, x, w, None), (x, w), ct, (0, 1))
    want = _value_and_grads(lambda x, w: jnp.einsum(eq, x, w), (x, w), ct, (0, 1))
    _close(got, want)
    # bfloat16: float32 results rounded once, gradients in the operands' dtype, close to float32.
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    y = kernels.project(eq, xb, wb, None)
    exact = jnp.einsum(eq, xb, wb, preferred_element_type=jnp.float32).astype(jnp.bfloat16)
    assert y.dtype == jnp.bfloat16 and bool(jnp.all(y == exact))
    gx, gw = jax.grad(
        lambda x, w: jnp.sum(kernels.project(eq, x, w, None).astype(jnp.float32) * ct), (0, 1)
    )(xb, wb)
    assert gx.dtype == gw.dtype == jnp.bfloat16
    _close((gx.astype(jnp.float32), gw.astype(jnp.float32)), want[1], rtol=0.05, atol=0.03)


def _upcast_products(fn, *args) -> list[str]:
    """The compiled unbatched matrix products of `fn` that XLA runs on float32 operands."""
    import re

    hlo = jax.jit(fn).lower(*args).compile().as_text()
    dtypes = dict(re.findall(r"%([\w.\-]+) = (\w+)\[", hlo))
    dots = re.findall(r"= \w+\[[\d,]*\]\S* dot\(%([\w.\-]+), %([\w.\-]+)\)(.*)", hlo)
    return [
        f"{a} x {b}"
        for a, b, rest in dots
        if "lhs_batch_dims" not in rest and "f32" in (dtypes[a], dtypes[b])
    ]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the float32-result path is CPU's")
def test_bfloat16_training_products_stay_bfloat16_on_cpu():
    """XLA:CPU computes a bf16 x bf16 -> bf16 product by converting both operands to float32 (the
    float32 rate, plus the conversions) and a bf16 x bf16 -> f32 one in bfloat16 (about twice the
    float32 rate): every projection of a bfloat16 model, forward and backward, must be the latter."""
    from flax import nnx

    from psycho_jax.core.model import Llama

    cfg = LlamaConfig.tiny(dtype="bfloat16", attention="custom")
    model = Llama(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tokens = jnp.asarray(np.random.default_rng(5).integers(3, cfg.vocab_size, (2, 16)), jnp.int32)

    def loss(params):
        logits = nnx.merge(graphdef, params)(tokens)[0]
        return jnp.mean(logits.astype(jnp.float32) ** 2)

    assert _upcast_products(jax.grad(loss), params) == []


def test_auto_attention_resolves_per_backend_and_cache():
    from psycho_jax.core.model import resolve_attention

    cpu = jax.default_backend() == "cpu"
    assert resolve_attention("auto", cached=False) == ("custom" if cpu else "xla")
    assert resolve_attention("auto", cached=True) == "xla"
    assert resolve_attention("einsum", cached=False) == "einsum"


def test_attention_backward_does_not_hold_probabilities_per_layer():
    """A stack of attention layers under `jax.grad`: the custom kernel keeps each layer's softmax
    normaliser, not its [B,N,T,S] probabilities or scores, for the backward pass. The compiled
    temporaries grow per extra layer by the layer's q/k/v/output (here 0.2 x one probability array);
    plain autodiff grows by 2.2 x (scores and probabilities), and a kernel that kept the
    probabilities by 1.2 x."""
    b, t, n, kv, h = 2, 256, 4, 2, 16
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32)
    mask = jnp.tril(jnp.ones((t, t), bool))[None].repeat(b, 0)

    def temp_bytes(impl, layers):
        def loss(x):
            for _ in range(layers):
                kvx = x[:, :, :kv]
                x = jnp.tanh(attention(x, kvx, kvx * 0.5, mask, impl))
            return jnp.sum(x)

        return jax.jit(jax.grad(loss)).lower(x).compile().memory_analysis().temp_size_in_bytes

    probs_bytes = b * n * t * t * 4
    per_layer = {
        impl: (temp_bytes(impl, 6) - temp_bytes(impl, 2)) / 4 / probs_bytes
        for impl in ("custom", "einsum")
    }
    assert per_layer["custom"] < 0.5, per_layer
    assert per_layer["einsum"] > 1.0, per_layer  # the yardstick: autodiff does hold them


@pytest.mark.parametrize("chunk", [1, 4, 64])
@pytest.mark.parametrize("vocab_major", [False, True])
@pytest.mark.parametrize("keep_probs", [False, True])
def test_head_logprobs_matches_log_softmax(chunk, vocab_major, keep_probs):
    """Chunked output projection + log-probs: values and gradients equal autodiff of the full
    log-softmax, with rows of no targets, targets anywhere in a row, and out-of-vocab ids (padding)
    at masked positions; with the chunks' logits recomputed in the backward pass or their
    probabilities kept from the forward pass."""
    rng = np.random.default_rng(4)
    b, t, d, v = 3, 11, 16, 37
    h = jnp.asarray(rng.standard_normal((b, t, d)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((d, v)) * 0.3, jnp.float32)
    targets = jnp.asarray(rng.integers(0, v, (b, t)), jnp.int32)
    mask = jnp.asarray(rng.random((b, t)) < 0.6).at[2].set(False)
    targets = jnp.where(mask, targets, v + 5)  # ids no row may read where masked
    ct = jnp.asarray(rng.standard_normal((b, t)), jnp.float32)
    w_in = w.T if vocab_major else w

    def plain(h, w_in):
        logp = jax.nn.log_softmax(h @ (w_in.T if vocab_major else w_in), axis=-1)
        picked = jnp.take_along_axis(logp, jnp.minimum(targets, v - 1)[..., None], -1)[..., 0]
        return jnp.where(mask, picked, 0.0)

    def chunked(h, w_in):
        return kernels.head_logprobs(h, w_in, targets, mask, chunk, vocab_major, keep_probs)

    got = _value_and_grads(chunked, (h, w_in), ct, (0, 1))
    want = _value_and_grads(plain, (h, w_in), ct, (0, 1))
    _close(got, want)
    assert np.all(np.asarray(chunked(h, w_in))[2] == 0.0)


def test_head_logprobs_skips_chunks_without_targets():
    """Targets move to the front of each row and chunks without a target are never computed: NaN
    hidden states at every non-target position leave values and gradients finite when those
    positions fill whole chunks (chunk 16, targets the last quarter of 64 positions); a single
    chunk of all 64 positions does read them (the yardstick: 0 x NaN in the weight gradient)."""
    b, t, d, v = 2, 64, 32, 512
    rng = np.random.default_rng(5)
    mask = jnp.zeros((b, t), bool).at[:, -t // 4 :].set(True)
    h = jnp.asarray(rng.standard_normal((b, t, d)), jnp.float32)
    h = jnp.where(mask[..., None], h, jnp.nan)
    w = jnp.asarray(rng.standard_normal((d, v)) * 0.1, jnp.float32)
    targets = jnp.asarray(rng.integers(0, v, (b, t)), jnp.int32)

    def run(chunk, keep=False):
        loss = lambda h, w: jnp.sum(kernels.head_logprobs(h, w, targets, mask, chunk, False, keep))
        return jax.jit(jax.value_and_grad(loss, (0, 1)))(h, w)

    for keep in (False, True):
        value, (dh, dw) = run(16, keep)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(dw)))
        assert np.all(np.asarray(dh)[:, : -t // 4] == 0.0)
        assert np.all(np.isfinite(np.asarray(dh)))
    _, (_, dw_one_chunk) = run(64)
    assert not np.all(np.isfinite(np.asarray(dw_one_chunk)))


def test_head_logprobs_kept_probabilities_save_the_recomputed_matmul():
    """`keep_probs` removes the backward pass's recomputation of each chunk's logits: the gradient
    holds 3 matmuls (forward logits, dh, dw) instead of 4; `Llama` keeps them while the batch's
    [B,T,V] float32 probabilities fit in `head_keep_mib` (and recomputes with 0)."""
    from flax import nnx

    from psycho_jax.core.model import Llama

    b, t, d, v = 2, 8, 16, 64
    h, w = jnp.ones((b, t, d)), jnp.ones((d, v))
    targets, mask = jnp.zeros((b, t), jnp.int32), jnp.ones((b, t), bool)

    def matmuls(fn, *args):
        return str(jax.make_jaxpr(jax.grad(fn))(*args)).count("dot_general")

    for keep, want in ((False, 4), (True, 3)):
        loss = lambda h, keep=keep: jnp.sum(
            kernels.head_logprobs(h, w, targets, mask, 4, False, keep)
        )
        assert matmuls(loss, h) == want, keep
    tokens = jnp.ones((b, t), jnp.int32)
    counts = {}
    for mib in (0, 1):  # 2 x 8 x 64 float32 probabilities: 4 KiB
        cfg = LlamaConfig.tiny(vocab_size=v, head_chunk=4, head_keep_mib=mib)
        graphdef, params = nnx.split(Llama(cfg, rngs=nnx.Rngs(0)))
        loss = lambda p, g=graphdef: jnp.sum(nnx.merge(g, p).target_logprobs(tokens, mask))
        counts[mib] = matmuls(loss, params)
    assert counts[0] == counts[1] + 1, counts


def test_token_logprobs_matches_torch_log_softmax_gather():
    torch = pytest.importorskip("torch")
    r = np.random.RandomState(1)
    v, t = 13, 9
    logits = (3 * r.randn(3, 2, t, v)).astype(np.float32)  # a [B, 2, T, V] preference stack
    tokens = r.randint(0, v, (3, 2, t))
    ours = kernels.token_logprobs(jnp.asarray(logits), jnp.asarray(tokens))
    lsm = torch.log_softmax(torch.from_numpy(logits), -1)
    ref = torch.gather(lsm[..., :-1, :], -1, torch.from_numpy(tokens[..., 1:, None])).squeeze(-1)
    assert ours.shape == (3, 2, t) and ours.dtype == jnp.float32
    np.testing.assert_array_equal(ours[..., 0], 0.0)
    np.testing.assert_allclose(ours[..., 1:], ref.numpy(), rtol=1e-5, atol=1e-5)
    # bfloat16 logits are scored in float32.
    half = kernels.token_logprobs(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(tokens))
    assert half.dtype == jnp.float32
    np.testing.assert_allclose(jax.jit(kernels.token_logprobs)(logits, tokens), ours, rtol=1e-6)


@pytest.mark.parametrize("tied", [False, True])
def test_llama_target_logprobs_chunked_equals_full_logits(tied):
    """`Llama.target_logprobs` and `target_logprob_sum` with a chunked head (the training default)
    equal the full-logits path (`head_chunk=0`, `kernels.token_logprobs`), values and parameter
    gradients, on a padded batch whose loss mask covers each reply."""
    from flax import nnx

    from psycho_jax.core.model import Llama

    rng = np.random.default_rng(6)
    b, t = 3, 12
    tokens = jnp.asarray(rng.integers(3, 64, (b, t)), jnp.int32)
    attention_mask = jnp.ones((b, t), jnp.int32).at[1, :3].set(0)  # left padding in row 1
    loss_mask = jnp.zeros((b, t), jnp.int32).at[:, 7:].set(1).at[2, 4:].set(1)
    ct = jnp.asarray(rng.standard_normal((b, t)), jnp.float32)
    results = []
    for chunk, keep_mib in ((0, 0), (3, 0), (3, 512)):
        cfg = LlamaConfig.tiny(
            vocab_size=64, tie_embeddings=tied, head_chunk=chunk, head_keep_mib=keep_mib
        )
        model = Llama(cfg, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(model)

        def loss(params, graphdef=graphdef):
            m = nnx.merge(graphdef, params)
            logp = m.target_logprobs(tokens, loss_mask, attention_mask=attention_mask)
            return jnp.sum(logp * ct), logp

        def total(params, graphdef=graphdef):
            m = nnx.merge(graphdef, params)
            return m.target_logprob_sum(tokens, loss_mask, attention_mask=attention_mask)

        (value, logp), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results.append((value, logp, grads, jax.jit(jax.value_and_grad(total))(params)))
    (v0, lp0, g0, s0), *chunked = results
    for v1, lp1, g1, s1 in chunked:  # logits recomputed in the backward pass, then kept
        assert np.all(np.asarray(lp1)[np.asarray(loss_mask) == 0] == 0.0)
        assert np.all(np.asarray(lp1)[:, 0] == 0.0)
        _close((v1, lp1), (v0, lp0))
        _close(jax.tree.leaves(g1), jax.tree.leaves(g0), rtol=1e-4, atol=1e-5)
        _close(jax.tree.leaves(s1), jax.tree.leaves(s0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(s0[0]), float(jnp.sum(lp0)), rtol=1e-6)


@pytest.mark.parametrize("vocab_major", [False, True])
def test_head_logprob_sum_matches_log_softmax(vocab_major):
    """The sum with gradients computed in the forward pass equals autodiff of the full
    log-softmax sum (value, hidden and weight gradients, scaled by an upstream cotangent)."""
    rng = np.random.default_rng(7)
    b, t, d, v = 3, 11, 16, 37
    h = jnp.asarray(rng.standard_normal((b, t, d)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((d, v)) * 0.3, jnp.float32)
    w_in = w.T if vocab_major else w
    targets = jnp.asarray(rng.integers(0, v, (b, t)), jnp.int32)
    mask = jnp.asarray(rng.random((b, t)) < 0.6).at[2].set(False)

    def plain(h, w_in):
        logp = jax.nn.log_softmax(h @ (w_in.T if vocab_major else w_in), axis=-1)
        picked = jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
        return -2.5 * jnp.sum(jnp.where(mask, picked, 0.0))

    def fused(h, w_in):
        return -2.5 * kernels.head_logprob_sum(h, w_in, targets, mask, 4, vocab_major)

    got = jax.jit(jax.value_and_grad(fused, (0, 1)))(h, w_in)
    want = jax.jit(jax.value_and_grad(plain, (0, 1)))(h, w_in)
    _close(got, want)
    np.testing.assert_allclose(float(jax.jit(fused)(h, w_in)), float(want[0]), rtol=1e-6)


def _plain_rms_norm(x, weight, eps):
    x = x.astype(jnp.float32)
    return (
        x
        * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
        * weight[None, None]
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_rms_norm_matches_autodiff_and_numpy(dtype):
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((2, 5, 16)) * 3.0, dtype)
    weight = jnp.asarray(1.0 + 0.3 * rng.standard_normal(16), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
    got = _value_and_grads(lambda x, w: kernels.rms_norm(x, w, 1e-5), (x, weight), ct, (0, 1))
    want = _value_and_grads(lambda x, w: _plain_rms_norm(x, w, 1e-5), (x, weight), ct, (0, 1))
    tol = dict(rtol=RTOL, atol=ATOL) if dtype == jnp.float32 else dict(rtol=0.02, atol=0.01)
    _close(got, want, **tol)
    assert got[1][0].dtype == dtype and got[1][1].dtype == jnp.float32
    # The forward against float64 NumPy.
    x64 = np.asarray(x, np.float64)
    ref = x64 / np.sqrt(np.mean(x64**2, -1, keepdims=True) + 1e-5) * np.asarray(weight, np.float64)
    np.testing.assert_allclose(np.asarray(kernels.rms_norm(x, weight, 1e-5)), ref, rtol=1e-5)


def test_rms_norm_keeps_input_and_reciprocal_rms_only(capsys):
    """The backward pass's residuals: x, the [..., 1] reciprocal RMS and the weight, not the
    [..., D] square, normalised value and output that autodiff of the plain form keeps."""
    import jax.ad_checkpoint

    def residuals(fn):
        jax.ad_checkpoint.print_saved_residuals(lambda x, w: fn(x, w, 1e-5).sum(), x, w)
        return sorted(line.split()[0] for line in capsys.readouterr().out.splitlines())

    x, w = jnp.ones((2, 8, 16)), jnp.ones(16)
    assert residuals(kernels.rms_norm) == ["f32[16]", "f32[2,8,16]", "f32[2,8,1]"]
    assert residuals(_plain_rms_norm).count("f32[2,8,16]") > 1


def test_fsdp_backward_gathers_weights_again_instead_of_holding_them(monkeypatch):
    """Under FSDP (weights sharded over 2 devices) the backward passes of `kernels.project` and
    `kernels.gated_mlp` gather each weight again (`kernels.after`) rather than holding every
    layer's gathered weights from the forward pass: the compiled step's temporary memory is
    smaller than with `after` replaced by the identity (the measured gap: ~23% of the weights'
    bytes; on the medium benchmark SFT step 129 MiB per device, bench/RESULTS.md)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((2,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    layers, d, f = 12, 256, 512
    rng = np.random.default_rng(8)
    shard_w = NamedSharding(mesh, P(None, "fsdp", None))
    shapes = {"proj": (layers, d, d), "gate": (layers, d, f), "up": (layers, d, f)}
    shapes["down"] = (layers, f, d)
    ws = {
        name: jax.device_put(jnp.asarray(rng.standard_normal(s) * 0.02, jnp.float32), shard_w)
        for name, s in shapes.items()
    }
    x = jax.device_put(
        jnp.asarray(rng.standard_normal((4, 32, d)), jnp.float32), NamedSharding(mesh, P("fsdp"))
    )

    def loss(ws, x):
        for i in range(layers):
            x = x + kernels.project("BTD,DE->BTE", x, ws["proj"][i])
            x = x + kernels.gated_mlp(x, ws["gate"][i], ws["up"][i], ws["down"][i])
        return jnp.sum(x**2)

    def temp_bytes():
        options = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
        step = jax.jit(jax.grad(loss), compiler_options=options)
        return step.lower(ws, x).compile().memory_analysis().temp_size_in_bytes

    weights = sum(w.nbytes for w in ws.values())
    regathered = temp_bytes()
    monkeypatch.setattr(kernels, "after", lambda w, g: w)
    held = temp_bytes()
    assert regathered < held - 0.15 * weights, (regathered, held, weights)


def test_release_compiler_heap_listens_to_the_compile_event():
    """The trim runs on JAX's backend-compile event: the event must still be emitted under that
    name (a rename would silently turn the trimming off)."""
    from psycho_jax.train import step as step_lib

    seen = []
    jax.monitoring.register_event_duration_secs_listener(lambda name, *_a, **_k: seen.append(name))
    assert step_lib.release_compiler_heap() is True  # Linux/glibc
    assert step_lib.release_compiler_heap() is True  # idempotent: registered once
    jax.jit(lambda a: a * 3.0 + 1.0)(jnp.arange(11.0)).block_until_ready()
    assert step_lib._COMPILE_EVENT in seen
