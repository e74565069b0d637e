"""Orbax checkpoints of a stage's model, and loading a model from a stage or a HF directory.

Layout of a workdir:
    checkpoints/<step>/model   the model's variables (Orbax, sharded arrays)
    checkpoints/<step>/meta    JSON: task, LlamaConfig, reward outputs, step
    tokenizer/                 the tokenizer the stage trained with
A later stage's `init_from=<workdir>` loads the newest complete checkpoint; Orbax writes each step to a
temporary directory and renames it when complete, so a half-written save is never loaded.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from psycho_jax import hf, sharding
from psycho_jax.model import Llama, LlamaConfig, RewardModel, RopeScaling


def _manager(workdir: pathlib.Path, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(create=create, max_to_keep=None),
    )


def model_meta(model: nnx.Module, task: str, step: int) -> dict[str, Any]:
    cfg = dataclasses.asdict(model.config)
    return {
        "task": task,
        "step": step,
        "llama_config": cfg,
        "num_labels": model.num_labels if isinstance(model, RewardModel) else None,
    }


def save_stage(
    workdir: pathlib.Path,
    state,
    graphdef,
    model_like: nnx.Module,
    tokenizer,
    config: ml_collections.ConfigDict,
    step: int,
    final: bool = False,
) -> pathlib.Path:
    """Saves the model of a train state (and, once, the tokenizer) under `workdir/checkpoints`."""
    model = nnx.merge(graphdef, state.params, state.rest)
    mngr = _manager(workdir)
    meta = model_meta(model_like, config.task, step)
    mngr.save(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardSave(nnx.state(model).to_pure_dict()),
            meta=ocp.args.JsonSave(meta),
        ),
        force=final,
    )
    mngr.wait_until_finished()
    mngr.close()
    if jax.process_index() == 0 and not (workdir / "tokenizer").exists():
        tokenizer.save_pretrained(workdir / "tokenizer")
    return workdir / "checkpoints" / str(step)


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
    """Loads the model of a stage workdir (newest checkpoint, or `step`) or of a HF directory."""
    path = pathlib.Path(path)
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
        mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
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
