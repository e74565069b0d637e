"""Orbax checkpoints of a stage's model, and loading a model from a stage or a HF directory.

Layout of a workdir:
    checkpoints/<step>/model   the model's variables (Orbax, sharded arrays)
    checkpoints/<step>/opt     optimizer state, step and skip counters (to resume)
    checkpoints/<step>/data    the data loader's iterator state (JSON)
    checkpoints/<step>/meta    JSON: task, LlamaConfig (LoRA rank, alpha, targets included), reward
                               outputs, step, the run config
    tokenizer/                 the tokenizer the stage trained with
    adapters/                  a LoRA stage's final adapters in PEFT's layout (`psycho_jax.lora`)
A later stage's `init_from=<workdir>` loads the newest complete checkpoint; Orbax writes each step to a
temporary directory and renames it when complete, so a half-written save is never loaded.
"""

from __future__ import annotations

import dataclasses
import pathlib
import signal
import threading
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils

from psycho_jax import hf, sharding
from psycho_jax.model import Llama, LlamaConfig, RewardModel, RopeScaling, trainable_filter


def _manager(workdir: pathlib.Path, create: bool = True, **options: Any) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(
            create=create, cleanup_tmp_directories=create, **options
        ),
    )


def model_meta(model: nnx.Module, task: str, step: int) -> dict[str, Any]:
    cfg = dataclasses.asdict(model.config)
    cfg.pop("platform")  # where a program was compiled for, not a property of the weights
    return {
        "task": task,
        "step": step,
        "llama_config": cfg,
        "num_labels": model.num_labels if isinstance(model, RewardModel) else None,
    }


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    """Asynchronous, atomic checkpoints of a training run under `workdir/checkpoints/<step>/`.

    Items per step: `model` (the model's variables: what `load_model` and the next stage read),
    `opt` (optimizer state, step and skip counters), `data` (the loader's iterator state) and `meta`
    (task, LlamaConfig, the run config). Orbax writes each step into a temporary directory and renames
    it when every item is complete, so a run killed mid-save leaves the previous checkpoint intact;
    leftover temporary directories are removed at start-up. Keeps the newest `keep` checkpoints, plus
    the best by `best_metric` when one is configured (the newest is never evicted).
    """

    def __init__(self, workdir: pathlib.Path, config: ml_collections.ConfigDict):
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
        self.manager = _manager(
            workdir,
            enable_async_checkpointing=True,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def has_train_state(self, step: int) -> bool:
        return (self.workdir / "checkpoints" / str(step) / "opt").is_dir()

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
        opt = {"opt_state": state.opt_state, "step": state.step, "skipped": state.skipped}
        meta = model_meta(model_like, config.task, step)
        meta["config"] = config.to_json_best_effort()
        self.manager.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(nnx.state(model).to_pure_dict()),
                opt=ocp.args.StandardSave(opt),
                data=ocp.args.JsonSave(loader_state),
                meta=ocp.args.JsonSave(meta),
            ),
            metrics=metrics,
            force=True,
        )

    def restore(self, step: int, state, graphdef):
        """The train state and loader state of `step`, placed like `state` (any mesh)."""
        model = nnx.merge(graphdef, state.params, state.rest)
        model_state = nnx.state(model)
        opt = {"opt_state": state.opt_state, "step": state.step, "skipped": state.skipped}
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(_abstract(model_state.to_pure_dict())),
                opt=ocp.args.StandardRestore(_abstract(opt)),
                data=ocp.args.JsonRestore(),
            ),
        )
        nnx.replace_by_pure_dict(model_state, restored["model"])
        model = nnx.merge(graphdef, model_state)
        _, params, rest = nnx.split(model, trainable_filter(model), ...)
        o = restored["opt"]
        new = state.replace(
            params=params, rest=rest, opt_state=o["opt_state"], step=o["step"], skipped=o["skipped"]
        )
        return new, restored["data"]

    def meta(self, step: int) -> dict[str, Any]:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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
    stage's model comes back with its adapters (`psycho_jax.lora.merge` folds them into the base).
    """
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
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    cfg = _llama_config(meta["llama_config"], **config_overrides)
    if meta["num_labels"] is None:
        make = lambda: Llama(cfg, rngs=nnx.Rngs(0))
    else:
        make = lambda: RewardModel(cfg, num_labels=meta["num_labels"], rngs=nnx.Rngs(0))
    abstract = nnx.eval_shape(make)
    graphdef, state = nnx.split(abstract)
    if mesh is None:
        mesh = sharding.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
    shardings = sharding.state_shardings(state, mesh, rules)
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    ).to_pure_dict()
    restored = mngr.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(target)))[
        "model"
    ]
    mngr.close()
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)


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


def check_compatible(meta: dict, model: nnx.Module, task, workdir) -> None:
    """Refuses to resume a checkpoint of another model shape or task."""
    saved = _llama_config(meta["llama_config"])
    shape_fields = (
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "head_dim",
        "ffn_dim",
        "lora_rank",
        "lora_targets",
    )
    diff = [
        f"{f}: {getattr(saved, f)} vs {getattr(model.config, f)}"
        for f in shape_fields
        if getattr(saved, f) != getattr(model.config, f)
    ]
    if meta["task"] != task.name:
        diff.append(f"task: {meta['task']} vs {task.name}")
    if diff:
        raise ValueError(
            f"{workdir}/checkpoints holds a run of another model or task ({'; '.join(diff)}); "
            "use a new --workdir or the original config"
        )
