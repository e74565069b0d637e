"""`python -m psycho_jax.evaluate` end to end on tiny random models, and its input checks."""

import json

import numpy as np
import pytest
from flax import nnx

from psycho_jax import evaluate
from psycho_jax.core import hf
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel
from psycho_jax.data.formats import PRINCIPLES, DataError
from psycho_jax.data.tokenizer import sample_tokenizer
from psycho_jax.evaluation import judge, scoring
from tests.helpers import config_module


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random policy and a random reward model with a principle head, as HF directories."""
    tok = sample_tokenizer()
    cfg = LlamaConfig.tiny(vocab_size=len(tok))
    root = tmp_path_factory.mktemp("eval_models")
    hf.save_llama(Llama(cfg, rngs=nnx.Rngs(0)), root / "policy", tokenizer=tok)
    rm = RewardModel(cfg, num_labels=1 + len(PRINCIPLES), rngs=nnx.Rngs(1))
    hf.save_llama(rm, root / "reward", tokenizer=tok)
    return root


def _config(models, tmp_path, **over):
    c = evaluate_config()
    replies = tmp_path / "other.jsonl"
    prompts = scoring.load_prompts("sample:eval_prompts", 6)
    replies.write_text(
        "".join(
            json.dumps({"id": p.id, "reply": f"Reply {i}: that sounds hard."}) + "\n"
            for i, p in enumerate(prompts)
        )  # fmt: skip
    )
    c.systems = f"policy={models / 'policy'}, other={replies}, ref=reference"
    c.baseline = "ref"
    c.reward_model = str(models / "reward")
    c.num_prompts, c.num_crisis = 6, 4
    c.sampling.max_new_tokens = 6
    c.batch_size = 8
    c.max_len = 256
    c.n_boot = 200
    for k, v in over.items():
        c[k] = v
    return c


def evaluate_config():

    return config_module("evaluate").get_config()


def test_evaluation_end_to_end(models, tmp_path):
    out = tmp_path / "eval"
    result = evaluate.run_evaluation(_config(models, tmp_path), out)
    # evaluation.json is a file format: the sampling settings as they have always been written
    written = json.loads((out / "evaluation.json").read_text())["sampling"]
    assert list(written) == ["max_new_tokens", "temperature", "top_k", "top_p"]
    comps = {c["system_a"]: c for c in result["comparisons"]}
    assert set(comps) == {"policy", "other"} and all(c["system_b"] == "ref" for c in comps.values())
    for c in comps.values():
        assert c["n"] == 6 and c["wins"] + c["ties"] + c["losses"] == 6
        assert 0 <= c["win_rate"] <= 1 and c["ci"][0] <= c["win_rate"] <= c["ci"][1]
        assert 0 <= c["bt_win_rate"] <= 1
    # The reward model's principle head gives per-principle scores on the 1-5 scale's axis.
    assert set(result["systems"]["policy"]["principles"]) == set(PRINCIPLES)
    # The safety slice: the policy, and the crisis file's good and bad replies as a calibration; the
    # replies file has no crisis ids, so it is left out of the slice rather than failing.
    safety = result["safety"]
    assert "policy" in safety and "other" not in safety
    assert safety["crisis good_reply (reference)"]["pass_rate"] == 1.0
    assert safety["crisis bad_reply (reference)"]["pass_rate"] == 0.0
    rows = [json.loads(x) for x in (out / "replies.jsonl").read_text().splitlines()]
    assert {(r["system"], r["set"]) for r in rows} >= {("policy", "main"), ("policy", "crisis")}
    assert len([r for r in rows if r["system"] == "other"]) == 6
    for name in ("report.md", "report.html", "evaluation.json", "reward_distributions.png"):
        assert (out / name).is_file(), name
    assert "policy vs ref" in (out / "report.md").read_text()
    requests = (out / "judge_requests_policy_vs_ref.jsonl").read_text().splitlines()
    assert len(requests) == 12  # both orders of 6 pairs


def test_judge_verdicts_come_back_into_the_report(models, tmp_path):
    """Write requests, answer them with a judge that always prefers `other`, read them back."""
    c = _config(models, tmp_path, crisis="")
    first = tmp_path / "first"
    evaluate.run_evaluation(c, first)
    verdicts = tmp_path / "verdicts_other.jsonl"
    with verdicts.open("w") as f:
        for line in (first / "judge_requests_other_vs_ref.jsonl").read_text().splitlines():
            req = json.loads(line)
            a_is_other = req["custom_id"].endswith("::ab")  # A = system_a = other in the ab order
            scores = {p: 5 for p in PRINCIPLES}, {p: 2 for p in PRINCIPLES}
            content = {
                "scores": {
                    "A": scores[0 if a_is_other else 1],
                    "B": scores[1 if a_is_other else 0],
                },
                "winner": "A" if a_is_other else "B",
            }
            f.write(json.dumps({"custom_id": req["custom_id"], "content": json.dumps(content)}))
            f.write("\n")
    with c.unlocked():
        c.judge.verdicts = str(tmp_path / "verdicts_{system}.jsonl")
    result = evaluate.run_evaluation(c, tmp_path / "second")
    (summary,) = result["judge"]
    assert summary["system_a"] == "other" and summary["win_rate"] == 1.0 and summary["n"] == 6
    assert summary["principles"]["other"]["empathy"] == 5.0
    assert "Judge" in (tmp_path / "second" / "report.md").read_text()
    assert judge  # the module the request format comes from


def test_systems_and_replies_files_are_checked(tmp_path):
    systems = evaluate.parse_systems("a=/ckpt/a, b=r.jsonl, c=reference")
    assert [(s.name, s.kind) for s in systems] == [
        ("a", "checkpoint"),
        ("b", "file"),
        ("c", "reference"),
    ]
    with pytest.raises(ValueError, match="name=source"):
        evaluate.parse_systems("a=/x, oops")
    with pytest.raises(ValueError, match="repeat"):
        evaluate.parse_systems("a=/x, a=/y")
    prompts = scoring.load_prompts("sample:eval_prompts", 3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": prompts[0].id, "text": "hi"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl: row 0, field 'reply'"):
        evaluate.read_replies(str(bad), prompts)
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": prompts[0].id, "reply": "hi"}) + "\n")
    with pytest.raises(DataError, match="no reply for 2 prompts"):
        evaluate.read_replies(str(partial), prompts)
    assert evaluate.read_replies(str(partial), scoring.load_prompts("sample:crisis", 2)) is None


def test_prompt_rows_are_checked(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "x", "prompt": "  "}) + "\n")
    with pytest.raises(DataError, match=r"p.jsonl: row 0, field 'prompt'"):
        scoring.load_prompts(str(path))
    path.write_text(
        json.dumps({"id": "x", "messages": [{"role": "user", "content": "a"},
                                            {"role": "assistant", "content": "b"}]}) + "\n"
        + json.dumps({"id": "x", "question": "again"}) + "\n"
    )  # fmt: skip
    with pytest.raises(DataError, match="repeats row 0"):
        scoring.load_prompts(str(path))


def test_scorer_matches_the_reward_model_on_training_rendering(models):
    """RewardScorer's ids are the training pair rendering; its scores equal a direct forward."""
    from psycho_jax.data.formats import Message, PreferencePair, SkipCounter
    from psycho_jax.data.templating import ChatTokenizer, Truncation, tokenize_pair
    from psycho_jax.train import checkpoint

    tok = sample_tokenizer()
    rm = checkpoint.load_model(models / "reward")
    scorer = scoring.RewardScorer(rm, tok, batch_size=4)
    prompt = (Message("user", "I feel alone since the move."),)
    pair = PreferencePair(prompt, "That sounds lonely.", "Get over it.", "p0")
    t = tokenize_pair(ChatTokenizer(tok), pair, Truncation(256, "error"), SkipCounter())
    ids, cut = scorer.encode(prompt, "That sounds lonely.")
    assert not cut and ids == [*t.prompt, *t.chosen]
    scores = scorer.score([prompt, prompt], ["That sounds lonely.", "Get over it."])
    direct = rm(np.asarray([ids]))[:, 0]
    np.testing.assert_allclose(scores.reward[0], direct[0], atol=1e-5)
    assert scores.principles.shape == (2, len(PRINCIPLES))


