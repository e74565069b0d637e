"""The generic recognisers of `pii`, built on maintained libraries: phone numbers through Google's
libphonenumber (`phonenumbers`, via Presidio's `PhoneRecognizer`), e-mail and web addresses and
social handles through Presidio recognisers (domains checked against the public suffix list that
`tldextract` ships, read offline), the optional named-entity model through Presidio's spaCy
engine; and the cheap triggers that decide where they run. `pii` puts them together.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import phonenumbers
import regex
import tldextract
from absl import logging
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.pattern_recognizer import REGEX_TIMEOUT_SECONDS
from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer

NER_INSTALL_HINT = (
    "pip install 'psycho_jax[ner]' and a spaCy pipeline with a PERSON entity "
    "(e.g. `python -m spacy download en_core_web_lg`, or a local pipeline directory)"
)


@functools.cache
def _suffixes() -> tldextract.TLDExtract:
    # The public suffix list that tldextract ships: never fetched (no network at run time).
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.lru_cache(maxsize=65536)
def _has_public_suffix(host: str) -> bool:
    parts = _suffixes()(host.lower())
    return bool(parts.suffix) and bool(parts.domain)


def digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


class _Lean:
    """Presidio's `PatternRecognizer.analyze` (the same patterns, flags, validation, scores,
    de-duplication and regex time limit) without what it builds per match for its explanations and
    logs (a timestamp, an `AnalysisExplanation`, a debug line): `pii` runs these recognisers on
    thousands of windows."""

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        flags = regex_flags or self.global_regex_flags
        found = []
        for pattern in self.patterns:
            if not pattern.compiled_regex or pattern.compiled_with_flags != flags:
                pattern.compiled_with_flags = flags
                pattern.compiled_regex = regex.compile(pattern.regex, flags=flags)
            try:
                for m in pattern.compiled_regex.finditer(text, timeout=REGEX_TIMEOUT_SECONDS):
                    start, end = m.span()
                    if start == end:
                        continue
                    valid = self.validate_result(m.group())
                    score = pattern.score if valid is None else (1.0 if valid else 0.0)
                    if self.invalidate_result(m.group()):
                        score = 0.0
                    if score > 0.0:
                        found.append(
                            RecognizerResult(self.supported_entities[0], start, end, score)
                        )
            except TimeoutError:  # as Presidio: the pattern is skipped, with a warning
                logging.warning(
                    "pattern %r timed out after %s s, skipped", pattern.name, REGEX_TIMEOUT_SECONDS
                )
        return EntityRecognizer.remove_duplicates(found)


class Email(_Lean, EmailRecognizer):
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


class ObfuscatedEmail(PatternRecognizer):
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
            return False  # a plain address: Email's
        if plain_at and not obfuscated_dot:
            # "look at example.com": an address only when the host is a mail provider and the
            # local part looks like one (digits, dots, underscores).
            return bool(re.match(rf"(?i)(?:{_MAIL_HOSTS})\.", host_plain)) and bool(
                re.search(r"[\d._]", local)
            )
        return True


_URL_END = r"(?:[^\s<>\"'()\[\]{}]*[^\s<>\"'()\[\]{}.,;:!?])?"


class Url(_Lean, PatternRecognizer):
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


def may_be_domain(token: str) -> bool:
    """A cheap check before the URL recogniser: does the token hold a host on a public suffix?"""
    return any(_has_public_suffix(m.group(0)) for m in _BARE.finditer(token))


class Handle(_Lean, PatternRecognizer):
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


class Phone(PhoneRecognizer):
    """Presidio's libphonenumber recogniser at `POSSIBLE` leniency (fictional 555 numbers are
    numbers too), trying the default regions in order and stopping at the first that reads a
    number in the window: a national format ("020 7946 0958") needs a region that knows it."""

    def analyze(self, text, entities, nlp_artifacts=None):
        todo = [m.span() for m in TRIGGERS["phone"].finditer(text) if len(digits(m.group())) >= 7]
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
TRIGGERS = {
    "phone": re.compile(r"\d[\d \t().\-‐‑‒–—/]{4,}\d"),
    "email": re.compile(r"@|[\(\[\{<][ \t]*[aA][tT][ \t]*[\)\]\}>]|[ \t][aA][tT][ \t]"),
    # A bare domain's suffix is lower case (or the whole address upper case): "better.Life" is not.
    "url": re.compile(r"\.[a-z]{2,24}(?![a-z])"),
    "url_upper": re.compile(r"\.[A-Z]{2,24}(?![A-Za-z])"),
    "url_scheme": re.compile(r"://|[wW]{3}\d{0,3}\."),
    "at": re.compile("@"),
}
DIGITS = "0123456789"


def may_be_obfuscated(text: str) -> bool:
    """Whether text may hold an obfuscated address ("at" and "dot" spelled out)."""
    low = text.lower()
    if "dot" in low:
        return True
    if "(" in text or "[" in text or "{" in text or "<" in text:  # one-character scans: cheap
        return "(at" in low or "[at" in low or "{at" in low or "<at" in low
    return False


def ner_analyzer(model: str):
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
