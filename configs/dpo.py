"""Direct preference optimisation (and IPO, hinge, robust, cDPO, SimPO, ORPO via dpo.loss_type).

    python -m psycho_jax.main --config=configs/dpo.py:tiny --workdir=/tmp/dpo \
        --config.init_from=/tmp/sft
    python -m psycho_jax.main --config=configs/dpo.py:tiny --workdir=/tmp/ipo \
        --config.init_from=/tmp/sft --config.dpo.loss_type=ipo
    python -m psycho_jax.main --config=configs/dpo.py:llama3_8b --workdir=/ckpt/dpo \
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
    c.dpo.beta = 0.1


def llama3_8b(c: ml_collections.ConfigDict) -> None:
    """8B DPO with a live bfloat16-compute reference. Per device on 16 devices (fsdp=16): policy
    params 2 GB + Adam 4 GB + grads 2 GB + reference params 2 GB (float32; store the reference in
    bfloat16 to halve it) + activations of 2 pairs x 2 x 2048 tokens, full remat ~3 GB: ~13 GB.
    With `dpo.reference=precomputed` the reference's 2 GB and forward pass go away."""
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
    c.num_steps = 540
    c.eval_every = 100
    c.optim.lr = 5e-7
    c.optim.warmup_steps = 50
    c.dpo.beta = 0.1


VARIANTS = {"tiny": tiny, "llama3_8b": llama3_8b}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "dpo"
    VARIANTS[arg or "tiny"](c)
    return c
