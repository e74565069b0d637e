"""Online (iterative) DPO: sample from the current policy, score with the reward model, train DPO on the
best-vs-worst replies; repeat for `online.rounds` rounds.

    python -m psycho_jax.main --config=configs/online_dpo.py:tiny --workdir=/tmp/online \
        --config.init_from=/tmp/pipeline/dpo --config.online.reward_model=/tmp/pipeline/reward

Round r (1-based) lives in `workdir/round_<r>`:
  1. `pairs.jsonl`: for `online.prompts_per_round` prompts (a fresh slice of `online.prompts` each
     round), `online.samples_per_prompt` replies sampled from the policy of round r-1 (round 0: the
     config's `init_from`), each scored by the reward model; the best and the worst reply of a prompt
     become a preference pair (prompts whose best and worst are within `online.min_gap`, or whose
     replies are empty or identical, are skipped and counted).
  2. an ordinary DPO stage (`train.train_and_evaluate`) on those pairs, initialised from the previous
     policy, with the reference `online.reference`: "previous" (the policy the round starts from, the
     iterative-DPO convention) or "initial" (the `init_from` policy for every round).
  Held-out reward: before round 1 and after every round, the policy answers `online.eval_prompts`
  (sampled with `online.sampling`, one fixed seed) and the reward model's mean score is logged as `heldout_reward` for rounds 0..R.

A round whose DPO stage finished is not run again; a stopped round resumes from its checkpoint with the
pairs it already sampled. Metrics per round go to `workdir/online_metrics.jsonl` and the summary to
`workdir/final_metrics.json`; the last round's directory holds the final policy (and `workdir/policy`
names it).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import pathlib

import jax
import ml_collections
import numpy as np
from absl import logging

from psycho_jax.core import decode, sharding
from psycho_jax.data import tokenizer as tokenizer_lib
from psycho_jax.evaluation import scoring
from psycho_jax.train import checkpoint as ckpt_lib
from psycho_jax.train import loop
from psycho_jax.train.settings import TrainSettings


def _policy(path: str, mesh, rules, tokenizer, c: TrainSettings) -> decode.Sampler:
    model = ckpt_lib.load_model(path, mesh=mesh, rules=rules, dtype=c.model.dtype)
    return decode.Sampler(model, tokenizer, mesh=mesh)


def heldout_reward(sampler, scorer, prompts, c) -> float:
    """Mean reward-model score of the policy's replies to the held-out prompts, sampled as in training
    (`online.sampling`) with the same seed every round, so rounds differ only by the policy."""
    msgs = [p.messages for p in prompts]
    replies = sampler.reply(msgs, c.online.sampling, batch_size=c.batch_size, seed=c.seed)
    return float(np.mean(scorer.score(msgs, [r.text for r in replies]).reward))


def best_vs_worst(
    prompts: list[scoring.Prompt], replies: list[list[str]], rewards: np.ndarray, min_gap: float
) -> tuple[list[dict], dict[str, int]]:
    """Preference rows from k scored replies per prompt. rewards: [P,k] -> (rows, skip counts)."""
    rows, skipped = [], {"gap within min_gap": 0, "empty or identical replies": 0}
    for p, texts, r in zip(prompts, replies, rewards, strict=True):
        best, worst = int(np.argmax(r)), int(np.argmin(r))
        chosen, rejected = texts[best].strip(), texts[worst].strip()
        if best == worst or r[best] - r[worst] <= min_gap:
            skipped["gap within min_gap"] += 1
            continue
        if not chosen or not rejected or chosen == rejected:
            skipped["empty or identical replies"] += 1
            continue
        rows.append(
            {
                "id": p.id,
                "prompt": [m.as_dict() for m in p.messages],
                "chosen": chosen,
                "rejected": rejected,
                "chosen_reward": float(r[best]),
                "rejected_reward": float(r[worst]),
            }
        )
    return rows, skipped


def _sample_round(c, r, policy_dir, pool, scorer, tokenizer, mesh, rules) -> tuple[list, dict]:
    """Samples k replies per prompt of round r's slice, scores them, returns (pairs, metrics)."""
    o = c.online
    n = o.prompts_per_round
    start = ((r - 1) * n) % max(len(pool), 1)
    prompts = [pool[(start + i) % len(pool)] for i in range(min(n, len(pool)))]
    sampler = _policy(policy_dir, mesh, rules, tokenizer, c)
    msgs = [p.messages for p in prompts]
    k = o.samples_per_prompt
    texts = [[""] * k for _ in prompts]
    for j in range(k):
        seed = c.seed * 1_000_003 + r * 1_000 + j
        out = sampler.reply(msgs, o.sampling, batch_size=c.batch_size, seed=seed)
        for i, reply in enumerate(out):
            texts[i][j] = reply.text
    del sampler
    flat = scorer.score([m for m in msgs for _ in range(k)], [t for ts in texts for t in ts])
    rewards = flat.reward.reshape(len(prompts), k)
    rows, skipped = best_vs_worst(prompts, texts, rewards, o.min_gap)
    metrics = {
        "sample_reward_mean": float(rewards.mean()),
        "sample_reward_best_mean": float(rewards.max(axis=1).mean()),
        "sample_reward_worst_mean": float(rewards.min(axis=1).mean()),
        "pairs": len(rows),
        **{f"skipped/{k_}": v for k_, v in skipped.items()},
    }
    return rows, metrics


