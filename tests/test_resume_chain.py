"""A resumed run is the run that was stopped, through `python -m psycho_jax.main` as a user runs it.

The slow tests stop and kill real processes of an `init_from` chain whose model differs from every
preset (dim 64, head_dim 16, ffn 128, rope_theta 250000, rms_norm_eps 1e-6 in an exported
config.json) and check the resumed run bitwise against the uninterrupted one; others damage the
newest checkpoint and check that it is named, set aside and the run resumes from the previous one.
The quick tests check the pieces: checksums, start-up clean-up of interrupted deletes, the
architecture comparison, and that no caller can change a saved model's architecture.
"""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from psycho_jax.core import sharding
from psycho_jax.core.model import Llama, LlamaConfig
from psycho_jax.train import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--config.model.dim=64", "--config.model.head_dim=16", "--config.model.ffn_dim=128"]
COMMON = ["--config.eval_every=0", "--config.log_every=1", "--config.batch_size=8"]


def _env():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    return env


def _cmd(config, workdir, *overrides):
    return [
        sys.executable,
        "-m",
        "psycho_jax.main",
        f"--config=configs/{config}.py:tiny",
        f"--workdir={workdir}",
        *COMMON,
        *overrides,
    ]


def _run(cmd):
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _params(workdir):
    model = checkpoint.load_model(workdir)
    return model, [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


def _losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _assert_same_run(got, want):
    _, a = _params(got)
    _, b = _params(want)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert _losses(got) == _losses(want)  # every step, before and after each resume


def _assert_checkpoints_whole(workdir):
    """Every step directory complete, no temporary one, nothing left half-deleted."""
    root = workdir / "checkpoints"
    assert not list(root.glob("*tmp*"))
    assert not list((root / checkpoint.DELETING).glob("*"))
    for step in (p for p in root.iterdir() if p.name.isdigit()):
        assert {p.name for p in step.iterdir()} >= {"model", "opt", "data", "meta"}, step


def _logged_steps(workdir):
    path = workdir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _start_and_wait(cmd, workdir, steps_more, timeout=300):
    """Starts the command and returns the process once `steps_more` more steps are logged."""
    target = _logged_steps(workdir) + steps_more
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + timeout
    while _logged_steps(workdir) < target:
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.stderr.read()[-3000:]}")
        assert time.time() < deadline, "no progress"
        time.sleep(0.05)
    return proc


# ----------------------------------------------------------------------------- quick


def test_fingerprint_sees_one_bit_and_is_the_same_on_any_mesh():
    x = jax.random.normal(jax.random.key(0), (16, 24), jnp.float32)
    tree = {"w": x, "b": jnp.arange(8, dtype=jnp.int32), "h": x[:4].astype(jnp.bfloat16)}
    ref = checkpoint.fingerprint(tree)
    assert ref["dtypes"] == ["int32", "bfloat16", "float32"]
    flipped = np.asarray(x).view(np.uint32).copy()
    flipped[7, 3] ^= 1 << 20
    assert checkpoint.fingerprint({**tree, "w": flipped.view(np.float32)}) != ref
    swapped = np.asarray(x).copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert checkpoint.fingerprint({**tree, "w": jnp.asarray(swapped)}) != ref
    mesh = sharding.make_mesh((2, 2, 2))
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"), "tensor"))
    assert checkpoint.fingerprint({**tree, "w": jax.device_put(x, spec)}) == ref


def test_startup_removes_interrupted_deletes_and_says_so(tmp_path, caplog):
    half = tmp_path / "checkpoints" / checkpoint.DELETING / "3" / "opt"
    half.mkdir(parents=True)
    (half / "x").write_bytes(b"x")
    from tests.helpers import load_config, settings

    ckpt = checkpoint.Checkpointer(tmp_path, settings(load_config("sft")))
    ckpt.close()
    assert not (tmp_path / "checkpoints" / checkpoint.DELETING / "3").exists()
    assert "a checkpoint whose deletion was interrupted" in caplog.text


def _meta(cfg, labels=None, task="dpo"):
    import dataclasses

    return {"task": task, "llama_config": dataclasses.asdict(cfg), "num_labels": labels}


