"""Benchmark suite: psycho_jax against the PyTorch stack (transformers + TRL losses), same shapes and weights.

    python bench/suite.py                                   # tiny, small, medium; 3 repeats; decode
    python bench/suite.py --shapes=tiny,small,medium --repeats=3 --json=bench/results.json
    python bench/suite.py --shapes=small --skip_decode \\
        --options="remat=model.remat=dots;scan=model.scan_layers=True;einsum=model.attention=einsum"
    python bench/suite.py --shapes=tiny --repeats=1 --steps=1 --windows=2 --decode_new_tokens=8

For each shape (bench/shapes.py) `train_step.prepare` writes a random psycho_jax Llama and reward model as
Hugging Face directories into a temporary directory, then every configuration runs bench/train_step.py in
a process of its own (so a peak RSS is that configuration's alone): the tasks `sft`, `reward`, `dpo`
(live reference model) and `dpo_pre` (precomputed reference log-probs), each with `--framework=jax` and
`--framework=torch`, plus every `--options` variant of the JAX step. The PyTorch worker checks its
logits against psycho_jax's (1e-4) before it times anything. Each configuration runs `--repeats` times,
the frameworks interleaved (the starting one rotates each round, so a change in the machine's load hits
all alike); a configuration's tokens/s, step time and compile time are medians over its runs, its peak
RSS the largest. Workers run with the persistent XLA compilation cache off, so every JAX run compiles
(`compiles`: XLA compilations during warm-up and timing; `cache_size`: entries in the step's jit cache;
the target is exactly one of each).

`--trl` adds TRL's own trainers (`SFTTrainer`, `RewardTrainer`, `DPOTrainer` with a live or
precomputed reference; bench/train_step.py `--framework=trl`) as a second peer, run as a researcher
runs them (their defaults, fused AdamW, the same model, shapes and token ids): the report gets a
psycho_jax / TRL table beside the main one. The targets stay against the plain PyTorch loop, the
faster of the two.

`--options="name=override[,override];..."` also times JAX variants given as `--set` config overrides
(`remat=model.remat=dots`, `scan=model.scan_layers=True`, `einsum=model.attention=einsum`), each
reported against the default JAX configuration and against torch. Without it only the baseline runs.

`--precision=bfloat16` times mixed-precision training instead of float32: psycho_jax with
`model.dtype=bfloat16` against the same PyTorch loop under `torch.autocast("cpu", torch.bfloat16)`
(float32 weights and AdamW in both; the parity check before timing stays float32).

`--data=counsel` gives the sequences CounselChat's lengths (bench/train_step.py `--data`): psycho_jax
packs them into its fixed-shape rows, the PyTorch loop pads each batch to its longest, tokens/s counts
real tokens, and the report adds each side's fraction of real tokens (the matmul fractions then count
useful FLOPs only).

Matrix multiply: XLA (`jax.jit(jnp.dot)`) and torch (`torch.matmul`, `--torch_threads` threads, default
one per CPU) on `--matmul_n`³ operands in `--precision` (float32 accumulation), median of
`--matmul_repeats` calls each, measured in this run.
A step's achieved FLOP/s is tokens/s x its model FLOPs per token (`psycho_jax.train.loop.
model_flops_per_token`, except that a reward model has no LM head: see `flops_per_token`), reported as a
fraction of its own framework's matmul rate. Cost ratios: seconds per token of dpo, dpo_pre and reward
relative to SFT, measured per framework, beside the analytic ratio of model FLOPs (a pair task's
tokens are both of its sequences).

Decode: bench/decode_throughput.py (greedy `Sampler` against `generate`) at batch 1 and 16 on the same
shapes' model dimensions (`--skip_decode` to leave it out).

The report prints psycho_jax / PyTorch ratios (tokens/s, peak RSS) per task x shape, compile counts,
matmul fractions, cost ratios, decode ratios, and the issue's targets with PASS/MISS: tokens/s >= 1.3x
torch for every training task at small and medium; peak RSS <= torch's; exactly one compilation per
task and shape; a JAX step at >= 50% of the measured XLA matmul rate at medium. `--json` gets
everything, with the machine (platform, CPUs, versions, load average before and after, git commit).
The machine should be idle: torch's OpenMP threads lose far more than XLA's when a core is taken.

Exit status: 1 when a worker fails (a crash, or the PyTorch parity check), with its stderr tail shown;
with `--strict`, 2 when a target is missed; 0 otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import train_step  # noqa: E402
from shapes import SHAPES, hf_config  # noqa: E402

TASKS = train_step.TASKS
FRAMEWORKS = ("jax", "torch")

# The targets.
SPEEDUP = 1.3  # psycho_jax tokens/s / torch tokens/s, every training task ...
SPEEDUP_SHAPES = ("small", "medium")  # ... at these shapes
MATMUL_FRACTION = 0.5  # JAX step FLOP/s / measured XLA matmul FLOP/s ...
MATMUL_SHAPES = ("medium",)  # ... at these shapes
RSS_SHAPES = tuple(SHAPES)  # peak RSS <= torch's (tiny's is mostly the libraries' own footprint)
# Exactly one compilation applies to every shape and JAX configuration.

MiB = 2**20
STDERR_TAIL_LINES = 40


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its command and stderr tail."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One framework configuration: `jax`, `torch`, or a named JAX variant with config overrides."""

    framework: str
    option: str = ""
    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.framework}:{self.option}" if self.option else self.framework


