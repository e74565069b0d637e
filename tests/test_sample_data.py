"""The counseling sample data shipped in ``psycho_jax/data/sample`` (fast, no JAX needed)."""

from __future__ import annotations

import collections
import json
import pathlib
import re
import statistics
from typing import Any

import pytest

from tools import sample_gen
from tools.sample_gen import (
    CHOSEN_MODELS,
    CRISIS_RISKS,
    FILES,
    MODEL_PREFIX,
    PRINCIPLES,
    STYLE_BROKEN_PRINCIPLES,
    STYLES,
    TOPICS,
    sample_path,
    style_of,
)

PREF_KEYS = (
    ["ID", "prefID", "question", "chosen", "rejected", "chosen_model", "rejected_model"]
    + [f"chosen_{p}_rating" for p in PRINCIPLES]
    + [f"rejected_{p}_rating" for p in PRINCIPLES]
)
ROW_COUNTS = {
    "preference_train.jsonl": (2700, 3300),
    "preference_test.jsonl": (270, 330),
    "sft_train.jsonl": (1350, 1650),
    "sft_test.jsonl": (135, 165),
    "eval_prompts.jsonl": (135, 165),
    "crisis.jsonl": (100, 140),
}
RESOURCE = re.compile(
    r"988|741741|911|112|999|findahelpline|116 123|1-800-799-7233|0808 2000 247|"
    r"emergency services|0800 1111|1-800-422-4453"
)
MIN_WORDS, MAX_WORDS = 25, 150


def _load(name: str) -> list[dict[str, Any]]:
    return sample_gen.load_sample(name)


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict[str, Any]]]:
    return {name: _load(name) for name in FILES}


def _topic_of(row: dict[str, Any]) -> str:
    """Topic encoded in a preference ``prefID`` (``psycho_jax-sample-<split>-<topic>-<n>``)."""
    return row["prefID"].split("-")[-2]


def _train_texts(data: dict[str, list[dict[str, Any]]]) -> set[str]:
    texts = {row["question"] for row in data["preference_train.jsonl"]}
    for row in data["sft_train.jsonl"]:
        texts |= {m["content"] for m in row["messages"] if m["role"] == "user"}
    return texts


def test_sample_path_and_files_exist() -> None:
    for name in FILES:
        assert sample_path(name).is_file()
        assert sample_path(name) == sample_path(name.removesuffix(".jsonl"))
    assert sample_path("README.md").read_text(encoding="utf-8").strip()
    with pytest.raises(FileNotFoundError):
        sample_path("no_such_file.jsonl")


def test_constants() -> None:
    assert PRINCIPLES == (
        "empathy",
        "relevance",
        "clarity",
        "safety",
        "exploration",
        "autonomy",
        "staging",
    )
    assert len(STYLES) == 9
    for broken in STYLE_BROKEN_PRINCIPLES.values():
        assert broken and set(broken) <= set(PRINCIPLES)
    assert set(CRISIS_RISKS) <= set(TOPICS) and len(TOPICS) == 15


@pytest.mark.parametrize("name", FILES)
def test_row_counts(data: dict[str, list[dict[str, Any]]], name: str) -> None:
    lo, hi = ROW_COUNTS[name]
    assert lo <= len(data[name]) <= hi


def test_total_size_is_small() -> None:
    total = sum(sample_path(name).stat().st_size for name in FILES)
    assert total < 8.5 * 2**20


@pytest.mark.parametrize("split", ["train", "test"])
def test_preference_schema(data: dict[str, list[dict[str, Any]]], split: str) -> None:
    rows = data[f"preference_{split}.jsonl"]
    for row in rows:
        assert list(row) == PREF_KEYS
        assert type(row["ID"]) is int
        for key in ("prefID", "question", "chosen", "rejected", "chosen_model", "rejected_model"):
            assert isinstance(row[key], str) and row[key].strip(), key
        for key in PREF_KEYS[7:]:
            assert type(row[key]) is int and 1 <= row[key] <= 5, key
        assert row["chosen"] != row["rejected"]
        assert row["chosen_model"] in CHOSEN_MODELS
        assert row["rejected_model"].startswith(MODEL_PREFIX)
        assert style_of(row["rejected_model"]) in STYLES
        assert _topic_of(row) in TOPICS
    assert len({r["ID"] for r in rows}) == len(rows)
    assert len({r["prefID"] for r in rows}) == len(rows)


def test_preference_ids_unique_across_splits(data: dict[str, list[dict[str, Any]]]) -> None:
    train, test = data["preference_train.jsonl"], data["preference_test.jsonl"]
    assert not {r["ID"] for r in train} & {r["ID"] for r in test}
    assert not {r["prefID"] for r in train} & {r["prefID"] for r in test}


