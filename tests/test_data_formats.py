"""Row formats and every bad-input case: errors name file, row and field; skips are counted."""

import copy

import pytest

from psycho_jax.data import formats
from psycho_jax.data.formats import PRINCIPLES, DataError, SkipCounter

F = "data.jsonl"


def _pc_row(**kw):
    row = {
        "ID": 1,
        "prefID": "a",
        "question": "I can't sleep.",
        "chosen": "That sounds exhausting.",
        "rejected": "Just sleep.",
        "chosen_model": "m1",
        "rejected_model": "m2",
    }
    for p in PRINCIPLES:
        row[f"chosen_{p}_rating"] = 5
        row[f"rejected_{p}_rating"] = 2
    row.update(kw)
    return row


CONV = {
    "messages": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "I'm sad."},
        {"role": "assistant", "content": "I'm here."},
    ]
}


def test_psychocounsel_row_read_as_published():
    pair = formats.parse_psychocounsel(_pc_row(chosen_safety_rating=4), F, 0)
    assert pair.prompt == (formats.Message("user", "I can't sleep."),)
    assert pair.chosen_ratings == (5, 5, 5, 4, 5, 5, 5) and pair.rejected_ratings == (2,) * 7
    assert pair.id == "1-a" and pair.meta == {
        "ID": 1,
        "prefID": "a",
        "chosen_model": "m1",
        "rejected_model": "m2",
    }
    assert formats.detect_format(_pc_row().keys()) == "psychocounsel"


def test_generic_formats():
    conv = formats.parse_conversation(CONV, F, 3)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert (conv.file, conv.row, conv.id) == (F, 3, f"{F}:3")
    trl = {
        "prompt": [{"role": "user", "content": "Hi."}],
        "chosen": [{"role": "assistant", "content": "A."}],
        "rejected": [{"role": "assistant", "content": "B."}],
        "margin": 0.5,
        "id": "x",
    }
    pair = formats.parse_preference(trl, F, 0)
    assert (pair.chosen, pair.rejected, pair.margin, pair.id) == ("A.", "B.", 0.5, "x")
    assert (
        formats.detect_format(trl) == "preference" and formats.detect_format(CONV) == "conversation"
    )


def _bad_conv(**changes):
    row = copy.deepcopy(CONV)
    for k, v in changes.items():
        i, key = k.split("_")
        row["messages"][int(i)][key] = v
    return row


BAD_ROWS = [
    # (parser, row, expected message)
    ("psychocounsel", _pc_row(chosen=""), "row 4, field 'chosen': empty string"),
    (
        "psychocounsel",
        _pc_row(question=None),
        "row 4, field 'question': expected a string, got NoneType",
    ),
    ("psychocounsel", _pc_row(rejected=3), "row 4, field 'rejected': expected a string, got int"),
    (
        "psychocounsel",
        _pc_row(rejected=" That sounds exhausting. "),
        "row 4, field 'rejected': chosen and rejected are identical",
    ),
    (
        "psychocounsel",
        _pc_row(chosen_safety_rating=6),
        "row 4, field 'chosen_safety_rating': rating 6 out of range 1..5",
    ),
    (
        "psychocounsel",
        _pc_row(rejected_empathy_rating=0),
        "row 4, field 'rejected_empathy_rating': rating 0 out of range 1..5",
    ),
    (
        "psychocounsel",
        _pc_row(chosen_clarity_rating=2.5),
        "field 'chosen_clarity_rating': expected an integer rating, got 2.5",
    ),
    (
        "psychocounsel",
        _pc_row(chosen_clarity_rating="four"),  # "4" is a number (a CSV column read as text)
        "field 'chosen_clarity_rating': expected an integer rating, got 'four'",
    ),
    (
        "psychocounsel",
        _pc_row(chosen_clarity_rating=float("nan")),
        "field 'chosen_clarity_rating': missing rating (NaN)",
    ),
    (
        "psychocounsel",
        {k: v for k, v in _pc_row().items() if k != "rejected"},
        "row 4, field 'rejected': missing field",
    ),
    (
        "conversation",
        _bad_conv(**{"1_role": "narrator"}),
        "row 4, field 'messages[1].role': unknown speaker 'narrator'",
    ),
    (
        "conversation",
        _bad_conv(**{"2_role": "user"}),
        "field 'messages[2].role': two 'user' turns in a row: turns must alternate",
    ),
    (
        "conversation",
        _bad_conv(**{"0_role": "user"}),
        "field 'messages[1].role': two 'user' turns in a row",
    ),
    ("conversation", _bad_conv(**{"3_content": "  "}), "field 'messages[3].content': empty string"),
    (
        "conversation",
        _bad_conv(**{"3_content": ["x"]}),
        "field 'messages[3].content': expected a string, got list",
    ),
    (
        "conversation",
        {"messages": CONV["messages"][:2]},
        "field 'messages': no assistant turn: nothing to train on",
    ),
    (
        "conversation",
        _bad_conv(**{"4_role": "system"}),
        "field 'messages[4].role': a system message must come first",
    ),
    ("conversation", {"messages": []}, "field 'messages': expected a non-empty list of messages"),
    ("conversation", {"messages": [{"role": "system", "content": "x"}]}, "only a system message"),
    ("conversation", {"messages": [{"content": "x"}]}, "field 'messages[0].role': missing field"),
    (
        "preference",
        {
            "prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "chosen": "c",
            "rejected": "d",
        },
        "field 'prompt': the last turn must be 'user'",
    ),
    (
        "preference",
        {"prompt": "p", "chosen": [{"role": "user", "content": "c"}], "rejected": "d"},
        "field 'chosen[0].role': expected 'assistant', got 'user'",
    ),
    (
        "preference",
        {"prompt": "p", "chosen": "c", "rejected": "d", "margin": "big"},
        "field 'margin': expected a number",
    ),
]


