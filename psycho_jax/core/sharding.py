"""Device mesh, logical-axis rules and sharded initialisation.

Parameters carry logical axis names (`nnx.Param(..., logical_axes=("embed", "mlp"))`); a short table of
rules maps them to the mesh axes `data`, `fsdp` and `tensor`. A dimension that a rule would shard but
that the mesh axes do not divide is replicated instead, and the start-up report says how many parameter
bytes ended up sharded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or a tuple of them, or None for replicated).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
)


def resolve_mesh_shape(
    shape: Sequence[int], num_devices: int, axis_names: Sequence[str] = MESH_AXES
) -> tuple[int, ...]:
    """The mesh shape with its one `-1` resolved; raises if it does not fit `num_devices`."""
    shape = list(shape)
    if len(shape) != len(axis_names):
        raise ValueError(f"mesh shape {tuple(shape)} needs one size per axis {tuple(axis_names)}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {tuple(shape)}: at most one axis may be -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known <= 0 or num_devices % known:
            raise ValueError(f"mesh shape {tuple(shape)} does not divide {num_devices} devices")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(
            f"mesh shape {tuple(shape)} has {math.prod(shape)} slots for {num_devices} devices "
            f"(axes {tuple(axis_names)})"
        )
    return tuple(shape)


def make_mesh(
    shape: Sequence[int] = (1, -1, 1),
    axis_names: Sequence[str] = MESH_AXES,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A mesh over `devices` (default: all) with Auto axis types; one `-1` takes what is left.

    Example: `make_mesh((1, -1, 2))` on 8 devices is data=1, fsdp=4, tensor=2.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(shape, len(devices), axis_names)
    return jax.make_mesh(
        shape, tuple(axis_names), axis_types=(AxisType.Auto,) * len(shape), devices=devices
    )


def logical_to_spec(
    axes: Sequence[str | None] | None,
    shape: Sequence[int],
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
) -> PartitionSpec:
    """PartitionSpec for one array from its logical axes; indivisible dimensions are replicated."""
    if not axes:
        return PartitionSpec()
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, size in zip(axes, shape, strict=True):
        target = table.get(name) if name is not None else None
        if name is not None and name not in table:
            raise ValueError(
                f"logical axis {name!r} has no sharding rule; rules cover {list(table)}"
            )
        mesh_axes = (target,) if isinstance(target, str) else tuple(target or ())
        mesh_axes = tuple(a for a in mesh_axes if a in mesh.shape and a not in used)
        n = math.prod(mesh.shape[a] for a in mesh_axes)
        if not mesh_axes or n == 1 or size % n:
            spec.append(None)
            continue
        used.update(mesh_axes)
        spec.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return PartitionSpec(*spec)


def _is_var(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def state_shardings(
    state: nnx.State, mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES
) -> nnx.State:
    """NamedSharding for every variable of an (abstract or concrete) NNX state, same tree.

    Works on any pytree holding NNX variables (a train state with optimizer moments); arrays that
    are not variables are replicated."""

    def one(v):
        if not _is_var(v):  # step counters and other plain arrays: replicated
            return NamedSharding(mesh, PartitionSpec())
        spec = logical_to_spec(v.get_metadata().get("logical_axes"), v.shape, mesh, rules)
        return v.replace(NamedSharding(mesh, spec))

    return jax.tree.map(one, state, is_leaf=_is_var)


def init_sharded(
    make_model: Callable[[], nnx.Module],
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
) -> nnx.Module:
    """Builds a model directly into sharded arrays: `eval_shape` -> shardings -> jitted init.

    No device ever holds more than its shard, so an 8B model initialises on a pod slice.
    `make_model` must create the model from a fixed seed (e.g. `lambda: Llama(cfg, rngs=nnx.Rngs(0))`).
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh, rules)

    @jax.jit(out_shardings=shardings)
    def init():
        return nnx.state(make_model())

    model = nnx.merge(graphdef, init())
    log_sharding_report(model, mesh)
    return model


def sharded_fraction(model_or_state: nnx.Module | nnx.State) -> float:
    """Share of parameter bytes whose sharding splits them over more than one device."""
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state)
    total = sharded = 0
    for v in jax.tree.leaves(state, is_leaf=_is_var):
        x = v[...] if _is_var(v) else v
        nbytes = x.size * x.dtype.itemsize
        total += nbytes
        if isinstance(x, jax.Array) and not x.sharding.is_fully_replicated:
            sharded += nbytes
    return sharded / max(total, 1)


def log_sharding_report(model: nnx.Module, mesh: Mesh) -> float:
    """Logs (and returns) the share of parameter bytes sharded; warns when the mesh could do more."""
    frac = sharded_fraction(model)
    state = nnx.state(model)
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    per_device = total * (1 - frac) + total * frac / max(mesh.size, 1)
    msg = (
        f"sharding: {frac:.1%} of {total / 2**20:.1f} MiB of parameters sharded over mesh "
        f"{dict(mesh.shape)}; at most ~{per_device / 2**20:.1f} MiB per device"
    )
    if mesh.size // mesh.shape.get("data", 1) > 1 and frac < 0.9:
        logging.warning("%s (under 90%%: check the rules and that dimensions divide the mesh)", msg)
    else:
        logging.info(msg)
    return frac


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Batch-axis sharding over (data, fsdp) for an array of rank `ndim`."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Puts this host's part of the global batch onto the mesh, split along the batch axis.

    Each host passes its own rows (`jax.process_index()`'s shard of the global batch); on one host
    this is the whole batch.
    """

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x)

    return jax.tree.map(put, batch)


def optimizer_shardings(tx, params: Any, mesh: Mesh) -> Any:
    """Shardings for `tx.init(params)`: every parameter-shaped leaf (Adam moments) sharded like its
    parameter, the rest (step counts) replicated. Without this, `jit(tx.init)` replicates the moments
    (they are zeros, with no data dependence on the sharded parameters to propagate from)."""
    import optax

    abstract = jax.eval_shape(tx.init, params)
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_map_params(
        tx, lambda _, s: s, abstract, param_shardings, transform_non_params=lambda _: replicated
    )
