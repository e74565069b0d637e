"""The benchmark shapes, shared by every script in bench/ (the shapes of ../shared/PERF_NOTES.md).

Each shape is a transformers `LlamaConfig` (the model both frameworks run) plus the training batch:
`batch` sequences of `seq` tokens for SFT, `batch` pairs (2 x batch sequences) for the reward model
and DPO.
"""

from __future__ import annotations

SHAPES = {
    # ~0.6M parameters: the CI smoke shape, the `:tiny` configs' model (`psycho_jax.config.TINY_MODEL`,
    # not imported: the PyTorch peer's process must not load JAX; tests/test_bench.py checks they agree).
    "tiny": dict(
        hf=dict(
            vocab_size=2048,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            intermediate_size=384,
        ),
        seq=64,
        batch=4,
    ),
    # ~20M parameters.
    "small": dict(
        hf=dict(
            vocab_size=8192,
            hidden_size=512,
            num_hidden_layers=6,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=64,
            intermediate_size=1408,
        ),
        seq=256,
        batch=8,
    ),
    # ~100M parameters.
    "medium": dict(
        hf=dict(
            vocab_size=16384,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=4,
            head_dim=64,
            intermediate_size=2048,
        ),
        seq=512,
        batch=4,
    ),
}

# What every shape shares (Llama 3 conventions).
COMMON_HF = dict(
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    attention_bias=False,
    mlp_bias=False,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def hf_config(shape: str, **extra):
    """The transformers LlamaConfig of `shape`."""
    import transformers

    return transformers.LlamaConfig(**COMMON_HF, **SHAPES[shape]["hf"], **extra)


# `--data=counsel` (bench/train_step.py): lengths of CounselChat (../shared/data/counsel-chat, 815
# questions and 2,129 therapist answers) in Llama 3 tokens, fitted as log-normals: question with
# BOS median 73 (log-mean 4.283, log-sd 0.605), answer median 166 (5.105, 0.677). A prompt adds the
# Llama 3.1 chat template's 9 other tokens (headers, end of turn), a reply its end-of-turn token.
# The lengths are scaled by seq / 512: the medium shape sees them as they are, small at half.
COUNSEL_LENGTHS = dict(
    question_log_mean=4.283,
    question_log_sd=0.605,
    answer_log_mean=5.105,
    answer_log_sd=0.677,
    template_tokens=9,
    reference_seq=512,
)
