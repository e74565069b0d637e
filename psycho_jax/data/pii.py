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
import regex
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer

from psycho_jax.data import pii_cues

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
NER_INSTALL_HINT = (
    "pip install 'psycho_jax[ner]' and a spaCy pipeline with a PERSON entity "
    "(e.g. `python -m spacy download en_core_web_lg`, or a local pipeline directory)"
)


@functools.cache
def _suffixes() -> tldextract.TLDExtract:
    # The public suffix list that tldextract ships: never fetched (no network at run time).
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _has_public_suffix(host: str) -> bool:
    parts = _suffixes()(host.lower())
    return bool(parts.suffix) and bool(parts.domain)


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


# ---------------------------------------------------------------------------- recognisers


class _Email(EmailRecognizer):
    """Presidio's e-mail pattern, a stray space around "@", domains on a public suffix."""

    PATTERNS = [
        *EmailRecognizer.PATTERNS,
        Pattern(
            "Email (space around @)",
            r"(?<![\w.@])[\w.+\-]*\w[ \t]+@[ \t]*\w[\w\-]*(?:\.[\w\-]+)+",
            0.5,
        ),
        Pattern(
            "Email (space after @)", r"(?<![\w.@])[\w.+\-]*\w@[ \t]+\w[\w\-]*(?:\.[\w\-]+)+", 0.5
        ),
    ]

    def validate_result(self, pattern_text: str) -> bool:
        host = pattern_text.rsplit("@", 1)[-1].strip().rstrip(".")
        return _has_public_suffix(host)


_AT = r"(?:[ \t]*[\(\[\{<][ \t]*at[ \t]*[\)\]\}>][ \t]*|[ \t]+at[ \t]+|[ \t]*@[ \t]*)"
_DOT = r"(?:[ \t]*[\(\[\{<][ \t]*dot[ \t]*[\)\]\}>][ \t]*|[ \t]+dot[ \t]+|\.)"
_LABEL = r"[a-z0-9](?:[a-z0-9\-]{0,62}[a-z0-9])?"
_MAIL_HOSTS = (
    r"gmail|googlemail|yahoo|hotmail|outlook|live|icloud|me|aol|protonmail|proton|gmx|web|mail|"
    r"yandex|zoho|msn|comcast|verizon|btinternet|sky|eircom|bigpond|optusnet|t-online|fastmail"
)


class _ObfuscatedEmail(PatternRecognizer):
    """ "jane at gmail dot com", "jane(at)gmail(dot)com", "jane [at] gmail [dot] com", "JANE AT
    GMAIL DOT COM", "jane.doe at gmail.com". Matched with overlaps, so that "me at jane.doe" (no
    suffix: rejected) does not hide "jane.doe at gmail dot com" after it."""

    PATTERN = (
        rf"(?<![\w.@])[a-z0-9][\w.+\-]{{0,63}}(?:{_DOT}[\w+\-]{{1,63}}){{0,3}}"  # "jane dot doe"
        rf"{_AT}{_LABEL}(?:{_DOT}{_LABEL}){{1,3}}(?![\w])"
    )

    def __init__(self) -> None:
        super().__init__(
            "EMAIL_ADDRESS",
            name="ObfuscatedEmail",
            patterns=[Pattern("obfuscated", self.PATTERN, 0.6)],
        )
        self._re = regex.compile(self.PATTERN, regex.IGNORECASE)

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        found = [
            RecognizerResult("EMAIL_ADDRESS", m.start(), m.end(), 0.6)
            for m in self._re.finditer(text, overlapped=True)
            if self.validate_result(m.group())
        ]
        return EntityRecognizer.remove_duplicates(found)

    def validate_result(self, pattern_text: str) -> bool:
        m = re.match(rf"(?i)(.*?){_AT}(.*)$", pattern_text)
        if m is None:
            return False
        local, host = m.group(1), m.group(2)
        plain_at = re.fullmatch(
            r"(?i)[ \t]+at[ \t]+|[ \t]*@[ \t]*",
            pattern_text[len(local) : len(pattern_text) - len(host)],
        )
        host_plain = re.sub(rf"(?i){_DOT}", ".", host)
        if not _has_public_suffix(host_plain):
            return False
        obfuscated_dot = host_plain != host
        if pattern_text.count("@") and not obfuscated_dot and "(" not in host:
            return False  # a plain address: _Email's
        if plain_at and not obfuscated_dot:
            # "look at example.com": an address only when the host is a mail provider and the
            # local part looks like one (digits, dots, underscores).
            return bool(re.match(rf"(?i)(?:{_MAIL_HOSTS})\.", host_plain)) and bool(
                re.search(r"[\d._]", local)
            )
        return True


