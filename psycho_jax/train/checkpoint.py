"""Orbax checkpoints of a stage's model, and loading a model from a stage or a HF directory.

Layout of a workdir:
    checkpoints/<step>/model   the model's variables (Orbax, sharded arrays)
    checkpoints/<step>/opt     optimizer state, step and skip counters (to resume)
    checkpoints/<step>/data    the data loader's iterator state (JSON)
    checkpoints/<step>/meta    JSON: task, the model's architecture (the full LlamaConfig, LoRA rank,
                               alpha and targets included; reward outputs), step, the run config, and
                               checksums of the other items and of itself
    checkpoints/_deleting/     checkpoints being removed (renamed here first, then deleted)
    damaged_checkpoints/<step> checkpoints that failed their checksums or could not be read
    tokenizer/                 the tokenizer the stage trained with
    adapters/                  a LoRA stage's final adapters in PEFT's layout (`psycho_jax.core.lora`)
A later stage's `init_from=<workdir>` loads the newest complete checkpoint; Orbax writes each step to a
temporary directory and renames it when complete, so a half-written save is never loaded, and an old
checkpoint is renamed into `_deleting/` before it is removed, so a half-deleted one is never loaded.
What a resume, `load_model`, export, chat and evaluation build is the architecture recorded in the
checkpoint, never the preset or the command line (which may change only the `NUMERICS`).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import signal
import threading
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from psycho_jax.core import hf, sharding
from psycho_jax.core.model import (
    NUMERICS,
    Llama,
    LlamaConfig,
    RewardModel,
    RopeScaling,
    trainable_filter,
)
from psycho_jax.train.settings import TrainSettings

DELETING = "_deleting"  # Orbax's `todelete_subdir`: a checkpoint is renamed here, then removed
DAMAGED = "damaged_checkpoints"  # where a resume moves a checkpoint that failed its checks


class CheckpointDamaged(Exception):
    """A checkpoint that cannot be read or does not match its recorded checksums."""

    def __init__(self, path: pathlib.Path, reason: str):
        super().__init__(f"checkpoint {path} is damaged: {reason}")
        self.path, self.reason = path, reason


def _manager(workdir: pathlib.Path, create: bool = True, **options: Any) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(
            create=create, cleanup_tmp_directories=create, todelete_subdir=DELETING, **options
        ),
    )


def purge_deleted(workdir: pathlib.Path, startup: bool = False) -> list[str]:
    """Removes the checkpoints renamed into `checkpoints/_deleting/` (whole or half-removed: a
    checkpoint there is never loaded). Only its entries, never the folder itself, so a rename in
    progress in Orbax's background thread is unaffected. Returns the removed names."""
    trash = workdir / "checkpoints" / DELETING
    if jax.process_index() != 0 or not trash.is_dir():
        return []
    names = sorted(p.name for p in trash.iterdir())
    for name in names:
        shutil.rmtree(trash / name, ignore_errors=True)
        if startup:
            logging.warning("removed %s, a checkpoint whose deletion was interrupted", trash / name)
    return names


def model_meta(model: nnx.Module, task: str, step: int) -> dict[str, Any]:
    # The model spec only: the architecture and the stored weights' dtype. How a run computes
    # (the other NUMERICS, the target platform) is the loading run's choice; checkpoints that
    # recorded those too still load (the loader's numerics replace them).
    cfg = {**model.config.architecture(), "param_dtype": model.config.param_dtype}
    return {
        "task": task,
        "step": step,
        "llama_config": cfg,
        "num_labels": model.num_labels if isinstance(model, RewardModel) else None,
    }


# ----------------------------------------------------------------------------- checksums


