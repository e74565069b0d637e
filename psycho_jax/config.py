"""The one base config (every key has its default here), and its typed form.

Experiment files in `configs/` start from `base_config()` and change what they need. At start-up the
programs turn the config into `psycho_jax.train.settings.TrainSettings` (`settings(c)`): frozen, typed
pieces that check themselves; library code takes those, never the ConfigDict, and supplies no
defaults of its own.
"""

from __future__ import annotations

import ml_collections

from psycho_jax.core import sharding
from psycho_jax.core.model import LORA_TARGETS
from psycho_jax.data.templating import DEFAULT_MAX_LEN
from psycho_jax.train.settings import TrainSettings


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
    # CPU only: how XLA orders the train step's ops: "memory" (smallest peak; measured in
    # bench/RESULTS.md), "default" (XLA's choice: the concurrency-optimised order), "concurrency".
    c.cpu_scheduler = "memory"
    # Return the heap the XLA compiler freed to the OS after each compilation (glibc malloc_trim;
    # `train.step.release_compiler_heap`; the peak memory it saves: bench/RESULTS.md).
    c.release_compiler_heap = True
    c.sharding_rules = tuple(sharding.DEFAULT_RULES)
    c.hardware = ""  # what a real-model config is planned for (the --dry_run memory check)
    c.peak_flops_per_device = 0.0  # for MFU; 0: looked up from the device kind when known
    c.wandb_project = ""  # "" = off
    return c


# The ~1M-parameter model of the `:tiny` configs and the benchmarks' tiny shape (bench/shapes.py):
# the `tiny` preset's architecture at these sizes (the preset's own sizes are the unit tests' 30k model).
TINY_MODEL = dict(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, ffn_dim=384)


def use_tiny_model(c: ml_collections.ConfigDict) -> None:
    """The ~1M-parameter model the `:tiny` configs share (runs on 2 CPU cores in minutes)."""
    c.model.preset = "tiny"
    c.model.update(TINY_MODEL)
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


def settings(c: ml_collections.ConfigDict, num_devices: int | None = None) -> TrainSettings:
    """The typed settings of a training config (`psycho_jax.train.settings`), checked once at
    start-up (with `num_devices`, also the mesh and batch sizes); errors name the key and the valid
    values."""
    return TrainSettings.from_config(c).check_run(num_devices)


def validate(c: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Checks a training config (see `settings`)."""
    settings(c, num_devices)
