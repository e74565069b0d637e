"""Personal information in counseling text: find it (audit) and scrub it (before training).

Scrubbed, each replaced by a bracketed placeholder so the sentence still reads:
- e-mail addresses -> `[email]`; web addresses (`http(s)://`, `www.`, bare `name.com`) -> `[website]`;
- phone numbers -> `[phone]`, except public crisis lines (`CRISIS_LINES`; 988 and 741741 are too
  short to look like phone numbers) and crisis web sites (`CRISIS_SITES`), which are resources a
  counseling reply should keep;
- names: honorific + name ("Dr. Jane Smith", "I'm Ms. Lee"), self-introductions ("my name is
  Jane"), sign-offs ("Warmly, Jane" / "- Jane Smith, LPC" at the end), names followed by
  credentials ("Jane Smith, LCSW"), and names passed in (e.g. the therapists of a dataset) ->
  `[name]`.

Regexes, not a named-entity model: they catch the patterns above, not every name in free text; the
audit reports what they find so that a person can look.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable

import regex

CREDENTIALS = (
    "LCSW|LMSW|LICSW|LSW|LPC|LPCC|LPCA|LPC-S|LMHC|LMFT|LCPC|LCMHC|LMAC|LCAS|LCADC|NCC|CCTP|DCC|CHT|"
    "PhD|Ph\\.D\\.?|PsyD|Psy\\.D\\.?|EdD|MD|M\\.D\\.|MA|M\\.A\\.|MS|M\\.S\\.|MSW|MSc|MEd|M\\.Ed\\.?|"
    "MFT|MFTI|ATR|RPT|CADC|CSAT|JD|MPH|BCC"
)
_NAME = r"\p{Lu}[\p{L}'’\-]+"
_FULL_NAME = rf"{_NAME}(?:\s+\p{{Lu}}\.)?(?:\s+{_NAME}){{0,2}}"

EMAIL_RE = regex.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_TLDS = (
    "com|org|net|edu|gov|info|biz|io|us|co|me|health|life|today|online|care|help|counseling|therapy"
)
URL_RE = regex.compile(
    r"(?:https?://|www\.)[^\s<>()\"']+[^\s<>()\"'.,;:!?]"
    rf"|\b[\w\-]+(?:\.[\w\-]+)*\.(?:{_TLDS})\b(?:/[^\s<>()\"']*[^\s<>()\"'.,;:!?])?",
    regex.IGNORECASE,
)
_URL_HINT = regex.compile(rf"https?://|www\.|\.(?:{_TLDS})\b", regex.IGNORECASE)  # cheap pre-check
PHONE_RE = regex.compile(
    r"(?<!\d)(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-]?)\d{3}[\s.\-]\d{4}(?!\d)"
)
CRISIS_LINES = frozenset(
    {
        *("8002738255", "18002738255"),  # US National Suicide Prevention Lifeline (before 988)
        *("8007997233", "18007997233"),  # US National Domestic Violence Hotline
        *("8006564673", "18006564673"),  # RAINN sexual assault hotline
        *("8004224453", "18004224453"),  # Childhelp National Child Abuse Hotline
    }
)
"""Digits of public crisis lines: never scrubbed or reported."""
CRISIS_SITES = regex.compile(
    r"(?:https?://)?(?:www\.)?(?:findahelpline\.com|988lifeline\.org|suicidepreventionlifeline\.org|"
    r"thehotline\.org|rainn\.org|crisistextline\.org|samaritans\.org|childhelp\.org|"
    r"childline\.org\.uk|nationaldahelpline\.org\.uk)(?:/\S*)?$",
    regex.IGNORECASE,
)
"""Public crisis-resource web sites: never scrubbed or reported."""
HONORIFIC_RE = regex.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Prof)\.?\s+{_FULL_NAME}")
INTRO_RE = regex.compile(rf"(?i:\bmy name is)\s+(?:(?:Dr|Mr|Mrs|Ms|Mx)\.?\s+)?{_FULL_NAME}")
CREDENTIAL_NAME_RE = regex.compile(rf"\b{_FULL_NAME},?\s+(?:{CREDENTIALS})\b")
SIGN_OFF_RE = regex.compile(
    rf"(?i:\b(?:warmly|sincerely|best|regards|best regards|kind regards|best wishes|blessings|"
    rf"take care|peace|cheers|respectfully|with care)),?\s*[\r\n\-–—]*\s*{_FULL_NAME}\s*"
    rf"(?:,?\s*(?:{CREDENTIALS})\b[\s,]*)*\s*$"
    rf"|(?:^|\n)\s*[\-–—]{{1,2}}\s*{_FULL_NAME}(?:,?\s*(?:{CREDENTIALS})\b)*\s*$"
)

PLACEHOLDERS = {"email": "[email]", "url": "[website]", "phone": "[phone]", "name": "[name]"}


def _is_crisis_line(number: str) -> bool:
    return "".join(c for c in number if c.isdigit()) in CRISIS_LINES


def _url(m: regex.Match) -> str:
    return m.group(0) if CRISIS_SITES.match(m.group(0)) else PLACEHOLDERS["url"]


@functools.lru_cache(maxsize=64)
def _names_re(names: frozenset[str], ignore_case: bool) -> regex.Pattern | None:
    if not names:
        return None
    alts = sorted(names, key=len, reverse=True)
    flags = regex.IGNORECASE if ignore_case else 0
    return regex.compile(
        r"(?<!\p{L})(?:" + "|".join(map(regex.escape, alts)) + r")(?!\p{L})", flags
    )


@functools.lru_cache(maxsize=64)
def _by_first_word(names: frozenset[str]) -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = collections.defaultdict(set)
    for n in names:
        words = _WORD_RE.findall(n.lower())
        if words:
            index[words[0]].add(n)
    return {k: frozenset(v) for k, v in index.items()}


_WORD_RE = regex.compile(r"\p{L}+")


def _known_names(text: str, names: Iterable[str], words: Iterable[str]) -> list[regex.Pattern]:
    """Patterns for the given names that can occur in `text` (found by their first word)."""
    names = names if isinstance(names, frozenset) else frozenset(n for n in names if n)
    words = words if isinstance(words, frozenset) else frozenset(w for w in words if w)
    if not names and not words:
        return []
    present = set(_WORD_RE.findall(text.lower()))
    index = _by_first_word(names)
    candidates = frozenset().union(*(index[w] for w in present & index.keys()))
    pats = (
        _names_re(candidates, True),
        _names_re(frozenset(w for w in words if w.lower() in present), False),
    )
    return [p for p in pats if p is not None]


def _urls(text: str) -> list[str]:
    return URL_RE.findall(text) if _URL_HINT.search(text) else []


def _sub_sign_off(text: str) -> str:
    # A sign-off ends the text: search its last 400 characters only (the pattern is slow on long text).
    cut = max(0, len(text) - 400)
    return text[:cut] + SIGN_OFF_RE.sub(lambda m: _keep_lead(m.group(0)), text[cut:])


def find(text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> dict[str, int]:
    """Counts of personal information in `text` by kind: email, url, phone, name.

    `names` (full names) are matched in any case; `words` (single first or last names) only
    exactly as given, so "Hope" the name is found and "hope" the word is not.
    """
    hits: collections.Counter[str] = collections.Counter()
    hits["email"] = len(EMAIL_RE.findall(text))
    stripped = EMAIL_RE.sub(" ", text)
    hits["url"] = sum(not CRISIS_SITES.match(u) for u in _urls(stripped))
    hits["phone"] = sum(not _is_crisis_line(m) for m in PHONE_RE.findall(text))
    spans = set()
    patterns = [
        HONORIFIC_RE,
        INTRO_RE,
        CREDENTIAL_NAME_RE,
        *_known_names(text, names, words),
    ]
    for pattern in patterns:
        spans.update(m.span() for m in pattern.finditer(text))
    cut = max(0, len(text) - 400)
    spans.update(
        (cut + a, cut + b) for a, b in (m.span() for m in SIGN_OFF_RE.finditer(text[cut:]))
    )
    hits["name"] = len(spans)
    return {k: v for k, v in hits.items() if v}


def scrub(text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> str:
    """`text` with e-mails, web addresses, phone numbers (not crisis lines) and names replaced.

    `names` and `words` as in `find`.
    """
    text = EMAIL_RE.sub(PLACEHOLDERS["email"], text)
    # Phones before web addresses: "Example.com404.293.5654" (a lost space) hides the address.
    text = PHONE_RE.sub(
        lambda m: m.group(0) if _is_crisis_line(m.group(0)) else PLACEHOLDERS["phone"], text
    )
    if _URL_HINT.search(text):
        text = URL_RE.sub(_url, text)
    text = _sub_sign_off(text)
    for pattern in _known_names(text, names, words):
        text = pattern.sub(PLACEHOLDERS["name"], text)
    text = HONORIFIC_RE.sub(PLACEHOLDERS["name"], text)
    text = CREDENTIAL_NAME_RE.sub(PLACEHOLDERS["name"], text)
    text = INTRO_RE.sub(lambda m: _intro(m.group(0)), text)
    return text


def _keep_lead(sign_off: str) -> str:
    """Keeps the closing word of a sign-off ("Warmly,"), drops the name after it."""
    m = regex.match(r"\s*(?i:[a-z ]+),?", sign_off)
    lead = m.group(0).strip() if m and m.group(0).strip() else ""
    return (" " + lead if lead else "").rstrip()


def _intro(match: str) -> str:
    return f"{match[: len('my name is')]} {PLACEHOLDERS['name']}"