def _dpo_settings(c: TrainSettings, round_dir, policy_dir, reference_dir) -> TrainSettings:
    """A round's DPO stage: the run's settings, on the round's pairs, from the round's policy."""
    return c.replace(
        task="dpo",
        init_from=policy_dir,
        dpo=dataclasses.replace(c.dpo, reference_from=reference_dir),
        data=dataclasses.replace(c.data, train=str(round_dir / "pairs.jsonl")),
        num_steps=c.online.steps_per_round,
        checkpoint_every=0,
    )


def run_online_dpo(
    config: TrainSettings | ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, float]:
    """Runs the rounds (see the module docstring); returns the summary. `config`: the run's
    `TrainSettings` (task online_dpo), or a training ConfigDict (turned into them here, once)."""
    c = config if isinstance(config, TrainSettings) else TrainSettings.from_config(config)
    c.check_run(jax.device_count())  # a policy to start from and a reward model, among others
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = sharding.make_mesh(c.mesh)
    tokenizer = tokenizer_lib.load_tokenizer(c.tokenizer)
    pool = scoring.load_prompts(c.online.prompts)
    heldout = scoring.load_prompts(c.online.eval_prompts, c.online.eval_num_prompts)
    reward_model = ckpt_lib.load_model(c.online.reward_model, mesh=mesh, rules=c.sharding_rules)
    scorer = scoring.RewardScorer(
        reward_model, tokenizer, mesh=mesh, max_len=c.data.max_len, batch_size=c.batch_size
    )

    def heldout_of(policy_dir: str) -> float:
        sampler = _policy(policy_dir, mesh, c.sharding_rules, tokenizer, c)
        return heldout_reward(sampler, scorer, heldout, c)

    log_path = workdir / "online_metrics.jsonl"
    done_rounds = _done_rounds(log_path)
    if 0 not in done_rounds:
        _log(log_path, {"round": 0, "heldout_reward": heldout_of(c.init_from)}, done_rounds)
    policy_dir = c.init_from
    for r in range(1, c.online.rounds + 1):
        round_dir = workdir / f"round_{r}"
        if r not in done_rounds:
            meta = _round_pairs(c, r, round_dir, policy_dir, pool, scorer, tokenizer, mesh)
            reference_dir = policy_dir if c.online.reference == "previous" else c.init_from
            final = loop.train_and_evaluate(
                _dpo_settings(c, round_dir, policy_dir, reference_dir), round_dir
            )
            if final.get("preempted"):
                return {"preempted": 1.0, "round": r}
            gc.collect()
            dpo = {f"dpo/{k}": v for k, v in final.items() if k.startswith(("eval/", "loss"))}
            row = {"round": r, **meta, "heldout_reward": heldout_of(str(round_dir)), **dpo}
            _log(log_path, row, done_rounds)
        policy_dir = str(round_dir)
    return _summary(c, workdir, done_rounds, policy_dir, tokenizer)


def _done_rounds(log_path: pathlib.Path) -> dict[int, dict]:
    """The rounds a stopped run logged (`online_metrics.jsonl`), by round."""
    if not log_path.is_file():
        return {}
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    return {row["round"]: row for row in rows}


def _round_pairs(c, r, round_dir, policy_dir, pool, scorer, tokenizer, mesh) -> dict:
    """Round r's preference pairs in `round_dir/pairs.jsonl`: sampled and scored now, or the ones
    a stopped run sampled (then trained on again, the same). Returns the sampling metrics."""
    round_dir.mkdir(exist_ok=True)
    pairs_path = round_dir / "pairs.jsonl"
    if pairs_path.is_file():
        meta = json.loads((round_dir / "sampling.json").read_text())
    else:
        rows, meta = _sample_round(
            c, r, policy_dir, pool, scorer, tokenizer, mesh, c.sharding_rules
        )
        if not rows:
            raise ValueError(
                f"round {r}: no preference pairs ({meta}); sample more replies per prompt, "
                "raise the temperature or lower online.min_gap"
            )
        tmp = pairs_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(x) + "\n" for x in rows))
        (round_dir / "sampling.json").write_text(json.dumps(meta, indent=2))
        tmp.rename(pairs_path)
    logging.info("online DPO round %d: %s", r, meta)
    return meta


def _summary(c, workdir, done_rounds, policy_dir, tokenizer) -> dict:
    """The held-out reward curve and the final policy; written once every round is done."""
    curve = [done_rounds[r]["heldout_reward"] for r in range(c.online.rounds + 1)]
    summary = {
        "rounds": c.online.rounds,
        "heldout_reward_start": curve[0],
        "heldout_reward_end": curve[-1],
        "heldout_reward_curve": curve,
        "policy": policy_dir,
    }
    if jax.process_index() == 0:
        (workdir / "policy").write_text(pathlib.Path(policy_dir).name + "\n")
        (workdir / "final_metrics.json").write_text(json.dumps(summary, indent=2))
        if not (workdir / "tokenizer").exists():
            tokenizer.save_pretrained(workdir / "tokenizer")
    logging.info("online DPO: held-out reward by round %s", [round(x, 4) for x in curve])
    return summary


def _log(path: pathlib.Path, row: dict, done: dict) -> None:
    done[row["round"]] = row
    if jax.process_index() == 0:
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