_URL_END = r"(?:[^\s<>\"'()\[\]{}]*[^\s<>\"'()\[\]{}.,;:!?])?"


class _Url(PatternRecognizer):
    """Web addresses: with a scheme, with `www.`, or a bare domain on a public suffix."""

    def __init__(self) -> None:
        super().__init__(
            "URL",
            name="Url",
            patterns=[
                Pattern("scheme", rf"(?<![\w@])(?:https?|ftp)://{_URL_END}", 0.9),
                # "Lewiswww.example.com": a lost space glues "www." to a word.
                Pattern("www", rf"(?<![@.])www\d{{0,3}}\.{_URL_END}", 0.8),
                Pattern(
                    "bare",
                    rf"(?<![\w@.\-])(?:{_LABEL}\.)+[a-z]{{2,24}}(?![a-z_\-@])(?:[/?#]{_URL_END})?",
                    0.5,
                ),
            ],
        )

    def validate_result(self, pattern_text: str) -> bool:
        if re.match(r"(?i)(?:https?|ftp)://|www\d{0,3}\.", pattern_text):
            return True
        host = re.split(r"[/?#]", pattern_text, maxsplit=1)[0]
        tld = host.rsplit(".", 1)[-1]
        if tld[0].isupper() and not host.isupper():
            return False  # "better.Life", "time.It": sentences run together
        return _has_public_suffix(host)


_BARE = re.compile(rf"(?i)(?:{_LABEL}\.)+[a-z]{{2,24}}(?![a-z])")


def _may_be_domain(token: str) -> bool:
    """A cheap check before the URL recogniser: does the token hold a host on a public suffix?"""
    return any(_has_public_suffix(m.group(0)) for m in _BARE.finditer(token))


class _Handle(PatternRecognizer):
    """Social handles: "@jane_doe", "IG: @calm.with.kai"."""

    def __init__(self) -> None:
        super().__init__(
            "HANDLE",
            name="Handle",
            patterns=[
                Pattern(
                    "handle", r"(?<![\w@.])@[a-z0-9_](?:[a-z0-9_.]{0,28}[a-z0-9_])?(?![\w@])", 0.6
                )
            ],
        )


class _Phone(PhoneRecognizer):
    """Presidio's libphonenumber recogniser at `POSSIBLE` leniency (fictional 555 numbers are
    numbers too), trying the default regions in order and stopping at the first that reads a
    number in the window: a national format ("020 7946 0958") needs a region that knows it."""

    def analyze(self, text, entities, nlp_artifacts=None):
        todo = [m.span() for m in _TRIGGERS["phone"].finditer(text) if len(_digits(m.group())) >= 7]
        found = []
        for region in self.supported_regions:
            if not todo:
                break
            for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=self.leniency):
                found.append(self._get_recognizer_result(m, text, region, nlp_artifacts))
            todo = [run for run in todo if not _covered(text, run, found)]
        return EntityRecognizer.remove_duplicates(found)


def _covered(text: str, run: tuple[int, int], found: Sequence[RecognizerResult]) -> bool:
    """Whether one number found holds every digit of `text[run]`: a region that reads "0151
    53605649" as two numbers has not read it (German mobile). A run of two numbers is never
    covered, so every region is tried and the longest readings kept."""
    digits = [k for k in range(*run) if text[k].isdigit()]
    return any(r.start <= digits[0] and digits[-1] < r.end for r in found)


# Cheap triggers (stdlib `re`, each led by a literal or one character class, so they scan fast):
# the recognisers only see windows around them.
_TRIGGERS = {
    "phone": re.compile(r"\d[\d \t().\-‐‑‒–—/]{4,}\d"),
    "email": re.compile(r"@|[\(\[\{<][ \t]*[aA][tT][ \t]*[\)\]\}>]|[ \t][aA][tT][ \t]"),
    # A bare domain's suffix is lower case (or the whole address upper case): "better.Life" is not.
    "url": re.compile(r"\.[a-z]{2,24}(?![a-z])"),
    "url_upper": re.compile(r"\.[A-Z]{2,24}(?![A-Za-z])"),
    "url_scheme": re.compile(r"://|[wW]{3}\d{0,3}\."),
    "at": re.compile("@"),
}
_DIGITS = "0123456789"


