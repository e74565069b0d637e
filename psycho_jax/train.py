"""`train_and_evaluate(config, workdir)` for every task, and the pure, jitted train step.

Read top to bottom: tokenizer -> model (random, a previous stage, or Hugging Face) -> optimizer ->
sharded train state -> data -> loop (step, log, evaluate) -> checkpoint. The tasks (`psycho_jax.tasks`)
differ only in how a batch becomes a loss.
"""

from __future__ import annotations

import functools
import itertools
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx, struct
from jax.experimental import multihost_utils

from psycho_jax import checkpoint as ckpt_lib
from psycho_jax import config as config_lib
from psycho_jax import lora as lora_lib
from psycho_jax import losses, sharding, tasks, topology
from psycho_jax import reference as reference_lib
from psycho_jax import tokenizer as tokenizer_lib
from psycho_jax.data import training as data_lib
from psycho_jax.metrics_writer import MetricsWriter
from psycho_jax.model import Llama, LlamaConfig, RewardModel, trainable_filter

Batch = dict[str, Any]


@struct.dataclass
class TrainState:
    """Everything the step changes. `params` are the trained variables (`trainable_filter`: all
    parameters, or with LoRA the adapters only); `rest` the model's others (a LoRA model's frozen base).
    """

    step: jax.Array
    params: nnx.State
    opt_state: Any
    rest: nnx.State
    skipped: jax.Array  # updates skipped because the loss or gradient was not finite


# ----------------------------------------------------------------------------- optimizer


def make_schedule(c: ml_collections.ConfigDict) -> optax.Schedule:
    o = c.optim
    warmup = min(o.warmup_steps, max(c.num_steps - 1, 0))
    decay_steps = max(c.num_steps - warmup, 1)
    end = o.lr * o.end_lr_factor
    if o.schedule == "cosine":
        decay = optax.cosine_decay_schedule(o.lr, decay_steps, alpha=o.end_lr_factor)
    elif o.schedule == "linear":
        decay = optax.linear_schedule(o.lr, end, decay_steps)
    else:
        decay = optax.constant_schedule(o.lr)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, o.lr, warmup), decay], [warmup])


