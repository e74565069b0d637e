"""Online (iterative) DPO: best-vs-worst pairs, config checks, and a tiny run stopped and resumed."""

import json
import math
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from psycho_jax import config as config_lib
from psycho_jax.core.model import Llama
from psycho_jax.data import formats
from psycho_jax.data.formats import Message
from psycho_jax.data.sources import load_source
from psycho_jax.evaluation.scoring import Prompt
from psycho_jax.main import run_training
from psycho_jax.train import checkpoint, online
from psycho_jax.train import loop as train
from tests.helpers import config_module, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = dict(data__max_len=192, model__n_layers=1)
STEPS = 2  # DPO steps per round


def _prompt(i: int) -> Prompt:
    return Prompt(id=f"p{i}", messages=(Message("user", f"question {i}"),))


def test_best_vs_worst_picks_the_extremes_and_counts_skips():
    prompts = [_prompt(i) for i in range(2)]
    replies = [["an okay reply", "the best reply", "the worst reply"], ["worst", "  padded best  "]]
    rows, skipped = online.best_vs_worst(
        prompts, replies, np.array([[0.5, 2, -1], [-3, 3, 0]]), 0.1
    )
    assert skipped == {"gap within min_gap": 0, "empty or identical replies": 0}
    assert rows == [
        {
            "id": "p0",
            "prompt": [{"role": "user", "content": "question 0"}],
            "chosen": "the best reply",
            "rejected": "the worst reply",
            "chosen_reward": 2.0,
            "rejected_reward": -1.0,
        },
        {
            "id": "p1",
            "prompt": [{"role": "user", "content": "question 1"}],
            "chosen": "padded best",
            "rejected": "worst",
            "chosen_reward": 3.0,
            "rejected_reward": -3.0,
        },
    ]


def test_best_vs_worst_skips_close_empty_and_identical_replies():
    replies = [
        ["close one", "close two"],  # gap 0.05 <= min_gap
        ["   ", "a real reply"],  # the worst is empty once stripped
        ["a real reply", ""],  # the worst is empty
        ["same words", " same words "],  # identical once stripped
        ["kept", "dropped"],
    ]
    rewards = np.array([[1.0, 1.05], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [1.0, -1.0]])
    prompts = [_prompt(i) for i in range(len(replies))]
    rows, skipped = online.best_vs_worst(prompts, replies, rewards, min_gap=0.1)
    assert skipped == {"gap within min_gap": 1, "empty or identical replies": 3}
    assert [(r["id"], r["chosen"], r["rejected"]) for r in rows] == [("p4", "kept", "dropped")]
    # min_gap 0 keeps any strict preference; a gap exactly min_gap is skipped.
    rows, skipped = online.best_vs_worst(prompts[:1], replies[:1], rewards[:1], min_gap=0.0)
    assert [r["chosen"] for r in rows] == ["close two"] and sum(skipped.values()) == 0
    rows, skipped = online.best_vs_worst(prompts[4:], replies[4:], rewards[4:], min_gap=2.0)
    assert rows == [] and skipped["gap within min_gap"] == 1
    assert online.best_vs_worst([], [], np.zeros((0, 2)), 0.0)[0] == []


def test_best_vs_worst_rows_are_preference_pairs(tmp_path):
    rows, _ = online.best_vs_worst(
        [_prompt(0), _prompt(1)], [["a", "b"], ["c", "d"]], np.array([[0.0, 1.0], [2.0, 1.0]]), 0.0
    )
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = load_source(str(path))
    assert [(p.chosen, p.rejected) for p in pairs] == [("b", "a"), ("c", "d")]
    assert pairs[0].prompt == (Message("user", "question 0"),)


def _online_config(**overrides):
    keys = dict(init_from="/sft", online__reward_model="/rm", **SMALL)
    return load_config("online_dpo", **{**keys, **overrides})


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(online__samples_per_prompt=1), r"online.samples_per_prompt=1.*>= 2"),
        (dict(online__rounds=0), r"online.rounds=0.*positive integer"),
        (dict(online__steps_per_round=-1), r"online.steps_per_round=-1.*positive integer"),
        (dict(online__reward_model=""), r"online.reward_model=''.*reward-model stage"),
        (dict(online__reference="best"), r"online.reference='best'.*previous, initial"),
        (dict(init_from=""), r"config.init_from=''.*online DPO starts from"),
        (dict(dpo__loss_type="kto"), r"dpo.loss_type='kto'"),
    ],
)
def test_bad_online_config_names_the_key(overrides, message):
    c = _online_config(**overrides)
    with pytest.raises(ValueError, match=message):
        config_lib.validate(c, num_devices=8)


def test_bad_online_config_fails_before_any_work(tmp_path):
    c = _online_config(online__reward_model="")
    with pytest.raises(ValueError, match="online.reward_model"):
        run_training(c, tmp_path / "w")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("variant", ["tiny", "llama3_8b"])
