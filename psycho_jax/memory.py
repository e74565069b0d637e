"""Memory planner: compile a config's train step on its mesh, abstractly, and report per-device memory.

    python -m psycho_jax.main --config=configs/dpo.py:llama3_8b --dry_run

Nothing is allocated: the model, optimizer state, reference and batch are `ShapeDtypeStruct`s with
their shardings; the jitted train step is lowered and compiled for the configured mesh (on a machine
without accelerators, on as many fake CPU devices as the mesh needs: `main` sets
`jax_num_cpu_devices` before JAX starts) and XLA's `memory_analysis()` gives the bytes per device.
Next to it, an analytic estimate:

  parameters   params x bytes(param_dtype) / shards(params)
  optimizer    2 x trained params x 4 (Adam moments, float32) / shards
  gradients    one copy per micro-batch, one more for their sum when accumulating, one for the update
  reference    a live DPO reference: its parameters (sharded as the policy)
  activations  per micro-batch row on this device: with full remat, the residual stream saved at each
               layer boundary, L x T x D x bytes(dtype), plus one layer's working set recomputed in the
               backward pass (q, k, v, attention probabilities N x T x T float32, MLP 3 x T x F) and
               the logits C x V float32 twice (logits and their gradient, C = `model.head_chunk`
               positions, or T with head_chunk=0), plus for DPO T x V float32 probabilities when the
               micro-batch's fit in `model.head_keep_mib`; without remat every layer's working set is
               kept.

The two agree when the compiler does what the model says; the planner prints both and the test checks
the 8B configs fit their hardware both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from psycho_jax import config as config_lib
from psycho_jax import sharding, tasks
from psycho_jax.model import Llama, LlamaConfig, RewardModel, trainable_filter

GB = 1024**3

HARDWARE_GB = {  # memory per device
    "H100": 80,
    "H200": 141,
    "A100": 80,
    "TPU v5p": 95,
    "TPU v5e": 16,
    "TPU v4": 32,
    "TPU v6e": 32,
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Per-device bytes of one train step, compiled and analytic."""

    mesh: dict[str, int]
    num_params: int
    compiled: dict[str, int]  # argument, output, temp, alias, total (XLA memory_analysis)
    analytic: dict[str, int]  # parameters, optimizer, gradients, reference, activations, total

    def table(self) -> str:
        rows = [f"| {k} | {v / GB:.2f} |" for k, v in self.analytic.items()]
        crows = [f"| {k} | {v / GB:.2f} |" for k, v in self.compiled.items()]
        return "\n".join(
            [
                f"mesh {self.mesh}, {self.num_params:,} trained parameters; GiB per device",
                "",
                "| analytic | GiB |",
                "|---|---|",
                *rows,
                "",
                "| compiled (XLA memory_analysis) | GiB |",
                "|---|---|",
                *crows,
            ]
        )


def model_config(c: ml_collections.ConfigDict) -> LlamaConfig:
    """The config's LlamaConfig, the vocabulary from `model.vocab_size` or the preset."""
    vocab = c.model.vocab_size or LlamaConfig.preset(c.model.preset).vocab_size
    return config_lib.llama_config(c, vocab)


def _abstract_batch(c, task: tasks.Task, mesh) -> dict[str, jax.ShapeDtypeStruct]:
    b, t = c.batch_size, c.data.max_len
    shape = (b, t) if task.name == "sft" else (b, 2, t)
    s = sharding.batch_sharding(mesh, len(shape))
    keys = ("tokens", "positions", "attention_mask", "loss_mask")
    dtypes = (jnp.int32, jnp.int32, jnp.bool_, jnp.bool_)
    return {
        k: jax.ShapeDtypeStruct(shape, d, sharding=s) for k, d in zip(keys, dtypes, strict=True)
    }


def _with_shardings(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def _bytes(tree: Any) -> int:
    """Per-device bytes of an abstract sharded tree."""
    total = 0
    for x in jax.tree.leaves(tree):
        shard = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shard) * jnp.dtype(x.dtype).itemsize
    return total


