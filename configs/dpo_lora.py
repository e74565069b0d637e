"""DPO with LoRA adapters: the base is frozen and is also the reference (no second copy of it).

    python -m psycho_jax.main --config=configs/dpo_lora.py:tiny --workdir=/tmp/dpo_lora \
        --config.init_from=/tmp/sft
    python -m psycho_jax.main --config=configs/dpo_lora.py:llama3_8b --workdir=/ckpt/dpo_lora \
        --config.init_from=/ckpt/sft --config.tokenizer=/ckpt/sft/tokenizer
    python -m psycho_jax.export --checkpoint=/ckpt/dpo_lora --out=/ckpt/dpo_lora_hf   # merged

Variants: tiny (CPU, embedded sample data), llama3_8b (one 80 GB GPU). The stage's `adapters/`
holds the adapters alone (PEFT's layout); its checkpoints hold base and adapters.
"""

import ml_collections

from psycho_jax.config import base_config, use_llama3_8b, use_tiny_model


def tiny(c: ml_collections.ConfigDict) -> None:
    use_tiny_model(c)
    c.data.train = "sample:preference_train"
    c.data.eval = "sample:preference_test"
    c.optim.lr = 1e-2  # adapters start at zero and need a larger step than full fine-tuning
    c.lora.rank = 8
    c.lora.alpha = 16.0


def llama3_8b(c: ml_collections.ConfigDict) -> None:
    """Llama 3.1 8B on one 80 GB GPU: rank-16 adapters on every projection, bfloat16 base.

    Per device (mesh (1, 1, 1), nothing sharded), micro-batches of 2 pairs (4 x 2048 tokens):
      frozen base, bfloat16           8.03e9 x 2 B                                   15.0 GiB
      adapters, float32               4.19e7 x 4 B                                    0.16 GiB
      Adam moments, float32           2 x adapters                                    0.31 GiB
      gradients, their sum, update    3 x adapters                                    0.47 GiB
      reference                       zero adapters on the same base                  0.16 GiB
      activations, full remat         residuals 32 x 4 x 2048 x 4096 x 2 B = 2 GiB, one layer
                                      recomputed ~1.5 GiB, logits 4 x 2048 x 128256 float32 and
                                      their gradient ~8 GiB                          ~13 GiB
      total                                                                          ~29 GiB
    `--dry_run` (psycho_jax.memory) compiles the step: on the CPU backend XLA reports 61 GiB, 45 of
    them temporaries; with a float32 base the temporaries are 18 GiB, so ~27 GiB are the CPU
    backend's float32 copies of the bfloat16 weights for its matmuls (a GPU multiplies bfloat16
    directly). An 80 GB GPU holds either figure. Full fine-tuning would add 16 GB of gradients,
    64 GB of Adam moments and a 16 GB reference: no single GPU holds that.
    """
    use_llama3_8b(c, max_len=2048)
    c.hardware = "1xH100"
    c.model.param_dtype = "bfloat16"  # the frozen base; adapters are always float32
    c.mesh = (1, 1, 1)
    c.batch_size = 8  # pairs per step
    c.grad_accum = 4  # micro-batches of 2 pairs
    c.num_steps = 4290  # one epoch over the 34,329 training pairs
    c.eval_every = 500
    c.optim.lr = 1e-5
    c.optim.warmup_steps = 100
    c.dpo.beta = 0.1
    c.lora.rank = 16
    c.lora.alpha = 16.0


VARIANTS = {"tiny": tiny, "llama3_8b": llama3_8b}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "dpo"
    VARIANTS[arg or "tiny"](c)
    return c
