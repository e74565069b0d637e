"""Replies files of systems under evaluation, checked before anything is generated or scored.

A replies file is JSONL / JSON / Parquet / CSV with `id` and `reply` (or `response`, `output`,
`completion`), or an MT-bench / FastChat answer file (`question_id`, `choices[0].turns`: one reply per
user turn). `check_replies` matches it to a prompt set by id and reports its `Coverage` and every
problem (duplicate ids, empty replies, missing ids, too few turns), each naming the file, the id and
the line (JSONL) or row; nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from psycho_jax.data import sources
from psycho_jax.data.formats import DataError
from psycho_jax.evaluation import scoring

REPLY_FIELDS = ("reply", "response", "output", "completion")


@dataclasses.dataclass
class Coverage:
    """How a system's replies cover one prompt set (a row of the report's coverage table)."""

    prompts: int = 0
    matched: int = 0
    missing: int = 0
    duplicated: int = 0
    empty: int = 0
    cut: int = 0  # cut to max_len before the reward model read them
    unfinished: int = 0  # generation stopped at max_new_tokens
    skipped: str = ""  # why the system has no replies for this set

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Replies = list[tuple[str, ...]]  # per prompt: one reply per user turn


def _reply_turns(row: dict[str, Any]) -> tuple[str, ...] | None:
    """A row's reply (`reply`/`response`/...), or its MT-bench answer's turns; None if neither."""
    field = next((f for f in REPLY_FIELDS if f in row), None)
    if field is not None:
        return (row[field],) if isinstance(row[field], str) else None
    choices = row.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        turns = choices[0].get("turns")
        if isinstance(turns, list) and all(isinstance(t, str) for t in turns) and turns:
            return tuple(turns)
    return None


def check_replies(
    path: str, prompts: list[scoring.Prompt]
) -> tuple[Replies | None, Coverage, list[DataError]]:
    """A replies file's replies in `prompts` order (None: none of these ids), their coverage and
    every problem found (duplicate ids, empty replies, missing ids, turn counts), naming the file,
    the id and the line (JSONL) or row."""
    name, rows = sources.read_rows(sources.parse_source(path))
    lines = None
    if pathlib.Path(path).suffix == ".jsonl":
        text = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
        lines = [n for n, line in enumerate(text, start=1) if line.strip()]
    where = lambda i: f"line {lines[i]}" if lines else f"row {i}"  # noqa: E731
    wanted = {p.id: p for p in prompts}
    problems: list[DataError] = []
    by_id: dict[str, tuple[str, ...]] = {}
    first_at: dict[str, int] = {}
    cov = Coverage(prompts=len(prompts))
    for i, row in enumerate(rows):
        rid = row.get("id", row.get("question_id"))
        if rid is None:
            problems.append(DataError(name, i, "id", "missing (replies are matched by id)"))
            continue
        rid = str(rid)
        turns = _reply_turns(row)
        if turns is None:
            problems.append(
                DataError(
                    name,
                    i,
                    "reply",
                    f"id {rid!r} ({where(i)}): missing or not a string (one of {REPLY_FIELDS}, "
                    "or MT-bench's choices[0].turns)",
                )
            )
            continue
        if rid in by_id:
            if rid in wanted:
                cov.duplicated += 1
                problems.append(
                    DataError(
                        name, i, "id", f"id {rid!r} ({where(i)}) repeats {where(first_at[rid])}"
                    )
                )
            continue
        by_id[rid], first_at[rid] = turns, i
        if rid in wanted and not all(t.strip() for t in turns):
            cov.empty += 1
            problems.append(DataError(name, i, "reply", f"id {rid!r} ({where(i)}): empty reply"))
        elif rid in wanted and len(turns) < wanted[rid].num_turns:
            problems.append(
                DataError(
                    name,
                    i,
                    "reply",
                    f"id {rid!r} ({where(i)}): {len(turns)} turn(s), the prompt has "
                    f"{wanted[rid].num_turns}",
                )
            )
    cov.matched = sum(1 for p in prompts if p.id in by_id)
    cov.missing = len(prompts) - cov.matched
    if not cov.matched:
        return None, cov, problems
    if cov.missing:
        missing = [p.id for p in prompts if p.id not in by_id]
        problems.append(
            DataError(name, None, "id", f"no reply for {cov.missing} prompts, e.g. {missing[:3]}")
        )
    replies = [by_id.get(p.id, ("",))[: p.num_turns] for p in prompts]
    return replies, cov, problems


def read_replies(path: str, prompts: list[scoring.Prompt]) -> Replies | None:
    """Replies of a file, in `prompts` order (one tuple of turns per prompt); None when the file
    has none of these prompt ids. Any problem (`check_replies`) raises its `DataError`."""
    replies, _, problems = check_replies(path, prompts)
    if problems:
        raise problems[0]
    return replies
