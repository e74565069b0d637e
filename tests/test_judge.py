"""External judge: Batch API requests, verdict parsing in both formats, position-bias cancelling."""

import dataclasses
import json
import re

import numpy as np
import pytest

from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.evaluation import judge


@dataclasses.dataclass(frozen=True)
class Item:
    id: str
    prompt: object
    reply_a: str
    reply_b: str


def _items(n=6):
    return [
        {
            "id": f"q{i}",
            "prompt": f"Client message {i}: I can't sleep.",
            "reply_a": f"[policy] reply {i}",
            "reply_b": f"[sft] reply {i}",
        }
        for i in range(n)
    ]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _shown(request):
    """{"A": system shown as A, "B": ...} from a request's user message."""
    user = request["body"]["messages"][1]["content"]
    a = re.search(r"<reply_a>\n\[(\w+)\]", user).group(1)
    b = re.search(r"<reply_b>\n\[(\w+)\]", user).group(1)
    return {"A": a, "B": b}


def _fake_verdict(request, mode):
    shown = _shown(request)
    if mode == "prefers_policy":
        winner = "A" if shown["A"] == "policy" else "B"
    elif mode == "always_a":
        winner = "A"
    else:
        winner = "tie"
    score = {"policy": 5, "sft": 2}
    scores = {pos: {p: score[sys] for p in PRINCIPLES} for pos, sys in shown.items()}
    return json.dumps({"scores": scores, "winner": winner})


def _write_verdicts(path, requests, mode, fmt, fence=False):
    lines = []
    for r in requests:
        content = _fake_verdict(r, mode)
        if fence:
            content = f"```json\n{content}\n```"
        if fmt == "simple":
            lines.append({"custom_id": r["custom_id"], "content": content})
        else:  # OpenAI Batch output
            body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
            response = {"status_code": 200, "request_id": "req", "body": body}
            lines.append(
                {
                    "id": "batch_req_x",
                    "custom_id": r["custom_id"],
                    "response": response,
                    "error": None,
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_write_requests_batch_format(tmp_path):
    path = tmp_path / "sub" / "requests.jsonl"
    items = _items(3)
    n = judge.write_requests(path, items, model="gpt-4o", system_a="policy", system_b="sft")
    requests = _read_jsonl(path)
    assert n == len(requests) == 6
    assert [r["custom_id"] for r in requests[:2]] == ["q0::ab", "q0::ba"]
    for r in requests:
        assert r["method"] == "POST" and r["url"] == "/v1/chat/completions"
        body = r["body"]
        assert body["model"] == "gpt-4o" and body["temperature"] == 0
        assert body["response_format"] == {"type": "json_object"}
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][0]["content"] == judge.SYSTEM_PROMPT
        assert "I can't sleep." in body["messages"][1]["content"]
    assert _shown(requests[0]) == {"A": "policy", "B": "sft"}
    assert _shown(requests[1]) == {"A": "sft", "B": "policy"}
    assert all(p in judge.SYSTEM_PROMPT for p in PRINCIPLES)


def test_write_requests_dataclass_items_and_message_prompts(tmp_path):
    prompt = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello, I'm struggling."},
    ]
    items = [Item("x", prompt, "[policy] hi", "[sft] hello {not a field}")]
    assert judge.write_requests(tmp_path / "r.jsonl", items) == 2
    user = _read_jsonl(tmp_path / "r.jsonl")[0]["body"]["messages"][1]["content"]
    assert "Client: Hello, I'm struggling." in user and "Be kind." not in user
    assert "{not a field}" in user


@pytest.mark.parametrize(
    "items, match",
    [
        ([{"id": "a", "prompt": "p", "reply_a": "x"}], "missing field 'reply_b'"),
        ([{"id": "a::b", "prompt": "p", "reply_a": "x", "reply_b": "y"}], "'::'"),
        ([{"id": "a", "prompt": "p", "reply_a": "x", "reply_b": "y"}] * 2, "duplicate"),
        ([{"id": "a", "prompt": "p", "reply_a": " ", "reply_b": "y"}], "reply_a"),
    ],
)
def test_write_requests_bad_items(tmp_path, items, match):
    with pytest.raises(ValueError, match=match):
        judge.write_requests(tmp_path / "r.jsonl", items)


@pytest.mark.parametrize("fmt", ["simple", "batch"])
@pytest.mark.parametrize("fence", [False, True])
def test_round_trip_prefers_policy(tmp_path, fmt, fence):
    req = tmp_path / "requests.jsonl"
    judge.write_requests(req, _items(), system_a="policy", system_b="sft")
    out = tmp_path / "verdicts.jsonl"
    _write_verdicts(out, _read_jsonl(req), "prefers_policy", fmt, fence)
    result = judge.read_verdicts(out, system_a="policy", system_b="sft")
    assert result.ids == tuple(f"q{i}" for i in range(6))
    np.testing.assert_array_equal(result.outcomes, np.ones(6))
    assert result.win_rate == 1.0 and result.first_position_rate == 0.5
    assert result.scores["policy"].shape == (6, len(PRINCIPLES))
    assert result.principle_means() == {
        "policy": dict.fromkeys(PRINCIPLES, 5.0),
        "sft": dict.fromkeys(PRINCIPLES, 2.0),
    }
    assert result.incomplete == () and result.skipped == {} and result.api_errors == 0
    json.dumps(result.summary())


