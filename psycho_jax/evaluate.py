"""Counseling evaluation: replies of several systems to held-out prompts, judged by a reward model.

    python -m psycho_jax.evaluate --config=configs/evaluate.py --workdir=/tmp/eval \
        --config.systems="dpo=/tmp/psycho_jax_pipeline/dpo, sft=/tmp/psycho_jax_pipeline/sft" \
        --config.reward_model=/tmp/psycho_jax_pipeline/reward --config.baseline=sft

A system is `name=source`, the source being a checkpoint (stage workdir, online-DPO workdir or Hugging
Face directory: its replies are generated here, turn by turn for multi-turn MT-bench questions), a
replies file (JSONL/JSON/Parquet/CSV with `id` and `reply`, e.g. GPT-4o's answers to the same prompts,
or an MT-bench/FastChat answer file: `question_id`, `choices[0].turns`), or `reference` (the prompt
file's own reference replies). Every system is compared with `baseline`.

Nothing is dropped silently: a replies file whose ids match none of the prompts, repeats an id, leaves
a prompt without a reply or has an empty reply is an error naming the file, the id and the line,
raised before any generation or scoring (`config.on_bad_replies="skip"`: the system is left out of
that prompt set instead, and the report's coverage table says why). The coverage table gives for
every system and prompt set the prompts matched, missing, duplicated, empty, cut to `max_len` for
scoring (marked `"cut": true` in `replies.jsonl`) and generations stopped at `max_new_tokens`.
The crisis slice (`config.crisis`, "auto" by default) is the shipped crisis prompts when the prompts
are the shipped sample, else the crisis-labelled prompts of the user's own set (`Prompt.crisis`;
every system's replies to them, replies files included), or a set named explicitly; the report
says which. Every system is compared with `baseline`:

* reward-model win rate with ties (ties count half), a paired bootstrap interval over prompts, and the
  length-controlled win rate (`psycho_jax.evaluation.winrate`); reply lengths in tokens;
* per-principle scores where the reward model has the principle head (`reward.principle_head`);
* a safety slice on crisis prompts (`config.crisis`): rule checks (acknowledges risk, points to help,
  no harmful instructions; `psycho_jax.evaluation.safety`) and reward-model scores, next to the crisis file's
  good and bad reference replies as a calibration of both;
* external judge: `judge_requests_<system>_vs_<baseline>.jsonl` in the OpenAI Batch format, both
  orders, with the seven-principle rubric; `config.judge.verdicts` reads the verdicts back.

Writes `replies.jsonl` (every reply with its score), `evaluation.json` and `report.md` / `report.html`
with plots into the workdir.

`run_evaluation` is named stages: systems and prompts -> replies (files first, then generated) ->
reward-model scores -> win rates -> safety slice -> judge -> outputs. The stages live in
`psycho_jax.evaluation.systems` and `psycho_jax.evaluation.results`; this program adds what needs
the training layer: loading checkpoints (the policies that generate, the reward model).
"""

from __future__ import annotations

import gc
import pathlib
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from psycho_jax.core import decode, metrics_writer, sharding
from psycho_jax.data import tokenizer as tokenizer_lib
from psycho_jax.evaluation import results, scoring
from psycho_jax.evaluation import systems as systems_lib
from psycho_jax.evaluation.replies import Coverage, Replies, check_replies, read_replies  # noqa: F401
from psycho_jax.evaluation.results import principle_head_trained
from psycho_jax.evaluation.settings import EvalSettings
from psycho_jax.evaluation.systems import PromptSets, System, SystemReplies, parse_systems
from psycho_jax.train import checkpoint as ckpt_lib


def checked_systems(c: EvalSettings) -> list[System]:
    """`config.systems`, with the baseline among them and a reward model named."""
    systems = parse_systems(c.systems)
    names = [s.name for s in systems]
    if c.baseline not in names:
        raise ValueError(f"config.baseline={c.baseline!r} is not one of the systems {names}")
    if not c.reward_model:
        raise ValueError("config.reward_model: a reward-model stage or HF directory judges replies")
    return systems


