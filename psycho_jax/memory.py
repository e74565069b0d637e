"""Memory planner: compile a config's train step on its mesh, abstractly, and report per-device memory.

    python -m psycho_jax.main --config=configs/dpo.py:llama3_8b --dry_run
    python -m psycho_jax.main --config=configs/dpo.py:llama3_8b --dry_run --topology=v5p-16

With `--topology` the step is compiled by the TPU compiler for a TPU slice's devices
(`psycho_jax.core.topology`, `tpu_report`): the TPU's own memory, FLOPs, time estimate and collectives.

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
               backward pass (q, k, v, attention scores N x T x T float32, and with
               `jax.nn.dot_product_attention` (any target but CPU) their probabilities again in
               the compute dtype, MLP 3 x T x F) and
               the logits C x V float32 twice (logits and their gradient, C = `model.head_chunk`
               positions, or T with head_chunk=0), plus for DPO T x V float32 probabilities when the
               micro-batch's fit in `model.head_keep_mib`; without remat every layer's working set is
               kept; with remat="attention" each layer's attention output T x N x H as well.

The two agree when the compiler does what the model says; the planner prints both and the test checks
the 8B configs fit their hardware both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from psycho_jax import config as config_lib
from psycho_jax.core import sharding, topology
from psycho_jax.core.model import (
    Llama,
    LlamaConfig,
    RewardModel,
    resolve_attention,
    trainable_filter,
)
from psycho_jax.train import tasks

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
    platform: str = "cpu"  # what the step was compiled for
    device_kind: str = ""
    compile_seconds: float = 0.0
    cost: dict[str, float] = dataclasses.field(default_factory=dict)  # XLA cost_analysis()
    hlo: topology.HloSummary | None = None  # collectives and dot FLOPs of the optimized program
    hlo_flops: float = 0.0  # dot FLOPs per device of the unoptimized program, loops counted
    analytic_flops: dict[str, float] = dataclasses.field(default_factory=dict)  # per device

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
    run = config_lib.settings(c)
    vocab = run.model.vocab_size or LlamaConfig.preset(run.model.preset).vocab_size
    return run.llama_config(vocab)


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
    # the scores in float32; `jax.nn.dot_product_attention` and the einsum form also keep the
    # probabilities in the compute dtype (the custom kernel recomputes them from the scores)
    custom = resolve_attention(cfg.attention, cached=False, platform=cfg.target) == "custom"
    scores = n * t * (4 if custom else 4 + act) / tp
    layer = t * ((n + 2 * k) * h * act / tp + scores + 3 * f * act / tp + 4 * d * act)
    # The output projection's logits and their gradient: one chunk of positions at a time
    # (`kernels.head_logprobs`), or the whole sequence with `head_chunk=0`.
    head_t = min(cfg.head_chunk, t) if cfg.head_chunk else t
    logits = 2 * head_t * v * 4 / tp if task.name != "reward" else 0
    if task.name == "dpo" and cfg.keeps_head_probs(c.batch_size // c.grad_accum * 2, t):
        logits += t * v * 4 / tp  # the chunks' probabilities, kept for the backward pass
    kept = L * layer if cfg.remat == "none" else L * t * d * act + layer
    if cfg.remat == "attention":  # each layer's attention output [T,N,H] kept as well
        kept += L * t * n * h * act / tp
    per_row = kept + logits
    return int(rows * per_row)


class DoesNotFit(Exception):
    """The compiler refused the step for lack of device memory (the TPU compiler does, rather than
    report a size over the chip's): its message and the compile seconds."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


def analytic_flops(c, cfg: LlamaConfig, task: tasks.Task, num_devices: int) -> dict[str, float]:
    """Matrix-product FLOPs of one train step per device, counted from the shapes.

    `model`: the MFU convention (forward 2 x weights x tokens plus attention's two [T,S] products
    over every query x key, backward twice the forward); `hardware`: what the step computes, the
    model FLOPs plus the layers' forward again under remat, a live DPO reference's forward, and
    (LoRA) no weight gradients of the frozen base (its backward: the input gradient only)."""
    rows = c.batch_size * (1 if task.name == "sft" else 2)
    t, d, L = c.data.max_len, cfg.dim, cfg.n_layers
    layer_w = d * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads) + 3 * d * cfg.ffn_dim
    attn = 2 * 2 * t * cfg.n_heads * cfg.head_dim  # per token per layer: q k^T and p v
    head = 0 if task.name == "reward" else 2 * d * cfg.vocab_size
    fwd_layers = rows * t * L * (2 * layer_w + attn)
    fwd = fwd_layers + rows * t * head
    # LoRA: the frozen base's backward is its input gradient (plus attention's second product)
    backward = 2 * fwd if not cfg.lora_rank else fwd + rows * t * L * attn
    model = fwd + backward
    hardware = model + (fwd_layers if cfg.remat != "none" else 0)
    if task.needs_reference:
        hardware += fwd
    return {"model": model / num_devices, "hardware": hardware / num_devices}


