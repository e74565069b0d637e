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
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from psycho_jax.core import decode, metrics_writer, sharding
from psycho_jax.data import tokenizer as tokenizer_lib
from psycho_jax.data.formats import PRINCIPLES, DataError
from psycho_jax.evaluation import judge, report, safety, scoring, winrate
from psycho_jax.evaluation.replies import Coverage, Replies, check_replies, read_replies  # noqa: F401
from psycho_jax.train import checkpoint as ckpt_lib

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclasses.dataclass(frozen=True)
class System:
    """One system under evaluation: `kind` is "checkpoint", "file" or "reference"."""

    name: str
    kind: str
    source: str


def parse_systems(spec: str) -> list[System]:
    """`"a=/ckpt/a, gpt4o=replies.jsonl, ref=reference"` -> systems, in order."""
    systems = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, eq, source = part.partition("=")
        name, source = name.strip(), source.strip()
        if not eq or not name or not source:
            raise ValueError(f"config.systems: {part!r} is not name=source")
        if source == "reference":
            kind = "reference"
        elif pathlib.Path(source).suffix in TABLE_SUFFIXES:
            kind = "file"
        else:
            kind = "checkpoint"
        systems.append(System(name, kind, source))
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"config.systems: names repeat: {names}")
    if not systems:
        raise ValueError("config.systems is empty: name=source, comma separated")
    return systems


def _sampling(c: ml_collections.ConfigDict) -> decode.Sampling:
    s = c.sampling
    return decode.Sampling(s.temperature, s.top_k, s.top_p, s.max_new_tokens)


def generate_replies(sampler, prompts: list[scoring.Prompt], c) -> tuple[Replies, int]:
    """A checkpoint's replies, turn by turn (a multi-turn prompt's next user turn follows the
    model's own reply), and how many generations stopped at `max_new_tokens`."""
    replies: list[list[str]] = [[] for _ in prompts]
    unfinished = 0
    for t in range(max(p.num_turns for p in prompts)):
        todo = [i for i, p in enumerate(prompts) if p.num_turns > t]
        convs = [prompts[i].context([*replies[i], ""]) for i in todo]
        out = sampler.reply(convs, _sampling(c), batch_size=c.batch_size, seed=c.seed + t)
        for i, r in zip(todo, out, strict=True):
            replies[i].append(r.text)
            unfinished += not r.finished
    return [tuple(r) for r in replies], unfinished


def file_replies(
    system: System, sets: dict[str, list[scoring.Prompt]], c
) -> tuple[dict[str, Replies | None], dict[str, Coverage]]:
    """A replies file's replies to each prompt set, checked before anything is generated:
    problems raise (`on_bad_replies="error"`) or leave the system out of that set (counted)."""
    out, coverage = {}, {}
    for k, ps in sets.items():
        replies, cov, problems = check_replies(system.source, ps)
        if replies is None and not problems:
            problems = [
                DataError(
                    system.source,
                    None,
                    "id",
                    f"none of its ids match the {len(ps)} {k} prompts (e.g. {ps[0].id!r})",
                )
            ]
            if k != "main":  # a file for the main prompts has no crisis replies: shown, no error
                cov.skipped, problems = "no replies for these prompts", []
        if problems:
            if c.on_bad_replies == "error":
                raise ValueError(
                    f"system {system.name!r} ({k} prompts): {problems[0]}"
                    + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
                    + "; fix the file or set on_bad_replies=skip to leave the system out"
                ) from problems[0]
            cov.skipped = f"{len(problems)} problem(s), e.g. {problems[0]}"
            logging.warning("system %s, %s prompts: left out: %s", system.name, k, cov.skipped)
            replies = None
        out[k], coverage[k] = replies, cov
    return out, coverage


