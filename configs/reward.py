"""Bradley-Terry reward model on counseling preference pairs (PsychoCounsel-Preference schema).

    python -m psycho_jax.main --config=configs/reward.py:tiny --workdir=/tmp/rm \
        --config.init_from=/tmp/sft
    python -m psycho_jax.main --config=configs/reward.py:llama3_8b --workdir=/ckpt/rm \
        --config.init_from=/ckpt/sft

Variants: tiny (CPU, embedded sample data), llama3_8b (TPU v5p-16 or 8xH100).
"""

import ml_collections

from psycho_jax.config import base_config


def tiny(c: ml_collections.ConfigDict) -> None:
    c.model.preset = "tiny"
    c.model.dim, c.model.n_layers, c.model.n_heads, c.model.n_kv_heads = 128, 2, 4, 2
    c.model.head_dim, c.model.ffn_dim = 32, 384
    c.data.train = "sample:preference_train"
    c.data.eval = "sample:preference_test"
    c.batch_size = 16
    c.num_steps = 150
    c.eval_every = 50
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 10
    c.reward.principle_head = True


def llama3_8b(c: ml_collections.ConfigDict) -> None:
    """8B reward model, one epoch over the 34k training pairs. Per device on 16 devices (fsdp=16):
    params 2 GB + Adam 4 GB + grads 2 GB (float32) + activations of 2 pairs x 2 x 2048 tokens with
    full remat ~2 GB: ~10 GB."""
    c.model.preset = "llama3_8b"
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    c.model.scan_layers = True
    c.tokenizer = ""  # the SFT stage's tokenizer directory
    c.data.train = "Psychotherapy-LLM/PsychoCounsel-Preference:train"
    c.data.eval = "Psychotherapy-LLM/PsychoCounsel-Preference:test"
    c.data.max_len = 2048
    c.mesh = (1, -1, 1)
    c.batch_size = 64
    c.grad_accum = 2
    c.num_steps = 540  # one epoch of 34,329 pairs
    c.eval_every = 100
    c.optim.lr = 2e-6
    c.optim.warmup_steps = 30
    c.reward.principle_head = True


VARIANTS = {"tiny": tiny, "llama3_8b": llama3_8b}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "reward"
    VARIANTS[arg or "tiny"](c)
    return c
