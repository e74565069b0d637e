"""Command-line entry point: one training stage, or a model check.

    python -m psycho_jax.main --config=configs/sft.py:tiny --workdir=/tmp/sft [--config.x=...]
    python -m psycho_jax.main --config=configs/model.py:tiny     # build a model on a mesh, run it once

Configs with a `task` (sft, reward, dpo) go to `train.train_and_evaluate` (importable from Colab);
`configs/model.py` builds or loads a Llama on the mesh, reports its parameters and sharding and runs one
jitted forward pass (`--dry_run`: shapes and per-device bytes only, nothing allocated). A training
config with `--dry_run` plans its memory (`psycho_jax.memory`); `--topology=v5p-16` compiles its step
for that TPU slice with the TPU compiler, on a machine without TPUs.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from psycho_jax import config as config_lib
from psycho_jax.core import distributed, hf, metrics_writer, sharding
from psycho_jax.core.model import NUMERICS, Llama, LlamaConfig


def define_flags() -> None:
    """Command-line flags; defined only when run as a program, so importing this module (tests,
    notebooks, other CLIs) never clashes with another module's flags."""
    config_flags.DEFINE_config_file("config", "configs/model.py", lock_config=True)
    flags.DEFINE_string("workdir", "", "Where a training stage writes (required for tasks).")
    flags.DEFINE_bool(
        "distributed",
        None,
        "Join a multi-host run (jax.distributed); default from PSYCHO_JAX_DISTRIBUTED / "
        "PSYCHO_JAX_COORDINATOR.",
    )
    flags.DEFINE_bool(
        "dry_run",
        False,
        "Allocate nothing: for a training config, compile the train step on its mesh and print the "
        "per-device memory (psycho_jax.memory); for a model config, shapes and bytes only.",
    )
    flags.DEFINE_string(
        "topology",
        "",
        "With --dry_run: compile the train step for this TPU slice with the TPU compiler (no TPU "
        "needed; pip install 'psycho_jax[tpu]'): a Cloud TPU name (v5p-16, v5p-128, v6e-8, "
        "v5e-16, v4-8, ...) or a JAX topology (v5p:2x2x2). Prints per-chip memory against the "
        "chip's HBM, FLOPs, the compiler's step time, MFU, tokens/s/chip and collectives.",
    )
    flags.DEFINE_integer(
        "fake_devices",
        0,
        "With --dry_run on a machine without accelerators: CPU devices to plan on (default: the "
        "mesh's size, or 8 when the mesh has a -1 axis).",
    )


def model_config(config: ml_collections.ConfigDict) -> LlamaConfig:
    """The LlamaConfig a run config names (preset plus the numerics fields)."""
    return LlamaConfig.preset(config.model.preset, **{k: config.model[k] for k in NUMERICS})


def run_model_demo(config: ml_collections.ConfigDict, dry_run: bool = False) -> dict:
    """Builds the model on the configured mesh and runs one forward pass; returns a summary."""
    mesh = sharding.make_mesh(tuple(config.mesh))
    rules = tuple(tuple(r) for r in config.sharding_rules)
    if config.hf_path:
        m = config.model
        model = hf.load_llama(
            config.hf_path,
            mesh=mesh,
            rules=rules,
            dtype=m.dtype,
            attention=m.attention,
            remat=m.remat,
            scan_layers=m.scan_layers,
            head_chunk=m.head_chunk,
            head_keep_mib=m.head_keep_mib,
            attention_blocks=m.attention_blocks,
        )
        cfg = model.config
    else:
        cfg = model_config(config)
        if dry_run:
            abstract = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(config.seed)))
            state = nnx.state(abstract)
            shardings = sharding.state_shardings(state, mesh, rules)
            per_device = sum(
                int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
                for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings), strict=True)
            )
            summary = {
                "params": cfg.num_params,
                "mesh": dict(mesh.shape),
                "param_bytes_per_device": per_device,
            }
            print(json.dumps(summary))
            return summary
        model = sharding.init_sharded(lambda: Llama(cfg, rngs=nnx.Rngs(config.seed)), mesh, rules)
    tokens = np.random.RandomState(config.seed).randint(
        0, cfg.vocab_size, (config.batch_size, config.seq_len)
    )

    @nnx.jit
    def forward(model, tokens):
        logits, _ = model(tokens)
        return logits

    with jax.set_mesh(mesh):
        batch = sharding.shard_batch(tokens, mesh)
        start = time.perf_counter()
        logits = forward(model, batch).block_until_ready()
        compile_and_run = time.perf_counter() - start
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    summary = {
        "params": n_params,
        "mesh": dict(mesh.shape),
        "sharded_fraction": round(sharding.sharded_fraction(model), 4),
        "logits_shape": list(logits.shape),
        "logits[0,-1,:4]": [round(float(v), 5) for v in logits[0, -1, :4]],
        "finite": bool(jnp.isfinite(logits).all()),
        "first_call_seconds": round(compile_and_run, 2),
    }
    print(json.dumps(summary, indent=2))
    return summary


