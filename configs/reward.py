"""Bradley-Terry reward model on counseling preference pairs (PsychoCounsel-Preference schema),
with the seven-principle head.

    python -m psycho_jax.main --config=configs/reward.py:tiny --workdir=/tmp/rm --config.init_from=/tmp/sft
    python -m psycho_jax.main --config=configs/reward.py:llama3_8b --workdir=/ckpt/rm \
        --config.init_from=/ckpt/sft --config.tokenizer=/ckpt/sft/tokenizer

Variants: tiny (CPU, embedded sample data); llama3_1b (1xH100), llama3_3b (8xH100 or TPU v5p-16),
llama3_8b (TPU v5p-16 or 8xH100), llama3_70b (TPU v5p-128: fsdp 16 x tensor 4); each planned with --dry_run.
"""

import functools

import ml_collections

from psycho_jax.config import base_config, use_llama3, use_tiny_model


def tiny(c: ml_collections.ConfigDict) -> None:
    use_tiny_model(c)
    c.data.train = "sample:preference_train"
    c.data.eval = "sample:preference_test"
    c.optim.lr = 1e-3
    c.reward.principle_head = True


def llama3(c: ml_collections.ConfigDict, size: str = "llama3_8b") -> None:
    """One epoch over the 34,329 training pairs. Per device on 16 devices (fsdp=16): params 2 GB +
    Adam 4 GB + grads 2 GB (float32) + activations of 2 pairs x 2 x 2048 tokens, full remat ~2 GB:
    ~10 GB."""
    use_llama3(c, size, max_len=2048)
    c.num_steps = 540
    c.eval_every = 100
    c.optim.lr = 2e-6
    c.optim.warmup_steps = 30
    c.reward.principle_head = True


SIZES = ("llama3_1b", "llama3_3b", "llama3_8b", "llama3_70b")
VARIANTS = {"tiny": tiny, **{size: functools.partial(llama3, size=size) for size in SIZES}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "reward"
    VARIANTS[arg or "tiny"](c)
    return c
