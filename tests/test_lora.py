"""LoRA: merge = base + BA, only adapters train, the DPO reference is the base, files, export."""

import functools
import json
import math
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from psycho_jax import config as config_lib
from psycho_jax.core import hf, lora, sharding
from psycho_jax.core.model import Llama, LlamaConfig, LoraParam, RewardModel, trainable_filter
from psycho_jax.data import training as data_training
from psycho_jax.data.tokenizer import sample_tokenizer
from psycho_jax.train import checkpoint, tasks
from psycho_jax.train import loop as train
from psycho_jax.train import step as step_lib
from tests.helpers import config_module, fresh_state, load_config, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOKENS = jnp.asarray(np.random.RandomState(0).randint(0, 256, (2, 12)))


def _lora_model(kind="lm", rank=4, seed=0, **kw):
    """A tiny LoRA model whose adapters are all non-zero (fresh B is zero: merging would be trivial)."""
    cfg = LlamaConfig.tiny(lora_rank=rank, lora_alpha=8.0, **kw)
    model = (
        RewardModel(cfg, num_labels=3, rngs=nnx.Rngs(seed))
        if kind == "reward"
        else Llama(cfg, rngs=nnx.Rngs(seed))
    )
    adapters = lora.adapter_state(model)
    keys = iter(jax.random.split(jax.random.key(seed + 1), len(jax.tree.leaves(adapters))))
    nnx.update(
        model, jax.tree.map(lambda x: 0.1 * jax.random.normal(next(keys), x.shape), adapters)
    )
    return model


def _base_of(model):
    """A model without adapters holding `model`'s base weights (a reward model: a fresh head)."""
    cfg = model.config.replace(lora_rank=0)
    if isinstance(model, RewardModel):
        base = RewardModel(cfg, num_labels=model.num_labels, rngs=nnx.Rngs(9))
        nnx.update(base.model, nnx.state(model.model, nnx.Not(LoraParam)))
        return base
    base = Llama(cfg, rngs=nnx.Rngs(9))
    nnx.update(base, nnx.state(model, nnx.Not(LoraParam)))
    return base


def _flat(state) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(state)
    }


def _assert_same(a, b):
    a, b = _flat(a), _flat(b)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _out(model, tokens=TOKENS):
    out = model(tokens)
    return np.asarray(out[0] if isinstance(model, Llama) else out)


def test_fresh_adapters_compute_the_base_exactly():
    cfg = LlamaConfig.tiny()
    base = Llama(cfg, rngs=nnx.Rngs(0))
    model = Llama(cfg.replace(lora_rank=4), rngs=nnx.Rngs(0))
    # Same seed, same base weights: the adapters are drawn last.
    _assert_same(nnx.state(base), nnx.state(model, nnx.Not(LoraParam)))
    np.testing.assert_array_equal(_out(model), _out(base))
    n = sum(x.size for x in jax.tree.leaves(lora.adapter_state(model)))
    assert n == model.config.num_lora_params > 0


