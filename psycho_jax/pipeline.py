"""The project's main job: SFT -> reward model -> DPO on one model, then a summary table.

    python -m psycho_jax.pipeline --config=configs/pipeline.py:demo --workdir=/tmp/pipeline

Each stage is an ordinary `train.train_and_evaluate` run in `workdir/<stage>`; the reward model and
the DPO policy and reference are initialised from the SFT stage's checkpoint. The summary (held-out SFT
loss before and after, reward-model pair accuracy, DPO reward accuracy and margins) is printed and
written to `workdir/summary.md` and `workdir/summary.json`.
"""

from __future__ import annotations

import json
import pathlib
import time

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from psycho_jax import distributed, metrics_writer, train


def define_flags() -> None:
    """Command-line flags; defined only when run as a program, so importing this module (tests,
    notebooks, other CLIs) never clashes with another module's flags."""
    config_flags.DEFINE_config_file("config", "configs/pipeline.py:demo", lock_config=True)
    flags.DEFINE_bool("distributed", None, "Join a multi-host run (see psycho_jax.distributed).")
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
    dirs = {s: workdir / s for s in ("sft", "reward", "dpo")}
    results: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for stage in c.stages:
        sc = c[stage].copy_and_resolve_references()
        if stage != "sft":
            with sc.unlocked():
                sc.init_from = sc.init_from or str(dirs["sft"])
        start = time.perf_counter()
        logging.info("pipeline: stage %s in %s", stage, dirs[stage])
        results[stage] = train.train_and_evaluate(sc, dirs[stage])
        seconds[stage] = time.perf_counter() - start
    summary = {
        "sft/eval_loss_start": _first_eval(dirs["sft"], "eval/loss"),
        "sft/eval_loss_end": results.get("sft", {}).get("eval/loss"),
        "reward/eval_accuracy": results.get("reward", {}).get("eval/accuracy"),
        "reward/eval_margin": results.get("reward", {}).get("eval/margin"),
        "dpo/eval_rewards/accuracies": results.get("dpo", {}).get("eval/rewards/accuracies"),
        "dpo/eval_rewards/margins": results.get("dpo", {}).get("eval/rewards/margins"),
        "dpo/eval_loss": results.get("dpo", {}).get("eval/loss"),
        **{f"seconds/{k}": round(v, 1) for k, v in seconds.items()},
    }
    rows = [
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in summary.items()
    ]
    table = "\n".join(["| metric | value |", "|---|---|", *rows])
    print(table)
    (workdir / "summary.md").write_text("# psycho_jax pipeline summary\n\n" + table + "\n")
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv):
    del argv
    distributed.maybe_initialize(flags.FLAGS.distributed)
    logging.set_verbosity(logging.INFO)
    metrics_writer.quiet_library_logs()
    run_pipeline(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    define_flags()
    app.run(main)
