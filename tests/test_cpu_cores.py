"""`distributed.use_cpu_cores`: one JAX CPU device per core, chosen before JAX starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from psycho_jax import config as config_lib
from psycho_jax.core import distributed

SCRIPT = """
import json, sys
from psycho_jax import config as config_lib
from psycho_jax.core import distributed
c = config_lib.base_config()
c.batch_size, c.grad_accum, c.cpu_devices = {batch}, {accum}, {setting}
n = distributed.use_cpu_cores(c, cores={cores})
import jax
print(json.dumps([n, jax.device_count()]))
"""


def _run(batch=8, accum=1, setting=-1, cores=4, env=None):
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", distributed.CPU_DEVICES)}
    base["JAX_PLATFORMS"] = "cpu"
    code = SCRIPT.format(batch=batch, accum=accum, setting=setting, cores=cores)
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, **(env or {})}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(__import__("json").loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "batch,accum,cores,want",
    [(8, 1, 4, 4), (6, 1, 4, 3), (8, 4, 4, 2), (7, 1, 4, 0), (8, 1, 1, 0)],
)
def test_largest_count_dividing_every_batch(batch, accum, cores, want):
    n, devices = _run(batch=batch, accum=accum, cores=cores)
    assert n == want
    assert devices == max(want, 1)


@pytest.mark.slow
def test_explicit_settings_win():
    assert _run(setting=0) == (0, 1)  # config: leave JAX alone
    assert _run(setting=3, batch=6) == (3, 3)  # config: a count
    assert _run(env={distributed.CPU_DEVICES: "0"}) == (0, 1)  # environment over config
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=5"}
    assert _run(env=flags) == (0, 5)  # a count the user chose already
    assert _run(env={distributed.ENABLE: "1"}) == (0, 1)  # multi-process: one device per process


def test_pipeline_config_batches_are_all_counted():
    c = config_lib.base_config()
    c.stage = config_lib.base_config()
    c.batch_size, c.stage.batch_size = 8, 6
    assert sorted(set(distributed._batch_sizes(c))) == [6, 8]


def test_no_effect_once_jax_started():
    import jax

    jax.devices()  # the test process's backend (conftest: 8 devices)
    assert distributed.use_cpu_cores(config_lib.base_config(), cores=4) == 0
    assert jax.device_count() == 8
