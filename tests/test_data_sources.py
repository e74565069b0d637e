"""Sources: local files, `datasets.load_dataset` on local dirs, the embedded sample, mixtures."""

import json
import pathlib

import pandas as pd
import pytest

from psycho_jax.data import files, sources
from psycho_jax.data.formats import PRINCIPLES, Conversation, DataError, PreferencePair, SkipCounter

PC_COLUMNS = [
    "ID",
    "prefID",
    "question",
    "chosen",
    "rejected",
    "chosen_model",
    "rejected_model",
] + [f"{s}_{p}_rating" for s in ("chosen", "rejected") for p in PRINCIPLES]


def _pc_frame(n=6, start=0):
    rows = []
    for i in range(start, start + n):
        row = {
            "ID": i,
            "prefID": f"p{i}",
            "question": f"Question {i}?",
            "chosen": f"Kind reply {i}.",
            "rejected": f"Curt reply {i}.",
            "chosen_model": "a",
            "rejected_model": "b",
        }
        row.update({f"chosen_{p}_rating": 5 for p in PRINCIPLES})
        row.update({f"rejected_{p}_rating": 1 + i % 3 for p in PRINCIPLES})
        rows.append(row)
    return pd.DataFrame(rows, columns=PC_COLUMNS)


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet", "csv"])
def test_local_files_psychocounsel_columns_as_is(tmp_path, suffix):
    df = _pc_frame()
    path = tmp_path / f"pairs.{suffix}"
    {
        "jsonl": lambda: df.to_json(path, orient="records", lines=True),
        "json": lambda: df.to_json(path, orient="records"),
        "parquet": lambda: df.to_parquet(path),
        "csv": lambda: df.to_csv(path, index=False),
    }[suffix]()
    pairs = sources.load_source(str(path))
    assert len(pairs) == 6 and all(isinstance(p, PreferencePair) for p in pairs)
    assert (
        pairs[2].id == "2-p2"
        and pairs[2].chosen == "Kind reply 2."
        and pairs[2].rejected_ratings == (3,) * 7
    )


def test_hf_load_dataset_on_local_parquet_and_jsonl_dirs(tmp_path):
    # Laid out as the hub repo is: data/{train,test}-*.parquet; PsychoCounsel column names as they are.
    pq = tmp_path / "pc_parquet" / "data"
    pq.mkdir(parents=True)
    _pc_frame(6).to_parquet(pq / "train-00000-of-00001.parquet")
    _pc_frame(3, start=100).to_parquet(pq / "test-00000-of-00001.parquet")
    name = str(tmp_path / "pc_parquet")
    assert files.hf_splits(name) == ["test", "train"]
    train = sources.load_source(f"hf:{name}:train")
    test = sources.load_source(sources.Source("hf", name, "test"))
    assert [len(train), len(test)] == [6, 3] and test[0].id == "100-p100"
    assert train[0].chosen_ratings == (5,) * 7
    with pytest.raises(DataError, match=r"has splits \['test', 'train'\]; name one"):
        sources.load_source(f"hf:{name}")
    js = tmp_path / "pc_jsonl"
    js.mkdir()
    _pc_frame(4).to_json(js / "train.jsonl", orient="records", lines=True)
    assert len(sources.load_source(f"hf:{js}:train")) == 4
    with pytest.raises(DataError, match="datasets.load_dataset failed"):
        sources.load_source(f"hf:{tmp_path / 'nothing-here'}:train")


def test_sample_sources():
    assert len(sources.load_source("sample:preference_test")) == 300
    sft = sources.load_source("sample:sft_test")
    assert len(sft) == 150 and all(isinstance(c, Conversation) for c in sft)


def test_undecodable_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 1: line 2 is not valid JSON"):
        files.read_file(bad)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.jsonl: line 1: not UTF-8 text \(byte 0xe9"):
        files.read_file(latin)
    pq = tmp_path / "broken.parquet"
    pq.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"broken.parquet: not a readable Parquet file"):
        files.read_file(pq)
    csv = tmp_path / "latin.csv"
    csv.write_bytes("question,chosen\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: line 2: not UTF-8 text"):
        files.read_file(csv)
    js = tmp_path / "obj.json"
    js.write_text(json.dumps({"a": 1}))
    with pytest.raises(DataError, match=r"obj.json: expected a JSON list of objects"):
        files.read_file(js)
    with pytest.raises(DataError, match=r"x.txt: unknown file type '.txt'"):
        (tmp_path / "x.txt").write_text("hi")
        files.read_file(tmp_path / "x.txt")
    with pytest.raises(DataError, match="missing.jsonl: no such file"):
        files.read_file(tmp_path / "missing.jsonl")


def test_bad_rows_in_files_raise_or_are_counted(tmp_path):
    df = _pc_frame()
    df.loc[3, "chosen_safety_rating"] = 7
    df.loc[4, "rejected"] = ""
    path = tmp_path / "pairs.csv"
    df.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"pairs.csv: row 3, field 'chosen_safety_rating': rating 7 out of range"
    ):
        sources.load_source(str(path))
    skips = SkipCounter()
    assert len(sources.load_source(str(path), on_error="skip", skips=skips)) == 4
    assert skips.total_skipped == 2 and "rejected: empty string" in skips.summary()
    df.drop(columns=["question"]).to_parquet(tmp_path / "noq.parquet")
    with pytest.raises(
        DataError,
        match=r"noq.parquet: field 'question': missing column\(s\) \['question'\] for format 'psychocounsel'",
    ):
        sources.load_source(str(tmp_path / "noq.parquet"))