@pytest.mark.parametrize("fmt", ["simple", "batch"])
def test_position_biased_judge_cancels_out(tmp_path, fmt):
    req = tmp_path / "requests.jsonl"
    judge.write_requests(req, _items(), system_a="policy", system_b="sft")
    out = tmp_path / "verdicts.jsonl"
    _write_verdicts(out, _read_jsonl(req), "always_a", fmt)
    result = judge.read_verdicts(out, system_a="policy", system_b="sft")
    np.testing.assert_array_equal(result.outcomes, np.full(6, 0.5))
    assert result.first_position_rate == 1.0
    assert judge.read_verdicts(out, system_a="sft", system_b="policy").win_rate == 0.5


def _good(custom_id, winner="A"):
    scores = {pos: dict.fromkeys(PRINCIPLES, 3) for pos in "AB"}
    return json.dumps(
        {"custom_id": custom_id, "content": json.dumps({"scores": scores, "winner": winner})}
    )


def _bad_scores():
    scores = {"A": dict.fromkeys(PRINCIPLES, 3), "B": dict.fromkeys(PRINCIPLES, 3) | {"empathy": 9}}
    return json.dumps(
        {"custom_id": "q1::ab", "content": json.dumps({"scores": scores, "winner": "A"})}
    )


@pytest.mark.parametrize(
    "bad_line, field",
    [
        ("{not json", "<line>"),
        (json.dumps({"custom_id": "q1", "content": "{}"}), "custom_id"),
        (json.dumps({"custom_id": "q1::ab", "content": "I prefer A."}), "content"),
        (json.dumps({"custom_id": "q1::ab", "content": json.dumps({"winner": "A"})}), "scores"),
        (_bad_scores(), "scores.B.empathy"),
        (_good("q1::ab", winner="C"), "winner"),
        (
            json.dumps({"custom_id": "q1::ab", "response": {"status_code": 200, "body": {}}}),
            "response.body.choices[0].message.content",
        ),
        (_good("q0::ab"), "custom_id"),  # a second verdict for the same request
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path, bad_line, field):
    path = tmp_path / "verdicts.jsonl"
    path.write_text("\n".join([_good("q0::ab"), _good("q0::ba"), bad_line]) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: line 3, field {field!r}")):
        judge.read_verdicts(path, system_a="a", system_b="b")


def test_skip_mode_counts_and_reports_incomplete(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    lines = [
        _good("q0::ab"),
        _good("q0::ba", winner="B"),  # q0 complete: A won then (shown as B) won: outcome 1
        "{oops",
        _good("q1::ab", winner="nobody"),  # q1: both lines bad -> incomplete, not dropped
        _good("q1::ba", winner="maybe"),
        _good("q2::ab", winner="tie"),  # q2: only one order
        json.dumps({"custom_id": "q3::ab", "response": None, "error": {"code": "rate_limit"}}),
        _good("q3::ba"),
        "",
        _good("q4::ab", winner="A"),
        _good("q4::ba", winner="tie"),  # q4: 1 and 0.5 -> 0.75
    ]
    path.write_text("\n".join(lines) + "\n")
    result = judge.read_verdicts(
        path, system_a="a", system_b="b", on_error="skip", expected_ids=["q0", "q4", "q9"]
    )
    assert result.ids == ("q0", "q4")
    np.testing.assert_array_equal(result.outcomes, [1.0, 0.75])
    assert result.skipped == {"<line>: not JSON": 1, "winner: not A/B/tie": 2}
    assert result.api_errors == 1
    assert set(result.incomplete) == {"q1", "q2", "q3", "q9"}
    summary = result.summary()
    assert summary["incomplete"] == 4 and summary["n"] == 2


def test_batch_error_status_is_an_api_error(tmp_path):
    path = tmp_path / "out.jsonl"
    error_body = {"status_code": 500, "body": {"error": {"message": "server error"}}}
    path.write_text(
        json.dumps({"custom_id": "q0::ab", "response": error_body, "error": None}) + "\n"
    )
    result = judge.read_verdicts(path, system_a="a", system_b="b")
    assert result.api_errors == 1 and result.incomplete == ("q0",) and result.ids == ()
    assert np.isnan(result.win_rate)


def test_read_verdicts_argument_errors(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text("")
    with pytest.raises(ValueError, match="distinct"):
        judge.read_verdicts(path, system_a="a", system_b="a")
    with pytest.raises(ValueError, match="on_error"):
        judge.read_verdicts(path, system_a="a", system_b="b", on_error="ignore")