# ---------------------------------------------------------------------------- benchmark formats


def _mt_bench(tmp_path, n=6):
    """An MT-bench-format counseling benchmark: question file (two-turn questions, some in a
    crisis category) and a FastChat answer file of another model."""
    questions = tmp_path / "question.jsonl"
    answers = tmp_path / "answer.jsonl"
    qs = [
        {
            "question_id": 100 + i,
            "category": "crisis" if i % 3 == 0 else "anxiety",
            "turns": [f"I can't stop worrying about my exams ({i}).", "What should I do tonight?"],
        }
        for i in range(n)
    ]
    questions.write_text("".join(json.dumps(q) + "\n" for q in qs))
    rows = [
        {
            "question_id": q["question_id"],
            "model_id": "gpt-x",
            "choices": [
                {"index": 0, "turns": ["That sounds stressful.", "Please call 988. " * 20]}
            ],
        }
        for q in qs
    ]
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return questions, answers, rows


def test_replies_files_problems_name_file_id_and_line(tmp_path):
    questions, answers, rows = _mt_bench(tmp_path)
    prompts = scoring.load_prompts(str(questions))
    assert prompts[0].id == "100" and prompts[0].num_turns == 2 and prompts[0].crisis
    assert not prompts[1].crisis
    replies = evaluate.read_replies(str(answers), prompts)
    assert replies[0] == ("That sounds stressful.", "Please call 988. " * 20)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(answers.read_text() + "\n" + json.dumps(rows[2]) + "\n")
    with pytest.raises(DataError, match=r"dup.jsonl: row 6, field 'id': id '102' \(line 8\) "
                       r"repeats line 3"):  # fmt: skip
        evaluate.read_replies(str(dup), prompts)
    empty = tmp_path / "empty.jsonl"
    bad = [dict(r) for r in rows]
    bad[4] = {"id": 104, "reply": "  "}
    empty.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DataError, match=r"empty.jsonl: row 4, field 'reply': id '104' \(line 5\)"):
        evaluate.read_replies(str(empty), prompts)
    _, cov, problems = evaluate.check_replies(str(empty), prompts)
    assert (cov.matched, cov.empty, len(problems)) == (6, 1, 1)
    other = tmp_path / "other_ids.jsonl"
    other.write_text(json.dumps({"id": "zzz", "reply": "hi"}) + "\n")
    assert evaluate.read_replies(str(other), prompts) is None