def analytic_activations(c, cfg: LlamaConfig, task: tasks.Task, mesh) -> int:
    """Per-device activation bytes of one micro-batch (module docstring)."""
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = c.batch_size // c.grad_accum * (1 if task.name == "sft" else 2)
    rows = max(rows // shards, 1)
    t, d, f, n = c.data.max_len, cfg.dim, cfg.ffn_dim, cfg.n_heads
    k, h, v, L = cfg.n_kv_heads, cfg.head_dim, cfg.vocab_size, cfg.n_layers
    tp = mesh.shape["tensor"]
    act = jnp.dtype(cfg.dtype).itemsize
    layer = t * ((n + 2 * k) * h * act / tp + n * t * 4 / tp + 3 * f * act / tp + 4 * d * act)
    # The output projection's logits and their gradient: one chunk of positions at a time
    # (`kernels.target_logprobs`), or the whole sequence with `head_chunk=0`.
    head_t = min(cfg.head_chunk, t) if cfg.head_chunk else t
    logits = 2 * head_t * v * 4 / tp if task.name != "reward" else 0
    if task.name == "dpo" and cfg.keeps_head_probs(c.batch_size // c.grad_accum * 2, t):
        logits += t * v * 4 / tp  # the chunks' probabilities, kept for the backward pass
    kept = L * layer if cfg.remat == "none" else L * t * d * act + layer
    per_row = kept + logits
    return int(rows * per_row)


def plan(c: ml_collections.ConfigDict) -> Plan:
    """Compiles `c`'s train step abstractly on its mesh and returns the per-device memory."""
    from psycho_jax import train  # heavy imports only when planning

    c = c.copy_and_resolve_references()
    with c.unlocked():  # nothing is loaded: a checkpoint to start from is not needed to plan
        c.init_from = c.init_from or "(dry run)"
        c.online.reward_model = c.online.reward_model or "(dry run)"
        c.task = "dpo" if c.task == "online_dpo" else c.task  # online DPO trains DPO steps
    config_lib.validate(c, jax.device_count())
    mesh = sharding.make_mesh(tuple(c.mesh))
    rules = tuple(tuple(r) for r in c.sharding_rules)
    task = tasks.make_task(c)
    cfg = model_config(c)
    if task.name == "reward":
        make = lambda: RewardModel(cfg, num_labels=task.num_labels, rngs=nnx.Rngs(0))
    else:
        make = lambda: Llama(cfg, rngs=nnx.Rngs(0))
    abstract = nnx.eval_shape(make)
    graphdef, params, rest = nnx.split(abstract, trainable_filter(abstract), ...)
    params = _with_shardings(params, sharding.state_shardings(params, mesh, rules))
    rest = _with_shardings(rest, sharding.state_shardings(rest, mesh, rules))
    tx = train.make_optimizer(c, params)
    opt_state = _with_shardings(
        jax.eval_shape(tx.init, params), sharding.optimizer_shardings(tx, params, mesh)
    )
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
    state = train.TrainState(step=scalar, params=params, opt_state=opt_state, rest=rest,
                             skipped=scalar)  # fmt: skip
    reference = params if task.needs_reference else None
    batch = _abstract_batch(c, task, mesh)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(
        functools.partial(
            train.train_step, graphdef=graphdef, task=task, tx=tx, accum=c.grad_accum
        ),
        in_shardings=(
            shardings,
            None,
            None if reference is None else jax.tree.map(lambda x: x.sharding, reference),
        ),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )
    with jax.set_mesh(mesh):
        compiled = step.lower(state, batch, reference).compile()
    m = compiled.memory_analysis()
    compiled_bytes = {
        "arguments": int(m.argument_size_in_bytes),
        "outputs": int(m.output_size_in_bytes),
        "aliased (donated)": int(m.alias_size_in_bytes),
        "temporaries": int(m.temp_size_in_bytes),
    }
    compiled_bytes["total"] = (
        compiled_bytes["arguments"]
        + compiled_bytes["outputs"]
        - compiled_bytes["aliased (donated)"]
        + compiled_bytes["temporaries"]
    )
    p_bytes = _bytes(params)
    analytic = {
        "parameters": p_bytes + _bytes(rest),
        "optimizer": _bytes(opt_state),
        # the micro-batch's gradients, their running sum when accumulating, and the update tree
        "gradients": p_bytes * (2 if c.grad_accum > 1 else 1),
        "update": p_bytes,
        "reference": _bytes(reference) if reference is not None else 0,
        "activations": analytic_activations(c, cfg, task, mesh),
    }
    analytic["total"] = sum(analytic.values())
    num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    return Plan(dict(mesh.shape), num_params, compiled_bytes, analytic)


def device_memory_gb(hardware: str) -> float:
    """Memory per device of a hardware description such as "8xH100" or "TPU v5p-16"."""
    for name, gb in HARDWARE_GB.items():
        if name.lower() in hardware.lower():
            return gb
    raise ValueError(f"unknown hardware {hardware!r}; known: {', '.join(HARDWARE_GB)}")
