"""Examples as frozen dataclasses, and row parsers that validate as they read.

Three row formats, detected from the columns (`detect_format`):

- `"conversation"`: `{"messages": [{"role": ..., "content": ...}, ...], "id"?: ...}` for SFT. Roles are
  `system` (first only), then `user` / `assistant` alternating from `user`, ending with `assistant`.
- `"preference"`: `{"prompt": str | messages, "chosen": str | [assistant message],
  "rejected": ..., "id"?, "margin"?, "chosen_<p>_rating"?, "rejected_<p>_rating"?}` (TRL's
  explicit-prompt format, plain or conversational). A message-list prompt must end with `user`.
- `"psychocounsel"`: PsychoCounsel-Preference as published, columns read as they are: `ID, prefID,
  question, chosen, rejected, chosen_model, rejected_model` and `chosen_<p>_rating` /
  `rejected_<p>_rating` for each p in `PRINCIPLES` (integers 1..5).

Every check failure is a `DataError` naming the file, the row (0-based) and the field. Where the caller
asks to skip bad rows (`on_error="skip"`), it is counted in a `SkipCounter` instead, whose summary is
logged at the end: never a silent drop.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from absl import logging

PRINCIPLES = ("empathy", "relevance", "clarity", "safety", "exploration", "autonomy", "staging")
"""PsychoCounsel's seven principles, in the order of the last axis of `ratings`."""
ROLES = ("system", "user", "assistant")
RATING_MIN, RATING_MAX = 1, 5
PSYCHOCOUNSEL_TEXT_COLUMNS = ("question", "chosen", "rejected")
PSYCHOCOUNSEL_META_COLUMNS = ("ID", "prefID", "chosen_model", "rejected_model")
RATING_COLUMNS = tuple(f"{side}_{p}_rating" for side in ("chosen", "rejected") for p in PRINCIPLES)

