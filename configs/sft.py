"""Supervised fine-tuning on counseling conversations (loss on assistant tokens only).

    python -m psycho_jax.main --config=configs/sft.py:tiny --workdir=/tmp/sft
    python -m psycho_jax.main --config=configs/sft.py:llama3_8b --workdir=/ckpt/sft \
        --config.init_from=/path/to/Llama-3.1-8B-Instruct --config.tokenizer=/path/to/Llama-3.1-8B-Instruct

Variants: tiny (CPU, embedded sample data); llama3_1b (1xH100), llama3_3b (8xH100 or TPU v5p-16),
llama3_8b (a pod slice: TPU v5p-16 or 8xH100), llama3_70b (TPU v5p-128: fsdp 16 x tensor 4); each planned with --dry_run.
"""

import functools

import ml_collections

from psycho_jax.config import base_config, use_llama3, use_tiny_model


def tiny(c: ml_collections.ConfigDict) -> None:
    use_tiny_model(c)
    c.num_steps = 150
    c.optim.lr = 3e-3


def llama3(c: ml_collections.ConfigDict, size: str = "llama3_8b") -> None:
    """Full fine-tuning on the chosen replies. Per device on 16 devices (fsdp=16, bf16 compute,
    float32 params + Adam): params 2.0 GB + Adam 4.0 GB + grads 2.0 GB + activations with full
    remat at 2 sequences x 4096 tokens ~3 GB: ~11 GB of a v5p's 95 GB or an H100's 80 GB."""
    use_llama3(c, size, max_len=4096)
    c.data.packing = True
    c.num_steps = 2000
    c.eval_every = 200
    c.optim.lr = 1e-5
    c.optim.warmup_steps = 100


SIZES = ("llama3_1b", "llama3_3b", "llama3_8b", "llama3_70b")
VARIANTS = {"tiny": tiny, **{size: functools.partial(llama3, size=size) for size in SIZES}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "sft"
    VARIANTS[arg or "tiny"](c)
    return c