def test_shipped_online_configs_validate(variant):
    c = config_module("online_dpo").get_config(variant)
    assert c.task == "online_dpo"
    with pytest.raises(ValueError, match="online.reward_model"):
        config_lib.validate(c, num_devices=8)
    c.init_from, c.online.reward_model = "/policy", "/reward"
    config_lib.validate(c, num_devices=8)


def _rounds(workdir):
    return [
        json.loads(line) for line in (workdir / "online_metrics.jsonl").read_text().splitlines()
    ]


def _steps(stage):
    return sorted(int(p.name) for p in (stage / "checkpoints").iterdir() if p.name.isdigit())


def _params(path):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(checkpoint.load_model(path)))]


@pytest.mark.slow
def test_online_dpo_end_to_end_stopped_and_resumed(tmp_path, monkeypatch):
    """SFT and reward stages of 2 steps, then 2 rounds of online DPO; a stop in round 2's DPO stage
    and a rerun that finishes round 2 without redoing round 1."""
    sft, rm, w = tmp_path / "sft", tmp_path / "rm", tmp_path / "online"
    train.train_and_evaluate(load_config("sft", num_steps=2, **SMALL), sft)
    rm_config = load_config("reward", num_steps=2, reward__stats_batches=1, **SMALL)
    train.train_and_evaluate(rm_config, rm)
    c = load_config(
        "online_dpo",
        init_from=str(sft),
        online__reward_model=str(rm),
        online__rounds=2,
        online__prompts_per_round=8,
        online__samples_per_prompt=2,
        online__steps_per_round=STEPS,
        online__eval_num_prompts=8,
        online__sampling__max_new_tokens=16,
        **SMALL,
    )

    calls = {"n": 0}

    def stop_in_round_2(self, every=1, step=0):
        calls["n"] += 1
        return calls["n"] == STEPS + 1  # the first step of round 2's DPO stage

    with monkeypatch.context() as m:
        m.setattr(checkpoint.StopRequest, "requested", stop_in_round_2)
        stopped = run_training(c, w)
    assert stopped == {"preempted": 1.0, "round": 2}
    assert [r["round"] for r in _rounds(w)] == [0, 1]
    assert _steps(w / "round_1") == [STEPS] and _steps(w / "round_2") == [1]
    assert not (w / "policy").exists()
    pairs = {r: w / f"round_{r}" / "pairs.jsonl" for r in (1, 2)}
    mtimes = {r: p.stat().st_mtime_ns for r, p in pairs.items()}
    round_1_ckpt = (w / "round_1" / "checkpoints" / str(STEPS)).stat().st_mtime_ns

    summary = run_training(c, w)
    rows = _rounds(w)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["heldout_reward"]) for r in rows)
    assert summary["heldout_reward_curve"] == [r["heldout_reward"] for r in rows]
    assert summary["policy"] == str(w / "round_2")
    # Round 1 was not run again, round 2 trained on the pairs it sampled before the stop.
    assert {r: p.stat().st_mtime_ns for r, p in pairs.items()} == mtimes
    assert (w / "round_1" / "checkpoints" / str(STEPS)).stat().st_mtime_ns == round_1_ckpt
    assert _steps(w / "round_2")[-1] == STEPS

    for r in (1, 2):
        sampled = rows[r]
        assert (
            sampled["pairs"] + sum(v for k, v in sampled.items() if k.startswith("skipped/")) == 8
        )
        raw = [json.loads(line) for line in pairs[r].read_text().splitlines()]
        examples = load_source(str(pairs[r]))
        assert len(examples) == len(raw) == sampled["pairs"] > 0
        assert all(isinstance(p, formats.PreferencePair) for p in examples)
        assert all(p.chosen != p.rejected and p.prompt[-1].role == "user" for p in examples)
        assert all(x["chosen_reward"] > x["rejected_reward"] for x in raw)

    # `workdir/policy` names round 2, and loading the workdir loads that policy.
    assert (w / "policy").read_text().strip() == "round_2"  # relative: the workdir can move
    assert isinstance(checkpoint.load_model(w), Llama)
    final = _params(w)
    for x, y in zip(final, _params(w / "round_2"), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(final, _params(sft), strict=True))

    # The stopped and resumed run is the uninterrupted one: same sampled pairs (the sampling keys
    # depend only on the seed and the round), same final policy, bitwise.
    full = tmp_path / "online_full"
    run_training(c, full)
    for r in (1, 2):
        assert (full / f"round_{r}" / "pairs.jsonl").read_text() == pairs[r].read_text()
    for x, y in zip(final, _params(full), strict=True):
        np.testing.assert_array_equal(x, y)
    assert json.loads((w / "final_metrics.json").read_text()) == summary

    # A finished run started again only reports.
    log = (w / "online_metrics.jsonl").read_text()
    assert run_training(c, w) == summary
    assert (w / "online_metrics.jsonl").read_text() == log