@pytest.mark.parametrize("kind", ["lm", "reward"])
@pytest.mark.parametrize("targets", [None, ("q_proj", "o_proj", "down_proj")])
def test_merged_model_is_base_plus_scaled_ba(kind, targets):
    kw = {} if targets is None else {"lora_targets": targets}
    model = _lora_model(kind, **kw)
    cfg = model.config
    before = nnx.state(model)
    merged = lora.merge(model)
    assert merged.config.lora_rank == 0 and merged.model.config.lora_rank == 0
    assert not jax.tree.leaves(lora.adapter_state(merged))
    # `model` itself is unchanged.
    assert model.config.lora_rank == 4
    _assert_same(nnx.state(model), before)

    scale = cfg.lora_alpha / cfg.lora_rank
    layers = model.model.layers
    for name in cfg.lora_targets:
        w = np.asarray(getattr(layers, name)[...], np.float64)
        a = np.asarray(getattr(layers, f"{name}_lora_a")[...], np.float64)
        b = np.asarray(getattr(layers, f"{name}_lora_b")[...], np.float64)
        n, r = a.shape[0], a.shape[-1]
        ba = np.einsum("lir,lro->lio", a.reshape(n, -1, r), b.reshape(n, r, -1)).reshape(w.shape)
        assert np.abs(ba).max() > 1e-3  # a real update
        np.testing.assert_allclose(
            np.asarray(getattr(merged.model.layers, name)[...]), w + scale * ba, atol=1e-6, rtol=0
        )
    untouched = set(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    for name in untouched - set(cfg.lora_targets):
        np.testing.assert_array_equal(
            np.asarray(getattr(merged.model.layers, name)[...]),
            np.asarray(getattr(layers, name)[...]),
        )
    np.testing.assert_allclose(_out(merged), _out(model), atol=1e-5, rtol=0)


def test_scanned_remat_forward_equals_the_loop():
    model = _lora_model()
    scanned = Llama(model.config.replace(scan_layers=True, remat="full"), rngs=nnx.Rngs(1))
    nnx.update(scanned, nnx.state(model))
    np.testing.assert_allclose(_out(scanned), _out(model), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def tokenizer():
    return sample_tokenizer()


def _lora_config(task, **overrides):
    overrides = {"lora__rank": 4, "lora__alpha": 8.0, **overrides}
    if task == "dpo":
        overrides.setdefault("init_from", "/base")
    return load_config(task, **overrides)


def _step_setup(task_name, tokenizer, nonzero=False):
    c = _lora_config(task_name, optim__warmup_steps=0)  # a first step with a learning rate
    task = tasks.make_task(settings(c))
    mesh = sharding.make_mesh((1, -1, 1))
    model = train.build_model(settings(c), task, len(tokenizer), mesh, "")
    if nonzero:
        adapters = lora.adapter_state(model)
        nnx.update(model, jax.tree.map(lambda x: x + 0.05, adapters))
    graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)
    tx, state = fresh_state(c, params, rest)
    loader = data_training.make_loader(
        settings(c), tokenizer, "train", task.name, process_index=0, process_count=1
    )
    batch = sharding.shard_batch(next(iter(loader)), mesh)
    reference = jax.tree.map(jnp.zeros_like, params) if task.needs_reference else None
    step = jax.jit(
        functools.partial(step_lib.train_step, graphdef=graphdef, task=task, tx=tx, accum=1)
    )
    return c, mesh, model, graphdef, state, batch, reference, step


@pytest.mark.parametrize(
    "task_name",
    [
        pytest.param("sft", marks=pytest.mark.slow),
        pytest.param("reward", marks=pytest.mark.slow),
        "dpo",
    ],
)
def test_a_step_changes_only_the_adapters(tokenizer, task_name):
    _, mesh, model, graphdef, state, batch, reference, step = _step_setup(task_name, tokenizer)
    trained = {
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state.params)
    }
    expected = {f"['model']['layers']['{n}']" for n in lora.adapter_state(model)["model"]["layers"]}
    if task_name == "reward":
        expected.add("['score']")  # the new head trains with the adapters
    assert {k.removesuffix(".value") for k in trained} == expected

    before_rest = [np.asarray(x) for x in jax.tree.leaves(state.rest)]
    before_params = [np.asarray(x) for x in jax.tree.leaves(state.params)]
    with jax.set_mesh(mesh):
        new, metrics = step(state, batch, reference)
    assert int(new.skipped) == 0 and np.isfinite(float(metrics["loss"]))
    for x, y in zip(jax.tree.leaves(new.rest), before_rest, strict=True):
        np.testing.assert_array_equal(np.asarray(x), y)  # the base: bitwise unchanged
    changed = [
        not np.array_equal(np.asarray(x), y)
        for x, y in zip(jax.tree.leaves(new.params), before_params, strict=True)
    ]
    assert any(changed)
    if task_name == "dpo":  # fresh adapters: the policy is its reference, the loss log 2
        np.testing.assert_allclose(float(metrics["loss"]), math.log(2), rtol=1e-6)
        np.testing.assert_allclose(float(metrics["rewards/margins"]), 0.0, atol=1e-7)


