"""The Flax Llama on its own: shapes, causality, KV cache, packing, variants, meshes, presets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from psycho_jax.core import sharding
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel, init_cache, last_token_index

TOL = 1e-5  # float32, same computation reordered


def _tokens(b, t, vocab, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randint(0, vocab, (b, t)), jnp.int32)


@pytest.fixture(scope="module")
def model():
    return Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0))


def _with(model, **changes):
    """The same weights under a config with some fields changed."""
    cfg = dataclasses.replace(model.config, **changes)
    graphdef, state = nnx.split(model)
    new = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
    new_graphdef, _ = nnx.split(new)
    del graphdef
    return nnx.merge(new_graphdef, state)


def test_shapes_and_finite_with_and_without_jit(model):
    toks = _tokens(2, 7, model.config.vocab_size)
    logits, cache = model(toks)
    assert logits.shape == (2, 7, model.config.vocab_size) and logits.dtype == jnp.float32
    assert cache is None and bool(jnp.isfinite(logits).all())
    jitted, _ = nnx.jit(lambda m, t: m(t))(model, toks)
    np.testing.assert_allclose(jitted, logits, atol=TOL)


def test_causality(model):
    toks = _tokens(1, 12, model.config.vocab_size)
    changed = toks.at[0, 6].set((toks[0, 6] + 1) % model.config.vocab_size)
    a, _ = model(toks)
    b, _ = model(changed)
    np.testing.assert_array_equal(a[:, :6], b[:, :6])
    assert not np.allclose(a[:, 6:], b[:, 6:])


def test_padding_left_and_right_matches_unpadded(model):
    v = model.config.vocab_size
    seq = _tokens(1, 6, v, seed=1)
    ref, _ = model(seq)
    pad = jnp.zeros((1, 3), jnp.int32)
    right, _ = model(
        jnp.concatenate([seq, pad], 1), attention_mask=jnp.asarray([[1] * 6 + [0] * 3])
    )
    left, _ = model(jnp.concatenate([pad, seq], 1), attention_mask=jnp.asarray([[0] * 3 + [1] * 6]))
    np.testing.assert_allclose(right[:, :6], ref, atol=TOL)
    np.testing.assert_allclose(left[:, 3:], ref, atol=TOL)
    assert bool(jnp.isfinite(left).all())


@pytest.mark.parametrize("scan", [False, True])
def test_cached_decoding_equals_full_forward(model, scan):
    m = _with(model, scan_layers=scan)
    v = m.config.vocab_size
    toks = _tokens(2, 10, v, seed=2)
    mask = jnp.asarray([[1] * 10, [0, 0, 0] + [1] * 7])  # second row left-padded
    full, _ = m(toks, attention_mask=mask)
    cache = init_cache(m.config, 2, 16)
    step = nnx.jit(lambda m, t, a, c: m(t, attention_mask=a, cache=c))
    logits, cache = step(m, toks[:, :5], mask[:, :5], cache)  # prefill
    outs = [logits]
    for i in range(5, 10):  # token by token
        logits, cache = step(m, toks[:, i : i + 1], mask[:, i : i + 1], cache)
        outs.append(logits)
    cached = jnp.concatenate(outs, axis=1)
    assert int(cache["end_index"]) == 10
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(cached)[real], np.asarray(full)[real], atol=1e-4)


def test_packed_segments_equal_separate_runs(model):
    v = model.config.vocab_size
    a, b = _tokens(1, 5, v, seed=3), _tokens(1, 7, v, seed=4)
    packed = jnp.concatenate([a, b, jnp.zeros((1, 4), jnp.int32)], axis=1)
    seg = jnp.asarray([[1] * 5 + [2] * 7 + [0] * 4])
    mask = jnp.asarray([[1] * 12 + [0] * 4])
    out, _ = model(packed, segment_ids=seg, attention_mask=mask)
    ref_a, _ = model(a)
    ref_b, _ = model(b)
    np.testing.assert_allclose(out[:, :5], ref_a, atol=TOL)
    np.testing.assert_allclose(out[:, 5:12], ref_b, atol=TOL)
    # Explicit per-segment positions give the same as the derived ones.
    pos = jnp.asarray([list(range(5)) + list(range(7)) + [0] * 4])
    out2, _ = model(packed, segment_ids=seg, attention_mask=mask, positions=pos)
    np.testing.assert_allclose(out2, out, atol=TOL)


@pytest.mark.parametrize("scan", [False, True])
def test_read_index_skips_the_last_layers_other_positions_exactly(model, scan):
    """`read_index` (the reward model's path) gives the full pass's hidden states at those rows,
    and the same gradients, with padding and packed segments."""
    m = _with(model, scan_layers=scan)
    v = m.config.vocab_size
    toks = _tokens(2, 12, v, seed=8)
    seg = jnp.asarray([[1] * 5 + [2] * 5 + [0] * 2, [1] * 9 + [0] * 3])
    mask = (seg > 0).astype(jnp.int32)
    read = jnp.asarray([[4, 9], [8, 0]])

    def full(mdl):
        hidden, _ = mdl.model(toks, attention_mask=mask, segment_ids=seg)
        return jnp.take_along_axis(hidden, read[:, :, None], axis=1)

    def pruned(mdl):
        return mdl.model(toks, attention_mask=mask, segment_ids=seg, read_index=read)[0]

    assert pruned(m).shape == (2, 2, m.config.dim)
    np.testing.assert_allclose(pruned(m), full(m), atol=TOL)
    loss = lambda f: nnx.jit(nnx.grad(lambda mdl: jnp.sum(jnp.sin(f(mdl)))))
    for g, r in zip(
        jax.tree.leaves(nnx.state(loss(pruned)(m))), jax.tree.leaves(nnx.state(loss(full)(m)))
    ):
        np.testing.assert_allclose(g, r, atol=TOL)
    with pytest.raises(ValueError, match="read_index"):
        m.model(toks, cache=m.init_cache(2, 16), read_index=read)


@pytest.mark.parametrize(
    "changes",
    [
        dict(attention="einsum"),
        dict(remat="full"),
        dict(remat="dots"),
        dict(remat="attention"),
        dict(scan_layers=True),
        dict(scan_layers=True, remat="attention", attention="xla"),
        dict(scan_layers=True, remat="dots", attention="einsum"),
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_variants_equal_plain_model_and_gradients(model, changes):
    toks = _tokens(2, 9, model.config.vocab_size, seed=5)
    mask = jnp.asarray([[1] * 9, [0, 0] + [1] * 7])
    variant = _with(model, **changes)

    def loss(m):
        logits, _ = m(toks, attention_mask=mask)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0] * mask)

    ref_val, ref_grad = nnx.jit(nnx.value_and_grad(loss))(model)
    val, grad = nnx.jit(nnx.value_and_grad(loss))(variant)
    np.testing.assert_allclose(val, ref_val, atol=TOL)
    for g, r in zip(jax.tree.leaves(nnx.state(grad)), jax.tree.leaves(nnx.state(ref_grad))):
        np.testing.assert_allclose(g, r, atol=TOL)


def test_bfloat16_compute_keeps_float32_logits(model):
    m = _with(model, dtype="bfloat16")
    toks = _tokens(2, 8, m.config.vocab_size)
    logits, _ = m(toks)
    ref, _ = model(toks)
    assert logits.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(logits - ref))) < 0.05  # bf16 rounding of activations


MESHES = [(1, 1, 8), (8, 1, 1), (2, 2, 2), (1, 8, 1)]


@pytest.mark.parametrize("shape", MESHES, ids=str)
def test_sharded_model_equals_one_device(model, shape):
    mesh = sharding.make_mesh(shape)
    sharded = sharding.init_sharded(lambda: Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0)), mesh)
    toks = np.asarray(_tokens(8, 12, model.config.vocab_size, seed=6))
    mask = np.ones_like(toks)
    mask[3, :4] = 0
    ref, _ = model(jnp.asarray(toks), attention_mask=jnp.asarray(mask))

    @nnx.jit
    def fwd(m, t, a):
        return m(t, attention_mask=a)[0]

    with jax.set_mesh(mesh):
        out = fwd(sharded, *sharding.shard_batch((toks, mask), mesh))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=TOL)
    if shape[1] * shape[2] > 1:
        assert sharding.sharded_fraction(sharded) > 0.8


def test_reward_model_reads_last_real_token():
    cfg = LlamaConfig.tiny()
    rm = RewardModel(cfg, rngs=nnx.Rngs(1))
    toks = _tokens(1, 6, cfg.vocab_size, seed=7)
    ref = rm(toks)
    pad = jnp.zeros((1, 3), jnp.int32)
    right = rm(jnp.concatenate([toks, pad], 1), attention_mask=jnp.asarray([[1] * 6 + [0] * 3]))
    left = rm(jnp.concatenate([pad, toks], 1), attention_mask=jnp.asarray([[0] * 3 + [1] * 6]))
    assert ref.shape == (1, 1)
    np.testing.assert_allclose(right, ref, atol=TOL)
    np.testing.assert_allclose(left, ref, atol=TOL)
    np.testing.assert_array_equal(
        last_token_index(jnp.asarray([[1, 1, 0], [0, 1, 1], [1, 1, 1]])), [1, 2, 2]
    )


@pytest.mark.parametrize(
    "preset,expected",
    [
        ("llama3_1b", 1_235_814_400),
        ("llama3_3b", 3_212_749_824),
        ("llama3_8b", 8_030_261_248),
        ("llama3_70b", 70_553_706_496),
    ],
)
def test_presets_param_count_without_allocating(preset, expected):
    cfg = LlamaConfig.preset(preset)
    abstract = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    assert sum(x.size for x in leaves) == expected == cfg.num_params


def test_8b_shards_over_fsdp_mesh_without_allocating():
    cfg = LlamaConfig.llama3_8b()
    abstract = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
    mesh = sharding.make_mesh((1, 4, 2))
    shardings = sharding.state_shardings(nnx.state(abstract), mesh)
    per_device = sum(
        s.shard_shape(x.shape)[0] * np.prod(s.shard_shape(x.shape)[1:]) * 4
        for x, s in zip(jax.tree.leaves(nnx.state(abstract)), jax.tree.leaves(shardings))
    )
    total = cfg.num_params * 4
    assert per_device < total / 8 * 1.01  # every large tensor splits 8 ways


def test_tiny_preset_is_tiny():
    cfg = LlamaConfig.tiny()
    assert 10_000 < cfg.num_params < 100_000 and cfg.n_layers >= 2


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n_heads=6, n_kv_heads=4), "multiple of n_kv_heads"),
        (dict(attention="flash"), "valid values are 'auto', 'xla', 'custom', 'einsum'"),
        (dict(remat="some"), "'none', 'full', 'dots'"),
        (dict(dim=0), "dim=0 must be positive"),
        (dict(dtype="int8"), "dtype='int8'"),
    ],
)
def test_bad_config_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig.tiny(**kwargs)
    with pytest.raises(ValueError, match="valid: tiny"):
        LlamaConfig.preset("llama4")


def test_cache_rejects_segments(model):
    cache = init_cache(model.config, 1, 8)
    with pytest.raises(ValueError, match="segment_ids"):
        model(_tokens(1, 2, 10), segment_ids=jnp.ones((1, 2), jnp.int32), cache=cache)