def test_parse_source_strings():
    assert sources.parse_source(
        "hf:Psychotherapy-LLM/PsychoCounsel-Preference:train"
    ) == sources.Source("hf", "Psychotherapy-LLM/PsychoCounsel-Preference", "train")
    assert sources.parse_source("data/x.jsonl@0.25") == sources.Source(
        "file", "data/x.jsonl", None, 0.25
    )
    assert sources.parse_source("counselchat:/d/cc.csv:val:pairs") == sources.Source(
        "counselchat", "/d/cc.csv", "val", 1.0, None, "pairs"
    )
    with pytest.raises(ValueError, match="weight must be positive"):
        sources.parse_source("x.jsonl@0")


def test_mixture_weights_and_determinism():
    a, b = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(3)]
    assert sources.mixture_counts([10, 3], [1, 1]) == [7, 6]
    mixed = sources.mix([a, b], [1, 1], seed=1)
    assert len(mixed) == 13 and sum(x.startswith("b") for x in mixed) == 6
    assert sorted(x for x in mixed if x.startswith("b"))[:6] == sorted(b * 2)  # whole passes first
    assert mixed == sources.mix([a, b], [1, 1], seed=1)
    assert (
        sources.mix([a, b], [3, 1], seed=0, total=8).count("b0")
        + sources.mix([a, b], [3, 1], seed=0, total=8).count("b1")
        + sources.mix([a, b], [3, 1], seed=0, total=8).count("b2")
        == 2
    )
    examples = sources.load_mixture(
        ["sample:preference_test@3", "sample:preference_train@1"], total=400
    )
    assert len(examples) == 400 and sum(p.id.startswith("1000") for p in examples) == 300


def test_one_non_numeric_rating_costs_only_its_row(tmp_path):
    df = _pc_frame(6).astype({"chosen_clarity_rating": object})
    df.loc[4, "chosen_clarity_rating"] = "n/a"  # the whole CSV column is read as text
    path = tmp_path / "pairs.csv"
    df.to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"pairs.csv: row 4, field 'chosen_clarity_rating': expected an integer rating, got 'n/a'",
    ):
        sources.load_source(str(path))
    skips = SkipCounter()
    pairs = sources.load_source(str(path), on_error="skip", skips=skips)
    assert [p.row for p in pairs] == [0, 1, 2, 3, 5] and skips.total_skipped == 1
    assert pairs[0].chosen_ratings == (5,) * 7
    assert skips.examples and "row 4" in skips.summary()


def test_bom_and_bad_bytes_in_jsonl(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "kind", "rejected": "curt"} for i in range(3)]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [p.prompt[0].content for p in sources.load_source(str(bom))] == ["q0", "q1", "q2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(text.encode() + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: line 4: not UTF-8 text \(byte 0xe9 at offset"):
        sources.load_source(str(bad))


def test_a_directory_loads_its_data_files_or_says_what_it_accepts(tmp_path):
    d = tmp_path / "pairs"
    d.mkdir()
    _pc_frame(3).to_json(d / "a.jsonl", orient="records", lines=True)
    _pc_frame(2, start=3).to_parquet(d / "b.parquet")
    (d / "notes.txt").write_text("not data")
    pairs = sources.load_source(str(d))
    assert [p.id for p in pairs] == [f"{i}-p{i}" for i in range(5)]
    assert [pathlib.Path(p.file).name for p in pairs] == ["a.jsonl"] * 3 + ["b.parquet"] * 2
    name, rows = sources.read_rows(sources.parse_source(str(d)))
    assert name == str(d) and len(rows) == 5
    bad = _pc_frame(2)
    bad.loc[1, "chosen"] = ""
    bad.to_csv(d / "c.csv", index=False)
    with pytest.raises(DataError, match=r"c.csv: row 1, field 'chosen': empty string"):
        sources.load_source(str(d))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"empty: directory has no data files.*\.jsonl.*readme.md"):
        sources.load_source(str(empty))
    with pytest.raises(DataError, match=r"missing: no such file or directory"):
        sources.load_source(str(tmp_path / "missing"))


def test_duplicate_ids_are_reported_in_training_and_an_error_in_eval_prompts(tmp_path):
    rows = [
        {"id": f"x{i % 3}", "prompt": f"q{i}", "chosen": "kind", "rejected": "curt"}
        for i in range(7)
    ]
    path = tmp_path / "dups.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    skips = SkipCounter()
    pairs = sources.load_source(str(path), skips=skips)
    assert len(pairs) == 7  # kept: an id only names a row
    assert sources.duplicate_ids(pairs) == (4, ["x0", "x1", "x2"])
    assert skips.events == {f"duplicate example ids in file:{path} (kept; e.g. x0, x1, x2)": 4}
    from psycho_jax.evaluation import scoring

    with pytest.raises(DataError, match=r"dups.jsonl: row 3, field 'id': 'x0' repeats row 0"):
        scoring.load_prompts(str(path))
