"""Exact resume, preemption, SIGKILL during saves, the NaN guard, and re-sharded restore."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from psycho_jax.core import sharding
from psycho_jax.data import training as data_training
from psycho_jax.train import checkpoint
from psycho_jax.train import loop as train
from tests.helpers import load_config, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _params(workdir, step=None, mesh=None):
    model = checkpoint.load_model(workdir, step=step, mesh=mesh)
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


def _losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _assert_bitwise(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _sft(**kw):
    return load_config("sft", num_steps=6, checkpoint_every=2, **kw)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    train.train_and_evaluate(_sft(), workdir)
    return workdir


@pytest.mark.slow
def test_preempted_and_resumed_run_is_bitwise_the_uninterrupted_one(
    uninterrupted, tmp_path, monkeypatch
):
    calls = {"n": 0}

    def stop_at_step_3(self, every=1, step=0):
        calls["n"] += 1
        return calls["n"] == 3

    with monkeypatch.context() as m:
        m.setattr(checkpoint.StopRequest, "requested", stop_at_step_3)
        out = train.train_and_evaluate(_sft(), tmp_path)
    assert out["preempted"] == 1.0 and out["step"] == 3
    assert checkpoint.Checkpointer(tmp_path, settings(_sft())).latest_step() == 3
    resumed = train.train_and_evaluate(_sft(), tmp_path)
    assert resumed["step"] == 6 and "preempted" not in resumed
    _assert_bitwise(_params(tmp_path), _params(uninterrupted))
    want = _losses(uninterrupted)
    got = _losses(tmp_path)
    assert {k: got[k] for k in range(4, 7)} == {k: want[k] for k in range(4, 7)}


def _main_cmd(workdir, steps=8):
    return [
        sys.executable,
        "-m",
        "psycho_jax.main",
        "--config=configs/sft.py:tiny",
        f"--workdir={workdir}",
        f"--config.num_steps={steps}",
        "--config.checkpoint_every=1",
        "--config.eval_every=0",
        "--config.log_every=1",
        "--config.batch_size=8",
        "--config.model.dim=64",
        "--config.model.head_dim=16",
        "--config.model.ffn_dim=128",
    ]


def _env():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1"}
    env.pop("XLA_FLAGS", None)
    return env


def _wait_for_step(workdir, step, proc, timeout=240):
    deadline = time.time() + timeout
    path = workdir / "metrics.jsonl"
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.stderr.read()[-2000:]}")
        if path.is_file() and len(path.read_text().splitlines()) >= step:
            return
        time.sleep(0.05)
    raise AssertionError("no progress")


@pytest.mark.slow
def test_sigterm_and_sigkill_then_resume_match_uninterrupted(tmp_path):
    """Real signals to a real `python -m psycho_jax.main` process (one CPU device)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_main_cmd(full), cwd=ROOT, env=_env(), check=True, capture_output=True)

    # SIGTERM: finishes the step, saves, exits 0 and says where it stopped.
    proc = subprocess.Popen(
        _main_cmd(cut),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(cut, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    assert "run the same command to resume" in err

    # SIGKILL at two moments (saves happen every step, so likely mid-save); each time the next start
    # resumes from the last committed checkpoint.
    for delay in (0.3, 1.1):
        proc = subprocess.Popen(
            _main_cmd(cut),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_step(cut, len((cut / "metrics.jsonl").read_text().splitlines()) + 1, proc)
        time.sleep(delay)
        proc.kill()
        proc.wait()
    done = subprocess.run(_main_cmd(cut), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list((cut / "checkpoints").glob("*tmp*"))
    _assert_bitwise(_params(cut), _params(full))
    assert _losses(cut) == _losses(full)  # every logged step, before and after each resume


def _poison(monkeypatch, bad_steps):
    make = data_training.make_loader

    class Poisoned:
        def __init__(self, loader):
            self.loader, self.n = loader, 0

        def __iter__(self):
            return self

        def __next__(self):
            batch = dict(next(self.loader))
            self.n += 1
            if self.n in bad_steps:
                batch["loss_mask"] = batch["loss_mask"] * np.float32("nan")
            return batch

        def __getattr__(self, name):
            return getattr(self.loader, name)

    def patched(c, tokenizer, split, task, **kw):
        loader = make(c, tokenizer, split, task, **kw)
        return Poisoned(loader) if split == "train" else loader

    monkeypatch.setattr(data_training, "make_loader", patched)


def test_nan_batch_is_skipped_and_reported(tmp_path, monkeypatch, caplog):
    _poison(monkeypatch, {2})
    out = train.train_and_evaluate(load_config("sft", num_steps=4), tmp_path)
    assert out["skipped_steps"] == 1 and np.isfinite(out["loss"])
    assert "step 2: non-finite loss or gradient, update skipped (example_index" in caplog.text


def test_consecutive_nan_steps_stop_with_last_good_checkpoint(tmp_path, monkeypatch):
    good = tmp_path / "good"
    flat = dict(optim__schedule="constant", optim__warmup_steps=0)  # same lr whatever num_steps
    train.train_and_evaluate(load_config("sft", num_steps=2, **flat), good)
    _poison(monkeypatch, {3, 4, 5, 6, 7, 8})
    c = load_config("sft", num_steps=10, max_bad_steps=3, **flat)
    with pytest.raises(FloatingPointError, match="3 consecutive steps.*last good state is saved"):
        train.train_and_evaluate(c, tmp_path / "bad")
    step = checkpoint.Checkpointer(tmp_path / "bad", settings(c)).latest_step()
    # Steps 1-2 trained as in the good run, every later update was skipped.
    _assert_bitwise(_params(tmp_path / "bad", step), _params(good))


def test_checkpoint_restores_onto_other_meshes(uninterrupted):
    ref = _params(uninterrupted, mesh=None)
    for shape in [(8, 1, 1), (2, 2, 2), (1, 8, 1)]:
        mesh = sharding.make_mesh(shape)
        model = checkpoint.load_model(uninterrupted, mesh=mesh)
        leaves = jax.tree.leaves(nnx.state(model))
        assert all(x.sharding.mesh.shape == mesh.shape for x in leaves)
        _assert_bitwise([np.asarray(x) for x in leaves], ref)


@pytest.mark.slow
def test_train_state_resumes_on_another_mesh(uninterrupted, tmp_path):
    """A run checkpointed on a (1,8,1) mesh continues on (2,2,2) and on (8,1,1)."""
    import shutil

    for shape in [(2, 2, 2), (8, 1, 1)]:
        workdir = tmp_path / "x".join(map(str, shape))
        shutil.copytree(uninterrupted, workdir)
        c = _sft()
        c.num_steps, c.mesh = 7, shape
        out = train.train_and_evaluate(c, workdir)
        assert out["step"] == 7 and np.isfinite(out["loss"])


@pytest.mark.slow
def test_keep_policy_keeps_newest_and_best(tmp_path):
    c = load_config(
        "sft",
        num_steps=8,
        checkpoint_every=1,
        keep_checkpoints=2,
        eval_every=1,
        keep_best_metric="eval/loss",
    )
    train.train_and_evaluate(c, tmp_path)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    evals = {}
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "eval/loss" in row and row["step"] > 0:
            evals[row["step"]] = row["eval/loss"]
    best = min(evals, key=evals.get)
    assert {7, 8} <= set(steps) and best in steps and len(steps) <= 3


def test_incompatible_checkpoint_and_unwritable_workdir_fail_early(uninterrupted, tmp_path):
    import shutil

    workdir = tmp_path / "w"
    shutil.copytree(uninterrupted, workdir)
    c = _sft()
    c.model.dim = 96
    with pytest.raises(ValueError, match="another model or task.*dim: checkpoint 64 vs config 96"):
        train.train_and_evaluate(c, workdir)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="not writable"):
        train.train_and_evaluate(_sft(), blocker / "sub")