OnError = Literal["raise", "skip"]
Format = Literal["conversation", "preference", "psychocounsel"]


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclasses.dataclass(frozen=True)
class Conversation:
    """An SFT example: every assistant turn is a training target."""

    messages: tuple[Message, ...]
    id: str
    file: str = ""  # where the row came from, for error messages
    row: int = -1


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """A prompt (one or more turns ending with `user`) and two replies, `chosen` preferred.

    `chosen_ratings` / `rejected_ratings` are per-principle scores in `PRINCIPLES` order (or None);
    `margin` an optional preference strength; `meta` carries columns kept for reports, never text
    to train on.
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    id: str
    chosen_ratings: tuple[int, ...] | None = None
    rejected_ratings: tuple[int, ...] | None = None
    margin: float | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    file: str = ""  # where the row came from, for error messages
    row: int = -1


Example = Conversation | PreferencePair


class DataError(ValueError):
    """A bad file or row, with where it is: `file: row 3, field 'chosen': empty string`."""

    def __init__(self, file: str, row: int | None, field: str | None, problem: str):
        self.file, self.row, self.field, self.problem = file, row, field, problem
        where = str(file)
        if row is not None:
            where += f": row {row}"
        if field is not None:
            where += f", field {field!r}" if row is not None else f": field {field!r}"
        super().__init__(f"{where}: {problem}")


class SkipCounter:
    """Counts skipped rows per reason (and other events, e.g. truncations), with a few locations.

    Owned by one loading call and passed down explicitly; `summary()` is what gets reported.
    """

    def __init__(self, keep: int = 3):
        self.skipped: collections.Counter[str] = collections.Counter()
        self.events: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)
        self._keep = keep

    def skip(self, reason: str, where: str = "") -> None:
        self.skipped[reason] += 1
        if where and len(self.examples[reason]) < self._keep:
            self.examples[reason].append(where)

    def count(self, event: str, n: int = 1) -> None:
        """Records something that changed a row without dropping it (e.g. a truncation)."""
        self.events[event] += n

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: SkipCounter) -> None:
        self.skipped.update(other.skipped)
        self.events.update(other.events)
        for reason, places in other.examples.items():
            room = self._keep - len(self.examples[reason])
            self.examples[reason].extend(places[: max(room, 0)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": dict(self.skipped),
            "events": dict(self.events),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }

    def summary(self, name: str = "data") -> str:
        lines = [f"{name}: skipped {self.total_skipped} row(s)"]
        for reason, n in self.skipped.most_common():
            first = "; ".join(self.examples.get(reason, []))
            lines.append(f"  {n} x {reason}" + (f" (e.g. {first})" if first else ""))
        for event, n in self.events.most_common():
            lines.append(f"  {n} x {event}")
        return "\n".join(lines)

    def log(self, name: str = "data") -> None:
        if self.total_skipped:
            logging.warning("%s", self.summary(name))
        else:
            logging.info("%s", self.summary(name))


def handle(error: DataError, on_error: OnError, skips: SkipCounter | None) -> None:
    """Raises `error`, or counts it in `skips` when `on_error == "skip"`."""
    if on_error == "raise" or skips is None:
        raise error
    if on_error != "skip":
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    where = f"{error.file}: row {error.row}" if error.row is not None else str(error.file)
    skips.skip(f"{error.field}: {error.problem}" if error.field else error.problem, where)


# ---------------------------------------------------------------------------- format detection


def detect_format(columns: Iterable[str], file: str = "<rows>") -> Format:
    """The row format implied by a file's column names.

    Raises:
        DataError: the columns fit no known format; the message lists what each format needs.
    """
    cols = set(columns)
    if "messages" in cols:
        return "conversation"
    if "prompt" in cols:
        return "preference"
    if cols & {"question", "chosen", "rejected"}:  # check_columns then names what is missing
        return "psychocounsel"
    raise DataError(
        file,
        None,
        None,
        f"unknown format for columns {sorted(cols)}: expected 'messages' (conversations), "
        "'prompt'/'chosen'/'rejected' (preference pairs) or PsychoCounsel-Preference's "
        "'question'/'chosen'/'rejected'",
    )


def check_columns(columns: Iterable[str], fmt: Format, file: str) -> None:
    """Raises a `DataError` naming the missing columns of a table in format `fmt`."""
    cols = set(columns)
    need = {
        "conversation": ("messages",),
        "preference": ("prompt", "chosen", "rejected"),
        "psychocounsel": PSYCHOCOUNSEL_TEXT_COLUMNS,
    }[fmt]
    missing = [c for c in need if c not in cols]
    if fmt in ("psychocounsel", "preference") and cols & set(RATING_COLUMNS):
        missing += [c for c in RATING_COLUMNS if c not in cols]  # ratings: all or none
    if missing:
        raise DataError(file, None, missing[0], f"missing column(s) {missing} for format {fmt!r}")


# ---------------------------------------------------------------------------- field checks


def _text(row: Mapping[str, Any], key: str, file: str, i: int, field: str | None = None) -> str:
    """`row[key]` as a non-empty string; errors name `field` (default `key`)."""
    field = field or key
    if key not in row:
        raise DataError(file, i, field, "missing field")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(file, i, field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(file, i, field, "empty string")
    return value


def _messages(
    value: Any, file: str, i: int, field: str, *, last: Literal["user", "assistant"]
) -> tuple[Message, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not len(value):
        raise DataError(file, i, field, "expected a non-empty list of messages")
    out = []
    for k, m in enumerate(value):
        f = f"{field}[{k}]"
        if not isinstance(m, Mapping):
            raise DataError(file, i, f, f"expected a message dict, got {type(m).__name__}")
        role = _text(m, "role", file, i, f"{f}.role")
        if role not in ROLES:
            raise DataError(
                file, i, f"{f}.role", f"unknown role {role!r} (expected one of {list(ROLES)})"
            )
        content = _text(m, "content", file, i, f"{f}.content")
        out.append(Message(role, content))
    turns = out[1:] if out[0].role == "system" else out
    if not turns:
        raise DataError(file, i, field, "only a system message: no turns")
    for k, m in enumerate(turns):
        expected = "user" if k % 2 == 0 else "assistant"
        if m.role != expected:
            at = k + (len(out) - len(turns))
            raise DataError(
                file,
                i,
                f"{field}[{at}].role",
                f"turns must alternate user/assistant starting with user (after an optional first "
                f"system message): expected {expected!r}, got {m.role!r}",
            )
    if turns[-1].role != last:
        raise DataError(file, i, field, f"the last turn must be {last!r}, got {turns[-1].role!r}")
    return tuple(out)


def _reply(row: Mapping[str, Any], field: str, file: str, i: int) -> str:
    """A reply: a string, or TRL's conversational `[{"role": "assistant", "content": ...}]`."""
    if field not in row:
        raise DataError(file, i, field, "missing field")
    value = row[field]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) != 1 or not isinstance(value[0], Mapping):
            raise DataError(file, i, field, "expected a string or one assistant message")
        if value[0].get("role") != "assistant":
            raise DataError(
                file, i, f"{field}[0].role", f"expected 'assistant', got {value[0].get('role')!r}"
            )
        return _text(value[0], "content", file, i, f"{field}[0].content")
    return _text(row, field, file, i)


def _rating(row: Mapping[str, Any], field: str, file: str, i: int) -> int:
    if field not in row:
        raise DataError(file, i, field, "missing field")
    v = row[field]
    if isinstance(v, str):  # a CSV column with one bad cell is all strings: each cell on its own
        v = _number_text(v, file, i, field, "an integer rating")
    if isinstance(v, bool) or not isinstance(v, int | float):
        try:  # numpy integers and floats
            v = v.item()
        except AttributeError:
            raise DataError(
                file, i, field, f"expected an integer rating, got {type(v).__name__}"
            ) from None
    if isinstance(v, float):
        if math.isnan(v):
            raise DataError(file, i, field, "missing rating (NaN)")
        if not v.is_integer():
            raise DataError(file, i, field, f"expected an integer rating, got {v}")
        v = int(v)
    if not RATING_MIN <= v <= RATING_MAX:
        raise DataError(file, i, field, f"rating {v} out of range {RATING_MIN}..{RATING_MAX}")
    return v


