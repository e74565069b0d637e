"""`tfds:<name>[:<split>]` sources: a TensorFlow Datasets dataset in ArrayRecord format, read through
`tfds.data_source` (random access), with the same formats and validation as the other sources.

The tests build their own tiny datasets on disk with a `GeneratorBasedBuilder` (no network, no
TensorFlow), then read them back in this process and, as a user would, from a fresh process that has
never seen the builder class (`python -m psycho_jax.data.audit`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from psycho_jax.data import files, formats, sources

tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra is not installed")
np = pytest.importorskip("numpy")

PRINCIPLES = formats.PRINCIPLES


def _pair(i: int) -> dict:
    row = {
        "question": f"I have felt low for {i + 2} weeks and cannot sleep. What can I do?",
        "chosen": f"That sounds exhausting ({i}). Can you tell me more about what the nights are like?",
        "rejected": "Just sleep more.",
    }
    for p in PRINCIPLES:
        row[f"chosen_{p}_rating"] = 5
        row[f"rejected_{p}_rating"] = 1 + i % 3
    return row


class CounselPairs(tfds.core.GeneratorBasedBuilder):
    """PsychoCounsel-Preference's columns: question, chosen, rejected and 14 ratings."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {k: tfds.features.Text() for k in ("question", "chosen", "rejected")}
        features |= {
            f"{w}_{p}_rating": np.int32 for p in PRINCIPLES for w in ("chosen", "rejected")
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(7), "test": self._generate_examples(3, 100)}

    def _generate_examples(self, n, offset=0):
        for i in range(n):
            yield i, _pair(offset + i)


class CounselSessions(tfds.core.GeneratorBasedBuilder):
    """Conversations whose `messages` is a TFDS Sequence of {role, content}; one split."""

    VERSION = tfds.core.Version("0.2.0")

    def _info(self):
        turn = {"role": tfds.features.Text(), "content": tfds.features.Text()}
        features = {"id": tfds.features.Text(), "messages": tfds.features.Sequence(turn)}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(4):
            turns = [
                ("user", f"Hello, I am worried about exam {i}."),
                ("assistant", "Tell me more."),
            ]
            turns += [("user", "It is next week."), ("assistant", "What worries you most?")] * i
            yield i, {"id": f"s{i}", "messages": [{"role": r, "content": c} for r, c in turns]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    for builder in (CounselPairs, CounselSessions):
        builder(data_dir=str(d), file_format="array_record").download_and_prepare()
    return d


def test_parse_tfds_specs():
    assert sources.parse_source("tfds:counsel_pairs:train") == sources.Source(
        "tfds", "counsel_pairs", "train"
    )
    assert sources.parse_source("tfds:counsel_pairs") == sources.Source("tfds", "counsel_pairs")
    s = sources.parse_source("tfds:counsel_pairs/default:1.0.0:test@0.5")
    assert (s.kind, s.location, s.split, s.weight) == (
        "tfds",
        "counsel_pairs/default:1.0.0",
        "test",
        0.5,
    )
    assert sources.parse_source("tfds:counsel_pairs:1.0.0").split is None
    with pytest.raises(ValueError, match="tfds:NAME"):
        sources.parse_source("tfds:a:train:extra")


def test_tfds_pairs_equal_the_same_rows_from_a_file(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    got = sources.load_source("tfds:counsel_pairs:train")
    assert len(got) == 7 and all(isinstance(e, formats.PreferencePair) for e in got)
    # The same rows as a JSONL file give the same examples (ids aside: order is the records').
    rows = files.read_tfds("counsel_pairs", "train")
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_file = sources.load_source(str(path))
    strip = lambda e: (e.prompt, e.chosen, e.rejected, e.chosen_ratings, e.rejected_ratings)  # noqa: E731
    assert [strip(e) for e in got] == [strip(e) for e in from_file]
    assert {r["question"] for r in rows} == {_pair(i)["question"] for i in range(7)}
    assert all(isinstance(r["chosen_empathy_rating"], int) for r in rows)
    assert len(sources.load_source("tfds:counsel_pairs:1.0.0:test")) == 3


def test_tfds_conversations_and_splits(data_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    convs = sources.load_source("tfds:counsel_sessions")  # one split: no need to name it
    assert sorted(len(c.messages) for c in convs) == [2, 4, 6, 8]
    assert all(isinstance(c, formats.Conversation) for c in convs)
    assert convs[0].messages[0].role == "user"
    with pytest.raises(formats.DataError, match=r"has splits \['test', 'train'\]"):
        sources.load_source("tfds:counsel_pairs")
    with pytest.raises(formats.DataError, match="tfds.data_source failed"):
        sources.load_source("tfds:counsel_pairs:validation")
    with pytest.raises(formats.DataError, match="tfds:not_prepared"):
        sources.load_source("tfds:not_prepared:train")


def test_missing_tfds_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"psycho_jax\[tfds\]"):
        files.read_tfds("counsel_pairs", "train")


def test_audit_reads_tfds_from_a_fresh_process(data_dir, tmp_path):
    """The builder class is unknown to a new process: the dataset is read from its files alone."""
    env = {**os.environ, "TFDS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "psycho_jax.data.audit", "--data=train=tfds:counsel_pairs:train",
        "--data=test=tfds:counsel_pairs:test", "--tokenizer=sample", f"--out={tmp_path}",
        "--max_len=256",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["splits"]["train"]["rows"] == 7 and report["splits"]["test"]["rows"] == 3
    assert report["splits"]["train"]["kind"] == "pairs"
    assert report["splits"]["train"]["rating_gap"]["empathy"]["chosen_higher"] == 1.0