def plan_memory(config: ml_collections.ConfigDict, slice_name: str = "") -> dict:
    """Prints and returns the memory plan of a training config (see `psycho_jax.memory`); with a
    TPU slice (`psycho_jax.core.topology`), compiled for it by the TPU compiler."""
    from psycho_jax import memory
    from psycho_jax.core import topology

    if slice_name:
        tpu, devices = topology.devices(slice_name)
        try:
            p = memory.plan(config, devices)
        except memory.DoesNotFit as e:
            message = str(e).strip().splitlines()
            print(f"TPU {tpu.name} ({tpu.topology}, {tpu.chip.hbm_gib} GiB HBM per chip): DOES NOT "
                  f"FIT: the TPU compiler ran out of memory after {e.seconds:.0f} s:")  # fmt: skip
            print("\n".join(message[:12]))
            summary = {"topology": tpu.topology, "fits": False, "compiler": message[:12]}
            print(json.dumps({"tpu_plan": summary}))
            return summary
    else:
        tpu, p = None, memory.plan(config)
    print(p.table())
    summary = {"mesh": p.mesh, "params": p.num_params, "compiled": p.compiled,
               "analytic": p.analytic}  # fmt: skip
    if tpu is not None:
        report = memory.tpu_report(p, config, tpu)
        print(report.pop("text"))
        summary.update(report)
        print(json.dumps({"tpu_plan": summary}))
        return summary
    hardware = config.get("hardware", "")
    if hardware:
        gb = memory.device_memory_gb(hardware)
        fits = max(p.compiled["total"], p.analytic["total"]) / memory.GB <= gb
        print(f"hardware {hardware}: {gb} GiB per device -> {'fits' if fits else 'DOES NOT FIT'}")
        summary.update(hardware=hardware, device_gb=gb, fits=fits)
    return summary


def _fake_devices(config: ml_collections.ConfigDict, requested: int) -> None:
    """Enough CPU devices for the config's mesh, set before JAX starts (no effect on accelerators)."""
    mesh = tuple(config.mesh) if "mesh" in config else (1, -1, 1)
    n = requested or (int(np.prod(mesh)) if -1 not in mesh else 8)
    jax.config.update("jax_num_cpu_devices", n)


def main(argv):
    del argv
    if flags.FLAGS.topology:
        if not flags.FLAGS.dry_run or "task" not in flags.FLAGS.config:
            raise app.UsageError("--topology plans a training config: add --dry_run")
        from psycho_jax.core import topology

        try:  # an unknown name or a missing TPU compiler fails before JAX starts
            topology.parse(flags.FLAGS.topology)
            topology.require_libtpu()
        except (ValueError, RuntimeError) as e:
            raise app.UsageError(str(e)) from e
        topology.prepare_environment()
        jax.config.update("jax_platforms", "cpu")  # this machine computes nothing; libtpu compiles
    elif flags.FLAGS.dry_run and "task" in flags.FLAGS.config:  # a training plan on one machine
        _fake_devices(flags.FLAGS.config, flags.FLAGS.fake_devices)
    else:
        distributed.use_cpu_cores(flags.FLAGS.config, distributed=flags.FLAGS.distributed)
    distributed.maybe_initialize(flags.FLAGS.distributed)
    logging.set_verbosity(logging.INFO)
    metrics_writer.quiet_library_logs()
    config = flags.FLAGS.config
    if "task" in config:
        if flags.FLAGS.dry_run:
            plan_memory(config, flags.FLAGS.topology)
            return
        if not flags.FLAGS.workdir:
            raise app.UsageError("--workdir is required to train")
        run_training(config, flags.FLAGS.workdir)
    else:
        run_model_demo(config, dry_run=flags.FLAGS.dry_run)


def run_training(c: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Runs a training config in `workdir`: one stage (`train_and_evaluate`), or for
    `task=online_dpo` rounds of sampling, scoring and DPO stages (`run_online_dpo`)."""
    run = config_lib.settings(c, jax.device_count())
    if run.task == "online_dpo":
        from psycho_jax.train import online

        return online.run_online_dpo(run, workdir)
    from psycho_jax.train import loop

    return loop.train_and_evaluate(run, workdir)


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