def test_mismatched_replies_file_stops_before_generation(models, tmp_path):
    other = tmp_path / "other_ids.jsonl"
    other.write_text(json.dumps({"id": "zzz", "reply": "hi"}) + "\n")
    c = _config(models, tmp_path)
    c.systems = f"policy={models / 'nonexistent'}, other={other}, ref=reference"
    c.tokenizer = str(models / "policy")
    # The checkpoint does not exist: the replies file is checked (and fails) first.
    with pytest.raises(ValueError, match=r"system 'other' \(main prompts\).*other_ids.jsonl.*"
                       r"none of its ids match the 6 main prompts"):  # fmt: skip
        evaluate.run_evaluation(c, tmp_path / "out")


def test_mt_bench_end_to_end_with_coverage_and_crisis_labels(models, tmp_path):
    questions, answers, rows = _mt_bench(tmp_path)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(answers.read_text() + json.dumps(rows[2]) + "\n")
    c = _config(models, tmp_path, prompts=str(questions), num_prompts=0, on_bad_replies="skip")
    c.systems = f"policy={models / 'policy'}, gptx={answers}, dup={dup}"
    c.baseline = "gptx"
    c.max_len = 100  # gptx's long second replies are cut for scoring
    out = tmp_path / "eval"
    result = evaluate.run_evaluation(c, out)
    cov = result["coverage"]
    assert cov["gptx"]["main"]["matched"] == 6 and cov["gptx"]["main"]["missing"] == 0
    assert cov["dup"]["main"]["duplicated"] == 1 and "repeats" in cov["dup"]["main"]["skipped"]
    assert cov["policy"]["main"]["matched"] == 6
    assert result["crisis_slice"] == f"the 2 crisis-labelled prompts of {questions}"
    assert set(result["safety"]) == {"policy", "gptx"}  # the replies file is in the safety table
    assert result["safety"]["gptx"]["n"] == 2
    rows_out = [json.loads(x) for x in (out / "replies.jsonl").read_text().splitlines()]
    policy = [r for r in rows_out if r["system"] == "policy" and r["set"] == "main"]
    assert len(policy) == 6 and all(len(r["turns"]) == 2 for r in policy)  # turn by turn
    cut = sum(r["cut"] for r in rows_out if r["system"] == "gptx" and r["set"] == "main")
    assert cut == cov["gptx"]["main"]["cut"] == result["systems"]["gptx"]["truncated_for_scoring"]
    assert cut == 6
    assert not any(r["system"] == "dup" for r in rows_out)
    report_md = (out / "report.md").read_text()
    assert "## Coverage" in report_md and "dup" in report_md and "Crisis slice:" in report_md
    assert f"cut to max_len={c.max_len}" in report_md
    request = json.loads((out / "judge_requests_policy_vs_gptx.jsonl").read_text().splitlines()[0])
    judged = request["body"]["messages"][1]["content"]
    assert "What should I do tonight?" in judged and "[reply to user turn 2]" in judged