@pytest.mark.parametrize("fmt,row,message", BAD_ROWS)
def test_bad_rows_name_file_row_field(fmt, row, message):
    with pytest.raises(DataError, match=None) as e:
        formats.PARSERS[fmt](row, F, 4)
    assert str(e.value).startswith(f"{F}: row 4")
    assert message in str(e.value)


def test_skip_mode_counts_and_reports():
    rows = [
        _pc_row(),
        _pc_row(chosen=""),
        _pc_row(chosen_safety_rating=9),
        _pc_row(chosen=""),
        _pc_row(ID=2),
    ]
    skips = SkipCounter()
    out = formats.parse_rows(rows, "psychocounsel", F, on_error="skip", skips=skips)
    assert [p.id for p in out] == ["1-a", "2-a"]
    assert skips.total_skipped == 3
    assert skips.skipped["chosen: empty string"] == 2
    summary = skips.summary("train")
    assert (
        "train: skipped 3 row(s)" in summary
        and f"{F}: row 1" in summary
        and f"{F}: row 2" in summary
    )
    with pytest.raises(DataError, match="row 1, field 'chosen'"):
        formats.parse_rows(rows, "psychocounsel", F)


def test_missing_columns_and_unknown_format():
    cols = [c for c in _pc_row() if c != "chosen_autonomy_rating"]
    with pytest.raises(
        DataError,
        match=r"data.jsonl: field 'chosen_autonomy_rating': missing column\(s\) \['chosen_autonomy_rating'\]",
    ):
        formats.check_columns(cols, "psychocounsel", F)
    with pytest.raises(DataError, match=r"missing column\(s\) \['rejected'\]"):
        formats.check_columns(["question", "chosen"], "psychocounsel", F)
    with pytest.raises(DataError, match="unknown format for columns"):
        formats.detect_format(["text", "label"], F)


# ---------------------------------------------------------------------------- real transcripts


def _esconv_like():
    """An ESConv-shaped session: the supporter opens, speakers under `speaker`, text under
    `content`, a strategy `label` on supporter turns, the seeker speaks twice in a row and last."""
    return {
        "messages": [
            {"speaker": "supporter", "content": "Hi, how are you today?", "label": "Question"},
            {"speaker": "seeker", "content": "Not great."},
            {"speaker": "seeker", "content": "My exams went badly."},
            {"speaker": "supporter", "content": "That sounds hard.", "label": "Reflection"},
            {"speaker": "seeker", "content": "Thanks, bye."},
        ]
    }


def test_transcript_roles_merge_trim_labels_counted():
    skips = SkipCounter()
    opts = formats.ConversationOptions(merge_consecutive=True)
    conv = formats.parse_conversation(_esconv_like(), F, 0, opts, skips)
    assert [m.role for m in conv.messages] == ["assistant", "user", "assistant"]
    assert conv.messages[1].content == "Not great.\n\nMy exams went badly."
    assert [m.label for m in conv.messages] == ["Question", None, "Reflection"]
    assert skips.events == {
        "conversation: merged consecutive turns of one speaker": 1,
        "conversation: dropped trailing user turn(s) with no reply": 1,
        "conversation: opens with the assistant (kept)": 1,
    }
    with pytest.raises(DataError, match=r"messages\[2\].speaker': two 'user' turns in a row"):
        formats.parse_conversation(_esconv_like(), F, 0)


def test_role_map_from_config_string():
    row = {
        "messages": [
            {"role": "Interviewer", "text": "What brings you here?"},
            {"role": "Interviewee", "text": "Stress."},
            {"role": "Interviewer", "text": "Tell me more."},
        ]
    }
    with pytest.raises(DataError, match="unknown speaker 'Interviewer'.*role_map"):
        formats.parse_conversation(row, F, 0)
    rmap = formats.parse_role_map("interviewer=assistant, Interviewee=user")
    conv = formats.parse_conversation(row, F, 0, formats.ConversationOptions(rmap))
    assert [m.role for m in conv.messages] == ["assistant", "user", "assistant"]
    for name in ("Therapist", "COUNSELOR", "client", "patient", "Supporter", "seeker"):
        assert formats.ConversationOptions().role(name) in ("user", "assistant")
    with pytest.raises(ValueError, match="roles must be one of"):
        formats.parse_role_map("a=doctor")
    with pytest.raises(ValueError, match="not name=role"):
        formats.parse_role_map("therapist")