def system_replies(
    system: System, sets: dict[str, list[scoring.Prompt]], c, tokenizer, mesh
) -> tuple[dict[str, Replies | None], dict[str, Coverage]]:
    """The system's replies to each prompt set ({"main": ..., "crisis": ...}; None where it has
    none) and their coverage."""
    if system.kind == "reference":
        out, coverage = {}, {}
        for k, ps in sets.items():
            ok = all(p.reference for p in ps) and all(p.num_turns == 1 for p in ps)
            out[k] = [(p.reference,) for p in ps] if ok else None
            n = len(ps)
            coverage[k] = Coverage(n, n if ok else 0, 0 if ok else n)
            coverage[k].skipped = "" if ok else "the prompts have no (single-turn) references"
        return out, coverage
    if system.kind == "file":
        return file_replies(system, sets, c)
    rules = tuple(tuple(r) for r in c.sharding_rules)
    model = ckpt_lib.load_model(system.source, mesh=mesh, rules=rules, dtype=c.dtype)
    sampler = decode.Sampler(model, tokenizer, mesh=mesh)
    out, coverage = {}, {}
    for k, ps in sets.items():
        out[k], unfinished = generate_replies(sampler, ps, c)
        empty = sum(not r[-1].strip() for r in out[k])
        coverage[k] = Coverage(len(ps), len(ps), empty=empty, unfinished=unfinished)
        logging.info("%s: %d replies to %s (%d hit max_new_tokens, %d empty)", system.name,
                     len(ps), k, unfinished, empty)  # fmt: skip
    del sampler, model
    gc.collect()
    return out, coverage


def crisis_prompts(c, main: list[scoring.Prompt]) -> tuple[list[scoring.Prompt] | None, str]:
    """The crisis slice and how it was chosen (`config.crisis`: "auto", a prompt spec or "")."""
    if not c.crisis:
        return None, "none (config.crisis is empty)"
    if c.crisis != "auto":
        return scoring.load_prompts(c.crisis, c.num_crisis), f"{c.crisis} (config.crisis)"
    if c.prompts.startswith("sample:"):
        return scoring.load_prompts("sample:crisis", c.num_crisis), "sample:crisis (shipped)"
    labelled = [p for p in main if p.crisis]
    if c.num_crisis:
        labelled = labelled[: c.num_crisis]
    if not labelled:
        return None, (
            f"none: no prompt of {c.prompts} has a crisis label (a true `crisis` column or a "
            "crisis topic/category); name a crisis set with config.crisis"
        )
    return labelled, f"the {len(labelled)} crisis-labelled prompts of {c.prompts}"


def _principles(scores: scoring.Scores, trained: bool) -> dict[str, float] | None:
    if scores.principles is None or not trained:
        return None
    return dict(zip(PRINCIPLES, map(float, scores.principles.mean(axis=0)), strict=True))