def decay_mask(params: nnx.State) -> nnx.State:
    """Weight decay on matrices only: never on norms (logical axis `norm`)."""
    return jax.tree.map(
        lambda v: v.replace("norm" not in (v.get_metadata().get("logical_axes") or ())),
        params,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def make_optimizer(c: ml_collections.ConfigDict, params: nnx.State) -> optax.GradientTransformation:
    o = c.optim
    return optax.chain(
        optax.clip_by_global_norm(o.clip_norm) if o.clip_norm > 0 else optax.identity(),
        optax.adamw(
            make_schedule(c),
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            weight_decay=o.weight_decay,
            mask=decay_mask(params),
        ),
    )


# ----------------------------------------------------------------------------- the step


def _split_micro(batch: Batch, accum: int) -> Batch:
    """[B, ...] -> [A, B/A, ...] so that each device's rows stay on that device.

    Row j*A + i goes to micro-batch i: the batch axis is sharded in contiguous blocks, so a reshape to
    (B/A, A) keeps the block sharding on its first axis and the transpose moves no data.
    """

    def split(x):
        x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return jax.tree.map(split, batch)


def train_step(
    state: TrainState,
    batch: Batch,
    reference: nnx.State | None,
    *,
    graphdef: nnx.GraphDef,
    task: tasks.Task,
    tx: optax.GradientTransformation,
    accum: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step over a global batch, accumulating `accum` micro-batches.

    A step whose loss or gradient is not finite leaves the parameters and optimizer state unchanged
    and is counted in `state.skipped` (and the `skipped` metric).
    """
    denominator = task.denominator(batch)
    ref_model = None if reference is None else nnx.merge(graphdef, reference, state.rest)

    def loss_fn(params, micro):
        model = nnx.merge(graphdef, params, state.rest)
        return task.loss(model, micro, denominator, ref_model)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum == 1:
        (_, metrics), grads = grad_fn(state.params, batch)
    else:

        def body(grads, micro):
            (_, metrics), g = grad_fn(state.params, micro)
            return jax.tree.map(jnp.add, grads, g), metrics

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, metrics = jax.lax.scan(body, zeros, _split_micro(batch, accum))
        metrics = jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)

    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)

    def update(params, opt_state):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    # A branch, not a select over every buffer: a good step updates in place (the state is
    # donated) and a bad one leaves parameters and optimizer state untouched.
    params, opt_state = jax.lax.cond(
        finite, update, lambda p, o: (p, o), state.params, state.opt_state
    )
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        skipped=state.skipped + (~finite).astype(jnp.int32),
    )
    metrics = dict(
        tasks.finalize(metrics), grad_norm=grad_norm, skipped=(~finite).astype(jnp.float32)
    )
    return new_state, metrics


def init_train_state(
    c: ml_collections.ConfigDict, params: nnx.State, rest: nnx.State, mesh
) -> tuple[optax.GradientTransformation, TrainState]:
    """The optimizer and the step-0 train state on `mesh` (optimizer moments sharded like the
    parameters they follow)."""
    tx = make_optimizer(c, params)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init, out_shardings=sharding.optimizer_shardings(tx, params, mesh))(
            params
        )
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        rest=rest,
        skipped=jnp.zeros((), jnp.int32),
    )
    return tx, _on_mesh(state, mesh)


def jit_train_step(
    c: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    task: tasks.Task,
    tx: optax.GradientTransformation,
    state: TrainState,
    reference: nnx.State | None,
):
    """`train_step` jitted with the state's shardings kept and its buffers donated:
    `step_fn(state, batch, reference) -> (state, metrics)`. Call it under `jax.set_mesh(mesh)`."""
    if c.get("release_compiler_heap", True):
        release_compiler_heap()
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    ref_shardings = None if reference is None else jax.tree.map(lambda x: x.sharding, reference)
    # the platform of the devices the state lives on (the mesh's), not this machine's default
    platform = topology.platform_of(list(jax.tree.leaves(state_shardings)[0].device_set))
    return jax.jit(
        functools.partial(train_step, graphdef=graphdef, task=task, tx=tx, accum=c.grad_accum),
        in_shardings=(state_shardings, None, ref_shardings),
        out_shardings=(state_shardings, None),
        donate_argnums=0,
        compiler_options=compiler_options(c, platform),
    )


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_releasing = False


def release_compiler_heap() -> bool:
    """From now on, after each XLA compilation in this process, return the host heap the compiler
    freed to the operating system (glibc's `malloc_trim(0)`; registered once per process).

    Compiling a train step allocates and frees about a gigabyte of host memory (the medium
    benchmark shape); glibc keeps those pages mapped for reuse, but the step's large buffers are
    allocated afresh (mmap), so without this they add to it: measured on the medium SFT step
    (bench/RESULTS.md), peak RSS 3.9 GB without, 3.5 GB with. The compilation event fires after
    the compiler has run and before the step executes. Returns whether trimming is active (False
    where the C library has no `malloc_trim`: macOS, musl)."""
    global _releasing
    if _releasing:
        return True
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def on_event(name: str, _secs: float, **_kw) -> None:
        if name == _COMPILE_EVENT:
            trim(0)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    _releasing = True
    return True


CPU_SCHEDULERS = {
    "memory": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "concurrency": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED",
}


def compiler_options(c: ml_collections.ConfigDict, platform: str) -> dict[str, str] | None:
    """XLA options of the train step compiled for `platform` (the mesh's devices':
    `topology.platform_of`, never this machine's default backend): `c.cpu_scheduler` ("default":
    XLA's choice, "memory": order ops for the smallest peak, "concurrency": for the most parallel
    ops) for a CPU target; none for the others (the TPU and GPU compilers reject CPU options)."""
    if c.cpu_scheduler == "default" or platform != "cpu":
        return None
    return {"xla_cpu_scheduler_type": CPU_SCHEDULERS[c.cpu_scheduler]}


def eval_step(params, rest, batch, reference, *, graphdef, task) -> dict[str, jax.Array]:
    model = nnx.merge(graphdef, params, rest)
    ref_model = None if reference is None else nnx.merge(graphdef, reference, rest)
    denominator = task.denominator(batch)
    _, metrics = task.loss(model, batch, denominator, ref_model)
    return {**metrics, "_weight": denominator}


# ----------------------------------------------------------------------------- models


def build_model(
    c: ml_collections.ConfigDict, task: tasks.Task, vocab_size: int, mesh, init_from: str
) -> nnx.Module:
    """The model for `task`: random, or initialised from a stage checkpoint or a HF directory.

    A reward model initialised from a causal LM takes its backbone and a fresh `score` head. With
    `lora.rank > 0` the model gets fresh adapters on top; a checkpoint that has adapters of its own
    (a LoRA stage) is merged into its base first.
    """
    rules = tuple(tuple(r) for r in c.sharding_rules)
    numerics = config_lib.numerics(c)
    lora = config_lib.lora_fields(c)
    if init_from:
        source = lora_lib.merge(ckpt_lib.load_model(init_from, mesh=mesh, rules=rules, **numerics))
        cfg = source.config.replace(**lora)
    else:
        source = None
        cfg = config_lib.llama_config(c, vocab_size)
    if source is not None and (task.name != "reward" or isinstance(source, RewardModel)):
        if isinstance(source, RewardModel) != (task.name == "reward"):
            raise ValueError(
                f"init_from={init_from!r} holds a reward model; task {task.name} needs an LM"
            )
        if task.name == "reward" and source.num_labels != task.num_labels:
            raise ValueError(
                f"init_from={init_from!r} has {source.num_labels} reward outputs; the config asks "
                f"for {task.num_labels} (reward.principle_head={c.reward.principle_head})"
            )
        if c.lora.rank:
            lora_lib.add_adapters(
                source, c.lora.rank, c.lora.alpha, c.lora.targets, seed=c.seed, rules=rules
            )
        return source
    seed = c.seed
    if task.name == "reward":
        make = lambda: RewardModel(cfg, num_labels=task.num_labels, rngs=nnx.Rngs(seed))
    else:
        make = lambda: Llama(cfg, rngs=nnx.Rngs(seed))
    model = sharding.init_sharded(make, mesh, rules)
    if source is not None:  # reward model from a causal LM: copy the backbone (not the adapters)
        nnx.update(model.model, nnx.state(source.model))
    return model


def model_flops_per_token(cfg: LlamaConfig, seq_len: int, task: tasks.Task) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 6 x L x T x (N x H) for causal attention
    (half of the 12 L T N H of full attention); a live DPO reference adds its forward pass (1/3).
    With LoRA the frozen base needs no weight gradients (4 x its parameters) and the adapters cost
    6 x theirs."""
    embed = cfg.vocab_size * cfg.dim
    matmul = cfg.num_params - embed - cfg.n_layers * 2 * cfg.dim - cfg.dim
    if cfg.tie_embeddings:
        matmul += embed
    attn = cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim
    if cfg.lora_rank:
        flops = 4.0 * matmul + 6.0 * cfg.num_lora_params + 6.0 * attn
    else:
        flops = 6.0 * matmul + 6.0 * attn
    if task.needs_reference:
        flops += 2.0 * matmul + 2.0 * attn
    return flops


_PEAK_FLOPS = {  # dense bf16 per device
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v5p": 459e12,
    "TPU v5 lite": 197e12,
    "TPU v4": 275e12,
    "TPU v6": 918e12,
}


def peak_flops(c: ml_collections.ConfigDict) -> float:
    if c.peak_flops_per_device:
        return c.peak_flops_per_device
    kind = jax.devices()[0].device_kind
    return next((v for k, v in _PEAK_FLOPS.items() if k in kind), 0.0)


# ----------------------------------------------------------------------------- the loop


def _on_mesh(tree: Any, mesh) -> Any:
    """Replicates over `mesh` every array not already placed on it (step counters, scalars)."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def place(x):
        s = x.sharding
        if isinstance(s, jax.sharding.NamedSharding) and s.mesh.shape == mesh.shape:
            return x
        return jax.device_put(x, replicated)

    return jax.tree.map(place, tree)


def _to_host(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def evaluate(
    eval_fn, state: TrainState, reference, batches: Iterator[Batch], mesh
) -> dict[str, float]:
    """Metrics over the eval batches, each batch's means weighted by its denominator (target
    tokens, real pairs), so a padded last batch counts for what it holds; ratio metrics pooled.
    `eval/examples` is how many sequences or pairs were evaluated."""
    totals: dict[str, float] = {}
    weight = examples = 0.0
    for batch in batches:
        metrics = _to_host(
            eval_fn(state.params, state.rest, sharding.shard_batch(batch, mesh), reference)
        )
        w = metrics.pop("_weight")
        for k, v in metrics.items():
            plain = k.startswith((tasks.RATIO_NUM, tasks.RATIO_DEN)) or k == "num_tokens"
            totals[k] = totals.get(k, 0.0) + (v if plain else v * w)
        weight += w
        examples += _real_examples(batch)
    means = {  # num_tokens: the total over the split
        k: v
        if k.startswith((tasks.RATIO_NUM, tasks.RATIO_DEN)) or k == "num_tokens"
        else v / max(weight, 1e-9)
        for k, v in totals.items()
    }
    out = {f"eval/{k}": float(v) for k, v in tasks.finalize(means).items()}
    if jax.process_count() > 1:  # each host counted its own rows
        examples = float(np.sum(multihost_utils.process_allgather(np.float64(examples))))
    out["eval/examples"] = examples
    return out


def _real_examples(batch: Batch) -> float:
    """Sequences (SFT: segments) or pairs of this host's part of a batch (empty rows excluded)."""
    if "example_index" in batch:
        return float(np.sum(np.asarray(batch["example_index"]) >= 0))
    seg = np.asarray(batch["segment_ids"])
    return float(sum(len(np.unique(row[row > 0])) for row in seg))


def reward_statistics(state: TrainState, graphdef, batches: Iterator[Batch], mesh) -> TrainState:
    """Sets the reward model's `reward_mean` / `reward_std` to the mean and standard deviation of its
    rewards over every reply of the training set (OpenRLHF's normalisation statistics)."""

    @jax.jit
    def scores(params, rest, batch):
        model = nnx.merge(graphdef, params, rest)
        flat = {
            k: batch[k].reshape((-1, batch[k].shape[-1])) for k in tasks.MODEL_KEYS if k in batch
        }
        if tasks.is_packed_pairs(batch):  # [P,2] rewards, one per pair slot; real slots only
            _, n = tasks.unit_segments(batch)
            r = model(flat.pop("tokens"), num_segments=n, **flat)[..., 0]
            r = tasks.pair_values(batch, r, tasks.segments_present(batch))
            real = jnp.broadcast_to((batch["example_index"] >= 0).reshape(-1, 1), r.shape)
            return r, real
        r = model(flat.pop("tokens"), **flat)[:, 0]  # [2B]: chosen, rejected of each row
        return r, jnp.repeat(batch["example_index"] >= 0, 2)  # empty rows pad a last batch

    total = total_sq = count = 0.0
    with jax.set_mesh(mesh):
        for batch in batches:
            r, real = scores(state.params, state.rest, sharding.shard_batch(batch, mesh))
            if jax.process_count() > 1:  # rows live on other hosts' devices too
                r = multihost_utils.process_allgather(r, tiled=True)
                real = multihost_utils.process_allgather(real, tiled=True)
            r = np.asarray(r, np.float64)[np.asarray(real)]
            total, total_sq, count = total + r.sum(), total_sq + np.square(r).sum(), count + r.size
    mean = total / max(count, 1)
    std = float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 1e-12)))
    rest = jax.tree.map(lambda x: x, state.rest)
    rest["reward_mean"][...] = jnp.asarray(mean, jnp.float32)
    rest["reward_std"][...] = jnp.asarray(std, jnp.float32)
    logging.info("reward statistics over %d replies: mean %.4f, std %.4f", int(count), mean, std)
    return state.replace(rest=_on_mesh(rest, mesh))


