"""A training run's settings as frozen, typed pieces that check themselves.

The user's interface is the ml_collections config (`psycho_jax.config.base_config`, experiment files in
`configs/`, `--config.x=` overrides, `:variants`); it holds every default. At start-up it is turned once
into `TrainSettings` (`TrainSettings.from_config`), whose pieces check their own values and name the
config key of a bad one; library code takes these pieces, never the ConfigDict:

    TrainSettings   the run: task, seed, steps, batch, evaluation, checkpoints, mesh, model source
      .model        Model: preset, size overrides (0: the preset's), numerics -> `LlamaConfig`
      .lora         Lora: adapters (rank 0: full fine-tuning)
      .data         data.training.DataSettings: sources, length, truncation, packing, transcripts
      .optim        Optim: AdamW and its schedule
      .reward       Reward: Bradley-Terry margin, centering, principle head
      .dpo          Dpo: the preference loss, beta, the reference
      .online       Online: rounds of sampling and scoring (task online_dpo), `.sampling`
                    (a `core.decode.Sampling`)

The attribute names are the config's keys, so `run.optim.lr` reads as `--config.optim.lr` is written.
A run's variants (online DPO's per-round DPO stage, a reference without adapters) are
`dataclasses.replace` of these, checked again.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from psycho_jax.core import decode, sharding
from psycho_jax.core.model import LORA_TARGETS, NUMERICS, PRESETS, LlamaConfig
from psycho_jax.data.training import DataSettings
from psycho_jax.data.typed import from_config, invalid
from psycho_jax.train import losses

TASKS = ("sft", "reward", "dpo", "online_dpo")
MARGINS = ("none", "constant", "ratings")
SCHEDULES = ("cosine", "linear", "constant")
REFERENCES = ("live", "precomputed")
SIZES = ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim")


def _positive(key: str, value: Any) -> None:
    if value <= 0:
        raise invalid(key, value, "a positive integer")


@dataclasses.dataclass(frozen=True)
class Model:
    """A `LlamaConfig` preset with size overrides (0: the preset's value) and the numerics a run sets
    on any model it builds or loads (`core.model.NUMERICS`)."""

    preset: str
    vocab_size: int  # 0: the tokenizer's size
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    dtype: str
    param_dtype: str
    attention: str
    remat: str
    scan_layers: bool
    head_chunk: int
    head_keep_mib: int
    attention_blocks: int

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise invalid("model.preset", self.preset, ", ".join(PRESETS))

    @property
    def numerics(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in NUMERICS}

    def llama_config(self, vocab_size: int, lora: Lora) -> LlamaConfig:
        """The LlamaConfig of a random-init run: the preset with the overrides, numerics and LoRA."""
        sizes = {k: getattr(self, k) for k in SIZES if getattr(self, k)}
        return LlamaConfig.preset(
            self.preset,
            vocab_size=self.vocab_size or vocab_size,
            **self.numerics,
            **lora.fields,
            **sizes,
        )


@dataclasses.dataclass(frozen=True)
class Lora:
    rank: int  # 0: off
    alpha: float
    targets: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 0:
            raise invalid("lora.rank", self.rank, "an integer >= 0 (0: no adapters)")
        if self.rank:
            if self.alpha <= 0:
                raise invalid("lora.alpha", self.alpha, "alpha > 0")
            t = self.targets
            if not t or len(set(t)) != len(t) or set(t) - set(LORA_TARGETS):
                raise invalid("lora.targets", t, f"distinct names from {', '.join(LORA_TARGETS)}")

    @property
    def fields(self) -> dict[str, Any]:
        """The LlamaConfig fields of these settings."""
        return dict(lora_rank=self.rank, lora_alpha=float(self.alpha), lora_targets=self.targets)


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float
    schedule: str
    warmup_steps: int
    end_lr_factor: float
    b1: float
    b2: float
    eps: float
    weight_decay: float
    clip_norm: float

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise invalid("optim.schedule", self.schedule, ", ".join(SCHEDULES))
        if self.lr <= 0:
            raise invalid("optim.lr", self.lr, "a positive learning rate")


@dataclasses.dataclass(frozen=True)
class Reward:
    margin: str
    margin_value: float
    center_coef: float
    principle_head: bool
    principle_coef: float
    stats_batches: int  # 0: all

    def __post_init__(self):
        if self.margin not in MARGINS:
            raise invalid("reward.margin", self.margin, ", ".join(MARGINS))


@dataclasses.dataclass(frozen=True)
class Dpo:
    loss_type: str
    beta: float
    label_smoothing: float
    simpo_gamma: float
    reference: str  # live | precomputed
    reference_from: str  # "": init_from
    reference_cache: str

    def __post_init__(self):
        if self.loss_type not in losses.LOSS_TYPES:
            raise invalid("dpo.loss_type", self.loss_type, ", ".join(losses.LOSS_TYPES))
        if self.beta <= 0:
            raise invalid("dpo.beta", self.beta, "beta > 0")
        if not 0 <= self.label_smoothing < 0.5:
            raise invalid("dpo.label_smoothing", self.label_smoothing, "0 <= label_smoothing < 0.5")
        if self.reference not in REFERENCES:
            raise invalid("dpo.reference", self.reference, ", ".join(REFERENCES))

    @property
    def needs_reference(self) -> bool:
        return losses.needs_reference(self.loss_type)


@dataclasses.dataclass(frozen=True)
class Online:
    rounds: int
    reward_model: str
    prompts: str
    prompts_per_round: int
    samples_per_prompt: int
    min_gap: float
    steps_per_round: int
    reference: str  # previous | initial
    eval_prompts: str
    eval_num_prompts: int
    sampling: decode.Sampling  # how rounds sample their replies (and the held-out curve)

    def __post_init__(self):
        for key in ("rounds", "prompts_per_round", "samples_per_prompt", "steps_per_round"):
            _positive(f"online.{key}", getattr(self, key))
        if self.samples_per_prompt < 2:
            raise invalid(
                "online.samples_per_prompt", self.samples_per_prompt, ">= 2 (best vs worst)"
            )
        if self.reference not in ("previous", "initial"):
            raise invalid("online.reference", self.reference, "previous, initial")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """One training run (see the module docstring). `source` is the user's config as JSON, kept with
    checkpoints and metrics for provenance."""

    task: str
    seed: int
    model: Model
    init_from: str  # a stage workdir or a Hugging Face directory; "": random init
    tokenizer: str
    lora: Lora
    data: DataSettings
    batch_size: int
    grad_accum: int
    num_steps: int
    eval_every: int
    eval_batches: int  # 0: the whole eval split
    eval_batch_size: int  # 0: batch_size
    log_every: int
    checkpoint_every: int  # 0: only at the end (and on preemption)
    keep_checkpoints: int
    keep_best_metric: str
    keep_best_mode: str
    max_bad_steps: int
    optim: Optim
    reward: Reward
    dpo: Dpo
    online: Online
    mesh: tuple[int, ...]
    cpu_devices: int
    cpu_scheduler: str
    release_compiler_heap: bool
    sharding_rules: tuple[tuple[str, Any], ...]
    hardware: str
    peak_flops_per_device: float
    wandb_project: str
    source: str = dataclasses.field(default="{}", compare=False, repr=False)

    def __post_init__(self):
        if self.task not in TASKS:
            raise invalid("task", self.task, ", ".join(TASKS))
        for key in ("batch_size", "grad_accum", "num_steps", "log_every"):
            _positive(key, getattr(self, key))
        if self.batch_size % self.grad_accum:
            raise invalid(
                "batch_size", self.batch_size, f"a multiple of grad_accum={self.grad_accum}"
            )
        if self.eval_batch_size < 0:
            raise invalid(
                "eval_batch_size", self.eval_batch_size, "0 (batch_size) or a positive integer"
            )
        if self.keep_best_mode not in ("min", "max"):
            raise invalid("keep_best_mode", self.keep_best_mode, "min, max")
        if self.cpu_scheduler not in ("default", "memory", "concurrency"):
            raise invalid("cpu_scheduler", self.cpu_scheduler, "default, memory, concurrency")
        if self.keep_best_metric and not self.keep_best_metric.startswith("eval/"):
            raise invalid(
                "keep_best_metric", self.keep_best_metric, "an eval metric such as 'eval/loss'"
            )
        if self.keep_best_metric and not self.eval_every:
            raise invalid(
                "keep_best_metric", self.keep_best_metric, "'' when eval_every=0 (nothing to rank)"
            )

    def _check_online(self) -> None:
        o = self.online
        if not o.reward_model:
            raise invalid("online.reward_model", o.reward_model, "a reward-model stage directory")
        if not self.init_from:
            raise invalid("init_from", self.init_from, "the policy online DPO starts from")
        if self.lora.rank and o.reference == "initial" and self.dpo.reference == "live":
            raise invalid(
                "online.reference",
                o.reference,
                "'previous' with lora.rank > 0 and a live reference (the reference is the frozen "
                "base of each round), or set dpo.reference=precomputed",
            )

    def _check_reference(self) -> None:
        d = self.dpo
        if d.needs_reference and not (d.reference_from or self.init_from):
            raise invalid(
                "dpo.reference_from",
                d.reference_from,
                "a checkpoint for the reference model (or set init_from): DPO needs a reference",
            )
        live = d.needs_reference and d.reference == "live"
        if self.lora.rank and live and d.reference_from not in ("", self.init_from):
            raise invalid(
                "dpo.reference_from",
                d.reference_from,
                "'' with lora.rank > 0 and a live reference (the reference is the frozen base, "
                "init_from); for another reference set dpo.reference=precomputed",
            )

    # ------------------------------------------------------------------------- derived facts

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        """The LlamaConfig of a random-init run (`Model.llama_config` with the run's LoRA)."""
        return self.model.llama_config(vocab_size, self.lora)

    def at(self, every: int, step: int) -> bool:
        """Whether `step` is due for something done `every` steps and at the last (0: never)."""
        return bool(every) and (step % every == 0 or step == self.num_steps)

    def check_run(self, num_devices: int | None = None) -> TrainSettings:
        """The start-up checks of a run (beyond each value's own): what it starts from (DPO's
        reference, online DPO's policy and reward model) and, with `num_devices`, that the mesh
        and batch sizes fit them. Returns self."""
        if self.task == "online_dpo":
            self._check_online()
        if self.task in ("dpo", "online_dpo"):
            self._check_reference()
        if num_devices is not None:
            self._check_mesh(num_devices)
        return self

    def _check_mesh(self, num_devices: int) -> None:
        try:
            data, fsdp, _ = sharding.resolve_mesh_shape(self.mesh, num_devices)
        except ValueError as e:
            raise ValueError(f"config.mesh={self.mesh!r}: {e}") from e
        shards = data * fsdp
        micro = self.batch_size // self.grad_accum
        if micro % shards:
            raise invalid(
                "batch_size",
                self.batch_size,
                f"batch_size / grad_accum ({micro}) must divide over data*fsdp={shards} devices",
            )
        if self.eval_batch_size % shards:
            raise invalid(
                "eval_batch_size",
                self.eval_batch_size,
                f"a multiple of data*fsdp={shards} devices (0: batch_size)",
            )

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (for metrics loggers)."""
        return json.loads(json.dumps(dataclasses.asdict(self) | {"source": None}, default=str))

    @classmethod
    def from_config(cls, c: Any) -> TrainSettings:
        """The typed settings of an ml_collections training config (every key read, none defaulted
        here: `base_config` holds the defaults). A missing key or a bad value is a ValueError that
        names the key."""
        source = c.to_json_best_effort() if hasattr(c, "to_json_best_effort") else "{}"
        return dataclasses.replace(from_config(cls, c), source=source)