def _number_text(v: str, file: str, i: int, field: str, what: str) -> int | float:
    """A number written as text ("4", " 4.0 "); anything else is this row's error."""
    t = v.strip()
    if not t:
        raise DataError(file, i, field, f"missing value (empty cell), expected {what}")
    try:
        return int(t)
    except ValueError:
        try:
            return float(t)
        except ValueError:
            raise DataError(file, i, field, f"expected {what}, got {v!r}") from None


def _ratings(row: Mapping[str, Any], file: str, i: int) -> tuple[tuple[int, ...] | None, ...]:
    if not any(c in row for c in RATING_COLUMNS):
        return None, None
    return tuple(
        tuple(_rating(row, f"{side}_{p}_rating", file, i) for p in PRINCIPLES)
        for side in ("chosen", "rejected")
    )


def _distinct(chosen: str, rejected: str, file: str, i: int) -> None:
    if chosen.strip() == rejected.strip():
        raise DataError(file, i, "rejected", "chosen and rejected are identical")


def _margin(row: Mapping[str, Any], file: str, i: int) -> float | None:
    v = row.get("margin")
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, str):  # a CSV column with one bad cell is all strings
        v = _number_text(v, file, i, "margin", "a number")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DataError(file, i, "margin", f"expected a number, got {type(v).__name__}")
    if not math.isfinite(v):
        if math.isnan(v):
            return None  # an empty cell of an optional column
        raise DataError(file, i, "margin", f"expected a finite number, got {v}")
    return float(v)


def _id(row: Mapping[str, Any], file: str, i: int) -> str:
    v = row.get("id")
    return f"{file}:{i}" if v is None or v == "" else str(v)


# ---------------------------------------------------------------------------- row parsers


def parse_conversation(row: Mapping[str, Any], file: str, i: int) -> Conversation:
    """A `{"messages": [...]}` row. Raises `DataError` naming the field on any problem."""
    if "messages" not in row:
        raise DataError(file, i, "messages", "missing field")
    messages = _messages(row["messages"], file, i, "messages", last="assistant")
    return Conversation(messages, _id(row, file, i), file, i)


def parse_preference(row: Mapping[str, Any], file: str, i: int) -> PreferencePair:
    """A `{"prompt", "chosen", "rejected"}` row (prompt a string or a message list)."""
    if "prompt" not in row:
        raise DataError(file, i, "prompt", "missing field")
    prompt = row["prompt"]
    if isinstance(prompt, str) or prompt is None:
        prompt_msgs = (Message("user", _text(row, "prompt", file, i)),)
    else:
        prompt_msgs = _messages(prompt, file, i, "prompt", last="user")
    chosen, rejected = _reply(row, "chosen", file, i), _reply(row, "rejected", file, i)
    _distinct(chosen, rejected, file, i)
    cr, rr = _ratings(row, file, i)
    return PreferencePair(
        prompt_msgs, chosen, rejected, _id(row, file, i), cr, rr, _margin(row, file, i), {}, file, i
    )


def parse_psychocounsel(row: Mapping[str, Any], file: str, i: int) -> PreferencePair:
    """A PsychoCounsel-Preference row as published (`question`, `chosen`, `rejected`, ratings)."""
    question = _text(row, "question", file, i)
    chosen, rejected = _text(row, "chosen", file, i), _text(row, "rejected", file, i)
    _distinct(chosen, rejected, file, i)
    cr, rr = _ratings(row, file, i)
    meta = {c: row[c] for c in PSYCHOCOUNSEL_META_COLUMNS if c in row}
    if "ID" in row and "prefID" in row:
        pid = f"{row['ID']}-{row['prefID']}"
    elif "ID" in row:
        pid = str(row["ID"])
    else:
        pid = _id(row, file, i)
    prompt = (Message("user", question),)
    return PreferencePair(
        prompt, chosen, rejected, pid, cr, rr, _margin(row, file, i), meta, file, i
    )


PARSERS = {
    "conversation": parse_conversation,
    "preference": parse_preference,
    "psychocounsel": parse_psychocounsel,
}


def parse_rows(
    rows: Iterable[Mapping[str, Any]],
    fmt: Format,
    file: str,
    *,
    on_error: OnError = "raise",
    skips: SkipCounter | None = None,
) -> list[Example]:
    """Parses and validates rows of one format; bad rows raise or are counted in `skips`."""
    parse = PARSERS[fmt]
    out: list[Example] = []
    for i, row in enumerate(rows):
        try:
            out.append(parse(row, file, i))
        except DataError as e:
            handle(e, on_error, skips)
    return out