@pytest.mark.parametrize("split", ["train", "test"])
def test_preference_ratings_consistent(data: dict[str, list[dict[str, Any]]], split: str) -> None:
    rows = data[f"preference_{split}.jsonl"]
    for row in rows:
        assert row["chosen_safety_rating"] >= row["rejected_safety_rating"]
        style = style_of(row["rejected_model"])
        crisis = _topic_of(row) in CRISIS_RISKS
        for p in STYLE_BROKEN_PRINCIPLES[style] + (("safety",) if crisis else ()):
            assert row[f"rejected_{p}_rating"] <= 2, (style, p, row["prefID"])
        # Chosen replies are rated 3-5, mostly 4-5.
        assert min(row[f"chosen_{p}_rating"] for p in PRINCIPLES) >= 3
    for p in PRINCIPLES:
        chosen = statistics.mean(r[f"chosen_{p}_rating"] for r in rows)
        rejected = statistics.mean(r[f"rejected_{p}_rating"] for r in rows)
        assert chosen >= 4.0 and chosen > rejected + 1.0, p
    high = sum(r[f"chosen_{p}_rating"] >= 4 for r in rows for p in PRINCIPLES)
    assert high / (len(rows) * len(PRINCIPLES)) > 0.9


def test_no_template_leftovers_or_duplicate_pairs(data: dict[str, list[dict[str, Any]]]) -> None:
    text_keys = {"question", "chosen", "rejected", "prompt", "reference", "good_reply", "bad_reply"}
    texts = []
    for name in FILES:
        for row in data[name]:
            texts += [v for k, v in row.items() if k in text_keys]
            texts += [m["content"] for m in row.get("messages", [])]
    for text in texts:
        assert not re.search(r"[{}|]|  |(?<!\.)\.\.(?!\.)|\s[,.;?]|,,", text), text
        assert text == text.strip() and text[0].isupper(), text
    for name in ("preference_train.jsonl", "preference_test.jsonl"):
        triples = [(r["question"], r["chosen"], r["rejected"]) for r in data[name]]
        assert len(set(triples)) == len(triples)


def test_each_style_breaks_its_principles(data: dict[str, list[dict[str, Any]]]) -> None:
    rows = data["preference_train.jsonl"]
    by_style: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_style[style_of(row["rejected_model"])].append(row)
    assert set(by_style) == set(STYLES)
    for style, group in by_style.items():
        assert len(group) >= 200, style
        broken = STYLE_BROKEN_PRINCIPLES[style]
        means = {p: statistics.mean(r[f"rejected_{p}_rating"] for r in group) for p in PRINCIPLES}
        for p in broken:
            assert means[p] <= 2.0, (style, p)
        # The broken principles are the style's weakest ones.
        kept = [p for p in PRINCIPLES if p not in broken and p != "safety"]
        assert max(means[p] for p in broken) < min(means[p] for p in kept), style


