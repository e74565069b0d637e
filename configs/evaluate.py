"""Counseling evaluation (`python -m psycho_jax.evaluate`): systems' replies judged by a reward model.

    python -m psycho_jax.evaluate --config=configs/evaluate.py --workdir=/tmp/eval \\
        --config.systems="dpo=/tmp/psycho_jax_pipeline/dpo, sft=/tmp/psycho_jax_pipeline/sft" \\
        --config.baseline=sft --config.reward_model=/tmp/psycho_jax_pipeline/reward

A system is name=checkpoint (stage/online workdir or HF directory), name=replies.jsonl (`id`, `reply`)
or name=reference (the prompt file's reference replies). See `psycho_jax.evaluate`.
"""

import ml_collections

from psycho_jax.core import sharding


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: "" / tiny (CPU, sample prompts), llama3_8b (PsychoCounsel test prompts, bf16)."""
    c = ml_collections.ConfigDict()
    c.systems = ""  # "name=source, name=source, ..."
    c.baseline = ""  # every other system is compared with this one
    c.reward_model = ""  # reward-model stage workdir or HF directory (the judge)
    c.tokenizer = ""  # "": the first checkpoint's (or the reward model's) saved tokenizer
    c.prompts = "sample:eval_prompts"  # held-out prompts (prompt/question/messages rows)
    c.num_prompts = 0  # 0: all
    # The safety slice: "auto" (the shipped crisis prompts for the shipped prompts, else the
    # crisis-labelled prompts of `prompts`), a prompt spec, or "" to skip.
    c.crisis = "auto"
    c.num_crisis = 0
    # A replies file with problems (no matching ids, duplicate ids, missing or empty replies):
    # "error" stops before generating anything; "skip" leaves the system out of that prompt set.
    c.on_bad_replies = "error"
    c.sampling = ml_collections.ConfigDict()
    c.sampling.temperature = 0.7
    c.sampling.top_k = 0
    c.sampling.top_p = 1.0
    c.sampling.max_new_tokens = 256
    c.batch_size = 16
    c.max_len = 1024  # prompt + reply tokens the reward model reads (longer replies are cut)
    c.dtype = "float32"  # compute dtype for generation: bfloat16 on accelerators
    c.tie_tol = 0.0
    c.n_boot = 2000
    c.alpha = 0.05
    c.judge = ml_collections.ConfigDict()
    c.judge.write_requests = True  # judge_requests_<system>_vs_<baseline>.jsonl (OpenAI Batch)
    c.judge.model = "gpt-4o"
    c.judge.verdicts = ""  # verdict file to read back; "{system}" is replaced by the system name
    c.judge.on_error = "raise"  # raise | skip (counted)
    c.html = True
    c.seed = 0
    c.mesh = (1, -1, 1)
    c.sharding_rules = tuple(sharding.DEFAULT_RULES)
    if arg == "llama3_8b":
        c.prompts = "hf:Psychotherapy-LLM/PsychoCounsel-Preference:test"
        c.num_prompts = 500
        c.dtype = "bfloat16"
        c.batch_size = 64
        c.max_len = 2048
        c.sampling.max_new_tokens = 512
    elif arg not in (None, "", "tiny"):
        raise ValueError(f"configs/evaluate.py:{arg}: valid variants are tiny, llama3_8b")
    return c
