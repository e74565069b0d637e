"""The data audit finds what it should on files written here, and writes its report."""

import json

import pandas as pd

from psycho_jax.data import audit
from psycho_jax.data.formats import PRINCIPLES


def _rows(prefix, n, over=None):
    rows = []
    for i in range(n):
        row = {
            "ID": i,
            "prefID": f"{prefix}{i}",
            "question": f"{prefix} question number {i}, I feel low.",
            "chosen": "That sounds heavy. What has been hardest this week? " * (1 + i % 3),
            "rejected": "Cheer up.",
            "chosen_model": "a",
            "rejected_model": "b",
        }
        row.update({f"chosen_{p}_rating": 5 for p in PRINCIPLES})
        row.update({f"rejected_{p}_rating": 2 for p in PRINCIPLES})
        rows.append(row)
    for (i, key), value in (over or {}).items():
        rows[i][key] = value
    return rows


def test_audit_report(tmp_path):
    train = _rows(
        "train",
        12,
        {
            (0, "rejected_safety_rating"): 5,
            (0, "chosen_safety_rating"): 3,  # rejected rated safer
            (1, "chosen"): "Write to me at someone@example.com or call 555-123-4567.",
            (2, "chosen"): "",  # a bad row: counted, not fatal
            (3, "question"): "test question number 0, I feel low.",  # also a test prompt
        },
    )
    test = _rows("test", 4)
    pd.DataFrame(train).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(test).to_parquet(tmp_path / "test.parquet")
    out = tmp_path / "report"
    report = audit.run(
        [f"train={tmp_path / 'train.jsonl'}", str(tmp_path / "test.parquet")],
        "sample",
        str(out),
        max_lens=[40, 4096],
    )
    tr = report["splits"]["train"]
    assert tr["rows"] == 11 and tr["load_skipped"]["skipped"] == {"chosen: empty string": 1}
    assert tr["rejected_rated_safer"] == {"count": 1, "ids": ["0-train0"]}
    assert (
        tr["rating_gap"]["safety"]["rejected_higher"] > 0
        and tr["rating_gap"]["empathy"]["mean"] == 3.0
    )
    assert tr["length_bias"]["chosen_longer"] == 1.0
    assert tr["pii"]["hits"] == {"email": 1, "phone": 1} and tr["pii"]["ids"]["email"] == [
        "1-train1"
    ]
    assert tr["tokens"]["prompt"]["n"] == 11
    assert tr["duplicate_ids"] == {"count": 0, "ids": []}
    assert report["duplicate_prompts"]["train & test"] == {"count": 1, "ids": ["3-train3"]}
    t40 = tr["truncation"]["40"]
    assert t40["longer_than_max_len"] == t40["skip_policy_skips"] > 0
    assert tr["truncation"]["4096"]["longer_than_max_len"] == 0
    assert report["splits"]["test"]["rows"] == 4
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "report.md",
            "report.json",
            "lengths_train.png",
            "lengths_test.png",
            "ratings_train.png",
            "ratings_test.png",
        ]
    )
    assert (out / "lengths_train.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        json.loads((out / "report.json").read_text())["duplicate_prompts"]["train & test"]["count"]
        == 1
    )
    md = (out / "report.md").read_text()
    assert "rejected reply rated safer than chosen: 1 pair(s)" in md and "| safety |" in md


def test_audit_conversations(tmp_path):
    report, arrays = audit.audit(
        {"sft": audit.sources.load_source("sample:sft_test")},
        audit.templating.ChatTokenizer(audit.tk.load_tokenizer("sample")),
        [256],
    )
    sft = report["splits"]["sft"]
    assert sft["kind"] == "conversations" and sum(sft["assistant_turns"].values()) == 150
    assert set(arrays["sft"]) == {"conversation", "assistant"}
    assert sft["truncation"]["256"]["longer_than_max_len"] > 0
    kept = sft["truncation"]["256"]["assistant_tokens_kept"]
    assert 0 < kept["keep_last_turns"] < kept["windows"] <= 1.0  # one reply may pass a window


def test_audit_transcripts_cli(tmp_path):
    """Therapist-first transcripts with odd speaker names and strategy labels, through the CLI;
    a greeting shared by two splits is not a shared conversation."""
    import subprocess
    import sys

    def session(i, opener="Hello."):
        msgs = [{"speaker": "Interviewer", "content": opener, "label": "Greeting"}]
        for t in range(40):
            msgs.append({"speaker": "Caller", "content": f"Session {i}: worry number {t}. " * 3})
            msgs.append({"speaker": "Interviewer", "content": "Tell me more.", "label": "Question"})
        return {"id": f"s{i}", "messages": msgs}

    for split, ids in (("train", range(3)), ("test", range(3, 5))):
        (tmp_path / f"{split}.jsonl").write_text(
            "".join(json.dumps(session(i)) + "\n" for i in ids)
        )
    out = tmp_path / "audit"
    cmd = [
        sys.executable, "-m", "psycho_jax.data.audit",
        f"--data=train={tmp_path / 'train.jsonl'}", f"--data=test={tmp_path / 'test.jsonl'}",
        f"--out={out}", "--role_map=Interviewer=assistant,Caller=user",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((out / "report.json").read_text())
    assert report["max_lens"] == [320]  # the configs' data.max_len
    train = report["splits"]["train"]
    assert train["first_speaker"] == {"assistant": 3}
    assert train["turn_labels"] == {"Question": 120, "Greeting": 3}
    assert report["duplicate_prompts"]["train & test"]["count"] == 0
    kept = train["truncation"]["320"]["assistant_tokens_kept"]
    assert kept["keep_last_turns"] < 1.0 and kept["windows"] == 1.0
    md = (out / "report.md").read_text()
    assert "(e.g. {})" not in md and "assistant tokens kept as targets" in md
    for stats in train["tokens"].values():
        assert all(float(v) == round(float(v), 1) for v in stats.values())


def test_audit_reports_repeated_ids_and_pii_by_kind(tmp_path):
    rows = [
        {
            "id": "a",
            "prompt": "Call me on +44 20 7946 0958.",
            "chosen": "Hugs,\nDana",
            "rejected": "No.",
        },
        {
            "id": "a",
            "prompt": "Mail jane at gmail dot com",
            "chosen": "See bit.ly/x1",
            "rejected": "Ok.",
        },
        {"id": "b", "prompt": "Call 988 or 1-800-662-4357.", "chosen": "Sure.", "rejected": "No."},
    ]
    path = tmp_path / "dups.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = audit.run([f"train={path}"], "sample", str(tmp_path / "out"), max_lens=[64])
    tr = report["splits"]["train"]
    assert tr["duplicate_ids"] == {"count": 1, "ids": ["a"]}
    assert tr["pii"]["hits"] == {"email": 1, "url": 1, "phone": 1, "name": 1}
    assert (
        "examples repeating an earlier id: 1 ['a']" in (tmp_path / "out" / "report.md").read_text()
    )
    assert tr["load_skipped"]["events"] == {
        f"duplicate example ids in file:{path} (kept; e.g. a)": 1
    }
