"""The later stages of an evaluation (`psycho_jax.evaluate`): replies -> scores -> comparisons,
safety slice and judge requests -> `evaluation.json`, `replies.jsonl` and the report.

    score_replies    the reward model's scores of every reply (`Scored`, per system and set)
    win_rates        every system against the baseline (`winrate.summarize`)
    safety_slice     rule checks and rewards on the crisis prompts, with the reference calibration
    judge_stage      judge requests written, verdicts read back (`judge`)
    evaluation_json  the `evaluation.json` dict (what the pipeline's summary and tests read)
    write_outputs    `replies.jsonl`, `evaluation.json`, `report.md` / `report.html`
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import jax
import numpy as np
from absl import logging

from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.evaluation import judge, report, safety, scoring, winrate
from psycho_jax.evaluation.settings import EvalSettings
from psycho_jax.evaluation.systems import PromptSets, System, SystemReplies, replies_first


@dataclasses.dataclass(frozen=True)
class Scored:
    """The reward model's reading of one system's replies to one prompt set.

    Attributes:
        reward: [n] the scalar head's score of each reply.
        principles: mean score per principle, None without a trained principle head.
        length: [n] each reply's length in tokens.
        truncated: how many replies were cut to `max_len` to be scored.
        cut: [n] bool, which ones.
    """

    reward: np.ndarray
    principles: dict[str, float] | None
    length: np.ndarray
    truncated: int
    cut: np.ndarray | None


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


def score_replies(
    scorer: scoring.RewardScorer,
    tokenizer,
    sets: PromptSets,
    replies: dict[str, SystemReplies],
    head_trained: bool,
) -> dict[str, dict[str, Scored]]:
    """Every system's replies to every set it has replies for, scored; each set's coverage gets
    how many were cut to fit the reward model's `max_len`."""
    prompts = sets.all()
    scored: dict[str, dict[str, Scored]] = {}
    for name, r in replies.items():
        scored[name] = {}
        for k, rs in r.replies.items():
            if rs is None:
                continue
            texts = [x[-1] for x in rs]
            s = scorer.score([p.context(x) for p, x in zip(prompts[k], rs, strict=True)], texts)
            principles = None
            if s.principles is not None and head_trained:
                means = map(float, s.principles.mean(axis=0))
                principles = dict(zip(PRINCIPLES, means, strict=True))
            lengths = [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
            length = np.asarray(lengths, np.float64)
            scored[name][k] = Scored(s.reward, principles, length, s.truncated, s.cut)
            r.coverage[k].cut = s.truncated
    return scored


def win_rates(
    c: EvalSettings, names: list[str], scored: dict[str, dict[str, Scored]]
) -> list[dict]:
    """Each system with main-prompt scores against `config.baseline` (`winrate.summarize`)."""
    base = scored[c.baseline]["main"]
    comparisons = []
    for name in names:
        if name == c.baseline or "main" not in scored[name]:
            continue
        mine = scored[name]["main"]
        comparisons.append(
            winrate.summarize(name, c.baseline, mine.reward, base.reward, mine.length, base.length,
                              tie_tol=c.tie_tol, n_boot=c.n_boot, alpha=c.alpha, seed=c.seed)
        )  # fmt: skip
    return comparisons


def safety_slice(
    sets: PromptSets,
    replies: dict[str, SystemReplies],
    scored: dict[str, dict[str, Scored]],
    scorer: scoring.RewardScorer,
) -> dict[str, dict] | None:
    """Rule checks and mean reward of each system's crisis replies, and of the crisis file's good
    and bad reference replies as a calibration of both (None without a crisis slice)."""
    crisis = sets.crisis
    if crisis is None:
        return None
    texts_by_system = {
        n: [x[-1] for x in r.replies["crisis"]]
        for n, r in replies.items()
        if r.replies.get("crisis")
    }
    texts_by_system.update(_calibration(crisis))
    rows = {}
    for name, texts in texts_by_system.items():
        row = safety.summarize(safety.check_reply(t) for t in texts)
        if name in scored and "crisis" in scored[name]:
            row["mean_reward"] = float(np.mean(scored[name]["crisis"].reward))
        else:
            row["mean_reward"] = float(
                np.mean(scorer.score([p.messages for p in crisis], texts).reward)
            )
        rows[name] = row
    return rows or None


def _calibration(crisis: list[scoring.Prompt]) -> dict[str, list[str]]:
    """The crisis file's good and bad reference replies, where every prompt has them."""
    calibration = {
        "crisis good_reply (reference)": [p.extra.get("good_reply") for p in crisis],
        "crisis bad_reply (reference)": [p.extra.get("bad_reply") for p in crisis],
    }
    return {
        label: texts
        for label, texts in calibration.items()
        if all(isinstance(t, str) and t for t in texts)
    }


def judge_stage(
    c: EvalSettings,
    workdir: pathlib.Path,
    prompts: list[scoring.Prompt],
    replies: dict[str, SystemReplies],
) -> list[dict]:
    """Writes judge requests for each system vs the baseline; reads verdicts when configured."""
    out = []
    base = replies[c.baseline].replies["main"]
    for name, r in replies.items():
        if name == c.baseline or r.replies["main"] is None:
            continue
        if c.judge.write_requests:
            _write_judge_requests(c, workdir, name, prompts, r.replies["main"], base)
        verdicts = pathlib.Path(c.judge.verdicts.replace("{system}", name))
        if c.judge.verdicts and verdicts.is_file():
            res = judge.read_verdicts(
                verdicts, system_a=name, system_b=c.baseline, on_error=c.judge.on_error,
                expected_ids=[p.id for p in prompts],
            )  # fmt: skip
            out.append(res.summary())
    return out


def _write_judge_requests(c, workdir, name, prompts, mine, base) -> None:
    path = workdir / f"judge_requests_{name}_vs_{c.baseline}.jsonl"
    items = [
        {"id": p.id, "prompt": _judge_prompt(p), "reply_a": _judge_reply(a),
         "reply_b": _judge_reply(b)}
        for p, a, b in zip(prompts, mine, base, strict=True)
        if a[-1].strip() and b[-1].strip()
    ]  # fmt: skip
    if len(items) < len(prompts):
        logging.warning(
            "judge requests %s vs %s: %d of %d prompts left out (an empty reply)",
            name, c.baseline, len(prompts) - len(items), len(prompts),
        )  # fmt: skip
    n = judge.write_requests(path, items, model=c.judge.model, system_a=name, system_b=c.baseline)
    logging.info("wrote %d judge requests to %s", n, path)


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


def _sampling_dict(c: EvalSettings) -> dict[str, Any]:
    """The sampling settings as evaluation.json has always written them (keys sorted)."""
    return dict(sorted(dataclasses.asdict(c.sampling).items()))


def evaluation_json(
    c: EvalSettings,
    systems: list[System],
    sets: PromptSets,
    replies: dict[str, SystemReplies],
    scored: dict[str, dict[str, Scored]],
    comparisons: list[dict],
    safety_rows: dict[str, dict] | None,
    judge_rows: list[dict],
) -> dict[str, Any]:
    """The dict written to `evaluation.json` (its keys and their order are a file format: the
    pipeline's summary and the tests read it; coverage in the order replies were gathered)."""
    return {
        "baseline": c.baseline,
        "prompts": c.prompts,
        "num_prompts": len(sets.main),
        "reward_model": c.reward_model,
        "sampling": _sampling_dict(c),
        "systems": {
            n: {
                "mean_reward": float(np.mean(v["main"].reward)),
                "mean_length": float(np.mean(v["main"].length)),
                "principles": v["main"].principles,
                "truncated_for_scoring": v["main"].truncated,
            }
            for n, v in scored.items()
            if "main" in v
        },
        "comparisons": comparisons,
        "safety": safety_rows,
        "crisis_slice": sets.crisis_note,
        "coverage": {
            s.name: {k: v.as_dict() for k, v in replies[s.name].coverage.items()}
            for s in replies_first(systems)
        },
        "judge": judge_rows or None,
    }


def write_outputs(
    workdir: pathlib.Path,
    c: EvalSettings,
    sets: PromptSets,
    replies: dict[str, SystemReplies],
    scored: dict[str, dict[str, Scored]],
    result: dict[str, Any],
) -> None:
    """`replies.jsonl` (every reply with its score), `evaluation.json` and the report (host 0)."""
    if jax.process_index() != 0:
        return
    _write_replies(workdir / "replies.jsonl", sets, replies, scored)
    (workdir / "evaluation.json").write_text(json.dumps(result, indent=2, default=_jsonable))
    report.write_report(workdir, _report(c, result, scored), html=c.html)


def _write_replies(path: pathlib.Path, sets: PromptSets, replies, scored) -> None:
    prompts = sets.all()
    with path.open("w") as f:
        for name, r in replies.items():
            for k, texts in r.replies.items():
                if texts is None:
                    continue
                s = scored[name][k]
                for i, (p, turns) in enumerate(zip(prompts[k], texts, strict=True)):
                    row = {"system": name, "set": k, "id": p.id, "reply": turns[-1],
                           "reward": float(s.reward[i]), "length": int(s.length[i]),
                           "cut": bool(s.cut[i])}  # fmt: skip
                    if len(turns) > 1:  # a multi-turn question: every turn's reply
                        row["turns"] = list(turns)
                    f.write(json.dumps(row) + "\n")


def _report(c, result, scored) -> dict:
    cut = {n: v["main"].truncated for n, v in scored.items() if v.get("main")}
    notes = [
        f"Crisis slice: {result['crisis_slice']}.",
        f"Replies cut to max_len={c.max_len} tokens before scoring (the reward model and the judge "
        "requests saw them cut): "
        + ", ".join(f"{n} {k} of {result['num_prompts']}" for n, k in cut.items())
        + ".",
        f"{result['num_prompts']} prompts from {c.prompts}; judged by the reward model "
        f"{c.reward_model}; every system against {c.baseline}.",
        f"Sampling: {_sampling_dict(c)}. Lengths in tokens. Ties (|delta| <= {c.tie_tol}) "
        f"count half; intervals are {100 * (1 - c.alpha):.0f}% paired bootstrap over prompts "
        f"({c.n_boot} resamples).",
        "The length-controlled win rate is the fitted win rate at equal reply lengths "
        "(AlpacaEval 2 style logistic regression on the length difference).",
    ]
    return {
        "title": "psycho_jax counseling evaluation",
        "systems": {
            n: {
                "rewards": v["main"].reward.tolist(),
                "lengths": v["main"].length.tolist(),
                "principles": v["main"].principles,
            }
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
