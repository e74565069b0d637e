"""CounselChat (counselchat.com answers by licensed therapists) as SFT and weak preference data.

`counsel_chat.csv` columns: questionID, questionTitle, questionText, questionLink, topic,
therapistInfo, therapistURL, answerText, upvotes, views, split. Used here:

- SFT (`mode="sft"`): one conversation per answer: user = question title + text, assistant = answer.
- Weak preference pairs (`mode="pairs"`): for each question, every two answers with different
  upvotes; the more upvoted one is `chosen`. Upvotes are a weak signal (older answers collect more),
  so these pairs carry no margin; `meta` keeps both upvote counts.

Privacy: `therapistInfo` and `therapistURL` name real people. They are never training text; they
are only read to learn the therapists' names, which `pii.scrub` then removes from questions and
answers (full names everywhere; an answer's own therapist's first and last names too, which is how
they sign), with e-mails, phone numbers and web addresses.
"""

from __future__ import annotations

import itertools
import math
import pathlib
from collections.abc import Iterable
from typing import Literal

import regex

from psycho_jax.data import pii
from psycho_jax.data.files import read_file
from psycho_jax.data.formats import (
    Conversation,
    DataError,
    Example,
    Message,
    OnError,
    PreferencePair,
    SkipCounter,
    handle,
)

COLUMNS = (
    "questionID",
    "questionTitle",
    "questionText",
    "therapistInfo",
    "therapistURL",
    "answerText",
    "upvotes",
    "split",
)
_CREDENTIAL_SLUGS = frozenset(
    {
        *("lcsw", "lmsw", "licsw", "lsw", "lpc", "lpcc", "lpca", "lpcmh", "lmhc", "lmft", "lcpc"),
        *("lcmhc", "lmac", "lcas", "lcdc", "ncc", "cctp", "dcc", "cht", "phd", "ph", "psyd", "psy"),
        *("edd", "dbh", "md", "ma", "ms", "msw", "msc", "med", "mft", "mfti", "atr", "rpt", "cadc"),
        *("csat", "jd", "mph", "bcc", "cpc", "rn", "rp", "rmft", "ccp", "otr", "clt", "caps"),
        *("m", "d", "ed", "l", "s", "ii", "iii"),
    }
)


def therapist_name(info: str, url: str) -> str | None:
    """The therapist's name as written in `therapistInfo`, located with the slug of `therapistURL`.

    `therapistInfo` runs name and tagline together ("Jane DoeHelping you heal"); the URL slug
    (`.../therapists/jane-doe-lpc`) says which words are the name. Returns None if they disagree.
    """
    slug = url.rstrip("/").rsplit("/", 1)[-1].lower()
    words = [w for w in slug.split("-") if w and not w.isdigit()]
    if words and words[0] in ("dr", "ms", "mr", "mrs"):
        words = words[1:]
    name_words = list(itertools.takewhile(lambda w: w not in _CREDENTIAL_SLUGS, words))
    sep = r"[^a-z,]*"  # spaces, hyphens, parentheses, accented letters the slug dropped
    m = None
    for n in range(len(name_words), 0, -1):  # slugs may add a place: jane-doe-toronto
        m = regex.search(sep.join(map(regex.escape, name_words[:n])), info, regex.IGNORECASE)
        if m:
            break
    if m is None:
        return None
    end = m.end()
    while end < len(info) and info[end].isalpha() and info[end].islower():
        end += 1  # letters the slug lost ("Ström" -> "str-m"); stop at the tagline's capital
    name = info[m.start() : end].strip(" -(),")
    return name or None


def name_words(name: str) -> set[str]:
    """First and last words of a name (3+ letters): {"Jane", "Doe"} for "Jane Doe"."""
    words = [w.strip("()") for w in regex.split(r"\s+", name) if w.strip("()")]
    return {w for w in ((words[0], words[-1]) if words else ()) if len(w) >= 3}