@pytest.mark.slow
def test_the_lora_reference_is_the_frozen_base(tokenizer):
    """Zero adapters on the policy's own graph give the plain base model's log-probs."""
    c, mesh, model, graphdef, state, batch, reference, step = _step_setup(
        "dpo", tokenizer, nonzero=True
    )
    base = _base_of(model)
    with jax.set_mesh(mesh):
        ref_logps, _ = jax.jit(tasks.DPO.forward)(nnx.merge(graphdef, reference, state.rest), batch)
        base_logps, _ = jax.jit(tasks.DPO.forward)(base, batch)
        policy_logps, _ = jax.jit(tasks.DPO.forward)(model, batch)
        _, metrics = step(state, batch, reference)
    np.testing.assert_allclose(np.asarray(ref_logps), np.asarray(base_logps), atol=1e-5, rtol=0)
    assert np.abs(np.asarray(policy_logps) - np.asarray(base_logps)).max() > 1e-2
    margins = c.dpo.beta * (policy_logps - ref_logps)
    want = np.mean(np.asarray(margins[:, 0] - margins[:, 1]))
    np.testing.assert_allclose(float(metrics["rewards/margins"]), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["lm", "reward"])
def test_adapters_save_and_load_round_trip(kind, tmp_path):
    model = _lora_model(kind)
    path = lora.save_adapters(model, tmp_path / "adapters")
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8.0 and config["peft_type"] == "LORA"
    st = hf.SafetensorsFile(path / "adapter_model.safetensors")
    name = "base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight"
    assert st.shape(name) == (4, 4 * 8)  # PEFT's [r, in]
    base = _base_of(model)  # a reward model's head comes from the file
    loaded = lora.load_adapters(base, path)
    assert loaded.config == model.config
    _assert_same(nnx.state(loaded), nnx.state(model))
    np.testing.assert_array_equal(_out(loaded), _out(model))
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        lora.load_adapters(loaded, path)


def test_adapters_are_sharded_on_the_model_mesh():
    mesh = sharding.make_mesh((1, -1, 1))
    cfg = LlamaConfig.tiny(dim=64, head_dim=16)
    model = sharding.init_sharded(lambda: Llama(cfg, rngs=nnx.Rngs(0)), mesh)
    lora.add_adapters(model, rank=4)
    layers = model.model.layers
    assert layers.q_proj_lora_a[...].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", None)
    assert layers.o_proj_lora_b[...].sharding.spec == jax.sharding.PartitionSpec(None, None, "fsdp")
    np.testing.assert_array_equal(np.asarray(layers.down_proj_lora_b[...]), 0.0)


@pytest.mark.parametrize("kind", ["lm", "reward"])
def test_peft_loads_our_adapters(kind, tmp_path):
    """PEFT (when installed) reads the adapters onto the exported base with our outputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    model = _lora_model(kind)
    with pytest.raises(ValueError, match="merge"):
        hf.save_llama(model, tmp_path / "unmerged")
    hf.save_llama(_base_of(model), tmp_path / "base", pad_token_id=0)
    lora.save_adapters(model, tmp_path / "adapters")
    cls = (
        transformers.LlamaForCausalLM
        if kind == "lm"
        else transformers.LlamaForSequenceClassification
    )
    tm = cls.from_pretrained(tmp_path / "base", dtype=torch.float32)
    tm = peft.PeftModel.from_pretrained(tm, tmp_path / "adapters").eval()
    tokens = np.maximum(np.asarray(TOKENS), 1)  # no pad id: the reward is read at the last token
    with torch.no_grad():
        ref = tm(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(_out(model, jnp.asarray(tokens)), ref, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def lora_dpo(tmp_path_factory, tokenizer):
    """A random tiny base saved as a HF directory, then a LoRA-DPO stage on it."""
    root = tmp_path_factory.mktemp("lora")
    c = _lora_config("dpo", num_steps=20, eval_every=10, eval_batches=2)
    base_cfg = settings(c).llama_config(len(tokenizer)).replace(lora_rank=0)
    hf.save_llama(Llama(base_cfg, rngs=nnx.Rngs(3)), root / "base")
    c.init_from = str(root / "base")
    metrics = train.train_and_evaluate(c, root / "dpo")
    return root, c, metrics


@pytest.mark.slow
def test_lora_dpo_learns(lora_dpo):
    root, c, m = lora_dpo
    rows = [json.loads(line) for line in (root / "dpo" / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r for r in rows if "eval/loss" in r}
    assert sorted(evals) == [0, 10, 20]
    start, end = evals[0], evals[20]
    np.testing.assert_allclose(start["eval/loss"], math.log(2), rtol=1e-5)  # policy = reference
    assert end["eval/rewards/accuracies"] > max(start["eval/rewards/accuracies"], 0.7)
    assert end["eval/rewards/margins"] > evals[10]["eval/rewards/margins"] > 0
    assert end["eval/loss"] < evals[10]["eval/loss"] < math.log(2)
    assert m["skipped_steps"] == 0

    # The base in the checkpoint is bitwise the initial one; the adapters are saved alone too.
    trained = checkpoint.load_model(root / "dpo")
    assert trained.config.lora_rank == 4
    init = checkpoint.load_model(root / "base")
    _assert_same(nnx.state(trained, nnx.Not(LoraParam)), nnx.state(init))
    reloaded = lora.load_adapters(init, root / "dpo" / "adapters")
    np.testing.assert_array_equal(_out(reloaded), _out(trained))


@pytest.mark.slow
def test_lora_dpo_resumes(lora_dpo, tmp_path):
    """Two more steps from the finished run's checkpoint: the restored base stays the reference."""
    root, c, _ = lora_dpo
    shutil.copytree(root / "dpo", tmp_path / "dpo")
    more = c.copy_and_resolve_references()
    more.num_steps, more.eval_every = 22, 0
    m = train.train_and_evaluate(more, tmp_path / "dpo")
    assert m["step"] == 22 and m["skipped_steps"] == 0
    init = checkpoint.load_model(root / "base")
    trained = checkpoint.load_model(tmp_path / "dpo")
    _assert_same(nnx.state(trained, nnx.Not(LoraParam)), nnx.state(init))