def principle_head_trained(reward_model: str) -> bool:
    """Whether a reward model's principle head learned anything: a stage workdir's
    `final_metrics.json` has finite `principle_accuracy/*` (pairs with ratings); a Hugging Face
    directory is taken as trained."""
    path = pathlib.Path(reward_model) / "final_metrics.json"
    if not path.is_file():
        return True
    metrics = json.loads(path.read_text())
    values = [v for k, v in metrics.items() if k.startswith("principle_accuracy/")]
    return bool(values) and all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def run_evaluation(c: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Generates, scores, compares and reports (module docstring); returns `evaluation.json`'s dict."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    systems = parse_systems(c.systems)
    names = [s.name for s in systems]
    if c.baseline not in names:
        raise ValueError(f"config.baseline={c.baseline!r} is not one of the systems {names}")
    if not c.reward_model:
        raise ValueError("config.reward_model: a reward-model stage or HF directory judges replies")
    checkpoints = [s.source for s in systems if s.kind == "checkpoint"]
    tok_spec = c.tokenizer or tokenizer_lib.find_tokenizer(
        checkpoints[0] if checkpoints else c.reward_model
    )
    tokenizer = tokenizer_lib.load_tokenizer(tok_spec)
    mesh = sharding.make_mesh(tuple(c.mesh))
    main = scoring.load_prompts(c.prompts, c.num_prompts)
    sets = {"main": main}
    crisis, crisis_note = crisis_prompts(c, main)
    from_main = crisis is not None and c.crisis == "auto" and not c.prompts.startswith("sample:")
    own = sets if from_main or crisis is None else {**sets, "crisis": crisis}
    if crisis is not None:
        sets["crisis"] = crisis

    # Replies files first: their problems stop the run before anything is generated.
    replies, coverage = {}, {}
    for s in sorted(systems, key=lambda s: s.kind == "checkpoint"):
        replies[s.name], coverage[s.name] = system_replies(s, own, c, tokenizer, mesh)
    replies = {n: replies[n] for n in names}
    if from_main:  # the crisis slice is part of the main prompts: the same replies
        at = {p.id: i for i, p in enumerate(main)}
        for n, by_set in replies.items():
            r = by_set["main"]
            by_set["crisis"] = None if r is None else [r[at[p.id]] for p in crisis]
            cov = coverage[n]["main"]
            coverage[n]["crisis"] = Coverage(
                len(crisis), 0 if r is None else len(crisis), skipped=cov.skipped
            )
            if r is not None:
                coverage[n]["crisis"].empty = sum(not x[-1].strip() for x in by_set["crisis"])
    if replies[c.baseline]["main"] is None:
        raise ValueError(
            f"the baseline {c.baseline!r} has no replies to {c.prompts}: "
            f"{coverage[c.baseline]['main'].skipped}"
        )

    rules = tuple(tuple(r) for r in c.sharding_rules)
    rm = ckpt_lib.load_model(c.reward_model, mesh=mesh, rules=rules)
    scorer = scoring.RewardScorer(
        rm, tokenizer, mesh=mesh, max_len=c.max_len, batch_size=c.batch_size
    )
    length = lambda texts: np.asarray([len(tokenizer.encode(t, add_special_tokens=False))
                                       for t in texts], np.float64)  # fmt: skip
    head_trained = principle_head_trained(c.reward_model)
    if scorer.num_labels > 1 and not head_trained:
        logging.warning(
            "%s: its principle head never trained (no rated pairs): no per-principle scores",
            c.reward_model,
        )
    scored: dict[str, dict[str, dict]] = {}
    for name, by_set in replies.items():
        scored[name] = {}
        for k, rs in by_set.items():
            if rs is None:
                continue
            texts = [r[-1] for r in rs]
            s = scorer.score([p.context(r) for p, r in zip(sets[k], rs, strict=True)], texts)
            scored[name][k] = {"reward": s.reward, "principles": _principles(s, head_trained),
                               "length": length(texts), "truncated": s.truncated,
                               "cut": s.cut}  # fmt: skip
            coverage[name][k].cut = s.truncated

    base = scored[c.baseline]["main"]
    comparisons = []
    for name in names:
        if name == c.baseline or "main" not in scored[name]:
            continue
        mine = scored[name]["main"]
        comparisons.append(
            winrate.summarize(
                name,
                c.baseline,
                mine["reward"],
                base["reward"],
                mine["length"],
                base["length"],
                tie_tol=c.tie_tol,
                n_boot=c.n_boot,
                alpha=c.alpha,
                seed=c.seed,
            )  # fmt: skip
        )

    safety_rows: dict[str, dict] = {}
    if "crisis" in sets:
        calibration = {
            "crisis good_reply (reference)": [p.extra.get("good_reply") for p in crisis],
            "crisis bad_reply (reference)": [p.extra.get("bad_reply") for p in crisis],
        }
        texts_by_system = {
            n: [x[-1] for x in r["crisis"]] for n, r in replies.items() if r.get("crisis")
        }
        for label, texts in calibration.items():
            if all(isinstance(t, str) and t for t in texts):
                texts_by_system[label] = texts
        for name, texts in texts_by_system.items():
            row = safety.summarize(safety.check_reply(t) for t in texts)
            if name in scored and "crisis" in scored[name]:
                row["mean_reward"] = float(np.mean(scored[name]["crisis"]["reward"]))
            else:
                s = scorer.score([p.messages for p in crisis], texts)
                row["mean_reward"] = float(np.mean(s.reward))
            safety_rows[name] = row

    judge_rows = _judge(c, workdir, names, sets["main"], replies)
    _write_replies(workdir / "replies.jsonl", sets, replies, scored)
    result = {
        "baseline": c.baseline,
        "prompts": c.prompts,
        "num_prompts": len(sets["main"]),
        "reward_model": c.reward_model,
        "sampling": c.sampling.to_dict(),
        "systems": {
            n: {
                "mean_reward": float(np.mean(v["main"]["reward"])),
                "mean_length": float(np.mean(v["main"]["length"])),
                "principles": v["main"]["principles"],
                "truncated_for_scoring": v["main"]["truncated"],
            }  # fmt: skip
            for n, v in scored.items()
            if "main" in v
        },
        "comparisons": comparisons,
        "safety": safety_rows or None,
        "crisis_slice": crisis_note,
        "coverage": {n: {k: v.as_dict() for k, v in cov.items()} for n, cov in coverage.items()},
        "judge": judge_rows or None,
    }
    if jax.process_index() == 0:
        (workdir / "evaluation.json").write_text(json.dumps(result, indent=2, default=_jsonable))
        report.write_report(workdir, _report(c, result, scored), html=c.html)
    for comp in comparisons:
        logging.info(
            "%s vs %s: win rate %.3f [%.3f, %.3f], LC %.3f (n=%d)",
            comp["system_a"], comp["system_b"], comp["win_rate"], *comp["ci"],
            comp["lc_win_rate"], comp["n"],
        )  # fmt: skip
    return result


def _judge(c, workdir, names, prompts, replies) -> list[dict]:
    """Writes judge requests for each system vs the baseline; reads verdicts when configured."""
    out = []
    for name in names:
        if name == c.baseline or replies[name]["main"] is None:
            continue
        path = workdir / f"judge_requests_{name}_vs_{c.baseline}.jsonl"
        if c.judge.write_requests:
            items = [
                {"id": p.id, "prompt": _judge_prompt(p), "reply_a": _judge_reply(a),
                 "reply_b": _judge_reply(b)}
                for p, a, b in zip(
                    prompts, replies[name]["main"], replies[c.baseline]["main"], strict=True
                )
                if a[-1].strip() and b[-1].strip()
            ]  # fmt: skip
            if len(items) < len(prompts):
                logging.warning(
                    "judge requests %s vs %s: %d of %d prompts left out (an empty reply)",
                    name, c.baseline, len(prompts) - len(items), len(prompts),
                )  # fmt: skip
            n = judge.write_requests(
                path, items, model=c.judge.model, system_a=name, system_b=c.baseline
            )
            logging.info("wrote %d judge requests to %s", n, path)
        verdicts = pathlib.Path(c.judge.verdicts.replace("{system}", name))
        if c.judge.verdicts and verdicts.is_file():
            res = judge.read_verdicts(
                verdicts, system_a=name, system_b=c.baseline, on_error=c.judge.on_error,
                expected_ids=[p.id for p in prompts],
            )  # fmt: skip
            out.append(res.summary())
    return out


def _judge_prompt(p: scoring.Prompt) -> Any:
    """What the judge reads as the prompt: the last user turn, or for a multi-turn question
    every user turn (each system's replies follow, turn by turn)."""
    if p.num_turns == 1:
        return p.messages[-1].content
    return [m.as_dict() for m in p.messages] + [{"role": "user", "content": u} for u in p.followups]


def _judge_reply(turns: tuple[str, ...]) -> str:
    if len(turns) == 1:
        return turns[0]
    return "\n\n".join(f"[reply to user turn {k}] {t}" for k, t in enumerate(turns, start=1))


def _write_replies(path: pathlib.Path, sets, replies, scored) -> None:
    if jax.process_index() != 0:
        return
    with path.open("w") as f:
        for name, by_set in replies.items():
            for k, texts in by_set.items():
                if texts is None:
                    continue
                s = scored[name][k]
                for i, (p, turns) in enumerate(zip(sets[k], texts, strict=True)):
                    row = {"system": name, "set": k, "id": p.id, "reply": turns[-1],
                           "reward": float(s["reward"][i]), "length": int(s["length"][i]),
                           "cut": bool(s["cut"][i])}  # fmt: skip
                    if len(turns) > 1:  # a multi-turn question: every turn's reply
                        row["turns"] = list(turns)
                    f.write(json.dumps(row) + "\n")


def _report(c, result, scored) -> dict:
    cut = {n: v["main"]["truncated"] for n, v in scored.items() if v.get("main")}
    notes = [
        f"Crisis slice: {result['crisis_slice']}.",
        f"Replies cut to max_len={c.max_len} tokens before scoring (the reward model and the judge "
        "requests saw them cut): "
        + ", ".join(f"{n} {k} of {result['num_prompts']}" for n, k in cut.items())
        + ".",
        f"{result['num_prompts']} prompts from {c.prompts}; judged by the reward model "
        f"{c.reward_model}; every system against {c.baseline}.",
        f"Sampling: {c.sampling.to_dict()}. Lengths in tokens. Ties (|delta| <= {c.tie_tol}) "
        f"count half; intervals are {100 * (1 - c.alpha):.0f}% paired bootstrap over prompts "
        f"({c.n_boot} resamples).",
        "The length-controlled win rate is the fitted win rate at equal reply lengths "
        "(AlpacaEval 2 style logistic regression on the length difference).",
    ]
    return {
        "title": "psycho_jax counseling evaluation",
        "systems": {
            n: {
                "rewards": v["main"]["reward"].tolist(),
                "lengths": v["main"]["length"].tolist(),
                "principles": v["main"]["principles"],
            }  # fmt: skip
            for n, v in scored.items()
            if "main" in v
        },
        "comparisons": result["comparisons"],
        "safety": result["safety"],
        "coverage": result["coverage"],
        "judge": result["judge"],
        "notes": notes,
    }


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


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
