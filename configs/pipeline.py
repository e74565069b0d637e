"""The whole counseling pipeline: SFT -> reward model (from SFT) -> DPO (policy and reference from SFT)
-> online DPO (from SFT, judged by the reward model) -> evaluation (every policy against SFT).

    python -m psycho_jax.pipeline --config=configs/pipeline.py:demo --workdir=/tmp/pipeline

`smoke` is `demo` with a few steps per stage (every stage, the same code paths and report files, a
few minutes on 2 cores): CI runs it in a venv made by `pip install -e .` alone.

`demo` runs the tiny configs (`configs/sft.py:tiny`, `reward.py:tiny`, `dpo.py:tiny`,
`online_dpo.py:tiny`) and `configs/evaluate.py` on the embedded sample data on CPU; override a stage
with e.g. `--config.dpo.dpo.beta=0.2` or `--config.evaluate.num_prompts=50`.
"""

import importlib.util
import pathlib

import ml_collections


def _stage(name: str, variant: str) -> ml_collections.ConfigDict:
    path = pathlib.Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"psycho_jax_configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = {"demo": "tiny", "smoke": "tiny", None: "tiny"}.get(arg, arg)
    c = ml_collections.ConfigDict()
    c.sft = _stage("sft", variant)
    c.reward = _stage("reward", variant)
    c.dpo = _stage("dpo", variant)
    c.online_dpo = _stage("online_dpo", variant)
    c.evaluate = _stage("evaluate", variant)
    # A subset re-runs only those stages (the earlier ones' directories must exist).
    c.stages = ("sft", "reward", "dpo", "online_dpo", "evaluate")
    if variant == "tiny":
        c.evaluate.max_len = c.reward.data.max_len
        c.evaluate.sampling.max_new_tokens = 128
    if arg in ("demo", None):  # short enough for a CPU: ~15 minutes on 2 cores (all five stages)
        c.sft.num_steps, c.sft.eval_every = 120, 40
        c.reward.num_steps, c.reward.eval_every = 60, 30
        c.dpo.num_steps, c.dpo.eval_every = 60, 30
    if arg == "smoke":  # every stage and report, a few steps each: minutes, not quality
        c.sft.num_steps, c.sft.eval_every = 4, 2
        c.reward.num_steps, c.reward.eval_every = 4, 2
        c.dpo.num_steps, c.dpo.eval_every = 4, 2
        c.online_dpo.online.rounds = 2
        c.online_dpo.online.prompts_per_round = 8
        c.online_dpo.online.samples_per_prompt = 2
        c.online_dpo.online.steps_per_round = 2
        c.online_dpo.online.eval_num_prompts = 8
        c.online_dpo.online.sampling.max_new_tokens = 16
        c.evaluate.num_prompts = 8
        c.evaluate.num_crisis = 4
        c.evaluate.sampling.max_new_tokens = 16
        c.evaluate.n_boot = 200
    return c
