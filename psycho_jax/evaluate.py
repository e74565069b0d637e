"""Counseling evaluation: replies of several systems to held-out prompts, judged by a reward model.

    python -m psycho_jax.evaluate --config=configs/evaluate.py --workdir=/tmp/eval \
        --config.systems="dpo=/tmp/psycho_jax_pipeline/dpo, sft=/tmp/psycho_jax_pipeline/sft" \
        --config.reward_model=/tmp/psycho_jax_pipeline/reward --config.baseline=sft

A system is `name=source`, the source being a checkpoint (stage workdir, online-DPO workdir or Hugging
Face directory: its replies are generated here), a replies file (JSONL/JSON/Parquet/CSV with `id` and
`reply`, e.g. GPT-4o's answers to the same prompts), or `reference` (the prompt file's own reference
replies). Every system is compared with `baseline`:

* reward-model win rate with ties (ties count half), a paired bootstrap interval over prompts, and the
  length-controlled win rate (`psycho_jax.winrate`); reply lengths in tokens;
* per-principle scores where the reward model has the principle head (`reward.principle_head`);
* a safety slice on crisis prompts (`config.crisis`): rule checks (acknowledges risk, points to help,
  no harmful instructions; `psycho_jax.safety`) and reward-model scores, next to the crisis file's
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
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from psycho_jax import checkpoint as ckpt_lib
from psycho_jax import decode, judge, metrics_writer, report, safety, scoring, sharding, winrate
from psycho_jax import tokenizer as tokenizer_lib
from psycho_jax.chat import find_tokenizer
from psycho_jax.data import sources
from psycho_jax.data.formats import PRINCIPLES, DataError

REPLY_FIELDS = ("reply", "response", "output", "completion")
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


def read_replies(path: str, prompts: list[scoring.Prompt]) -> list[str] | None:
    """Replies of a file, in `prompts` order; None when the file has none of these prompt ids (e.g.
    a replies file for the main prompts, asked about the crisis slice). Missing ids raise."""
    name, rows = sources.read_rows(sources.parse_source(path))
    by_id: dict[str, str] = {}
    for i, row in enumerate(rows):
        if "id" not in row:
            raise DataError(name, i, "id", "missing (replies are matched to prompts by id)")
        field = next((f for f in REPLY_FIELDS if f in row), None)
        if field is None or not isinstance(row[field], str):
            raise DataError(name, i, "reply", f"missing or not a string (one of {REPLY_FIELDS})")
        by_id[str(row["id"])] = row[field]
    wanted = [p.id for p in prompts]
    found = [i for i in wanted if i in by_id]
    if not found:
        return None
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise DataError(
            name, None, "id", f"no reply for {len(missing)} prompts, e.g. {missing[:3]}"
        )
    return [by_id[i] for i in wanted]


def _sampling(c: ml_collections.ConfigDict) -> decode.Sampling:
    s = c.sampling
    return decode.Sampling(s.temperature, s.top_k, s.top_p, s.max_new_tokens)


def system_replies(
    system: System, sets: dict[str, list[scoring.Prompt]], c, tokenizer, mesh
) -> dict[str, list[str] | None]:
    """The system's replies to each prompt set ({"main": ..., "crisis": ...}); None where it has none."""
    if system.kind == "reference":
        return {
            k: [p.reference for p in ps] if all(p.reference for p in ps) else None
            for k, ps in sets.items()
        }
    if system.kind == "file":
        return {k: read_replies(system.source, ps) for k, ps in sets.items()}
    rules = tuple(tuple(r) for r in c.sharding_rules)
    model = ckpt_lib.load_model(system.source, mesh=mesh, rules=rules, dtype=c.dtype)
    sampler = decode.Sampler(model, tokenizer, mesh=mesh)
    out = {}
    for k, ps in sets.items():
        replies = sampler.reply(
            [p.messages for p in ps], _sampling(c), batch_size=c.batch_size, seed=c.seed
        )
        unfinished = sum(not r.finished for r in replies)
        logging.info("%s: %d replies to %s (%d hit max_new_tokens)", system.name, len(ps), k,
                     unfinished)  # fmt: skip
        out[k] = [r.text for r in replies]
    del sampler, model
    gc.collect()
    return out


def _principles(scores: scoring.Scores) -> dict[str, float] | None:
    if scores.principles is None:
        return None
    return dict(zip(PRINCIPLES, map(float, scores.principles.mean(axis=0)), strict=True))


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
    tok_spec = c.tokenizer or find_tokenizer(checkpoints[0] if checkpoints else c.reward_model)
    tokenizer = tokenizer_lib.load_tokenizer(tok_spec)
    mesh = sharding.make_mesh(tuple(c.mesh))
    sets = {"main": scoring.load_prompts(c.prompts, c.num_prompts)}
    if c.crisis:
        sets["crisis"] = scoring.load_prompts(c.crisis, c.num_crisis)

    replies = {s.name: system_replies(s, sets, c, tokenizer, mesh) for s in systems}
    if replies[c.baseline]["main"] is None:
        raise ValueError(f"the baseline {c.baseline!r} has no replies to {c.prompts}")

    rules = tuple(tuple(r) for r in c.sharding_rules)
    rm = ckpt_lib.load_model(c.reward_model, mesh=mesh, rules=rules)
    scorer = scoring.RewardScorer(
        rm, tokenizer, mesh=mesh, max_len=c.max_len, batch_size=c.batch_size
    )
    length = lambda texts: np.asarray([len(tokenizer.encode(t, add_special_tokens=False))
                                       for t in texts], np.float64)  # fmt: skip
    scored: dict[str, dict[str, dict]] = {}
    for name, by_set in replies.items():
        scored[name] = {}
        for k, texts in by_set.items():
            if texts is None:
                continue
            s = scorer.score([p.messages for p in sets[k]], texts)
            scored[name][k] = {"reward": s.reward, "principles": _principles(s),
                               "length": length(texts), "truncated": s.truncated}  # fmt: skip

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
        crisis = sets["crisis"]
        calibration = {
            "crisis good_reply (reference)": [p.extra.get("good_reply") for p in crisis],
            "crisis bad_reply (reference)": [p.extra.get("bad_reply") for p in crisis],
        }
        texts_by_system = {n: r["crisis"] for n, r in replies.items() if r.get("crisis")}
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
                {"id": p.id, "prompt": p.messages[-1].content, "reply_a": a, "reply_b": b}
                for p, a, b in zip(
                    prompts, replies[name]["main"], replies[c.baseline]["main"], strict=True
                )  # fmt: skip
            ]
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


def _write_replies(path: pathlib.Path, sets, replies, scored) -> None:
    if jax.process_index() != 0:
        return
    with path.open("w") as f:
        for name, by_set in replies.items():
            for k, texts in by_set.items():
                if texts is None:
                    continue
                s = scored[name][k]
                for i, (p, text) in enumerate(zip(sets[k], texts, strict=True)):
                    row = {"system": name, "set": k, "id": p.id, "reply": text,
                           "reward": float(s["reward"][i]), "length": int(s["length"][i])}  # fmt: skip
                    f.write(json.dumps(row) + "\n")


def _report(c, result, scored) -> dict:
    notes = [
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
