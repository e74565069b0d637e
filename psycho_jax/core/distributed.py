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
from typing import Any

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


def _wanted(enabled: bool | None, explicit: dict[str, object]) -> bool:
    """Whether the process joins a multi-host run: the flag, else the environment."""
    if enabled is not None:
        return enabled
    return os.environ.get(ENABLE, "").strip().lower() in _TRUE or bool(explicit)


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
    if not _wanted(enabled, explicit):
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
    _no_shared_cpu_executables()
    return True


def _no_shared_cpu_executables() -> None:
    """Turns JAX's persistent compilation cache off in a multi-process CPU run.

    JAX lets only process 0 write a cache entry and every process read it. A CPU executable is not
    portable between the processes of one run (its gloo collectives belong to the process that
    compiled it): process 1 running process 0's executable fails with "Received data size doesn't
    match expected size" at the first cross-process collective (jax 0.10.2; reproduced by running
    tests/test_multihost.py twice with one cache directory). On TPU and GPU the cache is left on: JAX
    shares executables between processes there by design (not exercised here: no accelerator).
    """
    if (
        jax.process_count() > 1
        and jax.devices()[0].platform == "cpu"
        and jax.config.jax_enable_compilation_cache
        and jax.config.jax_compilation_cache_dir
    ):
        jax.config.update("jax_enable_compilation_cache", False)
        logging.warning(
            "distributed: persistent compilation cache %s turned off: CPU executables are not "
            "portable between the processes of a multi-process run",
            jax.config.jax_compilation_cache_dir,
        )


# ----------------------------------------------------------------------------- CPU cores

CPU_DEVICES = "PSYCHO_JAX_CPU_DEVICES"  # "auto" (default), a number, or 0 to leave JAX alone


def _batch_sizes(config: Any) -> list[int]:
    """Every global and micro-batch size in a (possibly nested, e.g. pipeline) config."""
    sizes = []
    if hasattr(config, "items"):
        if "batch_size" in config:
            accum = config.get("grad_accum", 1) or 1
            sizes += [config["batch_size"], config["batch_size"] // accum]
        for _, value in config.items():
            sizes += _batch_sizes(value)
    return sizes


def use_cpu_cores(
    config: Any = None, cores: int | None = None, distributed: bool | None = None
) -> int:
    """One JAX CPU device per core, set before JAX starts: the CPU fast path.

    XLA:CPU runs one device's program on a shared thread pool, and on a few cores much of a
    training step is single-threaded work or matrix products contending for the same threads;
    with one device per core the batch is split over the cores (the config's `data`/`fsdp` mesh
    axes) and each core runs its own share (the speed-up measured: bench/RESULTS.md).
    No effect on accelerator devices.

    Args:
      config: the run's config (or a pipeline config holding several): `config.cpu_devices`
        -1 (auto, the default), 0 (leave JAX alone) or a count; auto is the largest count up to
        `cores` that divides every batch and micro-batch size in the config. The environment
        variable `PSYCHO_JAX_CPU_DEVICES` overrides it.
      cores: default: the cores this process may run on.
      distributed: the `maybe_initialize` argument: a multi-process run keeps JAX's device count
        (its launcher placed one process per device already).
    Returns:
      The CPU device count set, or 0 when left alone: a setting of 0 or 1, a count chosen
      already (`jax_num_cpu_devices`, `--xla_force_host_platform_device_count` in `XLA_FLAGS`),
      `JAX_PLATFORMS` without cpu, or a JAX backend that already started.
    """
    from jax._src import xla_bridge

    default = config.get("cpu_devices", -1) if hasattr(config, "get") else -1
    setting = os.environ.get(CPU_DEVICES, "auto" if default == -1 else str(default))
    setting = setting.strip().lower()
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if (
        setting in ("0", "")
        or _wanted(distributed, _explicit_cluster())
        or jax.config.jax_num_cpu_devices != -1
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or (platforms and "cpu" not in platforms.split(","))
        or getattr(xla_bridge, "backends_are_initialized", lambda: False)()  # private in JAX
    ):
        return 0
    if setting != "auto":
        n = int(setting)
    else:
        n = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0)
        n = n or os.cpu_count() or 1
        sizes = [s for s in _batch_sizes(config) if s > 0]
        while n > 1 and any(s % n for s in sizes):
            n -= 1
    if n > 1:
        jax.config.update("jax_num_cpu_devices", n)
    return n if n > 1 else 0
