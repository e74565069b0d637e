"""The train step and loop: accumulation, meshes, golden one-step metrics, every task end to end."""

import functools
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from psycho_jax import config as config_lib
from psycho_jax.core import sharding
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel
from psycho_jax.data import training as data_training
from psycho_jax.data.tokenizer import sample_tokenizer
from psycho_jax.train import checkpoint, tasks
from psycho_jax.train import loop as train
from psycho_jax.train import step as step_lib
from tests.helpers import config_module, fresh_state, load_config, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(__file__).with_name("golden") / "one_step_metrics.json"
TOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer():
    return sample_tokenizer()


def _batch(c, tokenizer, task):
    loader = data_training.make_loader(
        settings(c), tokenizer, "train", task, process_index=0, process_count=1
    )
    return next(iter(loader))


def _state(c, model, mesh=None):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, state = fresh_state(c, params, rest)
    return graphdef, tx, state


def _model(task_obj, vocab, seed=0):
    cfg = LlamaConfig.tiny(vocab_size=vocab, dim=64, head_dim=16, ffn_dim=128)
    if task_obj.name == "reward":
        return RewardModel(cfg, num_labels=task_obj.num_labels, rngs=nnx.Rngs(seed))
    return Llama(cfg, rngs=nnx.Rngs(seed))


def _one_step(c, tokenizer, accum=1, mesh=None, reference=False):
    task = tasks.make_task(settings(c))
    batch = _batch(c, tokenizer, task.name)
    model = _model(task, len(tokenizer))
    graphdef, tx, state = _state(c, model)
    ref = None
    if reference:
        ref = nnx.split(_model(task, len(tokenizer), seed=1), nnx.Param, ...)[1]
    step = jax.jit(
        functools.partial(step_lib.train_step, graphdef=graphdef, task=task, tx=tx, accum=accum)
    )
    if mesh is None:
        new_state, metrics = step(state, jax.tree.map(jnp.asarray, batch), ref)
    else:
        state = jax.device_put(state, sharding.state_shardings(state, mesh))
        with jax.set_mesh(mesh):
            new_state, metrics = step(state, sharding.shard_batch(batch, mesh), ref)
    return new_state, {k: float(v) for k, v in metrics.items()}


CASES = {
    "sft": dict(),
    "sft_packed": dict(data__packing=True),
    "reward": dict(reward__principle_head=True, reward__margin="ratings", reward__margin_value=0.5),
    "dpo": dict(),
    "ipo": dict(dpo__loss_type="ipo"),
    "orpo": dict(dpo__loss_type="orpo"),
}


def _case(name):
    task = name.split("_")[0] if name in ("sft", "sft_packed", "reward") else "dpo"
    return load_config(task, **CASES[name]), task == "dpo" and name != "orpo"


def _assert_states_close(a, b, atol=TOL):
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


@pytest.mark.parametrize(
    "name",
    [
        "sft",
        pytest.param("reward", marks=pytest.mark.slow),
        pytest.param("dpo", marks=pytest.mark.slow),
    ],
)
def test_accumulating_micro_batches_equals_the_big_batch(tokenizer, name):
    c, ref = _case(name)
    big_state, big = _one_step(c, tokenizer, accum=1, reference=ref)
    c.grad_accum = 4
    acc_state, acc = _one_step(c, tokenizer, accum=4, reference=ref)
    for k in big:
        np.testing.assert_allclose(acc[k], big[k], rtol=1e-4, atol=TOL, err_msg=k)
    _assert_states_close(acc_state, big_state)


@pytest.mark.parametrize(
    "name",
    [
        "sft_packed",
        pytest.param("reward", marks=pytest.mark.slow),
        pytest.param("dpo", marks=pytest.mark.slow),
    ],
)
def test_2x2x2_mesh_equals_one_device(tokenizer, name):
    c, ref = _case(name)
    one_state, one = _one_step(c, tokenizer, reference=ref)
    mesh = sharding.make_mesh((2, 2, 2))
    mesh_state, meshed = _one_step(c, tokenizer, mesh=mesh, reference=ref)
    for k in one:
        np.testing.assert_allclose(meshed[k], one[k], rtol=1e-4, atol=TOL, err_msg=k)
    _assert_states_close(mesh_state, one_state)
    assert not mesh_state.params["model"]["layers"]["q_proj"][...].sharding.is_fully_replicated