def principle_head_if_rated(c: ml_collections.ConfigDict, tokenizer) -> ml_collections.ConfigDict:
    """The config, with `reward.principle_head` off (and said once) when the training pairs carry
    no per-principle ratings: such a head would never train, and its scores would mean nothing."""
    if c.task != "reward" or not c.reward.principle_head:
        return c
    if data_lib.make_loader(c, tokenizer, "train", "reward").with_ratings:
        return c
    logging.warning(
        "reward.principle_head: the training pairs (%s) carry no per-principle ratings, so the "
        "principle head is off (it would never train)",
        c.data.train,
    )
    c = c.copy_and_resolve_references()
    c.reward.principle_head = False
    return c


def stop_after_bad_steps(
    ckpt: ckpt_lib.Checkpointer,
    save,
    step: int,
    bad: int,
    last_good: int,
    saved_step: int | None,
    metrics: dict[str, jax.Array],
) -> None:
    """Stops a run after `bad` consecutive non-finite steps (each left the state unchanged).

    The state is saved only when a finite step updated it after the newest checkpoint (`saved_step`;
    `step` itself counts when finite): otherwise the newest checkpoint already holds it, and a save
    would only push an older checkpoint out under `keep_checkpoints` (a resumed checkpoint whose
    every step is non-finite may itself be damaged)."""
    if float(metrics["skipped"]) == 0.0:
        last_good = step
    newest = "none" if saved_step is None else str(ckpt.path(saved_step))
    if saved_step is None or last_good > saved_step:
        save(step)
        where = f"the last good state is saved in {ckpt.path(step)} (as after step {last_good})"
    else:
        where = (
            f"no step since the newest checkpoint ({newest}) was finite, so nothing was saved: "
            "that checkpoint holds the state they started from"
        )
    ckpt.close()
    raise FloatingPointError(
        f"{bad} consecutive steps had a non-finite loss or gradient (up to step {step - 1}); "
        f"stopped; {where}. Lower the learning rate or check the data"
    )