def _whole(row: dict, field: str, file: str, i: int) -> int:
    """`row[field]` as a whole number (a CSV column with one bad cell is read as text)."""
    v = row[field]
    if isinstance(v, bool):
        raise DataError(file, i, field, f"expected a whole number, got {v!r}")
    if isinstance(v, int):
        return v
    try:
        f = float(str(v).strip())
    except ValueError:
        f = math.nan
    if not math.isfinite(f) or not f.is_integer():
        raise DataError(file, i, field, f"expected a whole number, got {v!r}")
    return int(f)


def load(
    path: str | pathlib.Path,
    *,
    split: str | None = None,
    mode: Literal["sft", "pairs"] = "sft",
    skips: SkipCounter | None = None,
    on_error: OnError = "raise",
) -> list[Example]:
    """CounselChat as scrubbed SFT conversations or weak preference pairs.

    Args:
        path: `counsel_chat.csv`.
        split: "train", "val" or "test" (the file's `split` column); None: all rows.
        mode: "sft" or "pairs".
        skips: counts answers left empty or identical after scrubbing (skipped), and rows skipped
            for a bad `questionID` or `upvotes` with `on_error="skip"`.
        on_error: "raise" or "skip" a row whose `questionID` or `upvotes` is not a whole number.

    Raises:
        DataError: the file is unreadable, lacks a column (named), or (`on_error="raise"`) a row's
            `questionID` or `upvotes` is not a whole number (file, row and field named).
    """
    file = str(path)
    rows = read_file(path)
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise DataError(file, None, missing[0], f"missing CounselChat column(s) {missing}")
    if mode not in ("sft", "pairs"):
        raise ValueError(f"mode must be 'sft' or 'pairs', got {mode!r}")
    skips = SkipCounter() if skips is None else skips
    names = {
        r["therapistURL"]: therapist_name(str(r["therapistInfo"]), str(r["therapistURL"]))
        for r in rows
    }
    full_names = frozenset(n for n in names.values() if n)
    splits = {str(r["split"]) for r in rows}
    if split is not None and split not in splits:
        raise DataError(file, None, "split", f"no rows in split {split!r} (have {sorted(splits)})")

    def clean(text: str, own: Iterable[str] = ()) -> str:
        return pii.scrub(str(text).replace("\xa0", " "), full_names, frozenset(own)).strip()

    questions: dict[int, tuple[str, list[tuple[int, str, int]]]] = {}
    for i, r in enumerate(rows):
        if split is not None and str(r["split"]) != split:
            continue
        try:
            qid, upvotes = _whole(r, "questionID", file, i), _whole(r, "upvotes", file, i)
        except DataError as e:
            handle(e, on_error, skips)
            continue
        own = name_words(names[r["therapistURL"]]) if names[r["therapistURL"]] else set()
        answer = clean(r["answerText"], own)
        if qid not in questions:
            title, body = str(r["questionTitle"]).strip(), str(r["questionText"]).strip()
            q = title if not body or body == title else f"{title}\n\n{body}"
            questions[qid] = (clean(q), [])
        if len(answer) < 2:
            skips.skip("counselchat: empty answer after scrubbing", f"{file}: row {i}")
            continue
        questions[qid][1].append((i, answer, upvotes))

    out: list[Example] = []
    for qid, (question, answers) in questions.items():
        if mode == "sft":
            for i, answer, _ in answers:
                msgs = (Message("user", question), Message("assistant", answer))
                out.append(Conversation(msgs, f"counselchat-{qid}-{i}", file, i))
            continue
        for (i, a, ua), (j, b, ub) in itertools.combinations(answers, 2):
            if ua == ub:
                continue
            if a == b:
                skips.skip("counselchat: identical answers", f"{file}: rows {i},{j}")
                continue
            (ci, c, uc), (ri, rj, ur) = (
                ((i, a, ua), (j, b, ub)) if ua > ub else ((j, b, ub), (i, a, ua))
            )
            out.append(
                PreferencePair(
                    (Message("user", question),),
                    c,
                    rj,
                    f"counselchat-{qid}-{ci}-{ri}",
                    meta={"chosen_upvotes": uc, "rejected_upvotes": ur, "questionID": qid},
                    file=file,
                    row=ci,
                )
            )
    return out