def test_golden_one_step_metrics(tokenizer):
    """One step of each tiny task from fixed seeds; the numbers may only change on purpose."""
    got = {}
    for name in CASES:
        c, ref = _case(name)
        got[name] = _one_step(c, tokenizer, reference=ref)[1]
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: create it with UPDATE_GOLDEN=1"
    want = json.loads(GOLDEN.read_text())
    message = (
        "one-step metrics changed. Update the golden file (UPDATE_GOLDEN=1 pytest "
        "tests/test_train.py -k golden) ONLY if the change is intended (a new loss definition, "
        "initialisation, data order or sample data) and say why in the commit; a numerics "
        "regression must be fixed instead"
    )
    assert set(got) == set(want), message
    for name in want:
        for k, v in want[name].items():
            np.testing.assert_allclose(
                got[name][k], v, rtol=1e-4, atol=1e-5, err_msg=f"{name} {k}: {message}"
            )


def test_nonfinite_step_is_skipped(tokenizer):
    c, _ = _case("sft")
    task = tasks.make_task(settings(c))
    batch = jax.tree.map(jnp.asarray, _batch(c, tokenizer, "sft"))
    model = _model(task, len(tokenizer))
    graphdef, tx, state = _state(c, model)
    bad = jax.tree.map(lambda x: x, state)
    q = bad.params["model"]["layers"]["q_proj"]
    q[...] = q[...].at[0, 0, 0, 0].set(jnp.nan)
    step = jax.jit(
        functools.partial(step_lib.train_step, graphdef=graphdef, task=task, tx=tx, accum=1)
    )
    new, metrics = step(bad, batch, None)
    assert int(new.skipped) == 1 and float(metrics["skipped"]) == 1.0
    assert int(new.step) == 1
    np.testing.assert_array_equal(
        np.asarray(new.params["model"]["norm"][...]), np.asarray(state.params["model"]["norm"][...])
    )


@pytest.mark.slow
def test_stages_end_to_end(tmp_path):
    """SFT -> reward (from SFT) -> DPO with a live and a precomputed reference, through the loop."""
    sft = train.train_and_evaluate(load_config("sft", eval_every=3), tmp_path / "sft")
    assert np.isfinite(sft["loss"]) and "eval/loss" in sft and sft["skipped_steps"] == 0
    assert (tmp_path / "sft" / "metrics.jsonl").is_file()
    assert list((tmp_path / "sft" / "tensorboard").iterdir())

    rm = train.train_and_evaluate(
        load_config("reward", init_from=str(tmp_path / "sft"), eval_every=3), tmp_path / "rm"
    )
    assert "eval/accuracy" in rm and "principle_accuracy/empathy" in rm
    assert "eval/principle_accuracy/empathy" in rm and not any(":" in k for k in rm)
    # OpenRLHF-style normalisation statistics are saved with the reward model.
    rm_model = checkpoint.load_model(tmp_path / "rm")
    assert isinstance(rm_model, RewardModel) and rm["reward_std"] > 0
    np.testing.assert_allclose(float(rm_model.reward_mean[...]), rm["reward_mean"], rtol=1e-6)
    np.testing.assert_allclose(float(rm_model.reward_std[...]), rm["reward_std"], rtol=1e-6)

    live = train.train_and_evaluate(
        load_config("dpo", init_from=str(tmp_path / "sft"), num_steps=2), tmp_path / "dpo"
    )
    cache = tmp_path / "refcache"
    pre = load_config(
        "dpo",
        init_from=str(tmp_path / "sft"),
        num_steps=2,
        dpo__reference="precomputed",
        dpo__reference_cache=str(cache),
    )
    first = train.train_and_evaluate(pre, tmp_path / "dpo_pre")
    files = sorted(cache.iterdir())
    assert len(files) == 2  # train and eval splits
    for k in ("loss", "rewards/chosen", "rewards/margins", "logps/chosen"):
        np.testing.assert_allclose(first[k], live[k], rtol=1e-4, atol=1e-4, err_msg=k)
    mtimes = [f.stat().st_mtime_ns for f in files]
    train.train_and_evaluate(pre, tmp_path / "dpo_pre2")
    assert [f.stat().st_mtime_ns for f in sorted(cache.iterdir())] == mtimes  # reused


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(task="ppo"), "config.task='ppo'.*valid: sft, reward, dpo"),
        (
            dict(dpo__loss_type="kto"),
            "dpo.loss_type='kto'.*sigmoid, ipo, hinge, robust, simpo, orpo",
        ),
        (dict(dpo__beta=0.0), "dpo.beta=0.0.*beta > 0"),
        (dict(batch_size=6), "batch_size=6.*data\\*fsdp=8"),
        (dict(batch_size=8, grad_accum=3), "batch_size=8.*multiple of grad_accum=3"),
        (dict(init_from=""), "dpo.reference_from.*needs a reference"),
        (dict(optim__schedule="step"), "optim.schedule='step'.*cosine, linear, constant"),
        (dict(cpu_scheduler="fast"), "cpu_scheduler='fast'.*default, memory, concurrency"),
    ],
)
def test_bad_config_names_the_key(overrides, message):
    c = load_config("dpo", init_from="/somewhere")
    for key, value in overrides.items():
        node = c
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate(c, num_devices=8)


