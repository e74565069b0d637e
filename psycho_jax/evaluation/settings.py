"""An evaluation run's settings (`configs/evaluate.py`) as frozen, typed pieces that check
themselves; `python -m psycho_jax.evaluate` builds them once at start-up (`EvalSettings.from_config`)
and the stages (`systems`, `results`) take them, never the ConfigDict."""

from __future__ import annotations

import dataclasses
from typing import Any

from psycho_jax.core import decode
from psycho_jax.data.typed import from_config, invalid


@dataclasses.dataclass(frozen=True)
class Judge:
    write_requests: bool  # judge_requests_<system>_vs_<baseline>.jsonl (OpenAI Batch format)
    model: str
    verdicts: str  # a verdict file to read back; "{system}" is replaced by the system name
    on_error: str  # raise | skip (counted)

    def __post_init__(self):
        if self.on_error not in ("raise", "skip"):
            raise invalid("judge.on_error", self.on_error, "raise, skip")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    systems: str  # "name=source, name=source, ..."
    baseline: str
    reward_model: str
    tokenizer: str  # "": the first checkpoint's (or the reward model's) saved tokenizer
    prompts: str
    num_prompts: int  # 0: all
    crisis: str  # "auto", a prompt spec, or "" (no safety slice)
    num_crisis: int
    on_bad_replies: str  # error | skip
    sampling: decode.Sampling
    batch_size: int
    max_len: int  # prompt + reply tokens the reward model reads
    dtype: str  # compute dtype for generation
    tie_tol: float
    n_boot: int
    alpha: float
    judge: Judge
    html: bool
    seed: int
    mesh: tuple[int, ...]
    sharding_rules: tuple[tuple[str, Any], ...]

    def __post_init__(self):
        if self.on_bad_replies not in ("error", "skip"):
            raise invalid("on_bad_replies", self.on_bad_replies, "error, skip")
        for key in ("batch_size", "max_len", "n_boot"):
            if getattr(self, key) <= 0:
                raise invalid(key, getattr(self, key), "a positive integer")
        if not 0 < self.alpha < 1:
            raise invalid("alpha", self.alpha, "0 < alpha < 1")

    @classmethod
    def from_config(cls, c: Any) -> EvalSettings:
        return from_config(cls, c)