def _obfuscated(text: str) -> bool:
    """Whether text may hold an obfuscated address ("at" and "dot" spelled out)."""
    low = text.lower()
    return "dot" in low or "(at" in low or "[at" in low or "{at" in low or "<at" in low


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


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def is_crisis_number(number: str) -> bool:
    """Whether `number` (any format; "911/112/999" several) is a public crisis or help line
    (`CRISIS_NUMBERS`)."""
    parts = [_digits(p) for p in re.split(r"[/,;]", number)]
    return all(
        d in pii_cues.CRISIS_NUMBERS or d.lstrip("0") in pii_cues.CRISIS_NUMBERS for d in parts if d
    ) and any(parts)


def is_crisis_site(url: str) -> bool:
    """Whether the whole address `url` is on a crisis or help resource's host (or a sub-domain)."""
    host = re.sub(r"(?i)^(?:https?|ftp)://", "", url)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0].lower().rstrip(".")
    host = host.removeprefix("www.")
    return any(host == h or host.endswith("." + h) for h in pii_cues.CRISIS_HOSTS)


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
        self._email = _Email()
        self._obfuscated = _ObfuscatedEmail()
        self._url = _Url()
        self._handle = _Handle()
        self._phone = _Phone(
            supported_regions=tuple(phone_regions), leniency=phonenumbers.Leniency.POSSIBLE
        )
        self._ner = _ner_analyzer(ner_model) if ner_model else None
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
        if sum(map(text.count, _DIGITS)) < 7:  # cheaper than any regex scan
            return []
        runs = [
            m.span()
            for m in _TRIGGERS["phone"].finditer(text)
            if len(_digits(m.group())) >= 7 and not is_crisis_number(m.group())
        ]  # a crisis line ("1-800-273-8255") needs no library to be kept
        wins = _around(text, runs, 12)
        spans = []
        for a, b in sorted(set(self._run(self._phone, text, wins, "PHONE_NUMBER"))):
            vanity = _VANITY.match(text, b)  # "1-800-273-TALK": the letters are digits too
            if vanity:
                b = vanity.end()
            number = phonenumbers.convert_alpha_characters_in_number(text[a:b])
            if len(_digits(number)) < 7 or _YEAR_RANGE.fullmatch(number.strip(" ()[]")):
                continue
            if is_crisis_number(number):
                continue
            spans.append(Span(a, b, "phone"))
        return spans

    def _addresses(self, text: str) -> list[Span]:
        spans: list[Span] = []
        wins = [w for w in _windows(text, _TRIGGERS["url"], 0) if _may_be_domain(text[w[0] : w[1]])]
        if "://" in text or "www" in text or "WWW" in text:
            wins = _union(wins, _windows(text, _TRIGGERS["url_scheme"], 0))
        upper = _windows(text, _TRIGGERS["url_upper"], 0)
        if upper:
            wins = _union(wins, [(a, b) for a, b in upper if text[a:b].upper() == text[a:b]])
        # E-mail windows: around "@", around spelled-out "at"/"dot", and before a domain that
        # follows " at " ("jane at gmail.com"; not "a line at findahelpline.com").
        email_wins = _around(
            text,
            [
                (a, b)
                for a, b in wins
                if " at " in text[max(0, a - 48) : a + 1].lower() and not is_crisis_site(text[a:b])
            ],
            _WINDOW,
        )
        if "@" in text:
            email_wins = _union(email_wins, _windows(text, _TRIGGERS["at"]))
        if _obfuscated(text):
            email_wins = _union(email_wins, _windows(text, _TRIGGERS["email"]))
        if email_wins:
            for a, b in self._run(self._email, text, email_wins, "EMAIL_ADDRESS"):
                if not is_crisis_site(text[a:b].rsplit("@", 1)[-1].strip()):
                    spans.append(Span(a, b, "email"))
            for a, b in self._run(self._obfuscated, text, email_wins, "EMAIL_ADDRESS"):
                spans.append(Span(a, b, "email"))
            if "@" in text:
                at = _windows(text, _TRIGGERS["at"], 0)
                for a, b in self._run(self._handle, text, at, "HANDLE"):
                    spans.append(Span(a, b, "url", "handle"))
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
        addresses = _merge(addresses)
        names_ = [
            part
            for s in _merge(self._names(text, names, words, addresses))
            for part in _outside(text, s, addresses)
        ]
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


def _ner_analyzer(model: str):
    """Presidio's AnalyzerEngine over a spaCy pipeline, for PERSON entities only."""
    import pathlib

    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    if not (spacy.util.is_package(model) or pathlib.Path(model).exists()):
        raise ImportError(f"spaCy pipeline {model!r} is not installed: {NER_INSTALL_HINT}")
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


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