def configured_architecture(
    c: ml_collections.ConfigDict, vocab_size: int, saved: LlamaConfig
) -> LlamaConfig:
    """The architecture the config builds: its preset and sizes, or `init_from`'s model with the
    config's LoRA layout. When `init_from` can no longer be read, the checkpoint's (`saved`) with
    the config's LoRA layout, said in the log."""
    if not c.init_from:
        return config_lib.llama_config(c, vocab_size)
    try:
        source = ckpt_lib.read_architecture(c.init_from)
    except (OSError, ValueError, ckpt_lib.CheckpointDamaged) as e:
        logging.warning(
            "init_from=%s cannot be read (%s); the resumed model is the checkpoint's",
            c.init_from,
            e,
        )
        source = saved
    return source.replace(**config_lib.lora_fields(c))


def resume(
    c: ml_collections.ConfigDict,
    task: tasks.Task,
    ckpt: ckpt_lib.Checkpointer,
    vocab_size: int,
    mesh,
    loader,
) -> tuple[nnx.Module, nnx.GraphDef, optax.GradientTransformation, TrainState] | None:
    """The stopped run from its newest intact checkpoint, or None when there is none.

    The model is built as the checkpoint records it (never from the preset: a run from `init_from`
    resumes the model it trained), with the config's numerics; a config that builds another
    architecture, head or task is an error naming both values. Parameters, optimizer, step and the
    loader's position are restored and checked against their checksums; a damaged checkpoint is
    named, moved to `damaged_checkpoints/`, and the previous one is tried.
    """
    rules = tuple(tuple(r) for r in c.sharding_rules)
    numerics = config_lib.numerics(c)
    labels = task.num_labels if task.name == "reward" else None
    damaged = []
    for step in ckpt.steps():
        where = ckpt.path(step)
        try:
            if not ckpt.has_train_state(step):
                raise ckpt_lib.CheckpointDamaged(where, "no optimizer state ('opt')")
            meta = ckpt.meta(step)
            cfg, saved_labels = ckpt_lib.architecture_of(meta, **numerics)
            expected = configured_architecture(c, vocab_size, cfg)
            ckpt_lib.check_compatible(meta, expected, labels, task.name, numerics, where)
            model = sharding.init_sharded(
                ckpt_lib.make_model(cfg, saved_labels, c.seed), mesh, rules
            )
            graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)
            tx, state = init_train_state(c, params, rest, mesh)
            state, loader_state = ckpt.restore(step, state, graphdef, meta)
        except ckpt_lib.CheckpointDamaged as e:
            dest = ckpt.set_aside(step)
            damaged.append(str(where))
            logging.error(
                "%s; moved to %s (delete it when no longer needed); trying the previous checkpoint",
                e,
                dest,
            )
            continue
        loader.set_state(loader_state)
        logging.info("resumed from %s", where)
        return model, graphdef, tx, state
    if damaged:
        logging.error("no intact checkpoint left (%s damaged): starting afresh", ", ".join(damaged))
    return None


