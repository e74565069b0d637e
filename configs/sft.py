"""Supervised fine-tuning on counseling conversations (loss on assistant tokens only).

    python -m psycho_jax.main --config=configs/sft.py:tiny --workdir=/tmp/sft
    python -m psycho_jax.main --config=configs/sft.py:llama3_8b --workdir=gs://bucket/sft \
        --config.init_from=/path/to/Meta-Llama-3.1-8B-Instruct

Variants: tiny (CPU, embedded sample data, seconds), llama3_8b (a pod slice: TPU v5p-16 or 8xH100).
"""

import ml_collections

from psycho_jax.config import base_config


def tiny(c: ml_collections.ConfigDict) -> None:
    """A ~1M-parameter model on the shipped sample data; runs on 2 CPU cores in about a minute."""
    c.model.preset = "tiny"
    c.model.dim, c.model.n_layers, c.model.n_heads, c.model.n_kv_heads = 128, 2, 4, 2
    c.model.head_dim, c.model.ffn_dim = 32, 384
    c.batch_size = 16
    c.num_steps = 150
    c.eval_every = 50
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 10


def llama3_8b(c: ml_collections.ConfigDict) -> None:
    """Llama 3.1 8B full fine-tuning. Memory per device on 16 devices (fsdp=16, bf16 compute,
    float32 params + Adam): params 2.0 GB + Adam 4.0 GB + grads 2.0 GB + activations with full
    remat at 2 sequences x 4096 tokens per device ~3 GB: ~11 GB, inside a v5p's 95 GB or an H100's
    80 GB with room for larger micro-batches."""
    c.model.preset = "llama3_8b"
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    c.model.scan_layers = True
    c.tokenizer = ""  # set to the checkpoint directory (its tokenizer) or a tokenizer.model
    c.data.train = "Psychotherapy-LLM/PsychoCounsel-Preference:train"
    c.data.eval = "Psychotherapy-LLM/PsychoCounsel-Preference:test"
    c.data.max_len = 4096
    c.data.packing = True
    c.mesh = (1, -1, 1)
    c.batch_size = 64
    c.grad_accum = 2
    c.num_steps = 2000
    c.eval_every = 200
    c.optim.lr = 1e-5
    c.optim.warmup_steps = 100
    c.optim.weight_decay = 0.0


VARIANTS = {"tiny": tiny, "llama3_8b": llama3_8b}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "sft"
    VARIANTS[arg or "tiny"](c)
    return c
