"""Parity with transformers' PyTorch Llama, checkpoint round trips, and bad checkpoints."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from psycho_jax.core import hf, sharding  # noqa: E402
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel  # noqa: E402

# float32 on both sides: differences are summation order only. Never loosen this to pass.
ATOL = 1e-4

LLAMA3_ROPE = dict(
    rope_type="llama3",
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=32,
)
SHAPES = {
    "mha": dict(num_attention_heads=4, num_key_value_heads=4),
    "gqa": dict(num_attention_heads=8, num_key_value_heads=2),
    "tied": dict(tie_word_embeddings=True),
    "llama3_rope": dict(rope_scaling=LLAMA3_ROPE, rope_theta=500000.0),
    "odd_vocab": dict(vocab_size=1009, hidden_size=48, head_dim=12),
}


def _hf_config(**kw):
    base = dict(
        vocab_size=311,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=0,
    )
    return transformers.LlamaConfig(**{**base, **kw})


def _random_init(module, seed):
    # transformers initialises norms to 1; random norms catch a swapped or missing norm weight.
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * (0.2 if "norm" in name else 0.05) + ("norm" in name))
    return module.eval()


def _batch(vocab, seed=0):
    rng = np.random.RandomState(seed)
    toks = rng.randint(1, vocab, (3, 19))
    mask = np.ones_like(toks)
    mask[1, :6] = 0  # left padded
    mask[2, 13:] = 0  # right padded
    return toks, mask


def _torch_logits(tm, toks, mask):
    with torch.no_grad():
        return tm(torch.tensor(toks), attention_mask=torch.tensor(mask)).logits.float().numpy()


@pytest.mark.parametrize("name", list(SHAPES))
def test_causal_lm_logits_match_transformers(tmp_path, name):
    tm = _random_init(transformers.LlamaForCausalLM(_hf_config(**SHAPES[name])), seed=1)
    tm.save_pretrained(tmp_path)
    model = hf.load_llama(tmp_path)
    assert isinstance(model, Llama)
    toks, mask = _batch(tm.config.vocab_size)
    ref = _torch_logits(tm, toks, mask)
    out, _ = model(jnp.asarray(toks), attention_mask=jnp.asarray(mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(out)[real], ref[real], atol=ATOL, rtol=0)


def test_reward_model_matches_sequence_classification(tmp_path):
    tm = _random_init(transformers.LlamaForSequenceClassification(_hf_config(num_labels=1)), seed=2)
    tm.save_pretrained(tmp_path)
    model = hf.load_llama(tmp_path)
    assert isinstance(model, RewardModel)
    toks, mask = _batch(tm.config.vocab_size, seed=3)
    toks = np.where(mask == 1, toks, 0)  # HF finds the last token by pad_token_id
    mask[1] = 1  # HF's classifier reads the rightmost non-pad token: right padding only
    toks[1] = np.random.RandomState(4).randint(1, tm.config.vocab_size, toks.shape[1])
    with torch.no_grad():
        ref = tm(torch.tensor(toks), attention_mask=torch.tensor(mask)).logits.numpy()
    out = model(jnp.asarray(toks), attention_mask=jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(out), ref, atol=ATOL, rtol=0)


def test_save_then_transformers_load_gives_identical_logits(tmp_path):
    cfg = LlamaConfig.tiny(
        vocab_size=257, rope_theta=500000.0, tie_embeddings=False, rms_norm_eps=1e-5
    ).replace(rope_scaling=hf.RopeScaling(factor=8.0, original_max_position_embeddings=32))
    model = Llama(cfg, rngs=nnx.Rngs(3))
    hf.save_llama(model, tmp_path / "out")
    tm = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    toks, mask = _batch(cfg.vocab_size, seed=5)
    out, _ = model(jnp.asarray(toks), attention_mask=jnp.asarray(mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(
        _torch_logits(tm, toks, mask)[real], np.asarray(out)[real], atol=ATOL, rtol=0
    )


def _tensors(path):
    ckpt = hf._Checkpoint(path)
    return {k: (ckpt[k].dtype.str, ckpt[k].shape, ckpt[k].tobytes()) for k in ckpt.where}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hf_load_save_is_byte_equal(tmp_path, dtype):
    tm = _random_init(transformers.LlamaForCausalLM(_hf_config()), seed=6)
    tm.to(getattr(torch, dtype)).save_pretrained(tmp_path / "in")
    model = hf.load_llama(tmp_path / "in", mesh=sharding.make_mesh((2, 2, 2)), scan_layers=True)
    hf.save_llama(model, tmp_path / "out", dtype=dtype)
    assert _tensors(tmp_path / "in") == _tensors(tmp_path / "out")


def test_sharded_index_checkpoints_load_and_save(tmp_path):
    tm = _random_init(transformers.LlamaForCausalLM(_hf_config()), seed=7)
    tm.save_pretrained(tmp_path / "in", max_shard_size="100KB")
    assert (tmp_path / "in" / "model.safetensors.index.json").is_file()
    model = hf.load_llama(tmp_path / "in", mesh=sharding.make_mesh((1, 4, 2)))
    assert sharding.sharded_fraction(model) > 0.9
    hf.save_llama(model, tmp_path / "out", max_shard_bytes=100_000)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert _tensors(tmp_path / "in") == _tensors(tmp_path / "out")
    tm2 = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    toks, mask = _batch(311)
    np.testing.assert_array_equal(_torch_logits(tm, toks, mask), _torch_logits(tm2, toks, mask))


@pytest.mark.slow
def test_reward_round_trip_with_openrlhf_statistics(tmp_path):
    rm = RewardModel(LlamaConfig.tiny(), rngs=nnx.Rngs(4))
    rm.reward_mean[...] = jnp.float32(0.25)
    rm.reward_std[...] = jnp.float32(2.0)
    hf.save_llama(rm, tmp_path / "rm", pad_token_id=0)
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert (config["mean"], config["std"]) == (0.25, 2.0)
    tm = transformers.LlamaForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    toks = np.random.RandomState(8).randint(1, 256, (2, 11))
    with torch.no_grad():
        ref = tm(torch.tensor(toks)).logits.numpy()
    np.testing.assert_allclose(np.asarray(rm(jnp.asarray(toks))), ref, atol=ATOL, rtol=0)
    # OpenRLHF saves reward models with the base architecture name, score.weight and mean/std.
    config["architectures"] = ["LlamaForCausalLM"]
    (tmp_path / "rm" / "config.json").write_text(json.dumps(config))
    back = hf.load_llama(tmp_path / "rm")
    assert isinstance(back, RewardModel)
    assert float(back.reward_mean[...]) == 0.25 and float(back.reward_std[...]) == 2.0
    np.testing.assert_allclose(
        back.normalize(back(jnp.asarray(toks))), (ref - 0.25) / 2.0, atol=ATOL
    )


# ----------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("good")
    hf.save_llama(Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0)), path)
    return path


def _copy(saved, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(saved, out)
    return out


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    (path / "config.json").write_text(json.dumps(config))


def _rewrite_tensors(path, edit):
    st = hf.SafetensorsFile(path / "model.safetensors")
    tensors = {k: np.array(st[k]) for k in st}
    del st
    edit(tensors)
    hf.write_safetensors(
        path / "model.safetensors",
        [(k, v.shape, v.dtype, lambda v=v: v) for k, v in tensors.items()],
    )


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
            "missing tensors.*layers.1.mlp.up_proj",
        ),
        (lambda t: t.update(extra=np.zeros(3, np.float32)), "unexpected tensors.*extra"),
        (
            lambda t: t.update({"model.norm.weight": np.ones(31, np.float32)}),
            r"'model.norm.weight' has shape \(31,\), expected \(32,\)",
        ),
    ],
    ids=["missing", "extra", "shape"],
)
def test_bad_tensors_are_named(saved, tmp_path, edit, message):
    path = _copy(saved, tmp_path)
    _rewrite_tensors(path, edit)
    with pytest.raises(hf.CheckpointError, match=message):
        hf.load_llama(path)


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_type='yarn'.*'llama3'"),
        (dict(architectures=["MistralForCausalLM"]), "architectures=.*MistralForCausalLM"),
        (dict(model_type="gemma"), "model_type='gemma'"),
        (
            dict(intermediate_size=65),
            r"gate_proj.weight' has shape \(64, 32\), expected \(65, 32\)",
        ),
        (dict(num_hidden_layers=3), r"missing tensors.*layers\.2\."),
        (dict(hidden_size=None), "missing required key 'hidden_size'"),
        (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    ],
    ids=["rope", "arch", "model_type", "ffn", "layers", "no_hidden", "act"],
)
def test_bad_configs_are_named(saved, tmp_path, changes, message):
    path = _copy(saved, tmp_path)
    _edit_config(path, **changes)
    with pytest.raises(hf.CheckpointError, match=message):
        hf.load_llama(path)


def test_missing_files_are_named(saved, tmp_path):
    with pytest.raises(hf.CheckpointError, match="no config.json"):
        hf.load_llama(tmp_path)
    shutil.copy(saved / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(hf.CheckpointError, match="pytorch_model.bin"):
        hf.load_llama(tmp_path)


def test_loader_shards_without_full_host_copy(saved):
    """Each device's shard is read from the memory map, not from a full host array."""
    mesh = sharding.make_mesh((1, 8, 1))
    model = hf.load_llama(saved, mesh=mesh)
    q = model.model.layers.q_proj[...]
    assert q.sharding.spec[1] == "fsdp"
    assert {s.data.shape for s in q.addressable_shards} == {(2, 4, 4, 8)}
    assert jax.tree.leaves(nnx.state(model))[0].sharding.mesh.shape == mesh.shape