def test_principle_scores_only_from_a_head_that_trained(tmp_path):
    stage = tmp_path / "rm"
    stage.mkdir()
    (stage / "final_metrics.json").write_text('{"loss": 0.5, "principle_accuracy/empathy": NaN}')
    assert not evaluate.principle_head_trained(str(stage))
    (stage / "final_metrics.json").write_text('{"loss": 0.5}')
    assert not evaluate.principle_head_trained(str(stage))
    (stage / "final_metrics.json").write_text('{"principle_accuracy/empathy": 0.8}')
    assert evaluate.principle_head_trained(str(stage))
    assert evaluate.principle_head_trained(str(tmp_path / "hf_dir"))  # no metrics: HF directory


def test_crisis_slice_from_the_main_prompts_takes_their_replies(tmp_path):
    """The stages before any model: a crisis slice drawn from the main prompts is not answered
    again; each system's crisis replies and coverage come from its main ones."""
    from psycho_jax.evaluation import systems as stages

    questions, answers, _ = _mt_bench(tmp_path)
    c = evaluate_config()
    c.prompts = str(questions)
    sets = stages.prompt_sets(c)
    assert sets.crisis_in_main and [p.id for p in sets.crisis] == ["100", "103"]
    assert list(sets.answered()) == ["main"] and list(sets.all()) == ["main", "crisis"]
    gptx = stages.parse_systems(f"gptx={answers}")[0]
    replies = {
        "gptx": stages.file_replies(gptx, sets.answered(), "error"),
        "ref": stages.reference_replies(sets.answered()),  # MT-bench has no references
    }
    stages.crisis_from_main(replies, sets)
    main = replies["gptx"].replies["main"]
    assert replies["gptx"].replies["crisis"] == [main[0], main[3]]
    assert replies["gptx"].coverage["crisis"].as_dict()["matched"] == 2
    assert replies["ref"].replies["crisis"] is None
    assert replies["ref"].coverage["crisis"].skipped == replies["ref"].coverage["main"].skipped
    c.prompts = "sample:eval_prompts"  # the shipped prompts: the shipped crisis file, answered
    sets = stages.prompt_sets(c)
    assert not sets.crisis_in_main and list(sets.answered()) == ["main", "crisis"]
