"""Direct preference optimisation (and IPO, hinge, robust, cDPO, SimPO, ORPO via dpo.loss_type).

    python -m psycho_jax.main --config=configs/dpo.py:tiny --workdir=/tmp/dpo --config.init_from=/tmp/sft
    python -m psycho_jax.main --config=configs/dpo.py:tiny --workdir=/tmp/ipo --config.init_from=/tmp/sft \
        --config.dpo.loss_type=ipo
    python -m psycho_jax.main --config=configs/dpo.py:llama3_8b --workdir=/ckpt/dpo \
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
    c.dpo.beta = 0.1


def llama3(c: ml_collections.ConfigDict, size: str = "llama3_8b") -> None:
    """A live reference. Per device on 16 devices (fsdp=16): policy params 2 GB + Adam 4 GB + grads
    2 GB + reference params 2 GB (float32) + activations of 2 pairs x 2 x 2048 tokens with full
    remat ~3 GB: ~13 GB. `dpo.reference=precomputed` removes the reference's 2 GB and its forward."""
    use_llama3(c, size, max_len=2048)
    c.num_steps = 540
    c.eval_every = 100
    c.optim.lr = 5e-7
    c.optim.warmup_steps = 50
    c.dpo.beta = 0.1


SIZES = ("llama3_1b", "llama3_3b", "llama3_8b", "llama3_70b")
VARIANTS = {"tiny": tiny, **{size: functools.partial(llama3, size=size) for size in SIZES}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "dpo"
    VARIANTS[arg or "tiny"](c)
    return c
