"""The project's main job: SFT -> reward model -> DPO -> online DPO -> evaluation, then a summary.

    python -m psycho_jax.pipeline --config=configs/pipeline.py:demo --workdir=/tmp/pipeline

Each training stage is an ordinary `main.run_training` run in `workdir/<stage>`: the reward
model and the DPO policy and reference start from the SFT checkpoint; online DPO starts from the SFT
policy too (as in PsychoCounsel, offline and online DPO are two ways to improve the same SFT model) and
samples, scores with the reward model and trains for `online.rounds` rounds. The evaluation stage
(`psycho_jax.evaluate`, in `workdir/evaluation`) has the SFT, DPO and online-DPO policies answer the
held-out prompts and the crisis slice, judged by the reward model. The summary (held-out SFT loss,
reward-model pair accuracy, DPO metrics, the online reward curve, and each policy's win rate against
SFT with its bootstrap interval) is printed and written to `workdir/summary.md` / `summary.json`.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from psycho_jax import evaluate
from psycho_jax.core import distributed, metrics_writer
from psycho_jax.main import run_training

STAGES = ("sft", "reward", "dpo", "online_dpo")


def define_flags() -> None:
    """Command-line flags; defined only when run as a program, so importing this module (tests,
    notebooks, other CLIs) never clashes with another module's flags."""
    config_flags.DEFINE_config_file("config", "configs/pipeline.py:demo", lock_config=True)
    flags.DEFINE_bool(
        "distributed", None, "Join a multi-host run (see psycho_jax.core.distributed)."
    )
    flags.DEFINE_string("workdir", "/tmp/psycho_jax_pipeline", "Where every stage writes.")


def _first_eval(workdir: pathlib.Path, key: str) -> float | None:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if key in row:
            return row[key]
    return None


def run_pipeline(c: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, float]:
    """Runs the configured stages in order; returns (and writes) the summary."""
    workdir = pathlib.Path(workdir)
    dirs = {s: workdir / s for s in STAGES}
    dirs["evaluate"] = workdir / "evaluation"
    results: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for stage in c.stages:
        if stage not in dirs:
            raise ValueError(f"config.stages: unknown stage {stage!r}; valid: {', '.join(dirs)}")
        sc = c[stage].copy_and_resolve_references()
        with sc.unlocked():
            if stage == "evaluate":
                sc.systems = sc.systems or ", ".join(
                    f"{s}={dirs[s]}" for s in ("online_dpo", "dpo", "sft") if s in c.stages
                    or (dirs[s] / "checkpoints").is_dir() or (dirs[s] / "policy").is_file()
                )  # fmt: skip
                sc.baseline = sc.baseline or "sft"
                sc.reward_model = sc.reward_model or str(dirs["reward"])
            elif stage != "sft":
                sc.init_from = sc.init_from or str(dirs["sft"])
            if stage == "online_dpo":
                sc.online.reward_model = sc.online.reward_model or str(dirs["reward"])
        start = time.perf_counter()
        logging.info("pipeline: stage %s in %s", stage, dirs[stage])
        if stage == "evaluate":
            results[stage] = evaluate.run_evaluation(sc, dirs[stage])
        else:
            results[stage] = run_training(sc, dirs[stage])
        seconds[stage] = time.perf_counter() - start
    for stage in STAGES:  # stages not run this time: their saved final metrics
        saved = dirs[stage] / "final_metrics.json"
        if stage not in results and saved.is_file():
            results[stage] = json.loads(saved.read_text())
    if "evaluate" not in results and (dirs["evaluate"] / "evaluation.json").is_file():
        results["evaluate"] = json.loads((dirs["evaluate"] / "evaluation.json").read_text())
    online = results.get("online_dpo", {})
    wins = {}
    for comp in results.get("evaluate", {}).get("comparisons", []):
        key = f"win_rate/{comp['system_a']}_vs_{comp['system_b']}"
        wins[key] = comp["win_rate"]
        wins[key + "/ci"] = f"[{comp['ci'][0]:.3f}, {comp['ci'][1]:.3f}]"
        wins[key + "/lc"] = comp["lc_win_rate"]
        wins[key + "/bt"] = comp["bt_win_rate"]
        wins[key + "/bt_ci"] = f"[{comp['bt_ci'][0]:.3f}, {comp['bt_ci'][1]:.3f}]"
    summary = {
        "sft/eval_loss_start": _first_eval(dirs["sft"], "eval/loss"),
        "sft/eval_loss_end": results.get("sft", {}).get("eval/loss"),
        "reward/eval_accuracy": results.get("reward", {}).get("eval/accuracy"),
        "reward/eval_margin": results.get("reward", {}).get("eval/margin"),
        "dpo/eval_rewards/accuracies": results.get("dpo", {}).get("eval/rewards/accuracies"),
        "dpo/eval_rewards/margins": results.get("dpo", {}).get("eval/rewards/margins"),
        "dpo/eval_loss": results.get("dpo", {}).get("eval/loss"),
        "online_dpo/heldout_reward_start": online.get("heldout_reward_start"),
        "online_dpo/heldout_reward_end": online.get("heldout_reward_end"),
        **wins,
        **{f"seconds/{k}": round(v, 1) for k, v in seconds.items()},
    }
    rows = [
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in summary.items()
    ]
    table = "\n".join(["| metric | value |", "|---|---|", *rows])
    print(table)
    if jax.process_index() == 0:
        (workdir / "summary.md").write_text("# psycho_jax pipeline summary\n\n" + table + "\n")
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv):
    del argv
    distributed.use_cpu_cores(flags.FLAGS.config, distributed=flags.FLAGS.distributed)
    distributed.maybe_initialize(flags.FLAGS.distributed)
    logging.set_verbosity(logging.INFO)
    metrics_writer.quiet_library_logs()
    run_pipeline(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    define_flags()
    app.run(main)