def _bits(x: jax.Array) -> jax.Array:
    """The bit pattern of each element as uint32 (floats bitcast, never converted)."""
    size = jnp.dtype(x.dtype).itemsize
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprint(leaves: list[jax.Array]) -> jax.Array:
    """sum_i bits_i * (2 i + 1) mod 2^32 per array (i the flat index), chained over the arrays.

    Integer sums are exact in any order, so the value is the same on any mesh; odd weights make
    every single-bit change, and any move of an element, change it."""
    total = jnp.uint32(0)
    for x in leaves:
        index = jnp.zeros(x.shape, jnp.uint32)
        stride = 1
        for d in reversed(range(x.ndim)):
            iota = jax.lax.broadcasted_iota(jnp.uint32, x.shape, d)
            index = index + iota * jnp.uint32(stride % 2**32)
            stride *= x.shape[d]
        term = jnp.sum(_bits(x) * (index * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)
        total = total * jnp.uint32(0x01000193) + term
    return total


def fingerprint(tree: Any) -> dict[str, Any]:
    """A checksum of a tree of arrays and the dtypes it was taken in."""
    leaves = jax.tree.leaves(tree)
    value = _fingerprint(leaves)
    return {
        "fingerprint": f"{int(np.asarray(value.addressable_data(0))):08x}",
        "dtypes": [str(x.dtype) for x in leaves],
    }


def _json_sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _verify(path: pathlib.Path, name: str, tree: Any, recorded: dict[str, Any]) -> None:
    """Raises CheckpointDamaged when `tree` (item `name` as restored) differs from its checksum.

    Restored in other dtypes than saved (a run that changed `param_dtype`), it cannot be compared:
    that is logged."""
    if [str(x.dtype) for x in jax.tree.leaves(tree)] != recorded["dtypes"]:
        logging.warning("%s: item %r restored in other dtypes than saved; not verified", path, name)
        return
    got = fingerprint(tree)["fingerprint"]
    if got != recorded["fingerprint"]:
        raise CheckpointDamaged(
            path,
            f"item {name!r} checksum {got} differs from the recorded {recorded['fingerprint']}",
        )


def read_meta(mngr: ocp.CheckpointManager, path: pathlib.Path, step: int) -> dict[str, Any]:
    """The meta item of `step`, checked against its own checksum (when it has one)."""
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # Orbax/TensorStore/JSON errors all mean the same to a user
        raise CheckpointDamaged(path, f"meta unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict) or "llama_config" not in meta:
        raise CheckpointDamaged(path, "meta holds no model architecture")
    recorded = meta.pop("meta_sha256", None)
    if recorded is not None and recorded != _json_sha(meta):
        raise CheckpointDamaged(path, "meta differs from its recorded checksum")
    return meta


def check_numerics(overrides: dict[str, Any]) -> None:
    unknown = set(overrides) - set(NUMERICS)
    if unknown:
        raise ValueError(
            f"{sorted(unknown)} would change the model's architecture; a saved model is built as "
            f"recorded, only {', '.join(NUMERICS)} may differ"
        )


def architecture_of(meta: dict[str, Any], **numerics: Any) -> tuple[LlamaConfig, int | None]:
    """The LlamaConfig a checkpoint records (with `numerics` changed) and its reward outputs."""
    check_numerics(numerics)
    return _llama_config(meta["llama_config"], **numerics), meta["num_labels"]


def make_model(cfg: LlamaConfig, num_labels: int | None, seed: int = 0):
    """A constructor of the model a checkpoint records (a causal LM, or a reward model)."""
    if num_labels is None:
        return lambda: Llama(cfg, rngs=nnx.Rngs(seed))
    return lambda: RewardModel(cfg, num_labels=num_labels, rngs=nnx.Rngs(seed))


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    """Asynchronous, atomic checkpoints of a training run under `workdir/checkpoints/<step>/`.

    Items per step: `model` (the model's variables: what `load_model` and the next stage read),
    `opt` (optimizer state, step and skip counters), `data` (the loader's iterator state) and `meta`
    (task, the model's architecture, the run config, checksums). Orbax writes each step into a
    temporary directory and renames it when every item is complete, so a run killed mid-save leaves
    the previous checkpoint intact; leftover temporary directories are removed at start-up. Keeps the
    newest `keep` checkpoints, plus the best by `best_metric` when one is configured (the newest is
    never evicted); an evicted one is renamed into `_deleting/` before it is removed, and start-up
    removes whatever a kill left there.
    """

    def __init__(self, workdir: pathlib.Path, config: TrainSettings):
        policies = [ocp.checkpoint_managers.LatestN(n=max(config.keep_checkpoints, 1))]
        if config.keep_best_metric:
            key, mode = config.keep_best_metric, config.keep_best_mode
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m[key],
                    reverse=mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self.workdir = workdir
        self._options = dict(
            enable_async_checkpointing=True,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        )
        purge_deleted(workdir, startup=True)
        self.manager = _manager(workdir, **self._options)

    def path(self, step: int) -> pathlib.Path:
        return self.workdir / "checkpoints" / str(step)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        """Every complete checkpoint's step, newest first."""
        return sorted(self.manager.all_steps(), reverse=True)

    def has_train_state(self, step: int) -> bool:
        return (self.path(step) / "opt").is_dir()

    def save(
        self,
        step: int,
        state,
        graphdef,
        model_like: nnx.Module,
        config,
        loader_state: dict,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Starts an asynchronous save of everything needed to continue at `step + 1`."""
        model = nnx.merge(graphdef, state.params, state.rest)
        model_tree = nnx.state(model).to_pure_dict()
        opt = {"opt_state": state.opt_state, "step": state.step, "skipped": state.skipped}
        meta = model_meta(model_like, config.task, step)
        meta["config"] = config.source
        meta["checksums"] = {
            "model": fingerprint(model_tree),
            "opt": fingerprint(opt),
            "data": _json_sha(loader_state),
        }
        meta["meta_sha256"] = _json_sha(meta)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(model_tree),
                opt=ocp.args.StandardSave(opt),
                data=ocp.args.JsonSave(loader_state),
                meta=ocp.args.JsonSave(meta),
            ),
            metrics=metrics,
            force=True,
        )
        purge_deleted(self.workdir)  # the previous save's evictions, finished by now

    def restore(self, step: int, state, graphdef, meta: dict[str, Any]):
        """The train state and loader state of `step`, placed like `state` (any mesh), checked
        against the checksums in `meta` (checkpoints written before checksums are not).

        Raises:
          CheckpointDamaged: an item is missing, unreadable, or differs from its checksum.
        """
        model = nnx.merge(graphdef, state.params, state.rest)
        model_state = nnx.state(model)
        opt = {"opt_state": state.opt_state, "step": state.step, "skipped": state.skipped}
        path = self.path(step)
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(_abstract(model_state.to_pure_dict())),
                    opt=ocp.args.StandardRestore(_abstract(opt)),
                    data=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:  # Orbax/TensorStore/JSON errors all mean the same to a user
            raise CheckpointDamaged(path, f"unreadable ({type(e).__name__}: {e})") from e
        checksums = meta.get("checksums")
        if checksums is None:
            logging.warning("%s was written without checksums: restored unverified", path)
        else:
            _verify(path, "model", restored["model"], checksums["model"])
            _verify(path, "opt", restored["opt"], checksums["opt"])
            if _json_sha(restored["data"]) != checksums["data"]:
                raise CheckpointDamaged(path, "item 'data' differs from its recorded checksum")
        nnx.replace_by_pure_dict(model_state, restored["model"])
        model = nnx.merge(graphdef, model_state)
        _, params, rest = nnx.split(model, trainable_filter(model), ...)
        o = restored["opt"]
        new = state.replace(
            params=params, rest=rest, opt_state=o["opt_state"], step=o["step"], skipped=o["skipped"]
        )
        return new, restored["data"]

    def meta(self, step: int) -> dict[str, Any]:
        """The meta item of `step` (raises CheckpointDamaged when it fails its checksum)."""
        return read_meta(self.manager, self.path(step), step)

    def set_aside(self, step: int) -> pathlib.Path:
        """Moves a damaged checkpoint out of `checkpoints/` (kept for inspection, never loaded) and
        returns where it went; the run then resumes from the previous one."""
        dest = self.workdir / DAMAGED / str(step)
        if jax.process_index() == 0:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            self.path(step).rename(dest)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"set_aside_{step}")
        self.manager.close()  # it lists the steps when opened
        self.manager = _manager(self.workdir, **self._options)
        return dest

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
        purge_deleted(self.workdir)


def _llama_config(d: dict[str, Any], **overrides: Any) -> LlamaConfig:
    d = dict(d)
    if d.get("rope_scaling") is not None:
        d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
    return LlamaConfig(**{**d, **overrides})


def is_stage_dir(path: str | pathlib.Path) -> bool:
    return (pathlib.Path(path) / "checkpoints").is_dir()


def load_model(
    path: str | pathlib.Path,
    *,
    mesh=None,
    rules: Sequence[tuple[str, Any]] = sharding.DEFAULT_RULES,
    step: int | None = None,
    **config_overrides: Any,
) -> nnx.Module:
    """Loads the model of a stage workdir (newest checkpoint, or `step`) or of a HF directory.

    An online-DPO workdir names its final round in a `policy` file; that round is loaded. A LoRA
    stage's model comes back with its adapters (`psycho_jax.core.lora.merge` folds them into the base).
    The architecture is the recorded one; `config_overrides` may set only the `NUMERICS` fields.
    A checkpoint written with checksums is verified against them.

    Raises:
      CheckpointDamaged: the checkpoint is unreadable or fails its checksums (naming its path).
    """
    check_numerics(config_overrides)
    path = pathlib.Path(path)
    if (path / "policy").is_file() and not is_stage_dir(path):
        path = path / (path / "policy").read_text().strip()  # relative: the workdir can move
    if (path / "config.json").is_file():
        return hf.load_llama(path, mesh=mesh, rules=rules, **config_overrides)
    if not is_stage_dir(path):
        raise FileNotFoundError(
            f"{path}: neither a stage workdir (no checkpoints/) nor a Hugging Face directory "
            "(no config.json)"
        )
    mngr = _manager(path, create=False)
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{path}/checkpoints holds no complete checkpoint")
    where = path / "checkpoints" / str(step)
    try:
        meta = read_meta(mngr, where, step)
        cfg, num_labels = architecture_of(meta, **config_overrides)
        abstract = nnx.eval_shape(make_model(cfg, num_labels))
        graphdef, state = nnx.split(abstract)
        if mesh is None:
            mesh = sharding.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
        shardings = sharding.state_shardings(state, mesh, rules)
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
        ).to_pure_dict()
        try:
            restored = mngr.restore(
                step, args=ocp.args.Composite(model=ocp.args.StandardRestore(target))
            )["model"]
        except Exception as e:  # Orbax/TensorStore errors all mean the same to a user
            raise CheckpointDamaged(where, f"model unreadable ({type(e).__name__}: {e})") from e
        if "checksums" in meta:
            _verify(where, "model", restored, meta["checksums"]["model"])
    except CheckpointDamaged as e:
        raise CheckpointDamaged(
            e.path, f"{e.reason}; move it away (or load another step) to use an older checkpoint"
        ) from e
    finally:
        mngr.close()
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)


def read_architecture(path: str | pathlib.Path) -> LlamaConfig:
    """The architecture of a stage workdir's newest checkpoint or of a HF directory (no weights
    read)."""
    path = pathlib.Path(path)
    if (path / "policy").is_file() and not is_stage_dir(path):
        path = path / (path / "policy").read_text().strip()
    if (path / "config.json").is_file():
        return hf.config_from_hf(json.loads((path / "config.json").read_text()))
    if not is_stage_dir(path):
        raise FileNotFoundError(f"{path}: neither a stage workdir nor a Hugging Face directory")
    mngr = _manager(path, create=False)
    try:
        step = mngr.latest_step()
        if step is None:
            raise FileNotFoundError(f"{path}/checkpoints holds no complete checkpoint")
        return architecture_of(read_meta(mngr, path / "checkpoints" / str(step), step))[0]
    finally:
        mngr.close()


# ----------------------------------------------------------------------------- run safety


class StopRequest:
    """SIGTERM / SIGINT while training: finish the step, save, exit cleanly."""

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self, every: int = 1, step: int = 0) -> bool:
        """True on every host once any host was signalled (multi-host runs agree on the step).

        On several hosts the agreement is a blocking all-gather, so it is only checked every
        `every` steps, keeping dispatch asynchronous in between."""
        local = self.signal is not None
        if jax.process_count() == 1:
            return local
        if step % every:
            return False
        return bool(np.any(multihost_utils.process_allgather(np.asarray(local))))


def check_workdir(workdir: pathlib.Path) -> None:
    """Fails early when the workdir cannot take checkpoints."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_test_{jax.process_index()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as e:
        raise OSError(f"workdir {workdir} is not writable ({e}); checkpoints would be lost") from e


def _comparable(cfg: LlamaConfig) -> dict[str, Any]:
    arch = cfg.architecture()
    if not arch["lora_rank"]:  # alpha and targets mean nothing without adapters
        arch.pop("lora_alpha"), arch.pop("lora_targets")
    return arch


def check_compatible(
    meta: dict,
    expected: LlamaConfig,
    num_labels: int | None,
    task_name: str,
    numerics: dict[str, Any],
    where: pathlib.Path,
) -> None:
    """Refuses to resume a checkpoint of another architecture, head or task than the run's config
    builds (`expected`, `num_labels`), naming each field with both values; logs the numerics that
    differ (those may)."""
    saved, saved_labels = architecture_of(meta)
    have, want = _comparable(saved), _comparable(expected)
    diff = [
        f"{k}: checkpoint {have.get(k)!r} vs config {v!r}"
        for k, v in want.items()
        if have.get(k) != v
    ]
    if saved_labels != num_labels:
        diff.append(f"reward outputs: checkpoint {saved_labels} vs config {num_labels}")
    if meta["task"] != task_name:
        diff.append(f"task: checkpoint {meta['task']} vs config {task_name}")
    if diff:
        raise ValueError(
            f"{where} holds a run of another model or task ({'; '.join(diff)}); "
            "use a new --workdir or the original config"
        )
    stored = meta["llama_config"]  # the numerics a checkpoint recorded (older ones: all of them)
    changed = [
        f"{k}={v!r} (checkpoint {stored[k]!r})"
        for k, v in numerics.items()
        if k in NUMERICS and k in stored and stored[k] != v
    ]
    if changed:
        logging.info("resuming %s with other numerics: %s", where, ", ".join(changed))