def parse_options(spec: str) -> list[Config]:
    """`"name=override[,override];..."` -> JAX variants, e.g. `remat=model.remat=dots`."""
    configs: list[Config] = []
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        name, _, rest = item.partition("=")
        overrides = tuple(o.strip() for o in rest.split(",") if o.strip())
        if not name or not overrides or any("=" not in o for o in overrides):
            raise ValueError(f"--options: {item!r} is not name=key=value[,key=value]")
        if name in FRAMEWORKS or any(c.option == name for c in configs):
            raise ValueError(f"--options: the name {name!r} is taken")
        configs.append(Config("jax", name, overrides))
    return configs


# ----------------------------------------------------------------------------- workers


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        # Every run compiles, so compile_s and the compile count mean the same in every run.
        JAX_ENABLE_COMPILATION_CACHE="false",
    )
    return env


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    # Progress bars end their updates with \r: keep only the last state of each line.
    kept = [line.rsplit("\r", 1)[-1] for line in text.strip().splitlines()]
    return "\n".join(kept[-lines:])


def run_process(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Runs `cmd`; raises WorkerError with its stderr tail if it fails or times out."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_worker_env(), check=False
        )
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        raise WorkerError(
            f"{what}: timed out after {timeout:.0f} s\n$ {' '.join(cmd)}\n"
            f"--- stderr (last {STDERR_TAIL_LINES} lines) ---\n{_tail(err)}"
        ) from None
    if proc.returncode != 0:
        raise WorkerError(
            f"{what}: exit status {proc.returncode}\n$ {' '.join(cmd)}\n"
            f"--- stderr (last {STDERR_TAIL_LINES} lines) ---\n{_tail(proc.stderr)}"
        )
    return proc