def test_preference_topics_and_styles_balanced(data: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("preference_train.jsonl", "preference_test.jsonl"):
        rows = data[name]
        topics = collections.Counter(_topic_of(r) for r in rows)
        assert set(topics) == set(TOPICS)
        assert max(topics.values()) - min(topics.values()) <= 1
        styles = collections.Counter(style_of(r["rejected_model"]) for r in rows)
        assert set(styles) == set(STYLES)


def test_reply_lengths(data: dict[str, list[dict[str, Any]]]) -> None:
    replies = []
    for name in ("preference_train.jsonl", "preference_test.jsonl"):
        replies += [r[k] for r in data[name] for k in ("chosen", "rejected")]
    replies += [r["reference"] for r in data["eval_prompts.jsonl"]]
    replies += [r[k] for r in data["crisis.jsonl"] for k in ("good_reply", "bad_reply")]
    for name in ("sft_train.jsonl", "sft_test.jsonl"):
        replies += [
            m["content"] for r in data[name] for m in r["messages"] if m["role"] == "assistant"
        ]
    for reply in replies:
        assert MIN_WORDS <= len(reply.split()) <= MAX_WORDS, reply


def test_no_uniform_length_bias(data: dict[str, list[dict[str, Any]]]) -> None:
    """Chosen is not systematically longer: some styles are longer on average than chosen."""
    rows = data["preference_train.jsonl"]
    lengths: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for r in rows:
        lengths[style_of(r["rejected_model"])].append(
            (len(r["chosen"].split()), len(r["rejected"].split()))
        )
    longer = [
        s
        for s, pairs in lengths.items()
        if statistics.mean(b for _, b in pairs) > statistics.mean(a for a, _ in pairs)
    ]
    assert len(longer) >= 2, longer
    rejected_longer = sum(len(r["rejected"].split()) > len(r["chosen"].split()) for r in rows)
    assert rejected_longer / len(rows) > 0.25
    concise = [len(r["chosen"].split()) for r in rows if r["chosen_model"] == CHOSEN_MODELS[1]]
    assert len(concise) > 0.25 * len(rows) and statistics.mean(concise) < 80


def test_crisis_chosen_mentions_resources(data: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("preference_train.jsonl", "preference_test.jsonl"):
        for row in data[name]:
            if _topic_of(row) in CRISIS_RISKS:
                assert RESOURCE.search(row["chosen"]), row["prefID"]
                assert not RESOURCE.search(row["rejected"]), row["prefID"]


def test_sft_schema(data: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("sft_train.jsonl", "sft_test.jsonl"):
        rows = data[name]
        assert len({r["id"] for r in rows}) == len(rows)
        for row in rows:
            assert set(row) == {"id", "topic", "messages"}
            assert isinstance(row["id"], str) and row["topic"] in TOPICS
            messages = row["messages"]
            for m in messages:
                assert set(m) == {"role", "content"}
                assert isinstance(m["content"], str) and m["content"].strip()
            if messages[0]["role"] == "system":
                messages = messages[1:]
            roles = [m["role"] for m in messages]
            assert 2 <= len(roles) <= 6 and len(roles) % 2 == 0
            assert roles == ["user", "assistant"] * (len(roles) // 2)
            if row["topic"] in CRISIS_RISKS:
                assert RESOURCE.search(messages[1]["content"])
        turns = collections.Counter(
            sum(m["role"] == "user" for m in r["messages"]) for r in data[name]
        )
        assert set(turns) == {1, 2, 3}


def test_eval_prompts(data: dict[str, list[dict[str, Any]]]) -> None:
    rows = data["eval_prompts.jsonl"]
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"id", "topic", "prompt", "reference"}
        assert row["topic"] in TOPICS
        assert row["prompt"].strip() and row["reference"].strip()
        if row["topic"] in CRISIS_RISKS:
            assert RESOURCE.search(row["reference"])
    assert set(r["topic"] for r in rows) == set(TOPICS)


def test_crisis_slice(data: dict[str, list[dict[str, Any]]]) -> None:
    rows = data["crisis.jsonl"]
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"id", "topic", "prompt", "good_reply", "bad_reply", "risk", "bad_style"}
        assert row["risk"] == CRISIS_RISKS[row["topic"]]
        assert row["bad_style"] in STYLES
        assert row["good_reply"] != row["bad_reply"]
        assert RESOURCE.search(row["good_reply"]), row["id"]
        assert not RESOURCE.search(row["bad_reply"]), row["id"]
        assert "?" in row["good_reply"]  # asks about immediate safety
    assert collections.Counter(r["risk"] for r in rows).keys() == {"suicide", "self_harm", "abuse"}


def test_held_out_prompts_disjoint_from_train(data: dict[str, list[dict[str, Any]]]) -> None:
    train = _train_texts(data)
    held_out = {r["question"] for r in data["preference_test.jsonl"]}
    held_out |= {
        m["content"] for r in data["sft_test.jsonl"] for m in r["messages"] if m["role"] == "user"
    }
    held_out -= {m for r in data["sft_test.jsonl"] for m in _follow_up_turns(r)}
    held_out |= {r["prompt"] for r in data["eval_prompts.jsonl"]}
    held_out |= {r["prompt"] for r in data["crisis.jsonl"]}
    assert not train & held_out
    # Stronger: no client situation (first sentence of a prompt) is shared either.
    first = {_first_sentence(t) for t in held_out}
    assert not first & {_first_sentence(r["question"]) for r in data["preference_train.jsonl"]}
    eval_prompts = {r["prompt"] for r in data["eval_prompts.jsonl"]}
    test_prompts = {r["question"] for r in data["preference_test.jsonl"]}
    assert not eval_prompts & test_prompts
    assert not eval_prompts & {r["prompt"] for r in data["crisis.jsonl"]}


def _follow_up_turns(row: dict[str, Any]) -> list[str]:
    """User turns after the first one (short generic follow-ups, shared across splits)."""
    users = [m["content"] for m in row["messages"] if m["role"] == "user"]
    return users[1:]


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.?!])\s", text, maxsplit=1)[0]


def test_generator_is_deterministic(tmp_path: pathlib.Path) -> None:
    counts = sample_gen.generate(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == sample_path(name).read_bytes(), name
        assert counts[name] == len(_load(name))


def test_generator_cli(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_gen.main(["--out", str(tmp_path), "--seed", "7"])
    assert "preference_train.jsonl" in capsys.readouterr().out
    other = [json.loads(line) for line in (tmp_path / "crisis.jsonl").open(encoding="utf-8")]
    assert len(other) == len(_load("crisis.jsonl"))
    assert (tmp_path / "crisis.jsonl").read_bytes() != sample_path("crisis.jsonl").read_bytes()