def test_architecture_mismatch_names_both_values_and_numerics_may_differ(caplog):
    caplog.set_level("INFO")
    saved = LlamaConfig.preset("tiny", vocab_size=2048, dim=64, head_dim=16, ffn_dim=128)
    saved = saved.replace(rope_theta=250000.0, rms_norm_eps=1e-6)
    where = pathlib.Path("runs/x/checkpoints/3")
    numerics = {"dtype": "bfloat16", "remat": "full"}
    checkpoint.check_compatible(_meta(saved), saved, None, "dpo", numerics, where)
    assert "dtype='bfloat16' (checkpoint 'float32')" in caplog.text
    preset = saved.replace(rope_theta=10000.0, rms_norm_eps=1e-5)
    with pytest.raises(ValueError, match=r"rms_norm_eps: checkpoint 1e-06 vs config 1e-05") as e:
        checkpoint.check_compatible(_meta(saved), preset, None, "dpo", {}, where)
    assert "rope_theta: checkpoint 250000.0 vs config 10000.0" in str(e.value)
    with pytest.raises(ValueError, match="reward outputs: checkpoint 8 vs config 1"):
        checkpoint.check_compatible(_meta(saved, 8, "reward"), saved, 1, "reward", {}, where)
    lora = saved.replace(lora_rank=4)
    with pytest.raises(ValueError, match="lora_rank: checkpoint 0 vs config 4"):
        checkpoint.check_compatible(_meta(saved), lora, None, "dpo", {}, where)
    # Without adapters their alpha and targets mean nothing.
    other = saved.replace(lora_alpha=3.0, lora_targets=("q_proj",))
    checkpoint.check_compatible(_meta(saved), other, None, "dpo", {}, where)


def test_checkpoints_record_the_model_spec_and_older_ones_still_load(tmp_path):
    """A checkpoint's meta holds the architecture and the weights' dtype, not how a run computed
    (attention kernel, remat, head chunks, platform); one written with the whole LlamaConfig (before
    this was so) loads as before, the loading run's numerics replacing the recorded ones."""
    cfg = LlamaConfig.preset("tiny", vocab_size=64, dim=32, head_dim=8, ffn_dim=64)
    cfg = cfg.replace(attention="einsum", remat="full", head_chunk=16, dtype="bfloat16")
    meta = checkpoint.model_meta(Llama(cfg, rngs=nnx.Rngs(0)), "sft", 3)
    assert set(meta["llama_config"]) == set(cfg.architecture()) | {"param_dtype"}
    loaded, _ = checkpoint.architecture_of(meta, attention="xla")
    assert loaded.architecture() == cfg.architecture() and loaded.attention == "xla"
    assert loaded.remat == "none" and loaded.dtype == "float32"  # the loader's choice: defaults
    old = _meta(cfg)  # the whole LlamaConfig, as older checkpoints recorded it
    old["llama_config"].pop("platform")
    loaded, _ = checkpoint.architecture_of(old, remat="none")
    assert loaded.architecture() == cfg.architecture()
    assert (loaded.remat, loaded.attention) == ("none", "einsum")


def test_loading_a_saved_model_cannot_change_its_architecture(tmp_path):
    with pytest.raises(ValueError, match=r"\['rope_theta'\] would change the model's architecture"):
        checkpoint.load_model(tmp_path, rope_theta=10000.0)


