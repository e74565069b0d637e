"""Rows from where they are stored: local files (JSONL, JSON, Parquet, CSV, or a directory of them),
Hugging Face datasets and TensorFlow Datasets. Plain dicts out; what the rows mean is `formats`'s and
`sources`'s business. A file that cannot be read is a `DataError` naming it (and the line, for JSONL).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from typing import Any

import numpy as np

from psycho_jax.data.formats import DataError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def data_files(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The data files a local path names: the file itself, or a directory's `FILE_SUFFIXES` files
    (sorted by name, not recursive; hidden files ignored).

    Raises:
        DataError: the path is missing, or a directory with no data file (says what is accepted).
    """
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(str(path), None, None, "no such file or directory")
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in FILE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        seen = sorted(p.name for p in path.iterdir())[:5]
        raise DataError(
            str(path),
            None,
            None,
            f"directory has no data files: a data directory holds {'/'.join(FILE_SUFFIXES)} files "
            f"(read in name order; found {seen or 'nothing'}); or name one file, or use "
            "hf:<directory> for a Hugging Face dataset folder",
        )
    return files


def _decode(data: bytes, file: str) -> str:
    """UTF-8 text (a byte-order mark dropped); a bad byte is reported with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            file,
            None,
            None,
            f"line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8",
        ) from None


def read_file(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Rows of a local JSONL / JSON / Parquet / CSV file, values as stored.

    Raises:
        DataError: the file is missing, of an unknown type, or cannot be decoded (names the file,
            and the line for JSONL and for bytes that are not UTF-8).
    """
    path = pathlib.Path(path)
    file = str(path)
    if path.is_dir():
        raise DataError(file, None, None, "is a directory: name a file (sources read directories)")
    if not path.is_file():
        raise DataError(file, None, None, "no such file")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            file, None, None, f"unknown file type {suffix!r}; use one of {FILE_SUFFIXES}"
        )
    if suffix in (".jsonl", ".json", ".csv"):
        text = _decode(path.read_bytes(), file)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(file, None, None, f"not valid JSON ({e})") from None
        if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}: one list inside
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(file, None, None, "expected a JSON list of objects")
        return data
    if suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    file, len(rows), None, f"line {lineno} is not valid JSON ({e})"
                ) from None
            if not isinstance(row, dict):
                raise DataError(file, len(rows), None, f"line {lineno} is not a JSON object")
            rows.append(row)
        return rows
    import pandas as pd

    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[])
    except Exception as e:  # pyarrow / pandas parser errors
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        raise DataError(
            file, None, None, f"not a readable {kind} file ({type(e).__name__}: {e})"
        ) from None
    return [_plain(r) for r in df.to_dict(orient="records")]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars and arrays (from Parquet/CSV) -> Python values, so checks see plain types."""
    out = {}
    for k, v in row.items():
        if isinstance(v, np.ndarray):
            v = [_plain(x) if isinstance(x, dict) else x for x in v.tolist()]
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def read_hf(name: str, split: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset (`datasets.load_dataset(name, split=...)`), columns as they
    are. `name` is a hub id (`Psychotherapy-LLM/PsychoCounsel-Preference`) or a local directory of
    data files; with no split, a dataset with one split gives it, more splits are an error.
    """
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, **kwargs)
    except Exception as e:
        raise DataError(
            name, None, None, f"datasets.load_dataset failed ({type(e).__name__}: {e})"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise DataError(
                name, None, None, f"has splits {sorted(ds)}; name one (hf:{name}:SPLIT)"
            )
        ds = next(iter(ds.values()))
    return [_plain(dict(r)) for r in ds]


def hf_splits(name: str, **kwargs: Any) -> list[str]:
    """Split names of a hub dataset or local data directory."""
    import datasets

    return sorted(datasets.load_dataset(name, **kwargs))


def read_tfds(name: str, split: str | None = None, data_dir: str | None = None) -> list[dict]:
    """Rows of a prepared TensorFlow Datasets dataset through `tfds.data_source` (ArrayRecord files,
    read by random access as grain reads them). `name` is `name[/config][:version]`; text comes back
    as `str`, numbers as Python scalars, a `Sequence` of dicts (a conversation's `messages`) as a
    list of dicts. With no split, a dataset with one split gives it, more splits are an error.
    `data_dir` defaults to `$TFDS_DATA_DIR` as set now (tfds itself reads it once, at import), then
    tfds's default. Nothing is downloaded: prepare the dataset first
    (`tfds build NAME --file_format=array_record`).
    """
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            f"source tfds:{name} needs TensorFlow Datasets: pip install 'psycho_jax[tfds]'"
        ) from None
    try:
        if split is None:
            splits = sorted(tfds.builder(name, data_dir=data_dir).info.splits)
            if len(splits) != 1:
                raise DataError(
                    name, None, None, f"has splits {splits}; name one (tfds:{name}:SPLIT)"
                )
            split = splits[0]
        ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except DataError:
        raise
    except Exception as e:  # not prepared, unknown name or split, not ArrayRecord
        raise DataError(
            f"tfds:{name}",
            None,
            None,
            f"tfds.data_source failed ({type(e).__name__}: {e}); the dataset must be prepared in "
            f"ArrayRecord format under data_dir={data_dir or 'tfds default'} "
            f"(tfds build {name.split(':')[0]} --file_format=array_record)",
        ) from e
    rows = []
    for start in range(0, len(ds), 1024):  # batched random access: one read per chunk of records
        rows.extend(
            _plain_tfds(r) for r in ds.__getitems__(range(start, min(start + 1024, len(ds))))
        )
    return rows


def _plain_tfds(value: Any, nested: bool = False) -> Any:
    """A decoded TFDS example -> plain Python: bytes -> str, numpy -> lists/scalars, and a dict of
    equal-length lists (how TFDS returns a `Sequence` of dicts) -> a list of dicts."""
    if isinstance(value, dict):
        out = {k: _plain_tfds(v, nested=True) for k, v in value.items()}
        lengths = {len(v) if isinstance(v, list) else -1 for v in out.values()}
        if nested and out and len(lengths) == 1 and lengths != {-1}:
            return [dict(zip(out, items)) for items in zip(*out.values())]
        return out
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain_tfds(v) for v in value.tolist()] if value.ndim else _plain_tfds(value.item())
    if isinstance(value, np.generic):
        return _plain_tfds(value.item())
    if isinstance(value, list):
        return [_plain_tfds(v) for v in value]
    return value
