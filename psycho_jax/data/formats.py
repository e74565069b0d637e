"""Examples as frozen dataclasses, and row parsers that validate as they read.

Three row formats, detected from the columns (`detect_format`):

- `"conversation"`: `{"messages": [{"role": ..., "content": ..., "label"?: ...}, ...], "id"?: ...}`
  for SFT. Roles are `system` (first only), then `user` / `assistant` alternating, ending with
  `assistant`. Real transcripts are read as they are (`ConversationOptions`): speaker names map to
  roles (`ROLE_ALIASES`: seeker/client/patient -> user, supporter/therapist/counselor -> assistant,
  plus a user's `role_map`), the speaker may be under `speaker`/`from` and the text under
  `text`/`value`/`utterance`; a session may open with the assistant (the therapist's opening is
  context and a target like every assistant turn); trailing user turns are dropped (counted);
  consecutive turns of one speaker are merged when `merge_consecutive` is set (counted), else an
  error; a per-turn `label` (e.g. an ESConv strategy) is kept on the message. The turns may be
  under `dialog`/`dialogue`/`conversations` (ESConv), or the table may hold one row per utterance
  (`"utterances"`: AnnoMI-style `transcript_id`, `interlocutor`, `utterance_text`), grouped into
  sessions by `group_utterances`.
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
Format = Literal["conversation", "preference", "psychocounsel", "utterances"]


ROLE_ALIASES = {
    "human": "user",
    "seeker": "user",
    "client": "user",
    "patient": "user",
    "usr": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "supporter": "assistant",
    "therapist": "assistant",
    "counselor": "assistant",
    "counsellor": "assistant",
    "sys": "system",
}
"""Speaker names of public counseling transcripts and chat dumps, and the role each plays."""
ROLE_KEYS = ("role", "speaker", "from", "interlocutor")  # where a message's speaker may be
CONTENT_KEYS = ("content", "text", "value", "utterance", "utterance_text")  # and its text
LABEL_KEYS = ("label", "strategy")  # a per-turn label (ESConv: also annotation.strategy)
MESSAGES_KEYS = ("messages", "dialog", "dialogue", "conversations")  # a row's list of turns
SESSION_KEYS = ("transcript_id", "session_id", "conversation_id", "dialog_id", "dialogue_id")
ORDER_KEYS = ("utterance_id", "turn_id", "turn", "timestamp")  # order within a session


@dataclasses.dataclass(frozen=True)
class ConversationOptions:
    """How messages of real transcripts are read.

    Attributes:
        role_map: extra speaker name -> role ("user", "assistant", "system"), on top of
            `ROLE_ALIASES`; names are matched case-insensitively.
        merge_consecutive: join consecutive turns of one speaker (with a blank line) instead of
            rejecting the row.
    """

    role_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    merge_consecutive: bool = False

    def __post_init__(self):
        bad = {k: v for k, v in self.role_map.items() if v not in ROLES}
        if bad:
            raise ValueError(f"role_map: roles must be one of {list(ROLES)}, got {bad}")

    def role(self, name: str) -> str | None:
        key = name.strip().lower()
        mapped = {k.lower(): v for k, v in self.role_map.items()}
        if key in mapped:
            return mapped[key]
        return key if key in ROLES else ROLE_ALIASES.get(key)


def parse_role_map(spec: str | Mapping[str, str]) -> dict[str, str]:
    """`"Seeker=user,Supporter=assistant"` (or a dict) -> {speaker: role}.

    Raises:
        ValueError: an entry is not `name=role` or the role is unknown.
    """
    if isinstance(spec, Mapping):
        out = dict(spec)
    else:
        out = {}
        for item in filter(None, (x.strip() for x in spec.split(","))):
            name, sep, role = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"role_map entry {item!r} is not name=role")
            out[name.strip()] = role.strip()
    ConversationOptions(out)  # checks the roles
    return out


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str
    label: str | None = None  # a per-turn annotation, e.g. a support strategy

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
        self.assistant_tokens = [0, 0]  # (in the data, kept as targets) over conversations
        self._keep = keep

    def skip(self, reason: str, where: str = "") -> None:
        self.skipped[reason] += 1
        if where and len(self.examples[reason]) < self._keep:
            self.examples[reason].append(where)

    def count(self, event: str, n: int = 1) -> None:
        """Records something that changed a row without dropping it (e.g. a truncation)."""
        self.events[event] += n

    def count_assistant_tokens(self, total: int, kept: int) -> None:
        """Adds a conversation's assistant tokens and how many of them stay training targets."""
        self.assistant_tokens[0] += total
        self.assistant_tokens[1] += kept

    @property
    def assistant_share(self) -> float | None:
        """The share of assistant tokens kept as targets (None: no conversations counted)."""
        total, kept = self.assistant_tokens
        return kept / total if total else None

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: SkipCounter) -> None:
        self.skipped.update(other.skipped)
        self.events.update(other.events)
        self.count_assistant_tokens(*other.assistant_tokens)
        for reason, places in other.examples.items():
            room = self._keep - len(self.examples[reason])
            self.examples[reason].extend(places[: max(room, 0)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": dict(self.skipped),
            "events": dict(self.events),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "assistant_tokens": {
                "total": self.assistant_tokens[0],
                "kept": self.assistant_tokens[1],
            },
        }

    def summary(self, name: str = "data") -> str:
        lines = [f"{name}: skipped {self.total_skipped} row(s)"]
        for reason, n in self.skipped.most_common():
            first = "; ".join(self.examples.get(reason, []))
            lines.append(f"  {n} x {reason}" + (f" (e.g. {first})" if first else ""))
        for event, n in self.events.most_common():
            lines.append(f"  {n} x {event}")
        if self.assistant_share is not None:
            total, kept = self.assistant_tokens
            lines.append(
                f"  assistant tokens kept as targets: {kept:,} of {total:,} "
                f"({100 * self.assistant_share:.1f}%)"
            )
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
    if cols & set(MESSAGES_KEYS):
        return "conversation"
    if cols & set(SESSION_KEYS) and cols & set(ROLE_KEYS) and cols & set(CONTENT_KEYS):
        return "utterances"  # one row per utterance (AnnoMI-style transcripts)
    if "prompt" in cols:
        return "preference"
    if cols & {"question", "chosen", "rejected"}:  # check_columns then names what is missing
        return "psychocounsel"
    raise DataError(
        file,
        None,
        None,
        f"unknown format for columns {sorted(cols)}: expected 'messages' (conversations; or "
        f"{list(MESSAGES_KEYS[1:])}), one row per utterance ({list(SESSION_KEYS)} with a "
        "speaker and a text column), "
        "'prompt'/'chosen'/'rejected' (preference pairs) or PsychoCounsel-Preference's "
        "'question'/'chosen'/'rejected'",
    )


def check_columns(columns: Iterable[str], fmt: Format, file: str) -> None:
    """Raises a `DataError` naming the missing columns of a table in format `fmt`."""
    cols = set(columns)
    need = {
        "conversation": (),
        "utterances": (),
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


def _field(m: Mapping[str, Any], keys: Sequence[str]) -> str:
    return next((k for k in keys if k in m), keys[0])


def _label(m: Mapping[str, Any]) -> str | None:
    value = next((m[k] for k in LABEL_KEYS if m.get(k) not in (None, "")), None)
    annotation = m.get("annotation")
    if value is None and isinstance(annotation, Mapping):  # ESConv: {"strategy": "Question"}
        value = annotation.get("strategy") or None
    if isinstance(value, float) and math.isnan(value):  # an empty CSV cell
        return None
    return None if value is None else str(value)


def _messages(
    value: Any,
    file: str,
    i: int,
    field: str,
    *,
    last: Literal["user", "assistant"],
    opts: ConversationOptions | None = None,
    skips: SkipCounter | None = None,
) -> tuple[Message, ...]:
    opts = opts or ConversationOptions()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not len(value):
        raise DataError(file, i, field, "expected a non-empty list of messages")
    out: list[Message] = []
    where: list[str] = []  # each kept message's speaker field, for errors
    merged = 0
    for k, m in enumerate(value):
        f = f"{field}[{k}]"
        if not isinstance(m, Mapping):
            raise DataError(file, i, f, f"expected a message dict, got {type(m).__name__}")
        rkey = _field(m, ROLE_KEYS)
        name = _text(m, rkey, file, i, f"{f}.{rkey}")
        role = opts.role(name)
        if role is None:
            raise DataError(
                file,
                i,
                f"{f}.{rkey}",
                f"unknown speaker {name!r}: expected one of {list(ROLES)} or a known speaker name "
                f"({', '.join(sorted(ROLE_ALIASES))}); map others with role_map "
                f"(e.g. data.role_map='{name}=assistant')",
            )
        if role == "system" and k:
            raise DataError(file, i, f"{f}.{rkey}", "a system message must come first")
        ckey = _field(m, CONTENT_KEYS)
        content = _text(m, ckey, file, i, f"{f}.{ckey}")
        label = _label(m)
        if out and out[-1].role == role and role != "system" and opts.merge_consecutive:
            prev = out[-1]
            labels = [x for x in (prev.label, label) if x]
            joined = "+".join(dict.fromkeys(labels)) or None
            out[-1] = Message(role, f"{prev.content}\n\n{content}", joined)
            merged += 1
            continue
        out.append(Message(role, content, label))
        where.append(f"{f}.{rkey}")
    turns = out[1:] if out[0].role == "system" else out
    if not turns:
        raise DataError(file, i, field, "only a system message: no turns")
    for k in range(1, len(turns)):
        if turns[k].role == turns[k - 1].role:
            at = k + (len(out) - len(turns))
            raise DataError(
                file,
                i,
                where[at],
                f"two {turns[k].role!r} turns in a row: turns must alternate user/assistant (set "
                "merge_consecutive, data.merge_consecutive=True, to join them)",
            )
    trimmed = 0
    while turns and turns[-1].role != last and last == "assistant":
        turns, trimmed = turns[:-1], trimmed + 1
    if not any(t.role == "assistant" for t in turns) and last == "assistant":
        raise DataError(file, i, field, "no assistant turn: nothing to train on")
    if last == "user" and turns[-1].role != "user":
        raise DataError(file, i, field, f"the last turn must be 'user', got {turns[-1].role!r}")
    if skips is not None:
        if merged:
            skips.count("conversation: merged consecutive turns of one speaker", merged)
        if trimmed:
            skips.count("conversation: dropped trailing user turn(s) with no reply", trimmed)
        if turns[0].role == "assistant":
            skips.count("conversation: opens with the assistant (kept)")
    head = out[:1] if out[0].role == "system" else []
    return tuple(head + list(turns))


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


def parse_conversation(
    row: Mapping[str, Any],
    file: str,
    i: int,
    opts: ConversationOptions | None = None,
    skips: SkipCounter | None = None,
) -> Conversation:
    """A `{"messages": [...]}` row (or `dialog`, `dialogue`, `conversations`). Raises `DataError`
    naming the field on any problem."""
    key = _field(row, MESSAGES_KEYS)
    if key not in row:
        raise DataError(file, i, key, "missing field")
    messages = _messages(row[key], file, i, key, last="assistant", opts=opts, skips=skips)
    return Conversation(messages, _id(row, file, i), file, i)


def parse_preference(
    row: Mapping[str, Any],
    file: str,
    i: int,
    opts: ConversationOptions | None = None,
    skips: SkipCounter | None = None,
) -> PreferencePair:
    """A `{"prompt", "chosen", "rejected"}` row (prompt a string or a message list)."""
    if "prompt" not in row:
        raise DataError(file, i, "prompt", "missing field")
    prompt = row["prompt"]
    if isinstance(prompt, str) or prompt is None:
        prompt_msgs = (Message("user", _text(row, "prompt", file, i)),)
    else:
        prompt_msgs = _messages(prompt, file, i, "prompt", last="user", opts=opts, skips=skips)
    chosen, rejected = _reply(row, "chosen", file, i), _reply(row, "rejected", file, i)
    _distinct(chosen, rejected, file, i)
    cr, rr = _ratings(row, file, i)
    return PreferencePair(
        prompt_msgs, chosen, rejected, _id(row, file, i), cr, rr, _margin(row, file, i), {}, file, i
    )


def parse_psychocounsel(
    row: Mapping[str, Any],
    file: str,
    i: int,
    opts: ConversationOptions | None = None,
    skips: SkipCounter | None = None,
) -> PreferencePair:
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


def group_utterances(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One `{"id", "messages"}` row per session of a one-row-per-utterance table (AnnoMI-style:
    `transcript_id`, `interlocutor`, `utterance_text`, ...), sessions in order of first
    appearance, utterances by `utterance_id` / `turn_id` / ... when present, else file order;
    the session's other columns that never change within it are kept (e.g. `mi_quality`)."""
    sessions: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = row[_field(row, SESSION_KEYS)]
        sessions.setdefault(key, []).append(row)
    out = []
    for key, utterances in sessions.items():
        order = next((k for k in ORDER_KEYS if k in utterances[0]), None)
        if order and all(isinstance(u.get(order), int | float) for u in utterances):
            utterances = sorted(utterances, key=lambda u: u[order])
        shared = {
            k: v
            for k, v in utterances[0].items()
            if all(u.get(k) == v for u in utterances) and k not in SESSION_KEYS
        }
        out.append({**shared, "id": str(key), "messages": list(utterances)})
    return out


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
    options: ConversationOptions | None = None,
) -> list[Example]:
    """Parses and validates rows of one format; bad rows raise or are counted in `skips`."""
    if fmt == "utterances":
        rows, fmt = group_utterances(rows), "conversation"
    parse = PARSERS[fmt]
    out: list[Example] = []
    for i, row in enumerate(rows):
        try:
            out.append(parse(row, file, i, options, skips))
        except DataError as e:
            handle(e, on_error, skips)
    return out