# ----------------------------------------------------------------------------- an init_from chain


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An SFT stage of a model no preset has, exported, with rope_theta and eps changed in its
    config.json (as a Llama checkpoint from the hub would differ from the preset)."""
    root = tmp_path_factory.mktemp("chain")
    _run(_cmd("sft", root / "sft", "--config.num_steps=2", *SMALL))
    subprocess.run(
        [sys.executable, "-m", "psycho_jax.export", f"--checkpoint={root / 'sft'}"]
        + [f"--out={root / 'hf'}"],
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
    )
    config = json.loads((root / "hf" / "config.json").read_text())
    config.update(rope_theta=250000.0, rms_norm_eps=1e-6)
    (root / "hf" / "config.json").write_text(json.dumps(config))
    return root / "hf"


STAGES = {
    "dpo_live": ("dpo", ["--config.num_steps=6", "--config.checkpoint_every=1"]),
    "dpo_precomputed_lora_accum": (
        "dpo",
        [
            "--config.num_steps=6",
            "--config.checkpoint_every=1",
            "--config.dpo.reference=precomputed",
            "--config.lora.rank=4",
            "--config.grad_accum=2",
        ],
    ),
    "reward_principle_head": (
        "reward",
        [
            "--config.num_steps=6",
            "--config.checkpoint_every=2",
            "--config.reward.principle_head=True",
            "--config.reward.stats_batches=2",
        ],
    ),
    "sft_packing_lora": (
        "sft",
        ["--config.num_steps=6", "--config.checkpoint_every=1", "--config.data.packing=True"]
        + ["--config.lora.rank=4"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_stopped_and_killed_stage_of_a_chain_resumes_to_the_uninterrupted_run(
    stage, base, tmp_path
):
    """SIGTERM, then SIGKILLs at random moments (saves and deletes of old checkpoints happen every
    step with keep_checkpoints=1), then a resume: bitwise the uninterrupted run, with the chain's
    model (never the preset), and no half-written or half-deleted checkpoint at any point."""
    config, overrides = STAGES[stage]
    overrides = [
        f"--config.init_from={base}",
        "--config.keep_checkpoints=1",
        f"--config.dpo.reference_cache={tmp_path / 'refcache'}",
        *overrides,
    ]
    full, cut = tmp_path / "full", tmp_path / "cut"
    _run(_cmd(config, full, *overrides))

    proc = _start_and_wait(_cmd(config, cut, *overrides), cut, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "run the same command to resume" in err, err[-3000:]
    _assert_checkpoints_whole(cut)
    rng = random.Random(stage)
    for _ in range(2):
        proc = _start_and_wait(_cmd(config, cut, *overrides), cut, 1)
        time.sleep(rng.uniform(0.0, 0.8))
        proc.kill()
        proc.wait()
        _assert_checkpoints_whole(cut)
    done = _run(_cmd(config, cut, *overrides))
    assert "resumed from" in done.stderr
    _assert_checkpoints_whole(cut)
    _assert_same_run(cut, full)
    model, _ = _params(cut)
    assert (model.config.dim, model.config.rope_theta, model.config.rms_norm_eps) == (
        64,
        250000.0,
        1e-6,
    )
    if config == "reward":
        got = json.loads((cut / "final_metrics.json").read_text())
        want = json.loads((full / "final_metrics.json").read_text())
        assert (got["reward_mean"], got["reward_std"]) == (want["reward_mean"], want["reward_std"])
        assert model.num_labels == 8


@pytest.mark.slow
def test_resume_refuses_a_config_of_another_model(base, tmp_path):
    """A stage from init_from resumes its model whatever the preset says, but a config that builds
    another model (here: another LoRA layout) is refused naming both values."""
    work = tmp_path / "dpo"
    args = [f"--config.init_from={base}", "--config.num_steps=2"]
    _run(_cmd("dpo", work, *args, "--config.num_steps=1"))
    done = subprocess.run(
        _cmd("dpo", work, *args, "--config.lora.rank=2"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "lora_rank: checkpoint 0 vs config 2" in done.stderr


# ----------------------------------------------------------------------------- damaged checkpoints


def _flip_bytes(step_dir):
    data = max((step_dir / "model").rglob("d/*"), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 16):
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))


def _delete_a_file(step_dir):
    max((step_dir / "model").rglob("d/*"), key=lambda p: p.stat().st_size).unlink()


def _delete_opt_manifest(step_dir):
    (step_dir / "opt" / "manifest.ocdbt").unlink()


def _wrong_checksum(step_dir):
    """Values that decode but are not the saved ones: what a checksum alone can tell."""
    path = step_dir / "meta" / "metadata"
    meta = json.loads(path.read_text())
    meta.pop("meta_sha256")
    meta["checksums"]["model"]["fingerprint"] = "00000000"
    meta["meta_sha256"] = checkpoint._json_sha(meta)
    path.write_text(json.dumps(meta))


def _garbled_meta(step_dir):
    path = step_dir / "meta" / "metadata"
    path.write_text(path.read_text().replace('"dim": 64', '"dim": 65'))


@pytest.fixture(scope="module")
def finished_sft(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    _run(_cmd("sft", root / "sft", "--config.num_steps=4", "--config.checkpoint_every=1", *SMALL))
    return root / "sft"


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", [_flip_bytes, _delete_a_file, _delete_opt_manifest, _wrong_checksum, _garbled_meta]
)
def test_damaged_newest_checkpoint_is_named_and_the_previous_one_resumed(
    damage, finished_sft, tmp_path
):
    work = tmp_path / "sft"
    shutil.copytree(finished_sft, work)
    damage(work / "checkpoints" / "4")
    if damage is _delete_opt_manifest:
        _params(work)  # a next stage or an export reads only the intact model
    else:
        with pytest.raises(checkpoint.CheckpointDamaged, match=r"checkpoints/4 is damaged"):
            _params(work)  # loading it for a next stage or an export names it too
    done = _run(_cmd("sft", work, "--config.num_steps=4", "--config.checkpoint_every=1", *SMALL))
    assert f"checkpoint {work}/checkpoints/4 is damaged" in done.stderr
    assert f"moved to {work}/damaged_checkpoints/4" in done.stderr
    assert f"resumed from {work}/checkpoints/3" in done.stderr
    _assert_same_run(work, finished_sft)