def run_train_worker(
    config: Config, task: str, shape: str, model_dir: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One bench/train_step.py process; its JSON result."""
    out = pathlib.Path(model_dir) / f"result_{config.name.replace(':', '_')}_{task}.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(BENCH / "train_step.py"),
        f"--framework={config.framework}",
        f"--task={task}",
        f"--shape={shape}",
        f"--model_dir={model_dir}",
        f"--json={out}",
    ]
    for flag in ("warmup", "steps", "windows", "torch_threads", "precision", "data"):
        if getattr(args, flag) is not None:
            cmd.append(f"--{flag}={getattr(args, flag)}")
    cmd += [f"--set={o}" for o in config.overrides]
    what = f"{shape} {task} {config.name}"
    proc = run_process(cmd, args.timeout, what)
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise WorkerError(
            f"{what}: no result in {out} ({e})\n--- stderr ---\n{_tail(proc.stderr)}"
        ) from None
    parity = result.get("parity_max_abs")
    if parity is not None and not parity <= train_step.PARITY_ATOL:
        raise WorkerError(f"{what}: parity {parity:.3g} > {train_step.PARITY_ATOL}")
    return result


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a configuration's runs (peak RSS: the largest)."""
    med = lambda key: statistics.median(r[key] for r in runs)
    out = dict(
        tokens_per_s=med("tokens_per_s"),
        step_s=med("step_s"),
        compile_s=med("compile_s"),
        peak_rss_bytes=max(r["peak_rss_bytes"] for r in runs),
        tokens_per_step=runs[0]["tokens_per_step"],
        loss=runs[-1]["loss"],
    )
    if "real_fraction" in runs[0]:  # --data=counsel: real tokens / token slots of a step
        out["real_fraction"] = runs[0]["real_fraction"]
        out["epoch_real_fraction"] = runs[0].get("epoch_real_fraction", runs[0]["real_fraction"])
    if "compiles" in runs[0]:
        out["compiles"] = [r["compiles"] for r in runs]
        out["cache_size"] = [r["cache_size"] for r in runs]
        out["one_compile"] = all(r["compiles"] == 1 and r["cache_size"] == 1 for r in runs)
    if "parity_max_abs" in runs[0]:
        out["parity_max_abs"] = max(r["parity_max_abs"] for r in runs)
        out["torch_threads"] = runs[0]["torch_threads"]
    return out


# ----------------------------------------------------------------------------- FLOPs and matmul


def flops_per_token(shape: str, task: str, model_dir: str) -> dict[str, float]:
    """Model FLOPs per trained token: `library` is `train.model_flops_per_token` as the train loop
    logs it; `model` is what the step computes, used for the matmul fractions and cost ratios."""
    from psycho_jax.core import hf
    from psycho_jax.train import loop as train
    from psycho_jax.train import tasks

    cfg = hf.config_from_hf(hf_config(shape).to_dict())
    t = tasks.make_task(train_step.jax_config(task, shape, model_dir, []))
    library = train.model_flops_per_token(cfg, SHAPES[shape]["seq"], t)
    model = library
    if t.name == "reward":
        # model_flops_per_token counts the LM head (6 x dim x vocab per token) for every task, but a
        # reward model has none: its head is the [dim, num_labels] score projection.
        model -= 6.0 * cfg.dim * (cfg.vocab_size - t.num_labels)
    return dict(library=library, model=model)


def measure_matmul(
    n: int, repeats: int, torch_threads: int, precision: str = "float32"
) -> dict[str, Any]:
    """XLA's and torch's [n,n]@[n,n] rate (FLOP/s) in `precision`, median of `repeats` calls each,
    the two interleaved. bfloat16: operands in bfloat16, accumulated in float32 (XLA's result
    float32, torch's bfloat16, as each framework's mixed-precision training step computes)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    torch.set_num_threads(torch_threads)
    rng = np.random.default_rng(0)
    a_np, b_np = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a_jx, b_jx = jnp.asarray(a_np, precision), jnp.asarray(b_np, precision)
    a_pt, b_pt = (torch.from_numpy(x).to(getattr(torch, precision)) for x in (a_np, b_np))
    dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))

    def time_jax() -> float:
        t0 = time.perf_counter()
        dot(a_jx, b_jx).block_until_ready()
        return time.perf_counter() - t0

    def time_torch() -> float:
        t0 = time.perf_counter()
        torch.matmul(a_pt, b_pt)
        return time.perf_counter() - t0

    time_jax(), time_torch()  # compile, warm-up
    jax_s, torch_s = [], []
    for _ in range(repeats):
        jax_s.append(time_jax())
        torch_s.append(time_torch())
    flop = 2.0 * n**3
    return dict(
        n=n,
        dtype=precision,
        xla_flops=flop / statistics.median(jax_s),
        torch_flops=flop / statistics.median(torch_s),
        xla_times_s=jax_s,
        torch_times_s=torch_s,
        torch_threads=torch.get_num_threads(),
    )


# ----------------------------------------------------------------------------- analysis


def analyse(
    train: dict[str, dict[str, dict[str, dict[str, Any]]]],
    flops: dict[str, dict[str, dict[str, float]]],
    matmul: dict[str, Any],
    options: list[Config],
) -> dict[str, list[dict[str, Any]]]:
    """Ratios, matmul fractions, cost ratios and targets from `train[shape][task][config]`."""
    ratios, opts, mfu, cost, targets = [], [], [], [], []
    rate = {"jax": matmul["xla_flops"], "torch": matmul["torch_flops"]}
    for shape, by_task in train.items():
        for task, by_config in by_task.items():
            jx, pt = by_config["jax"], by_config["torch"]
            r = dict(
                shape=shape,
                task=task,
                tokens_per_s=jx["tokens_per_s"] / pt["tokens_per_s"],
                peak_rss=jx["peak_rss_bytes"] / pt["peak_rss_bytes"],
            )
            if "trl" in by_config:  # TRL's own trainers: a second, informational peer
                trl = by_config["trl"]
                r["tokens_per_s_vs_trl"] = jx["tokens_per_s"] / trl["tokens_per_s"]
                r["peak_rss_vs_trl"] = jx["peak_rss_bytes"] / trl["peak_rss_bytes"]
            ratios.append(r)
            fraction = {}
            for fw in FRAMEWORKS:
                achieved = by_config[fw]["tokens_per_s"] * flops[shape][task]["model"]
                fraction[fw] = achieved / rate[fw]
                mfu.append(
                    dict(
                        shape=shape,
                        task=task,
                        framework=fw,
                        flops_per_s=achieved,
                        matmul_fraction=fraction[fw],
                    )
                )
            for o in options:
                v = by_config[o.name]
                opts.append(
                    dict(
                        shape=shape,
                        task=task,
                        option=o.option,
                        overrides=list(o.overrides),
                        tokens_per_s=v["tokens_per_s"],
                        vs_jax=v["tokens_per_s"] / jx["tokens_per_s"],
                        vs_torch=v["tokens_per_s"] / pt["tokens_per_s"],
                        peak_rss_vs_jax=v["peak_rss_bytes"] / jx["peak_rss_bytes"],
                        peak_rss_vs_torch=v["peak_rss_bytes"] / pt["peak_rss_bytes"],
                        compiles=v["compiles"],
                        one_compile=v["one_compile"],
                    )
                )

            def target(name, value, passed, label=task, shape=shape) -> None:
                targets.append(
                    dict(target=name, shape=shape, task=label, value=value, passed=passed)
                )

            if shape in SPEEDUP_SHAPES:
                target(
                    f"tokens/s >= {SPEEDUP}x torch", r["tokens_per_s"], r["tokens_per_s"] >= SPEEDUP
                )
            if shape in RSS_SHAPES:
                target("peak RSS <= torch", r["peak_rss"], r["peak_rss"] <= 1.0)
            for name in ["jax"] + [o.name for o in options]:
                c = by_config[name]
                target(
                    "exactly one compilation",
                    max(max(c["compiles"]), max(c["cache_size"])),
                    c["one_compile"],
                    task if name == "jax" else f"{task} {name}",
                )
            if shape in MATMUL_SHAPES:
                target(
                    f">= {MATMUL_FRACTION:.0%} of XLA matmul rate",
                    fraction["jax"],
                    fraction["jax"] >= MATMUL_FRACTION,
                )
        if "sft" in by_task:
            for task in by_task:
                if task == "sft":
                    continue
                measured = {
                    fw: by_task["sft"][fw]["tokens_per_s"] / by_task[task][fw]["tokens_per_s"]
                    for fw in FRAMEWORKS
                }
                cost.append(
                    dict(
                        shape=shape,
                        ratio=f"{task}/sft",
                        analytic=flops[shape][task]["model"] / flops[shape]["sft"]["model"],
                        **measured,
                    )
                )
    return dict(
        ratios=ratios, options=opts, matmul_fractions=mfu, cost_ratios=cost, targets=targets
    )


# ----------------------------------------------------------------------------- report


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report_text(results: dict[str, Any]) -> str:
    m, mm, a = results["meta"], results["matmul"], results["analysis"]
    out = [
        f"{m['platform']}, {m['cpu_count']} CPUs; jax {m['versions']['jax']}, torch "
        f"{m['versions']['torch']}, transformers {m['versions']['transformers']}, trl "
        f"{m['versions']['trl']}; commit {m['git_commit']}; load {m['load_before'][0]:.1f} before, "
        f"{m['load_after'][0]:.1f} after",
        f"matmul {mm['n']}^3 {mm.get('dtype', 'float32')}: XLA {mm['xla_flops'] / 1e9:.1f} GFLOP/s, torch "
        f"{mm['torch_flops'] / 1e9:.1f} GFLOP/s ({mm['torch_threads']} threads)",
        "",
        f"Training step, psycho_jax / PyTorch, {results['args'].get('precision', 'float32')}, "
        f"{results['args'].get('data', 'fixed')} data "
        f"(median of {results['args']['repeats']} runs; peak RSS: the largest)",
    ]
    train = results["train"]
    rows = []
    for r in a["ratios"]:
        jx, pt = train[r["shape"]][r["task"]]["jax"], train[r["shape"]][r["task"]]["torch"]
        rows.append(
            [
                r["shape"],
                r["task"],
                f"{jx['tokens_per_s']:,.0f}",
                f"{pt['tokens_per_s']:,.0f}",
                f"**{r['tokens_per_s']:.2f}**",
                f"{jx['peak_rss_bytes'] / MiB:,.0f}",
                f"{pt['peak_rss_bytes'] / MiB:,.0f}",
                f"**{r['peak_rss']:.2f}**",
                "/".join(map(str, jx["compiles"])),
                f"{jx['compile_s']:.1f}",
                f"{pt['parity_max_abs']:.1e}",
            ]
        )
    out.append(
        _table(
            [
                "shape",
                "task",
                "JAX tok/s",
                "torch tok/s",
                "tok/s ratio",
                "JAX RSS MiB",
                "torch RSS MiB",
                "RSS ratio",
                "compiles",
                "compile s",
                "parity",
            ],
            rows,
        )
    )
    if a["options"]:
        out += ["", "JAX options (tokens/s and peak RSS against the default JAX step and torch)"]
        rows = [
            [
                o["shape"],
                o["task"],
                o["option"],
                ",".join(o["overrides"]),
                f"{o['tokens_per_s']:,.0f}",
                f"{o['vs_jax']:.2f}",
                f"{o['vs_torch']:.2f}",
                f"{o['peak_rss_vs_jax']:.2f}",
                f"{o['peak_rss_vs_torch']:.2f}",
                "/".join(map(str, o["compiles"])),
            ]
            for o in a["options"]
        ]
        out.append(
            _table(
                [
                    "shape",
                    "task",
                    "option",
                    "overrides",
                    "tok/s",
                    "/ JAX",
                    "/ torch",
                    "RSS / JAX",
                    "RSS / torch",
                    "compiles",
                ],
                rows,
            )
        )
    fills = [
        (r, train[r["shape"]][r["task"]])
        for r in a["ratios"]
        if "real_fraction" in train[r["shape"]][r["task"]]["jax"]
    ]
    if fills:
        out += [
            "",
            "Real tokens / token slots (--data=counsel: padding not counted), timed steps / epoch",
        ]
        out.append(
            _table(
                ["shape", "task", "JAX (packed)", "torch (padded to the batch's longest)"],
                [
                    [
                        r["shape"],
                        r["task"],
                        f"{t['jax']['real_fraction']:.2f} / "
                        f"{t['jax'].get('epoch_real_fraction', float('nan')):.2f}",
                        f"{t['torch']['real_fraction']:.2f} / "
                        f"{t['torch'].get('epoch_real_fraction', float('nan')):.2f}",
                    ]
                    for r, t in fills
                ],
            )
        )
    if any("tokens_per_s_vs_trl" in r for r in a["ratios"]):
        out += ["", "psycho_jax / TRL's own trainers (SFTTrainer, RewardTrainer, DPOTrainer)"]
        rows = []
        for r in a["ratios"]:
            if "tokens_per_s_vs_trl" not in r:
                continue
            jx, trl = (train[r["shape"]][r["task"]][c] for c in ("jax", "trl"))
            rows.append(
                [
                    r["shape"],
                    r["task"],
                    f"{jx['tokens_per_s']:,.0f}",
                    f"{trl['tokens_per_s']:,.0f}",
                    f"**{r['tokens_per_s_vs_trl']:.2f}**",
                    f"{trl['peak_rss_bytes'] / MiB:,.0f}",
                    f"**{r['peak_rss_vs_trl']:.2f}**",
                ]
            )
        headers = ["shape", "task", "JAX tok/s", "TRL tok/s", "tok/s ratio", "TRL RSS MiB"]
        out.append(_table(headers + ["RSS ratio"], rows))
    out += ["", "Achieved model FLOP/s, as a fraction of the framework's own matmul rate"]
    by_key = {(f["shape"], f["task"], f["framework"]): f for f in a["matmul_fractions"]}
    rows = []
    for r in a["ratios"]:
        jx, pt = (by_key[(r["shape"], r["task"], fw)] for fw in FRAMEWORKS)
        rows.append(
            [
                r["shape"],
                r["task"],
                f"{results['flops_per_token'][r['shape']][r['task']]['model'] / 1e6:.2f}",
                f"{jx['flops_per_s'] / 1e9:.1f}",
                f"{jx['matmul_fraction']:.0%}",
                f"{pt['flops_per_s'] / 1e9:.1f}",
                f"{pt['matmul_fraction']:.0%}",
            ]
        )
    out.append(
        _table(
            [
                "shape",
                "task",
                "MFLOP/token",
                "JAX GFLOP/s",
                "of XLA matmul",
                "torch GFLOP/s",
                "of torch matmul",
            ],
            rows,
        )
    )
    if a["cost_ratios"]:
        out += ["", "Cost per token relative to SFT (seconds/token ratio; analytic: model FLOPs)"]
        rows = [
            [c["shape"], c["ratio"], f"{c['analytic']:.2f}", f"{c['jax']:.2f}", f"{c['torch']:.2f}"]
            for c in a["cost_ratios"]
        ]
        out.append(_table(["shape", "ratio", "analytic", "JAX", "torch"], rows))
    dec = results.get("decode")
    if dec:
        out += [
            "",
            "Decode (greedy, bench/decode_throughput.py), psycho_jax / transformers generate",
        ]
        rows = [
            [
                d["size"],
                str(d["batch"]),
                f"{d['jax_tok_s']:,.0f}",
                f"{d['torch_tok_s']:,.0f}",
                f"**{d['ratio']:.2f}**",
                f"{d['compile_s']:.1f}",
                f"{d['rows_equal']}/{d['batch']}",
            ]
            for d in dec["results"]
        ]
        out.append(
            _table(
                ["shape", "batch", "JAX tok/s", "torch tok/s", "ratio", "compile s", "rows equal"],
                rows,
            )
        )
    out += ["", "Targets"]
    for t in a["targets"]:
        out.append(
            f"{'PASS' if t['passed'] else 'MISS'}  {t['target']:<30} {t['shape']:<7} "
            f"{t['task']:<18} {t['value']:.2f}"
        )
    missed = sum(not t["passed"] for t in a["targets"])
    out.append(f"{len(a['targets']) - missed} of {len(a['targets'])} targets met")
    return "\n".join(out)


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers", "trl"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(
                ["git", *cmd], cwd=BENCH, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = None
    return dict(
        platform=platform.platform(),
        machine=platform.machine(),
        processor=platform.processor(),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        cpu_affinity=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        memory_bytes=mem,
        versions=versions,
        git_commit=commit,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        load_before=list(os.getloadavg()),
    )


# ----------------------------------------------------------------------------- main


def run_decode(args: argparse.Namespace, shapes: list[str], workdir: str) -> dict[str, Any]:
    out = pathlib.Path(workdir) / "decode.json"
    cmd = [
        sys.executable,
        str(BENCH / "decode_throughput.py"),
        f"--shapes={','.join(shapes)}",
        f"--batch_sizes={args.decode_batch_sizes}",
        f"--max_new_tokens={args.decode_new_tokens}",
        f"--repeats={args.decode_repeats or args.repeats}",
        f"--json={out}",
    ]
    if args.torch_threads is not None:
        cmd.append(f"--torch_threads={args.torch_threads}")
    run_process(cmd, args.timeout * len(shapes), "decode")
    return json.loads(out.read_text())


def run_suite(args: argparse.Namespace, results: dict[str, Any], workdir: str) -> None:
    """Fills `results` as it goes, so a failure still leaves what was measured."""
    shapes, tasks = args.shapes, args.tasks
    options = parse_options(args.options)
    configs = [Config("jax"), Config("torch"), *([Config("trl")] if args.trl else []), *options]
    threads = args.torch_threads or os.cpu_count() or 1

    timing = results["timing_s"] = {}
    t0 = time.perf_counter()
    print(f"matmul {args.matmul_n}^3 {args.precision} ...", flush=True)
    results["matmul"] = measure_matmul(args.matmul_n, args.matmul_repeats, threads, args.precision)
    timing["matmul"] = time.perf_counter() - t0
    results["flops_per_token"] = {}
    results["train"] = {}
    results["runs"] = []
    for shape in shapes:
        model_dir = os.path.join(workdir, shape)
        print(f"{shape}: preparing models in {model_dir}", flush=True)
        t0 = time.perf_counter()
        train_step.prepare(model_dir, shape)
        timing[f"prepare_{shape}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results["flops_per_token"][shape] = {t: flops_per_token(shape, t, model_dir) for t in tasks}
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        n = len(configs)
        for rep in range(args.repeats):
            for task in tasks:
                # Rotate which configuration goes first, so no framework always follows another.
                for config in configs[rep % n :] + configs[: rep % n]:
                    t1 = time.perf_counter()
                    r = run_train_worker(config, task, shape, model_dir, args)
                    r.update(config=config.name, repeat=rep, wall_s=time.perf_counter() - t1)
                    results["runs"].append(r)
                    runs.setdefault((task, config.name), []).append(r)
                    if "compiles" in r:
                        extra = f", {r['compiles']} compile(s) ({r['compile_s']:.1f} s)"
                    elif "parity_max_abs" in r:
                        extra = f", parity {r['parity_max_abs']:.1e}"
                    else:
                        extra = f", loss {r['loss']:.4f}"
                    print(
                        f"  {shape} {task:<7} {config.name:<12} [{rep + 1}/{args.repeats}] "
                        f"{r['tokens_per_s']:>10,.0f} tok/s, RSS {r['peak_rss_bytes'] / MiB:,.0f} MiB"
                        f"{extra}; {r['wall_s']:.0f} s",
                        flush=True,
                    )
        timing[f"train_{shape}"] = time.perf_counter() - t0
        results["train"][shape] = {
            task: {c.name: summarize_runs(runs[(task, c.name)]) for c in configs} for task in tasks
        }
    results["analysis"] = analyse(
        results["train"], results["flops_per_token"], results["matmul"], options
    )
    if not args.skip_decode:
        print(f"decode: {','.join(shapes)} at batch {args.decode_batch_sizes} ...", flush=True)
        t0 = time.perf_counter()
        results["decode"] = run_decode(args, shapes, workdir)
        timing["decode"] = time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="tiny,small,medium", help=f"of {', '.join(SHAPES)}")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma list (the default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument(
        "--options",
        default="",
        help='JAX variants: "name=key=value[,key=value];..." (config overrides)',
    )
    parser.add_argument("--json", default=str(BENCH / "results.json"), help="'' for none")
    parser.add_argument("--warmup", type=int, default=None, help="train_step.py's, if given")
    parser.add_argument("--steps", type=int, default=None, help="train_step.py's, if given")
    parser.add_argument("--windows", type=int, default=None, help="train_step.py's, if given")
    parser.add_argument("--torch_threads", type=int, default=None, help="default: CPU count")
    parser.add_argument(
        "--precision",
        choices=train_step.PRECISIONS,
        default="float32",
        help="training compute dtype (bench/train_step.py): bfloat16 = psycho_jax "
        "model.dtype=bfloat16 against torch CPU autocast; weights and optimizer stay float32",
    )
    parser.add_argument(
        "--data",
        choices=train_step.DATA,
        default="fixed",
        help="fixed: full-length random rows, the same work in both frameworks; counsel: "
        "CounselChat's lengths, psycho_jax packing (data.packing, data.pairs_per_row), the peer "
        "padding each batch to its longest; tokens/s counts real tokens",
    )
    parser.add_argument(
        "--trl",
        action="store_true",
        help="also time TRL's own trainers (SFTTrainer, RewardTrainer, DPOTrainer) as a second peer",
    )
    parser.add_argument("--matmul_n", type=int, default=2048)
    parser.add_argument("--matmul_repeats", type=int, default=7)
    parser.add_argument("--skip_decode", action="store_true")
    parser.add_argument("--decode_batch_sizes", default="1,16")
    parser.add_argument("--decode_new_tokens", type=int, default=128)
    parser.add_argument("--decode_repeats", type=int, default=0, help="0: --repeats")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--workdir", default="", help="keep the models here (default: a temp dir)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # a CPU comparison (here and in the workers)
    args.shapes = args.shapes.split(",")
    args.tasks = args.tasks.split(",")
    for flag, values, valid in (("--shapes", args.shapes, SHAPES), ("--tasks", args.tasks, TASKS)):
        bad = [v for v in values if v not in valid]
        if bad:
            parser.error(f"{flag}: unknown {', '.join(bad)}; valid: {', '.join(valid)}")
    if "sft" not in args.tasks:
        print("note: without sft there are no cost ratios")
    try:
        parse_options(args.options)
    except ValueError as e:
        parser.error(str(e))
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    results: dict[str, Any] = dict(
        meta=machine_info(), args={k: v for k, v in vars(args).items() if k != "json"}
    )
    m = results["meta"]
    print(
        f"{m['platform']}, {m['cpu_count']} CPUs, commit {m['git_commit']}; "
        f"1-minute load {m['load_before'][0]:.1f}",
        flush=True,
    )
    if m["load_before"][0] > 0.5 * (m["cpu_count"] or 1):
        print("warning: the machine is busy; torch suffers more than XLA from a taken core")
    status, start = 0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="psycho_jax_bench_") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        try:
            run_suite(args, results, workdir)
        except WorkerError as e:
            results["error"] = str(e)
            print(f"\nFAILED: {e}", file=sys.stderr)
            status = 1
    m["load_after"] = list(os.getloadavg())
    results.setdefault("timing_s", {})["total"] = time.perf_counter() - start
    if status == 0:
        print()
        print(report_text(results))
        missed = [t for t in results["analysis"]["targets"] if not t["passed"]]
        results["targets_met"] = not missed
        if missed and args.strict:
            status = 2
    print(f"suite: {results['timing_s']['total']:.0f} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