@pytest.mark.slow
def test_merged_export_matches_transformers(lora_dpo, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from psycho_jax.export import export

    root, _, _ = lora_dpo
    out = export(root / "dpo", tmp_path / "hf")
    ours = checkpoint.load_model(root / "dpo", dtype="float32")
    assert ours.config.lora_rank == 4  # not merged: the adapters run as x @ A @ B
    tm = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tokens = np.random.RandomState(1).randint(0, ours.config.vocab_size, (3, 17))
    with torch.no_grad():
        ref = tm(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(_out(ours, jnp.asarray(tokens)), ref, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- configs


def _shipped(variant):
    c = config_module("dpo_lora").get_config(variant)
    c.init_from = "/sft"
    return c


@pytest.mark.parametrize("variant", ["tiny", "llama3_8b"])
def test_shipped_config_validates(variant):
    c = _shipped(variant)
    config_lib.validate(c, num_devices=1 if variant == "llama3_8b" else 8)
    assert settings(c).llama_config(2048).lora_rank > 0


def test_llama3_8b_lora_fits_one_gpu_analytically():
    """eval_shape of the 8B LoRA policy: a bfloat16 base and ~0.2 GB of float32 adapters."""
    c = _shipped("llama3_8b")
    cfg = settings(c).llama_config(128256)
    abstract = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
    _, params, rest = nnx.split(abstract, trainable_filter(abstract), ...)
    nbytes = lambda t: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(t))
    assert {x.dtype for x in jax.tree.leaves(rest)} == {jnp.dtype(jnp.bfloat16)}
    assert sum(x.size for x in jax.tree.leaves(params)) == cfg.num_lora_params == 41_943_040
    base, adapters = nbytes(rest), nbytes(params)
    assert base == 2 * cfg.num_params
    # base + adapters, Adam moments, gradients, accumulator and the zero-adapter reference
    assert (base + 6 * adapters) / 2**30 < 16.2


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(lora__rank=-1), "lora.rank=-1.*integer >= 0"),
        (dict(lora__targets=("q_proj", "qkv")), "lora.targets=.*q_proj, k_proj"),
        (dict(lora__alpha=0.0), "lora.alpha=0.0"),
        (dict(dpo__reference_from="/other"), "dpo.reference_from='/other'.*frozen base"),
    ],
)
def test_bad_lora_config_names_the_key(overrides, message):
    c = _lora_config("dpo", **overrides)
    with pytest.raises(ValueError, match=message):
        config_lib.validate(c, num_devices=8)
    c = _lora_config("dpo", dpo__reference_from="/other", dpo__reference="precomputed")
    config_lib.validate(c, num_devices=8)  # another reference is fine when precomputed
