"""Personal information in counseling text: find it (audit) and scrub it (before training).

Each kind is replaced by a placeholder so the sentence still reads:

- `phone` -> `[phone]`: Google's libphonenumber (`phonenumbers.PhoneNumberMatcher`, through
  Presidio's `PhoneRecognizer`) tried with the default regions in `PHONE_REGIONS`, so "+44 20 7946
  0958", "0412 345 678", "030 1234567", "555 - 0144" and unseparated digits are all numbers;
- `email` -> `[email]`: Presidio's `EmailRecognizer` (domains checked against the public suffix list
  that `tldextract` ships) plus patterns for "jane @gmail.com" and the obfuscated forms "jane at gmail
  dot com", "jane(at)gmail(dot)com", "jane [at] gmail [dot] com";
- `url` -> `[website]` (web addresses: scheme, `www.`, bare domains on any public suffix such as .ie
  or .de, link shorteners) and `[handle]` (social handles, "@jane_doe"): Presidio
  `PatternRecognizer`s; a bare domain whose suffix is capitalised ("better.Life") is two sentences
  run together, not an address;
- `name` -> `[name]`: the counseling-specific cues of `pii_cues` (introductions, sign-offs,
  credentials, honorifics), the names a corpus passes in, and, with `Scrubber(ner_model=...)` and
  an installed spaCy model, Presidio's named-entity recogniser.

Crisis and help resources are never removed (`pii_cues.CRISIS_NUMBERS`, `CRISIS_HOSTS`,
`CRISIS_NAMES_RE`), matched on the whole number or address: "1-800-662-4357" and
"childline.org.uk/get-support" stay, "childline.org.uk.example.com" goes.

The generic recognisers live in `pii_recognizers`, the counseling layer in `pii_cues`.

Speed: the recognisers run only on windows around cheap triggers (a run of digits, an "@", a dot
inside a word, a closing word), so text without personal information costs a few regex scans.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence

import phonenumbers

from psycho_jax.data import pii_cues
from psycho_jax.data.pii_recognizers import (
    DIGITS,
    TRIGGERS,
    Email,
    EntityRecognizer,
    Handle,
    ObfuscatedEmail,
    Phone,
    Url,
    digits,
    may_be_domain,
    may_be_obfuscated,
    ner_analyzer,
)

KINDS = ("email", "url", "phone", "name")
PLACEHOLDERS = {
    "email": "[email]",
    "url": "[website]",
    "handle": "[handle]",
    "phone": "[phone]",
    "name": "[name]",
}
PHONE_REGIONS = ("US", "GB", "AU", "DE", "IE", "NZ", "IN", "FR", "ZA", "NL", "ES", "IT", "BR")
"""Default regions for numbers written without a country code (national formats)."""


@dataclasses.dataclass(frozen=True, order=True)
class Span:
    """`text[start:end]` is personal information of `kind`; `label` picks the placeholder."""

    start: int
    end: int
    kind: str
    label: str = ""

    @property
    def placeholder(self) -> str:
        return PLACEHOLDERS[self.label or self.kind]


_WINDOW = 80
_VANITY = re.compile(r"[-. ]?[A-Z]{3,}(?![A-Za-z])")
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d[ \t]*[-‐‑‒–—/][ \t]*(?:19|20)?\d\d")


def _windows(text: str, trigger: re.Pattern, radius: int = _WINDOW) -> list[tuple[int, int]]:
    """Merged windows of `radius` characters around each trigger, widened to whole words."""
    return _around(text, [m.span() for m in trigger.finditer(text)], radius)


def _around(text: str, spans: Sequence[tuple[int, int]], radius: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in spans:
        a = max(0, start - radius)
        a -= _NON_SPACE.match(text[max(0, a - 200) : a][::-1]).end()  # back to a space
        b = _NON_SPACE.match(text, min(len(text), end + radius)).end()
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def _union(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(a + b):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


_NON_SPACE = re.compile(r"\S*")


def is_crisis_number(number: str) -> bool:
    """Whether `number` (any format; "911/112/999" several) is a public crisis or help line
    (`CRISIS_NUMBERS`)."""
    parts = [digits(p) for p in re.split(r"[/,;]", number)]
    return all(
        d in pii_cues.CRISIS_NUMBERS or d.lstrip("0") in pii_cues.CRISIS_NUMBERS for d in parts if d
    ) and any(parts)


def is_crisis_site(url: str) -> bool:
    """Whether the whole address `url` is on a crisis or help resource's host (or a sub-domain)."""
    host = re.sub(r"(?i)^(?:https?|ftp)://", "", url)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0].lower().rstrip(".")
    host = host.removeprefix("www.")
    labels = host.split(".")  # the host or a parent domain of it on the list: set lookups
    return any(".".join(labels[k:]) in pii_cues.CRISIS_HOSTS for k in range(len(labels)))