def plan(c: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Plan:
    """Compiles `c`'s train step abstractly on its mesh over `devices` (default: this machine's;
    compile-only devices of a TPU slice from `topology.devices` compile with the TPU compiler) and
    returns the per-device memory, with the compiled program's cost and collectives."""
    from psycho_jax.train import step as step_lib

    c = c.copy_and_resolve_references()
    with c.unlocked():  # nothing is loaded: a checkpoint to start from is not needed to plan
        c.init_from = c.init_from or "(dry run)"
        c.online.reward_model = c.online.reward_model or "(dry run)"
        c.task = "dpo" if c.task == "online_dpo" else c.task  # online DPO trains DPO steps
    devices = list(jax.devices() if devices is None else devices)
    run = config_lib.settings(c, len(devices))
    mesh = sharding.make_mesh(tuple(c.mesh), devices=devices)
    rules = tuple(tuple(r) for r in c.sharding_rules)
    task = tasks.make_task(run)
    # Kernels and layouts for the devices compiled for, not this machine's default backend.
    platform = topology.platform_of(devices)
    cfg = model_config(c).replace(platform=platform)
    if task.name == "reward":
        make = lambda: RewardModel(cfg, num_labels=task.num_labels, rngs=nnx.Rngs(0))
    else:
        make = lambda: Llama(cfg, rngs=nnx.Rngs(0))
    abstract = nnx.eval_shape(make)
    graphdef, params, rest = nnx.split(abstract, trainable_filter(abstract), ...)
    params = _with_shardings(params, sharding.state_shardings(params, mesh, rules))
    rest = _with_shardings(rest, sharding.state_shardings(rest, mesh, rules))
    tx = step_lib.make_optimizer(run, params)
    opt_state = _with_shardings(
        jax.eval_shape(tx.init, params), sharding.optimizer_shardings(tx, params, mesh)
    )
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
    state = step_lib.TrainState(step=scalar, params=params, opt_state=opt_state, rest=rest,
                             skipped=scalar)  # fmt: skip
    reference = params if task.needs_reference else None
    batch = _abstract_batch(c, task, mesh)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(
        functools.partial(
            step_lib.train_step, graphdef=graphdef, task=task, tx=tx, accum=c.grad_accum
        ),
        in_shardings=(
            shardings,
            None,
            None if reference is None else jax.tree.map(lambda x: x.sharding, reference),
        ),
        out_shardings=(shardings, None),
        donate_argnums=0,
        compiler_options=step_lib.compiler_options(run, platform),  # the training step's
    )
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        lowered = step.lower(state, batch, reference)
        try:
            compiled = lowered.compile()
        except Exception as e:  # the TPU compiler refuses a program over the chip's memory
            if "RESOURCE_EXHAUSTED" not in str(e) and "Ran out of memory" not in str(e):
                raise
            raise DoesNotFit(str(e), time.perf_counter() - start) from e
    seconds = time.perf_counter() - start
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
    cost = compiled.cost_analysis() or {}
    return Plan(
        dict(mesh.shape),
        num_params,
        compiled_bytes,
        analytic,
        platform=platform,
        device_kind=devices[0].device_kind,
        compile_seconds=seconds,
        cost={k: float(cost.get(k, 0.0)) for k in ("flops", "bytes accessed", "optimal_seconds")},
        hlo=topology.summarize_hlo(compiled.as_text()),
        # FLOPs from the program before partitioning and fusion (plain dots; the TPU compiler
        # rewrites many into windowed convolutions), per device
        hlo_flops=topology.summarize_hlo(lowered.as_text(dialect="hlo"), dict(mesh.shape)).dot_flops
        / mesh.size,
        analytic_flops=analytic_flops(c, cfg, task, mesh.size),
    )


def device_memory_gb(hardware: str) -> float:
    """Memory per device of a hardware description such as "8xH100" or "TPU v5p-16"."""
    for name, gb in HARDWARE_GB.items():
        if name.lower() in hardware.lower():
            return gb
    raise ValueError(f"unknown hardware {hardware!r}; known: {', '.join(HARDWARE_GB)}")


def tpu_report(p: Plan, c: ml_collections.ConfigDict, tpu: topology.Slice) -> dict[str, Any]:
    """What a step compiled for a TPU slice costs per chip: memory against the chip's HBM, FLOPs
    against the analytic count, the compiler's time estimate with the MFU and tokens/s/chip it
    implies, and the program's collectives. Returns the figures and their printed `text`.

    `cost_analysis()` counts a loop's body once (the scan over layers, gradient accumulation, the
    head's chunks); the FLOPs with trip counts come from the unoptimized program's dots
    (`Plan.hlo_flops`), and the step time is the compiler's `optimal_seconds` scaled by their ratio
    to `cost_analysis()`'s FLOPs (each loop body's time taken as proportional to its FLOPs), never
    under those FLOPs at the chip's peak."""
    chip, hlo = tpu.chip, p.hlo
    total = p.compiled["total"]
    fits = total <= chip.hbm_gib * GB
    counted_once = p.cost.get("flops", 0.0) or p.hlo_flops
    # a negative or zero optimal_seconds (seen on v5e) is no estimate: the FLOPs at peak remain
    optimal = max(p.cost.get("optimal_seconds", 0.0), 0.0)
    scaled = optimal * p.hlo_flops / max(counted_once, 1.0)
    at_peak = p.hlo_flops / chip.peak_bf16_flops
    seconds = max(scaled, at_peak)
    tokens = c.batch_size * c.data.max_len * (1 if c.task == "sft" else 2)
    chips = math.prod(p.mesh.values())
    mfu = p.analytic_flops["model"] / seconds / chip.peak_bf16_flops if seconds else 0.0
    out = {
        "topology": tpu.topology,
        "chips": chips,
        "device_kind": p.device_kind,
        "hbm_gib": chip.hbm_gib,
        "fits": fits,
        "headroom_gib": chip.hbm_gib - total / GB,
        "compile_seconds": p.compile_seconds,
        "flops_per_chip": {
            "cost_analysis (loop bodies once)": p.cost.get("flops", 0.0),
            "program's dots, loops counted": p.hlo_flops,
            "analytic hardware": p.analytic_flops["hardware"],
            "analytic model": p.analytic_flops["model"],
        },
        "step_seconds": seconds,
        "step_seconds_at_peak": at_peak,
        "optimal_seconds_raw": p.cost.get("optimal_seconds", 0.0),
        "mfu": mfu,
        "tokens_per_second_per_chip": tokens / chips / seconds if seconds else 0.0,
        "collectives": {
            op: dict(zip(("ops", "per_step", "bytes"), v, strict=True))
            for op, v in hlo.collectives.items()
            if v[0]
        },
        "loops": hlo.loops,
    }
    verdict = "fits" if fits else "DOES NOT FIT"
    lines = [
        f"TPU {tpu.name} ({tpu.topology}, {chips} chips of {p.device_kind}, {chip.hbm_gib} GiB "
        f"HBM): compiled by the TPU compiler in {p.compile_seconds:.0f} s",
        f"memory per chip: {total / GB:.2f} GiB compiled (analytic {p.analytic['total'] / GB:.2f})"
        f" -> {verdict}, headroom {out['headroom_gib']:.2f} GiB",
        "FLOPs per chip: " + ", ".join(f"{k} {_si(v)}" for k, v in out["flops_per_chip"].items()),
        f"step time (compiler estimate, loops scaled): {seconds * 1e3:.4g} ms (optimal_seconds "
        f"{out['optimal_seconds_raw'] * 1e3:.3g} ms with loop bodies once, trip counts "
        f"{hlo.loops}; the FLOPs at peak: {at_peak * 1e3:.4g} ms) -> MFU {mfu:.1%}, "
        f"{out['tokens_per_second_per_chip']:,.0f} tokens/s/chip",
        "collectives per step: "
        + (
            ", ".join(
                f"{op} {v['ops']} ops x{v['per_step'] / max(v['ops'], 1):.1f} = "
                f"{v['per_step']} runs, {_si(v['bytes'], 1024, 'B')}"
                for op, v in out["collectives"].items()
            )
            or "none"
        ),
    ]
    lines += [
        f"  {_si(b, 1024, 'B')}: {op} {shape} x{runs} ({name[-90:]})"
        for b, op, shape, runs, name in hlo.largest
    ]
    out["largest_collectives"] = hlo.largest
    out["text"] = "\n".join(lines)
    return out


def _si(x: float, base: int = 1000, unit: str = "") -> str:
    """1.23e12 -> "1.23 T"; with base 1024 and unit "B", binary prefixes ("1.5 GiB")."""
    prefixes = ("", "K", "M", "G", "T", "P")
    i = 0
    while abs(x) >= base and i < len(prefixes) - 1:
        x, i = x / base, i + 1
    suffix = prefixes[i] + ("i" if base == 1024 and i else "") + unit
    return f"{x:.3g} {suffix}".rstrip()