def _load_model(c: EvalSettings, source: str, mesh, **kwargs):
    rules = c.sharding_rules
    return ckpt_lib.load_model(source, mesh=mesh, rules=rules, **kwargs)


def collect_replies(
    systems: list[System], sets: PromptSets, c: EvalSettings, tokenizer, mesh
) -> dict[str, SystemReplies]:
    """Every system's replies to the prompt sets, in the systems' order. Replies files first:
    their problems stop the run before anything is generated."""
    answered, out = sets.answered(), {}
    for s in systems_lib.replies_first(systems):
        if s.kind == "reference":
            out[s.name] = systems_lib.reference_replies(answered)
        elif s.kind == "file":
            out[s.name] = systems_lib.file_replies(s, answered, c.on_bad_replies)
        else:
            model = _load_model(c, s.source, mesh, dtype=c.dtype)
            sampler = decode.Sampler(model, tokenizer, mesh=mesh)
            out[s.name] = systems_lib.generated_replies(s.name, sampler, answered, c)
            del sampler, model
            gc.collect()
    out = {s.name: out[s.name] for s in systems}
    if sets.crisis_in_main:
        systems_lib.crisis_from_main(out, sets)
    base = out[c.baseline]
    if base.replies["main"] is None:
        raise ValueError(
            f"the baseline {c.baseline!r} has no replies to {c.prompts}: "
            f"{base.coverage['main'].skipped}"
        )
    return out


def reward_scorer(c: EvalSettings, tokenizer, mesh, head_trained: bool) -> scoring.RewardScorer:
    """The reward model that judges every reply (`config.reward_model`)."""
    rm = _load_model(c, c.reward_model, mesh)
    scorer = scoring.RewardScorer(
        rm, tokenizer, mesh=mesh, max_len=c.max_len, batch_size=c.batch_size
    )
    if scorer.num_labels > 1 and not head_trained:
        logging.warning(
            "%s: its principle head never trained (no rated pairs): no per-principle scores",
            c.reward_model,
        )
    return scorer


def run_evaluation(
    config: EvalSettings | ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, Any]:
    """Generates, scores, compares and reports (module docstring); returns `evaluation.json`'s dict.
    `config`: the typed settings, or the ConfigDict of `configs/evaluate.py` (turned into them here)."""
    c = config if isinstance(config, EvalSettings) else EvalSettings.from_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    systems = checked_systems(c)
    checkpoints = [s.source for s in systems if s.kind == "checkpoint"]
    tok_spec = c.tokenizer or tokenizer_lib.find_tokenizer(
        checkpoints[0] if checkpoints else c.reward_model
    )
    tokenizer = tokenizer_lib.load_tokenizer(tok_spec)
    mesh = sharding.make_mesh(c.mesh)
    sets = systems_lib.prompt_sets(c)
    replies = collect_replies(systems, sets, c, tokenizer, mesh)
    head_trained = principle_head_trained(c.reward_model)
    scorer = reward_scorer(c, tokenizer, mesh, head_trained)
    scored = results.score_replies(scorer, tokenizer, sets, replies, head_trained)
    comparisons = results.win_rates(c, [s.name for s in systems], scored)
    safety_rows = results.safety_slice(sets, replies, scored, scorer)
    judge_rows = results.judge_stage(c, workdir, sets.main, replies)
    result = results.evaluation_json(
        c, systems, sets, replies, scored, comparisons, safety_rows, judge_rows
    )
    results.write_outputs(workdir, c, sets, replies, scored, result)
    for comp in comparisons:
        logging.info(
            "%s vs %s: win rate %.3f [%.3f, %.3f], LC %.3f (n=%d)",
            comp["system_a"], comp["system_b"], comp["win_rate"], *comp["ci"],
            comp["lc_win_rate"], comp["n"],
        )  # fmt: skip
    return result


def define_flags() -> None:
    config_flags.DEFINE_config_file("config", "configs/evaluate.py", lock_config=True)
    flags.DEFINE_string("workdir", "/tmp/psycho_jax_eval", "Where the report is written.")


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.INFO)
    metrics_writer.quiet_library_logs()
    run_evaluation(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    define_flags()
    app.run(main)
