"""The train step: the optimizer, the pure `train_step` (one update over a global batch, with
gradient accumulation and non-finite steps skipped), its jitted, sharded and donated form, and the
eval step. `psycho_jax.train.loop` runs them.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from psycho_jax.core import sharding, topology
from psycho_jax.train import tasks
from psycho_jax.train.settings import TrainSettings

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


def make_schedule(c: TrainSettings) -> optax.Schedule:
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


def make_optimizer(c: TrainSettings, params: nnx.State) -> optax.GradientTransformation:
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
    c: TrainSettings, params: nnx.State, rest: nnx.State, mesh
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
    c: TrainSettings,
    graphdef: nnx.GraphDef,
    task: tasks.Task,
    tx: optax.GradientTransformation,
    state: TrainState,
    reference: nnx.State | None,
):
    """`train_step` jitted with the state's shardings kept and its buffers donated:
    `step_fn(state, batch, reference) -> (state, metrics)`. Call it under `jax.set_mesh(mesh)`."""
    if c.release_compiler_heap:
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
    allocated afresh (mmap), so without this they add to it (the medium SFT step's peak RSS with
    and without: bench/RESULTS.md). The compilation event fires after
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


def compiler_options(c: TrainSettings, platform: str) -> dict[str, str] | None:
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


def _on_mesh(tree: Any, mesh) -> Any:
    """Replicates over `mesh` every array not already placed on it (step counters, scalars)."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def place(x):
        s = x.sharding
        if isinstance(s, jax.sharding.NamedSharding) and s.mesh.shape == mesh.shape:
            return x
        return jax.device_put(x, replicated)

    return jax.tree.map(place, tree)
