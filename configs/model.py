"""Model and mesh configuration: build or load a Llama and run it once on a sharded mesh.

    python -m psycho_jax.main --config=configs/model.py:tiny
    python -m psycho_jax.main --config=configs/model.py:llama3_8b --config.mesh=1,-1,1 --dry_run
    python -m psycho_jax.main --config=configs/model.py --config.hf_path=/path/to/Llama-3.2-1B

Variants (`:name`) are the `LlamaConfig` presets: tiny, llama3_1b, llama3_3b, llama3_8b, llama3_70b.
"""

import ml_collections

from psycho_jax.core import sharding


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Model: a LlamaConfig preset, fields to override on it, or a Hugging Face directory to load.
    config.model = ml_collections.ConfigDict()
    config.model.preset = arg or "tiny"
    config.model.dtype = "float32"  # compute dtype; bfloat16 on accelerators
    config.model.param_dtype = "float32"
    config.model.attention = "xla"  # or "einsum"
    config.model.remat = "none"  # or "full", "dots"
    config.model.scan_layers = False
    config.model.head_chunk = 128  # positions per head chunk in training losses; 0: full logits
    config.model.head_keep_mib = 512  # pair losses keep the head's probabilities up to this
    config.model.attention_blocks = 0  # causal query blocks of the CPU attention kernel
    config.hf_path = ""  # a local HF Llama directory; overrides the preset when set
    # Mesh (data, fsdp, tensor); -1 takes the remaining devices. Rules map logical axes to it.
    config.mesh = (1, -1, 1)
    config.sharding_rules = tuple(sharding.DEFAULT_RULES)
    # What the demo forward pass runs on.
    config.batch_size = 8
    config.seq_len = 32
    return config
