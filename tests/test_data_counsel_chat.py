"""CounselChat (real CSV, skipped when absent) and the PII scrubber."""

import pandas as pd
import pytest

from psycho_jax.data import counsel_chat, pii, sources
from psycho_jax.data.formats import Conversation, DataError, PreferencePair, SkipCounter


def test_scrub_patterns():
    text = (
        "Hi, my name is Jane Doe and I'm Dr. Smith's colleague. Email me at jane.doe@example.org or "
        "call (555) 123-4567 / 555.987.6543. See www.janedoetherapy.com or https://x.org/a?b=1. "
        "If you are in danger call 1-800-273-8255 or visit findahelpline.com.\n\nWarmly,\nJane Doe, LPC"
    )
    out = pii.scrub(text)
    for leak in (
        "Jane",
        "Doe",
        "Smith",
        "jane.doe@",
        "123-4567",
        "987.6543",
        "janedoetherapy",
        "x.org",
    ):
        assert leak not in out, (leak, out)
    assert "1-800-273-8255" in out and "findahelpline.com" in out  # crisis resources stay
    assert (
        "my name is [name]" in out and "[email]" in out and "[phone]" in out and "[website]" in out
    )
    assert out.rstrip().endswith("Warmly,\n[name]")
    assert pii.find(text) == {"email": 1, "url": 2, "phone": 2, "name": 3}
    assert pii.find("I hope you feel better, and Grace is a virtue.") == {}


def test_known_names_case_rules():
    assert pii.scrub("kindly-keith hughes M.A.", names=["Keith Hughes"]) == "kindly-[name] M.A."
    assert pii.scrub("I hope Hope is well", words=["Hope"]) == "I hope [name] is well"


def test_therapist_name_from_info_and_url():
    cases = [
        (
            "Elizabeth GentzkowStop letting anxiety run your life.",
            "https://counselchat.com/therapists/elizabeth-gentzkow",
            "Elizabeth Gentzkow",
        ),
        (
            "James McCrackenLife is better",
            "https://counselchat.com/therapists/james-mccracken",
            "James McCracken",
        ),
        (
            "Kristi King-Morgan, LMSWSocial Worker",
            "https://counselchat.com/therapists/kristi-king-morgan-lmsw",
            "Kristi King-Morgan",
        ),
        (
            "Eric Ström, JD, MA, LMHCAttorney",
            "https://counselchat.com/therapists/eric-str-m-jd-ma-lmhc",
            "Eric Ström",
        ),
        (
            "Laurie WardCounselor",
            "https://counselchat.com/therapists/laurie-ward-parkville-missouri",
            "Laurie Ward",
        ),
        (
            "Dr. Theresa MooreEducator, Clinician, Poet",
            "https://counselchat.com/therapists/dr-theresa-moore",
            "Theresa Moore",
        ),
    ]
    for info, url, name in cases:
        assert counsel_chat.therapist_name(info, url) == name


@pytest.fixture(scope="module")
def cc_frame(counsel_chat_csv):
    return pd.read_csv(counsel_chat_csv)


def test_counsel_chat_counts(counsel_chat_csv, cc_frame):
    train = sources.load_source(f"counselchat:{counsel_chat_csv}:train")
    assert len(train) == 1839 and all(isinstance(c, Conversation) for c in train)
    assert [
        len(sources.load_source(f"counselchat:{counsel_chat_csv}:{s}")) for s in ("val", "test")
    ] == [173, 117]
    pairs = counsel_chat.load(counsel_chat_csv, mode="pairs")
    assert len(pairs) == 2523 and all(isinstance(p, PreferencePair) for p in pairs)
    assert len({p.meta["questionID"] for p in pairs}) == 201
    assert all(p.meta["chosen_upvotes"] > p.meta["rejected_upvotes"] for p in pairs)
    # Pairs stay within a split: train pairs only use train questions.
    train_q = set(cc_frame.loc[cc_frame.split == "train", "questionID"])
    assert {
        p.meta["questionID"]
        for p in counsel_chat.load(counsel_chat_csv, split="train", mode="pairs")
    } <= train_q


def test_counsel_chat_text_has_no_therapist_info(counsel_chat_csv, cc_frame):
    texts = [m.content for c in counsel_chat.load(counsel_chat_csv) for m in c.messages]
    texts += [
        t for p in counsel_chat.load(counsel_chat_csv, mode="pairs") for t in (p.chosen, p.rejected)
    ]
    assert len(texts) == 2 * 2129 + 2 * 2523
    names = {
        counsel_chat.therapist_name(i, u)
        for i, u in cc_frame[["therapistInfo", "therapistURL"]]
        .drop_duplicates()
        .itertuples(index=False)
    }
    assert None not in names and len(names) > 250
    blob = "\n".join(texts)
    lower = blob.lower()
    leaked = [n for n in names if n.lower() in lower]
    assert not leaked
    for url in set(cc_frame.therapistURL):
        assert url not in blob
    assert "counselchat.com" not in lower
    for t in texts:
        hits = pii.find(t)
        assert not hits.get("email") and not hits.get("url") and not hits.get("phone"), (
            hits,
            t[:200],
        )
    assert "[phone]" in blob and "[website]" in blob and "[name]" in blob  # scrubbing did happen


def _cc_frame():
    rows = []
    for i, (qid, up) in enumerate([(1, 3), (1, 1), (1, "n/a"), (2, 0), (2, 2)]):
        rows.append(
            {
                "questionID": qid,
                "questionTitle": f"Question {qid}",
                "questionText": "I feel low.",
                "questionLink": "",
                "topic": "depression",
                "therapistInfo": "Mei-Ling Warren-ParkHelping you heal",
                "therapistURL": "https://counselchat.com/therapists/mei-ling-warren-park-lpc",
                "answerText": f"Answer {i}: rest and reach out. Warmly, Mei-Ling Warren-Park, LPC",
                "upvotes": up,
                "views": 10,
                "split": "train",
            }
        )
    return pd.DataFrame(rows)


def test_bad_upvotes_name_their_row_or_are_counted(tmp_path):
    path = tmp_path / "cc.csv"
    _cc_frame().to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"cc.csv: row 2, field 'upvotes': expected a whole number, got 'n/a'"
    ):
        counsel_chat.load(path)
    skips = SkipCounter()
    sft = sources.load_source(f"counselchat:{path}", on_error="skip", skips=skips)
    assert [c.row for c in sft] == [0, 1, 3, 4] and skips.total_skipped == 1
    assert all(
        "Mei-Ling" not in m.content and "Warren" not in m.content for c in sft for m in c.messages
    )
    assert sft[0].messages[1].content == "Answer 0: rest and reach out. Warmly, [name]"
    pairs = counsel_chat.load(path, mode="pairs", on_error="skip", skips=SkipCounter())
    assert [(p.meta["chosen_upvotes"], p.meta["rejected_upvotes"]) for p in pairs] == [
        (3, 1),
        (2, 0),
    ]