def test_missing_init_checkpoint_is_named(tmp_path):
    c = load_config("dpo", init_from=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope.*neither a stage workdir"):
        train.train_and_evaluate(c, tmp_path / "w")


def test_flop_count_ratios():
    cfg = LlamaConfig.tiny(vocab_size=2048, dim=64, head_dim=16, ffn_dim=128)
    sft = train.model_flops_per_token(cfg, 256, tasks.SFT())
    dpo = train.model_flops_per_token(cfg, 256, tasks.DPO(reference="live"))
    assert dpo / sft == pytest.approx(4 / 3)
    assert optax  # optimizer library imported for the step under test


@pytest.mark.parametrize("task", ["sft", "reward", "dpo"])
@pytest.mark.parametrize("variant", ["tiny", "llama3_8b"])
def test_shipped_configs_validate(task, variant):
    c = config_module(task).get_config(variant)
    if task == "dpo":
        c.init_from = "/sft"
    run = config_lib.settings(c, num_devices=8)
    assert run.llama_config(2048).num_params > 0


def test_memory_scheduler_same_step_less_memory(tokenizer):
    """`cpu_scheduler="memory"` reaches XLA (the compiled DPO step's temporaries shrink: 132 MB
    against 158 MB) and changes only the order of the ops: the step's metrics and parameters are
    the default's. (The reward step's were 159 against 178 MB until the attention masks became
    buffers of their own, `kernels.materialized`; now both schedulers give it ~121 MB.)"""
    c, _ = _case("dpo")
    task = tasks.make_task(settings(c))
    batch = jax.tree.map(jnp.asarray, _batch(c, tokenizer, task.name))
    results = {}
    for scheduler in ("default", "memory"):
        c.cpu_scheduler = scheduler
        graphdef, tx, state = _state(c, _model(task, len(tokenizer)))
        step = step_lib.jit_train_step(settings(c), graphdef, task, tx, state, None)
        temp = step.lower(state, batch, None).compile().memory_analysis().temp_size_in_bytes
        new_state, metrics = step(state, batch, None)
        results[scheduler] = (temp, new_state, {k: float(v) for k, v in metrics.items()})
    assert step_lib.compiler_options(settings(c), "cpu") == {
        "xla_cpu_scheduler_type": step_lib.CPU_SCHEDULERS["memory"]
    }
    assert results["memory"][0] < results["default"][0], (
        results["memory"][0],
        results["default"][0],
    )
    for k, v in results["default"][2].items():
        np.testing.assert_allclose(results["memory"][2][k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    _assert_states_close(results["memory"][1], results["default"][1], atol=1e-6)
