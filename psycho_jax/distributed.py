"""Multi-host start-up: `jax.distributed.initialize` behind one flag or environment variable.

Every host runs the same command; call `maybe_initialize()` first, before anything touches JAX
(`jax.devices()`, an array, a jit): once a backend exists JAX cannot join a cluster.

    PSYCHO_JAX_DISTRIBUTED=1 python -m psycho_jax.main --config=... --workdir=...

On TPU pods, SLURM, Open MPI and the other clusters JAX knows, `jax.distributed.initialize()` finds the
coordinator, the number of processes and this process's id itself. Elsewhere (a few machines, or several
processes on one machine as in `tests/test_multihost.py`) name them:

    PSYCHO_JAX_COORDINATOR=host0:1234   # host:port of process 0, reachable from every process
    PSYCHO_JAX_NUM_PROCESSES=2
    PSYCHO_JAX_PROCESS_ID=0             # 0 .. NUM_PROCESSES-1, different on each process

Setting them turns distribution on by itself. On CPU, cross-process collectives go through gloo
over TCP (`jax_cpu_collectives_implementation`; without it a multi-process CPU computation fails).
"""

from __future__ import annotations

import os

import jax
from absl import logging

ENABLE = "PSYCHO_JAX_DISTRIBUTED"
COORDINATOR = "PSYCHO_JAX_COORDINATOR"
NUM_PROCESSES = "PSYCHO_JAX_NUM_PROCESSES"
PROCESS_ID = "PSYCHO_JAX_PROCESS_ID"

_TRUE = ("1", "true", "yes", "on")


def _explicit_cluster() -> dict[str, object]:
    """Coordinator, process count and id from the environment; {} when none is set."""
    names = (COORDINATOR, NUM_PROCESSES, PROCESS_ID)
    values = {n: os.environ.get(n, "").strip() for n in names}
    if not any(values.values()):
        return {}
    missing = [n for n, v in values.items() if not v]
    if missing:
        raise ValueError(
            f"multi-host set-up: {', '.join(missing)} unset; set all of {', '.join(names)} "
            "or none (then JAX detects the cluster)"
        )
    try:
        num, pid = int(values[NUM_PROCESSES]), int(values[PROCESS_ID])
    except ValueError as e:
        raise ValueError(f"{NUM_PROCESSES} and {PROCESS_ID} must be integers: {e}") from None
    if not 0 <= pid < num:
        raise ValueError(f"{PROCESS_ID}={pid} not in [0, {NUM_PROCESSES}={num})")
    return dict(coordinator_address=values[COORDINATOR], num_processes=num, process_id=pid)


def maybe_initialize(enabled: bool | None = None) -> bool:
    """Joins the multi-host runtime when asked to; returns whether it is initialised.

    Args:
        enabled: True or False decides; None (the default) reads `PSYCHO_JAX_DISTRIBUTED`, and
            is also on when `PSYCHO_JAX_COORDINATOR` and the other two variables are set.

    Idempotent: a second call (or a call after someone else initialised) does nothing. Must run
    before any other JAX work in the process; otherwise JAX raises a RuntimeError.

    Raises:
        ValueError: only some of the `PSYCHO_JAX_COORDINATOR` variables are set, or they are
            not integers in range.
    """
    if jax.distributed.is_initialized():
        return True
    if enabled is False:
        return False
    explicit = _explicit_cluster()
    if enabled is None:
        enabled = os.environ.get(ENABLE, "").strip().lower() in _TRUE or bool(explicit)
    if not enabled:
        return False
    # None (the default of older JAX releases) leaves CPU processes without cross-process
    # collectives; JAX 0.10 defaults to gloo, and an explicit choice (mpi) is kept.
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**explicit)
    logging.info(
        "distributed: process %d of %d, %d local of %d global devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )
    return True