def train_and_evaluate(
    c: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, float]:
    """Trains `c.task` as configured, evaluating periodically; returns the final metrics.

    Resumes from the newest complete checkpoint in `workdir` (parameters, optimizer, step, data
    position: the resumed run is the uninterrupted one); saves every `checkpoint_every` steps, on
    SIGTERM/SIGINT (then returns with `preempted=1`) and at the end, where the model is what the next
    stage's `init_from` loads. A non-finite step is skipped; `max_bad_steps` in a row stop the run
    with a checkpoint of the last good state.
    """
    workdir = pathlib.Path(workdir)
    config_lib.validate(c, jax.device_count())
    if c.task == "online_dpo":  # rounds of sampling, scoring and DPO stages
        from psycho_jax import online

        return online.run_online_dpo(c, workdir)
    ckpt_lib.check_workdir(workdir)
    mesh = sharding.make_mesh(tuple(c.mesh))
    tokenizer = tokenizer_lib.load_tokenizer(c.tokenizer)
    c = principle_head_if_rated(c, tokenizer)
    task = tasks.make_task(c)
    ckpt = ckpt_lib.Checkpointer(workdir, c)
    train_loader = data_lib.make_loader(c, tokenizer, "train", task.name)
    resumed = resume(c, task, ckpt, len(tokenizer), mesh, train_loader)
    if resumed is None:
        model = build_model(c, task, len(tokenizer), mesh, c.init_from)
        graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)
        tx, state = init_train_state(c, params, rest, mesh)
    else:
        model, graphdef, tx, state = resumed
        params = state.params

    def batches(split: str, epochs: int | None, loader=None):
        loader = loader or data_lib.make_loader(c, tokenizer, split, task.name, epochs=epochs)
        return reference_lib.attach(loader, ref_tables[split]) if ref_tables else iter(loader)

    # The DPO reference, after a resume's restore (a LoRA model's base is then in `state.rest`).
    reference, ref_tables = None, {}
    if task.name == "dpo" and losses.needs_reference(c.dpo.loss_type):
        if model.config.lora_rank and c.dpo.reference_from in ("", c.init_from):
            # The frozen base: the policy's own graph and base weights with zero adapters, exactly
            # the base's numbers and no second copy of the weights.
            zeros = jax.tree.map(
                lambda x: jnp.zeros(x.shape, x.dtype, device=x.sharding), state.params
            )
            ref_model = nnx.merge(graphdef, zeros, state.rest)
            ref_state = zeros
        else:  # another model (with LoRA only precomputed: `config.validate`), without adapters
            ref_config = c.copy_and_resolve_references()
            ref_config.lora.rank = 0
            ref_from = c.dpo.reference_from or c.init_from
            ref_model = build_model(ref_config, task, len(tokenizer), mesh, ref_from)
            ref_state = nnx.split(ref_model, nnx.Param, ...)[1]
        if c.dpo.reference == "live":
            reference = ref_state
        else:  # precomputed once per (data, tokenizer, reference weights), cached on disk
            for split in ("train", "eval") if data_lib.eval_spec(c) else ("train",):
                pairs = data_lib.make_loader(c, tokenizer, split, task.name, epochs=1).examples
                table = reference_lib.reference_table(
                    ref_model, pairs, tokenizer, c.batch_size, mesh, c.dpo.reference_cache
                )
                ref_tables[split] = reference_lib.by_example_index(pairs, table)
        del ref_model, ref_state
    train_data = batches("train", None, train_loader)
    start_step = int(state.step)
    step_fn = jit_train_step(c, graphdef, task, tx, state, reference)
    eval_fn = jax.jit(functools.partial(eval_step, graphdef=graphdef, task=task))
    flops_per_token = model_flops_per_token(model.config, c.data.max_len, task)
    peak = peak_flops(c)
    writer = MetricsWriter(workdir, c, total_steps=c.num_steps)
    logging.info(
        "training %s: %s parameters (%s trained) on mesh %s, steps %d..%d",
        task.name,
        f"{model.config.num_params + model.config.num_lora_params:,}",
        f"{sum(x.size for x in jax.tree.leaves(params)):,}",
        dict(mesh.shape),
        start_step + 1,
        c.num_steps,
    )

    has_eval = bool(data_lib.eval_spec(c))
    if c.eval_every and not has_eval:
        logging.warning(
            "no evaluation: %s",
            "data.eval is empty"
            if not c.data.eval
            else f"data.eval={c.data.eval!r} is the embedded sample while data.train is your data; "
            "set data.eval to a held-out split of it",
        )

    def run_eval(step: int) -> dict[str, float]:
        if not has_eval:
            return {}
        eval_batches = itertools.islice(batches("eval", 1), c.eval_batches or None)
        with jax.set_mesh(mesh):
            metrics = evaluate(eval_fn, state, reference, eval_batches, mesh)
        writer.write(step, metrics)
        return metrics

    saved_step = start_step if resumed is not None else None

    def save(step: int, metrics: dict[str, float] | None = None) -> None:
        nonlocal saved_step
        ckpt.save(step, state, graphdef, model, c, train_loader.get_state(), metrics)
        saved_step = step

    final: dict[str, float] = {}
    if c.eval_every and start_step == 0:
        final.update(run_eval(0))
    pending = None  # (step, metrics, example ids): fetched one step late, dispatch stays async
    bad_in_a_row = 0
    tokens_seen, t_last = 0, time.perf_counter()
    preempted = False
    with jax.set_mesh(mesh), ckpt_lib.StopRequest() as stop:
        for step in range(start_step + 1, c.num_steps + 1):
            batch = next(train_data)
            mask = (
                batch["attention_mask"] if "attention_mask" in batch else batch["segment_ids"] > 0
            )
            tokens_seen += int(np.sum(mask))
            state, metrics = step_fn(state, sharding.shard_batch(batch, mesh), reference)
            ids = batch.get("example_index")
            for p_step, p_metrics, p_ids in [pending] if pending else []:
                writer.progress(p_step, p_metrics)
                if float(p_metrics["skipped"]):
                    bad_in_a_row += 1
                    logging.warning(
                        "step %d: non-finite loss or gradient, update skipped (example_index %s)",
                        p_step,
                        None if p_ids is None else p_ids.tolist(),
                    )
                else:
                    bad_in_a_row = 0
            pending = (step, metrics, ids)
            if bad_in_a_row >= c.max_bad_steps:
                stop_after_bad_steps(
                    ckpt, save, step, bad_in_a_row, step - bad_in_a_row - 1, saved_step, metrics
                )
            if step % c.log_every == 0 or step == c.num_steps:
                if jax.process_count() > 1:  # each host counted only its own rows
                    tokens_seen = int(
                        np.sum(multihost_utils.process_allgather(np.int64(tokens_seen)))
                    )
                host = _to_host(metrics)
                dt = time.perf_counter() - t_last
                host["tokens_per_second"] = tokens_seen / dt
                if peak:
                    host["mfu"] = tokens_seen * flops_per_token / dt / (peak * jax.device_count())
                host["lr"] = float(make_schedule(c)(step - 1))
                writer.write(step, host)
                final.update(host)
                tokens_seen, t_last = 0, time.perf_counter()
            evaluated = {}
            if c.eval_every and (step % c.eval_every == 0 or step == c.num_steps):
                evaluated = run_eval(step)
                final.update(evaluated)
            if stop.requested(every=c.log_every, step=step):
                save(step, evaluated or None)
                ckpt.wait()
                logging.warning(
                    "signal %s: stopped after step %d, saved %s/checkpoints/%d; "
                    "run the same command to resume",
                    stop.signal,
                    step,
                    workdir,
                    step,
                )
                final["preempted"] = 1.0
                preempted = True
                break
            if step < c.num_steps and c.checkpoint_every and step % c.checkpoint_every == 0:
                save(step, evaluated or None)
    if not preempted:
        if task.name == "reward":
            stats_batches = itertools.islice(batches("train", 1), c.reward.stats_batches or None)
            state = reward_statistics(state, graphdef, stats_batches, mesh)
            final["reward_mean"] = float(state.rest["reward_mean"][...])
            final["reward_std"] = float(state.rest["reward_std"][...])
        if start_step < c.num_steps:
            save(c.num_steps, {k: v for k, v in final.items() if k.startswith("eval/")} or None)
    ckpt.close()
    if jax.process_index() == 0 and not (workdir / "tokenizer").exists():
        tokenizer.save_pretrained(workdir / "tokenizer")
    if model.config.lora_rank and not preempted:  # the adapters alone, in PEFT's layout
        lora_lib.save_adapters(nnx.merge(graphdef, state.params, state.rest), workdir / "adapters")
    final["skipped_steps"] = int(state.skipped)
    final["step"] = int(state.step)
    writer.close()
    if jax.process_index() == 0:
        (workdir / "final_metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True))
    return final
