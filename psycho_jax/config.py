"""The one base config (every key has its default here) and the start-up validation pass.

Experiment files in `configs/` start from `base_config()` and change what they need; library code reads
keys directly and never supplies a default of its own.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from psycho_jax.core import sharding
from psycho_jax.core.model import LORA_TARGETS, NUMERICS, PRESETS, LlamaConfig
from psycho_jax.data.formats import parse_role_map
from psycho_jax.data.templating import DEFAULT_MAX_LEN
from psycho_jax.train import losses

TASKS = ("sft", "reward", "dpo", "online_dpo")
MARGINS = ("none", "constant", "ratings")
SCHEDULES = ("cosine", "linear", "constant")
REFERENCES = ("live", "precomputed")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "sft"  # sft | reward | dpo | online_dpo
    c.seed = 0

    # Model: a LlamaConfig preset plus overrides, or the model of `init_from`.
    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"
    c.model.vocab_size = 0  # 0: the tokenizer's size
    c.model.dim = 0  # 0 in any size field: the preset's value
    c.model.n_layers = 0
    c.model.n_heads = 0
    c.model.n_kv_heads = 0
    c.model.head_dim = 0
    c.model.ffn_dim = 0
    c.model.dtype = "float32"  # compute dtype: bfloat16 on accelerators
    c.model.param_dtype = "float32"
    c.model.attention = "auto"  # auto | xla | custom | einsum (psycho_jax.core.model.LlamaConfig)
    c.model.remat = "none"
    c.model.scan_layers = False
    c.model.head_chunk = 128  # positions per row per output-projection chunk; 0: full logits
    c.model.head_keep_mib = 512  # DPO keeps the head's probabilities up to this; 0: recompute
    c.model.attention_blocks = 0  # causal query blocks of the CPU attention kernel; 0: automatic
    # A previous stage's workdir (its final checkpoint) or a Hugging Face directory; "" = random init.
    c.init_from = ""
    c.tokenizer = (
        "sample"  # "sample" (shipped), a HF tokenizer directory, or a tokenizer.model file
    )

    # LoRA adapters (psycho_jax.core.lora): with rank > 0 only the adapters (and a reward model's new
    # score head) train, the base stays frozen, and DPO's reference is that frozen base.
    c.lora = ml_collections.ConfigDict()
    c.lora.rank = 0  # 0: off (full fine-tuning)
    c.lora.alpha = 16.0  # the update is (alpha / rank) * A @ B
    c.lora.targets = LORA_TARGETS  # projections with adapters

    # Data (psycho_jax.data).
    c.data = ml_collections.ConfigDict()
    c.data.train = "sample:sft_train"  # "sample:<file>", a local file/dir, or a hub dataset name
    c.data.eval = "sample:sft_test"
    c.data.max_len = DEFAULT_MAX_LEN
    c.data.packing = False  # SFT: pack conversations into rows of max_len
    # Reward/DPO: > 1 packs up to this many pairs into each row of max_len (batch_size then
    # counts rows, each holding a varying number of pairs); 1: one pair per row, bucketed length.
    c.data.pairs_per_row = 1
    c.data.truncation = "keep_last_turns"  # keep_last_turns | skip | error (prompts too long)
    c.data.on_bad_row = "raise"  # raise | skip (counted and reported)
    # SFT: cut a conversation longer than max_len into overlapping windows (each assistant turn a
    # target once) instead of keeping only its end.
    c.data.windows = False
    # Transcripts: extra speaker names -> roles ("Interviewer=assistant,Interviewee=user"), on top
    # of the common ones (seeker/client/patient: user; supporter/therapist/counselor: assistant).
    c.data.role_map = ""
    c.data.merge_consecutive = False  # join consecutive turns of one speaker (else an error)
    # SFT: start each labelled assistant turn with "[label] " (a strategy the model then conditions
    # its reply on); labels always reach the batches as `turn_label`.
    c.data.label_prefix = False

    c.batch_size = 8  # global batch: sequences (SFT) or pairs (reward, DPO)
    c.grad_accum = 1  # micro-batches per step; batch_size must divide by it
    c.num_steps = 100
    c.eval_every = 50
    c.eval_batches = 8  # 0: the whole eval split
    c.eval_batch_size = 0  # sequences or pairs per eval batch; 0: batch_size
    c.log_every = 10
    c.checkpoint_every = 0  # 0: only at the end (and on preemption)
    c.keep_checkpoints = 3  # the newest k are kept
    c.keep_best_metric = ""  # e.g. "eval/loss": also keep the best checkpoint by this metric
    c.keep_best_mode = "min"  # min | max
    c.max_bad_steps = 5  # stop after this many consecutive non-finite steps (each is skipped)

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 3e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 10
    c.optim.end_lr_factor = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 1.0

    # Bradley-Terry reward model.
    c.reward = ml_collections.ConfigDict()
    c.reward.margin = "none"  # none | constant | ratings
    c.reward.margin_value = 0.0  # the constant margin, or the scale of the rating gap
    c.reward.center_coef = 0.0  # reward-centering coefficient (0: off)
    c.reward.principle_head = False  # also predict the 7 principle ratings of each reply
    c.reward.principle_coef = 0.1
    c.reward.stats_batches = 64  # batches of training pairs for the saved reward mean/std; 0: all

    # DPO family.
    c.dpo = ml_collections.ConfigDict()
    c.dpo.loss_type = "sigmoid"
    c.dpo.beta = 0.1
    c.dpo.label_smoothing = 0.0
    c.dpo.simpo_gamma = 0.5
    c.dpo.reference = "live"  # live: frozen copy in the step; precomputed: log-probs cached on disk
    c.dpo.reference_from = ""  # reference checkpoint; "" = init_from
    c.dpo.reference_cache = "~/.cache/psycho_jax/reference_logps"  # precomputed log-probs

    # Online (iterative) DPO, task "online_dpo" (psycho_jax.train.online); the dpo.* keys above apply.
    c.online = ml_collections.ConfigDict()
    c.online.rounds = 3
    c.online.reward_model = ""  # reward-model stage workdir or HF directory
    c.online.prompts = "sample:preference_train"  # prompt pool; each round takes the next slice
    c.online.prompts_per_round = 64
    c.online.samples_per_prompt = 4  # k replies per prompt; best vs worst by the reward model
    c.online.min_gap = 0.0  # skip prompts whose best and worst rewards are this close
    c.online.steps_per_round = 30
    c.online.reference = "previous"  # previous: the round's starting policy; initial: init_from
    c.online.eval_prompts = "sample:eval_prompts"  # held-out prompts for the reward curve
    c.online.eval_num_prompts = 64
    c.online.sampling = ml_collections.ConfigDict()
    c.online.sampling.temperature = 1.0
    c.online.sampling.top_k = 0
    c.online.sampling.top_p = 1.0
    c.online.sampling.max_new_tokens = 128

    c.mesh = (1, -1, 1)
    # CPU only: JAX CPU devices, set before JAX starts (`distributed.use_cpu_cores`): -1 one per
    # core (dividing the batch), 0 leave JAX's default (one), or a count.
    c.cpu_devices = -1
    # CPU only: how XLA orders the train step's ops: "memory" (smallest peak; on the medium
    # benchmark reward step 12% less memory and 8% faster than XLA's default), "default" (XLA's
    # choice: the concurrency-optimised order), "concurrency".
    c.cpu_scheduler = "memory"
    # Return the heap the XLA compiler freed to the OS after each compilation (glibc malloc_trim;
    # `train.release_compiler_heap`): the medium benchmark SFT step's peak RSS 3.9 -> 3.5 GB.
    c.release_compiler_heap = True
    c.sharding_rules = tuple(sharding.DEFAULT_RULES)
    c.hardware = ""  # what a real-model config is planned for (the --dry_run memory check)
    c.peak_flops_per_device = 0.0  # for MFU; 0: looked up from the device kind when known
    c.wandb_project = ""  # "" = off
    return c


def use_tiny_model(c: ml_collections.ConfigDict) -> None:
    """The ~1M-parameter model the `:tiny` configs share (runs on 2 CPU cores in minutes)."""
    c.model.preset = "tiny"
    c.model.dim, c.model.n_layers, c.model.n_heads, c.model.n_kv_heads = 128, 2, 4, 2
    c.model.head_dim, c.model.ffn_dim = 32, 384
    c.batch_size = 16
    c.num_steps = 150
    c.eval_every = 50
    c.optim.warmup_steps = 10


def use_llama3_8b(c: ml_collections.ConfigDict, max_len: int) -> None:
    """Llama 3.1 8B on a pod slice (TPU v5p-16 or 8xH100): bf16 compute, full remat, scanned
    layers, FSDP over every device, PsychoCounsel-Preference from the hub."""
    c.model.preset = "llama3_8b"
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    c.model.scan_layers = True
    c.tokenizer = ""  # the checkpoint directory (its tokenizer) or Meta's tokenizer.model
    c.data.train = "hf:Psychotherapy-LLM/PsychoCounsel-Preference:train"
    c.data.eval = "hf:Psychotherapy-LLM/PsychoCounsel-Preference:test"
    c.data.max_len = max_len
    c.mesh = (1, -1, 1)
    c.batch_size = 64
    c.grad_accum = 2
    c.hardware = "8xH100 or TPU v5p-16"


# Real models other than 8B: (preset, mesh, batch, accumulation, hardware). The memory planner
# (`python -m psycho_jax.main --config=... --dry_run`) compiles each on its mesh and checks the fit.
LLAMA3_RECIPES = {
    # 1.2B: one 80 GB GPU; no sharding needed.
    "llama3_1b": ("llama3_1b", (1, 1, 1), 32, 16, "1xH100"),
    # 3.2B: FSDP over one host's 8 devices.
    "llama3_3b": ("llama3_3b", (1, -1, 1), 64, 4, "8xH100 or TPU v5p-16"),
    # 70B: FSDP 16 x tensor parallel 4 over 64 chips (TPU v5p-128); tensor parallelism pays here
    # because FSDP alone would gather 70B/16 of weights per layer per step on every chip.
    "llama3_70b": ("llama3_70b", (1, 16, 4), 64, 4, "TPU v5p-128"),
}


def use_llama3(c: ml_collections.ConfigDict, size: str, max_len: int) -> None:
    """A real Llama 3.x (`LLAMA3_RECIPES` key, or "llama3_8b") with the 8B recipe's numerics and data,
    its own mesh, batch and the hardware it is planned for."""
    use_llama3_8b(c, max_len)
    if size == "llama3_8b":
        return
    preset, mesh, batch, accum, hardware = LLAMA3_RECIPES[size]
    c.model.preset = preset
    c.mesh, c.batch_size, c.grad_accum, c.hardware = mesh, batch, accum, hardware


def _fail(key: str, value, valid) -> ValueError:
    return ValueError(f"config.{key}={value!r} is not valid; valid: {valid}")


def validate(c: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Checks the config once at start-up; the error names the key and the valid values."""
    if c.task not in TASKS:
        raise _fail("task", c.task, ", ".join(TASKS))
    if c.model.preset not in PRESETS:
        raise _fail("model.preset", c.model.preset, ", ".join(PRESETS))
    for key in ("batch_size", "grad_accum", "num_steps", "data.max_len", "log_every"):
        value = c[key] if "." not in key else c[key.split(".")[0]][key.split(".")[1]]
        if value <= 0:
            raise _fail(key, value, "a positive integer")
    if c.batch_size % c.grad_accum:
        raise _fail("batch_size", c.batch_size, f"a multiple of grad_accum={c.grad_accum}")
    if num_devices is not None:
        try:
            data, fsdp, _ = sharding.resolve_mesh_shape(tuple(c.mesh), num_devices)
        except ValueError as e:
            raise ValueError(f"config.mesh={tuple(c.mesh)!r}: {e}") from e
        shards = data * fsdp
        micro = c.batch_size // c.grad_accum
        if micro % shards:
            raise _fail(
                "batch_size",
                c.batch_size,
                f"batch_size / grad_accum ({micro}) must divide over data*fsdp={shards} devices",
            )
        if c.eval_batch_size % shards:
            raise _fail(
                "eval_batch_size",
                c.eval_batch_size,
                f"a multiple of data*fsdp={shards} devices (0: batch_size)",
            )
    if c.keep_best_mode not in ("min", "max"):
        raise _fail("keep_best_mode", c.keep_best_mode, "min, max")
    if c.cpu_scheduler not in ("default", "memory", "concurrency"):
        raise _fail("cpu_scheduler", c.cpu_scheduler, "default, memory, concurrency")
    if c.keep_best_metric and not c.keep_best_metric.startswith("eval/"):
        raise _fail("keep_best_metric", c.keep_best_metric, "an eval metric such as 'eval/loss'")
    if c.keep_best_metric and not c.eval_every:
        raise _fail(
            "keep_best_metric", c.keep_best_metric, "'' when eval_every=0 (nothing to rank)"
        )
    if c.optim.schedule not in SCHEDULES:
        raise _fail("optim.schedule", c.optim.schedule, ", ".join(SCHEDULES))
    if c.optim.lr <= 0:
        raise _fail("optim.lr", c.optim.lr, "a positive learning rate")
    if c.data.truncation not in ("keep_last_turns", "skip", "error"):
        raise _fail("data.truncation", c.data.truncation, "keep_last_turns, skip, error")
    if c.data.on_bad_row not in ("raise", "skip"):
        raise _fail("data.on_bad_row", c.data.on_bad_row, "raise, skip")
    try:
        parse_role_map(c.data.role_map)
    except ValueError as e:
        raise _fail("data.role_map", c.data.role_map, f"'name=role,...' ({e})") from None
    if c.eval_batch_size < 0:
        raise _fail("eval_batch_size", c.eval_batch_size, "0 (batch_size) or a positive integer")
    if not isinstance(c.lora.rank, int) or c.lora.rank < 0:
        raise _fail("lora.rank", c.lora.rank, "an integer >= 0 (0: no adapters)")
    if c.lora.rank:
        if c.lora.alpha <= 0:
            raise _fail("lora.alpha", c.lora.alpha, "alpha > 0")
        targets = tuple(c.lora.targets)
        if not targets or len(set(targets)) != len(targets) or set(targets) - set(LORA_TARGETS):
            raise _fail("lora.targets", targets, f"distinct names from {', '.join(LORA_TARGETS)}")
    if c.reward.margin not in MARGINS:
        raise _fail("reward.margin", c.reward.margin, ", ".join(MARGINS))
    if c.task == "online_dpo":
        o = c.online
        for key in ("rounds", "prompts_per_round", "samples_per_prompt", "steps_per_round"):
            if o[key] <= 0:
                raise _fail(f"online.{key}", o[key], "a positive integer")
        if o.samples_per_prompt < 2:
            raise _fail("online.samples_per_prompt", o.samples_per_prompt, ">= 2 (best vs worst)")
        if o.reference not in ("previous", "initial"):
            raise _fail("online.reference", o.reference, "previous, initial")
        if not o.reward_model:
            raise _fail("online.reward_model", o.reward_model, "a reward-model stage directory")
        if not c.init_from:
            raise _fail("init_from", c.init_from, "the policy online DPO starts from")
        if c.lora.rank and o.reference == "initial" and c.dpo.reference == "live":
            raise _fail(
                "online.reference",
                o.reference,
                "'previous' with lora.rank > 0 and a live reference (the reference is the frozen "
                "base of each round), or set dpo.reference=precomputed",
            )
    if c.task in ("dpo", "online_dpo"):
        if c.dpo.loss_type not in losses.LOSS_TYPES:
            raise _fail("dpo.loss_type", c.dpo.loss_type, ", ".join(losses.LOSS_TYPES))
        if c.dpo.beta <= 0:
            raise _fail("dpo.beta", c.dpo.beta, "beta > 0")
        if not 0 <= c.dpo.label_smoothing < 0.5:
            raise _fail("dpo.label_smoothing", c.dpo.label_smoothing, "0 <= label_smoothing < 0.5")
        if c.dpo.reference not in REFERENCES:
            raise _fail("dpo.reference", c.dpo.reference, ", ".join(REFERENCES))
        needs_ref = losses.needs_reference(c.dpo.loss_type)
        if needs_ref and not (c.dpo.reference_from or c.init_from):
            raise _fail(
                "dpo.reference_from",
                c.dpo.reference_from,
                "a checkpoint for the reference model (or set init_from): DPO needs a reference",
            )
        live = needs_ref and c.dpo.reference == "live"
        if c.lora.rank and live and c.dpo.reference_from not in ("", c.init_from):
            raise _fail(
                "dpo.reference_from",
                c.dpo.reference_from,
                "'' with lora.rank > 0 and a live reference (the reference is the frozen base, "
                "init_from); for another reference set dpo.reference=precomputed",
            )


def numerics(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """The LlamaConfig fields a run sets on any model it builds or loads (`c.model.<field>`)."""
    return {k: c.model[k] for k in NUMERICS}


def llama_config(c: ml_collections.ConfigDict, vocab_size: int) -> LlamaConfig:
    """The LlamaConfig for a random-init run: the preset with the config's overrides."""
    m = c.model
    sizes = {k: m[k] for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim")}
    return LlamaConfig.preset(
        m.preset,
        vocab_size=m.vocab_size or vocab_size,
        **numerics(c),
        **lora_fields(c),
        **{k: v for k, v in sizes.items() if v},
    )


def lora_fields(c: ml_collections.ConfigDict) -> dict:
    """The LlamaConfig fields of the config's LoRA settings."""
    return dict(
        lora_rank=c.lora.rank, lora_alpha=float(c.lora.alpha), lora_targets=tuple(c.lora.targets)
    )