_WARM_UP = (
    "Hi, I'm Tom. Call +44 20 7946 0958, 020 7946 0958, (02) 9876 5432, 030 12345678 or "
    "555-0144; jane@example.org, jane at gmail dot com, www.example.ie, @jane.\nThanks,\nTom, LPC"
)


class Scrubber:
    """Finds and replaces personal information (module docstring); `scrub`/`find` use one default.

    Args:
        phone_regions: default regions for national phone formats, tried in order.
        ner_model: a spaCy pipeline (package name or directory) whose PERSON entities are names
            too, through Presidio's `SpacyNlpEngine`; None: cues and given names only.
    """

    def __init__(self, phone_regions: Sequence[str] = PHONE_REGIONS, ner_model: str | None = None):
        self._email = Email()
        self._obfuscated = ObfuscatedEmail()
        self._url = Url()
        self._handle = Handle()
        self._phone = Phone(
            supported_regions=tuple(phone_regions), leniency=phonenumbers.Leniency.POSSIBLE
        )
        self._ner = ner_analyzer(ner_model) if ner_model else None
        self._warm_up()

    def _warm_up(self) -> None:
        """Loads what the libraries load lazily (each region's phone metadata and patterns, the
        public suffix list) once, here, instead of inside the first texts scrubbed."""
        for region in self._phone.supported_regions:
            list(phonenumbers.PhoneNumberMatcher(_WARM_UP, region, leniency=self._phone.leniency))
        self.scrub(_WARM_UP)

    # -------------------------------------------------------------------- spans

    def _run(
        self, recognizer: EntityRecognizer, text: str, windows, entity: str
    ) -> list[tuple[int, int]]:
        out = []
        for a, b in windows:
            for r in recognizer.analyze(text[a:b], [entity], None):
                out.append((a + r.start, a + r.end))
        return out

    def _phones(self, text: str) -> list[Span]:
        # One-character scans are cheaper than any regex scan; most texts have no digit at all.
        if not any(d in text for d in DIGITS) or sum(map(text.count, DIGITS)) < 7:
            return []
        runs = [
            m.span()
            for m in TRIGGERS["phone"].finditer(text)
            if len(digits(m.group())) >= 7 and not is_crisis_number(m.group())
        ]  # a crisis line ("1-800-273-8255") needs no library to be kept
        wins = _around(text, runs, 12)
        spans = []
        for a, b in sorted(set(self._run(self._phone, text, wins, "PHONE_NUMBER"))):
            vanity = _VANITY.match(text, b)  # "1-800-273-TALK": the letters are digits too
            if vanity:
                b = vanity.end()
            number = phonenumbers.convert_alpha_characters_in_number(text[a:b])
            if len(digits(number)) < 7 or _YEAR_RANGE.fullmatch(number.strip(" ()[]")):
                continue
            if is_crisis_number(number):
                continue
            spans.append(Span(a, b, "phone"))
        return spans

    def _addresses(self, text: str) -> list[Span]:
        spans: list[Span] = []
        wins = []
        if TRIGGERS["url"].search(text):
            wins = [w for w in _windows(text, TRIGGERS["url"], 0) if may_be_domain(text[slice(*w)])]
        if "://" in text or "www" in text or "WWW" in text:
            wins = _union(wins, _windows(text, TRIGGERS["url_scheme"], 0))
        if TRIGGERS["url_upper"].search(text):
            upper = _windows(text, TRIGGERS["url_upper"], 0)
            wins = _union(wins, [(a, b) for a, b in upper if text[a:b].upper() == text[a:b]])
        # E-mail windows: around "@", around spelled-out "at"/"dot", and before a domain that
        # follows " at " ("jane at gmail.com"; not "a line at findahelpline.com").
        email_wins = []
        if wins:
            email_wins = _around(
                text,
                [
                    (a, b)
                    for a, b in wins
                    if " at " in text[max(0, a - 48) : a + 1].lower()
                    and not is_crisis_site(text[a:b])
                ],
                _WINDOW,
            )
        if "@" in text:
            email_wins = _union(email_wins, _windows(text, TRIGGERS["at"]))
        if may_be_obfuscated(text):
            email_wins = _union(email_wins, _windows(text, TRIGGERS["email"]))
        if email_wins:
            for a, b in self._run(self._email, text, email_wins, "EMAIL_ADDRESS"):
                if not is_crisis_site(text[a:b].rsplit("@", 1)[-1].strip()):
                    spans.append(Span(a, b, "email"))
            for a, b in self._run(self._obfuscated, text, email_wins, "EMAIL_ADDRESS"):
                spans.append(Span(a, b, "email"))
            if "@" in text:
                at = _windows(text, TRIGGERS["at"], 0)
                for a, b in self._run(self._handle, text, at, "HANDLE"):
                    spans.append(Span(a, b, "url", "handle"))
        if wins:
            for a, b in self._run(self._url, text, wins, "URL"):
                if not is_crisis_site(text[a:b]):
                    spans.append(Span(a, b, "url"))
        return spans

    def _names(
        self, text: str, names: Iterable[str], words: Iterable[str], near: Sequence[Span]
    ) -> list[Span]:
        found = pii_cues.cue_spans(text, [(s.start, s.end) for s in near])
        found += pii_cues.known_spans(text, names, words)
        if self._ner is not None:
            for r in self._ner.analyze(text, language="en", entities=["PERSON"]):
                found.append((r.start, r.end))
        return [Span(a, b, "name") for a, b in found if b > a]

    def spans(self, text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> list[Span]:
        """Non-overlapping spans of personal information, in order. Where spans overlap, the
        address or number wins over a name, and overlapping names merge into one."""
        addresses = self._phones(text) + self._addresses(text)
        if addresses:
            addresses = _merge(addresses)
        names_ = self._names(text, names, words, addresses)
        if not names_:
            return addresses  # sorted by _merge
        names_ = [part for s in _merge(names_) for part in _outside(text, s, addresses)]
        return sorted(addresses + names_)

    def find(
        self, text: str, names: Iterable[str] = (), words: Iterable[str] = ()
    ) -> dict[str, int]:
        """Counts of personal information in `text` by kind (`KINDS`); kinds with none left out."""
        counts = collections.Counter(s.kind for s in self.spans(text, names, words))
        return {k: counts[k] for k in KINDS if counts[k]}

    def scrub(self, text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> str:
        """`text` with every span replaced by its placeholder."""
        out, last = [], 0
        for s in self.spans(text, names, words):
            out.append(text[last : s.start])
            out.append(s.placeholder)
            last = s.end
        out.append(text[last:])
        return "".join(out)


def _outside(text: str, span: Span, others: Sequence[Span]) -> list[Span]:
    """The parts of a name span outside the address spans ("Virginia Chowwww.example.ca": the
    name is "Virginia Chow", the address "www.example.ca")."""
    parts = [(span.start, span.end)]
    for o in others:
        parts = [
            piece
            for a, b in parts
            for piece in (((a, b),) if o.end <= a or b <= o.start else ((a, o.start), (o.end, b)))
        ]
    out = []
    for a, b in parts:
        while a < b and not text[a].isalpha():
            a += 1
        while b > a and not (text[b - 1].isalpha() or text[b - 1] == "."):
            b -= 1
        if b - a >= 2:
            out.append(dataclasses.replace(span, start=a, end=b))
    return out


_RANK = {"email": 0, "url": 1, "phone": 2, "name": 3}


def _merge(spans: Sequence[Span]) -> list[Span]:
    """Overlapping spans become one (the kind of the first, e-mails before web addresses)."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end, _RANK[s.kind])):
        if out and s.start < out[-1].end:
            last = out[-1]
            out[-1] = dataclasses.replace(last, end=max(last.end, s.end))
        elif out and s.kind == "name" == out[-1].kind and s.start == out[-1].end:
            out[-1] = dataclasses.replace(out[-1], end=s.end)
        else:
            out.append(s)
    return out


@functools.cache
def default() -> Scrubber:
    """The shared default `Scrubber` (built once: the recognisers compile their patterns)."""
    return Scrubber()


def find(text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> dict[str, int]:
    """Counts of personal information in `text` by kind: email, url (with handles), phone, name.

    `names` (full names) are matched in any case; `words` (single first or last names) only
    exactly as given, so "Hope" the name is found and "hope" the word is not.
    """
    return default().find(text, names, words)


def scrub(text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> str:
    """`text` with e-mails, web addresses, handles, phone numbers and names replaced (crisis and
    help resources kept). `names` and `words` as in `find`."""
    return default().scrub(text, names, words)
