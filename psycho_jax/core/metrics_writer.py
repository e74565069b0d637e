"""Training logs: `metrics.jsonl`, TensorBoard event files, optional Weights & Biases, and a progress
bar with ETA on a terminal (a concise line every `log_every` steps otherwise). Host 0 only."""

from __future__ import annotations

import json
import logging as logging_std
import pathlib
import sys
from typing import Any

import jax
import tensorboardX
import tqdm
from absl import logging


class MetricsWriter:
    """A run's metrics: `workdir/metrics.jsonl`, TensorBoard, a progress bar on a terminal, and
    Weights & Biases when `wandb_project` is set (with `run_config`, the run's settings)."""

    def __init__(
        self,
        workdir: pathlib.Path,
        total_steps: int,
        *,
        name: str,
        wandb_project: str = "",
        run_config: dict[str, Any] | None = None,
    ):
        self.enabled = jax.process_index() == 0
        self.bar = None
        self.tb = None
        self.wandb = None
        if not self.enabled:
            return
        self.jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.tb = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))
        if wandb_project:
            try:
                import wandb  # optional: psycho_jax[wandb]
            except ImportError:
                raise ImportError(
                    f"config.wandb_project={wandb_project!r} needs Weights & Biases: "
                    "pip install 'psycho_jax[wandb]' (or set --config.wandb_project='')"
                ) from None
            self.wandb = wandb.init(project=wandb_project, config=run_config, dir=str(workdir))
        if sys.stderr.isatty():
            self.bar = tqdm.tqdm(total=total_steps, desc=name, dynamic_ncols=True)

    def progress(self, step: int, metrics: dict[str, Any]) -> None:
        """Advances the progress bar (metrics stay on device: nothing is fetched here)."""
        del metrics
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        line = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(line[:120])
        else:
            logging.info("step %d: %s", step, line)

    def close(self) -> None:
        if not self.enabled:
            return
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.bar is not None:
            self.bar.close()
        if self.wandb is not None:
            self.wandb.finish()


class _DropOrbaxInfo(logging_std.Filter):
    def filter(self, record: logging_std.LogRecord) -> bool:
        return record.levelno >= logging_std.WARNING or "orbax" not in record.pathname


def quiet_library_logs() -> None:
    """Keeps Orbax's per-save INFO lines out of the training log (warnings still show)."""
    logging.get_absl_handler().addFilter(_DropOrbaxInfo())
