"""The sample data shipped inside the package (`psycho_jax/data/sample/`), read-only.

The files are written by `tools/sample_gen.py` (outside the package, so its 3,000 lines of seeds are
never imported at run time); `psycho_jax/data/sample/README.md` describes them.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

SAMPLE_DIR = pathlib.Path(__file__).resolve().parent / "sample"
"""Directory of the shipped sample files."""

FILES: tuple[str, ...] = (
    "preference_train.jsonl",
    "preference_test.jsonl",
    "sft_train.jsonl",
    "sft_test.jsonl",
    "eval_prompts.jsonl",
    "crisis.jsonl",
)
"""Every generated file (the README beside them is written by hand)."""


def sample_path(name: str) -> pathlib.Path:
    """Path of a shipped sample file, e.g. `sample_path("preference_train.jsonl")`.

    `name` may omit the `.jsonl` suffix (`sample_path("crisis")`); `"README.md"` works too.
    Raises `FileNotFoundError` for a file that is not shipped.
    """
    path = SAMPLE_DIR / name
    if not path.suffix:
        path = path.with_suffix(".jsonl")
    if not path.is_file():
        shipped = sorted(p.name for p in SAMPLE_DIR.glob("*")) if SAMPLE_DIR.is_dir() else []
        raise FileNotFoundError(f"no sample file {name!r} in {SAMPLE_DIR}; shipped: {shipped}")
    return path


def load_sample(name: str) -> list[dict[str, Any]]:
    """Rows of a shipped `.jsonl` sample file (see `sample_path`)."""
    with sample_path(name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
