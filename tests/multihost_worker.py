"""One process of the localhost multi-host test (`tests/test_multihost.py`); not a test itself.

    PSYCHO_JAX_COORDINATOR=localhost:PORT PSYCHO_JAX_NUM_PROCESSES=2 PSYCHO_JAX_PROCESS_ID=i \
        python tests/multihost_worker.py CONFIG.json WORKDIR [LOCAL_DEVICES]

Joins the cluster through `psycho_jax.core.distributed`, trains the config (a `ConfigDict.to_json()`) with
`train.train_and_evaluate` into the shared WORKDIR, and writes what this process saw (process index and
count, device counts, final metrics) to `WORKDIR/../process_<i>.json`.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402


def main(config_json: str, workdir: str, local_devices: str = "4") -> None:
    # Before anything starts a backend: this process's fake CPU devices, then the cluster.
    jax.config.update("jax_num_cpu_devices", int(local_devices))
    jax.config.update("jax_numpy_rank_promotion", "raise")
    if cache := os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

    from psycho_jax.core import distributed

    assert distributed.maybe_initialize(), "PSYCHO_JAX_* variables unset"
    assert distributed.maybe_initialize()  # idempotent
    # Process 0's cached CPU executables break process 1's collectives: the cache must be off.
    assert not (cache and jax.config.jax_enable_compilation_cache)

    import ml_collections
    from absl import logging

    from psycho_jax.train import loop as train

    logging.set_verbosity(logging.INFO)
    config = ml_collections.ConfigDict(json.loads(pathlib.Path(config_json).read_text()))
    final = train.train_and_evaluate(config, workdir)
    report = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
        "final": final,
    }
    out = pathlib.Path(workdir).parent / f"process_{jax.process_index()}.json"
    out.write_text(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
