"""Online (iterative) DPO: sample k replies per prompt from the policy, score them with the reward
model, train DPO on best vs worst; `online.rounds` rounds (see `psycho_jax.train.online`).

    python -m psycho_jax.main --config=configs/online_dpo.py:tiny --workdir=/tmp/online \\
        --config.init_from=/tmp/psycho_jax_pipeline/dpo \\
        --config.online.reward_model=/tmp/psycho_jax_pipeline/reward

Variants: tiny (CPU, embedded sample data), llama3_8b (TPU v5p-16 or 8xH100).
"""

import ml_collections

from psycho_jax.config import base_config, use_llama3_8b, use_tiny_model


def tiny(c: ml_collections.ConfigDict) -> None:
    use_tiny_model(c)
    c.data.train = ""  # each round's pairs.jsonl
    c.data.eval = "sample:preference_test"
    c.eval_every = 0
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 2
    c.dpo.beta = 0.1
    c.online.rounds = 3
    c.online.prompts_per_round = 48
    c.online.samples_per_prompt = 8  # best of 8 vs worst of 8
    c.online.steps_per_round = 12
    c.online.eval_num_prompts = 48
    c.online.sampling.max_new_tokens = 96


def llama3_8b(c: ml_collections.ConfigDict) -> None:
    """PsychoCounsel-style online DPO on Llama 3.1 8B: 2,000 prompts per round, 4 samples each."""
    use_llama3_8b(c, max_len=2048)
    c.data.train = ""
    c.eval_every = 0
    c.optim.lr = 5e-7
    c.optim.warmup_steps = 10
    c.online.rounds = 3
    c.online.prompts = "hf:Psychotherapy-LLM/PsychoCounsel-Preference:train"
    c.online.prompts_per_round = 2048
    c.online.samples_per_prompt = 4
    c.online.steps_per_round = 32
    c.online.eval_prompts = "hf:Psychotherapy-LLM/PsychoCounsel-Preference:test"
    c.online.eval_num_prompts = 256
    c.online.sampling.temperature = 0.8
    c.online.sampling.top_p = 0.95
    c.online.sampling.max_new_tokens = 512


VARIANTS = {"tiny": tiny, "llama3_8b": llama3_8b}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "online_dpo"
    VARIANTS[arg or "tiny"](c)
    return c
