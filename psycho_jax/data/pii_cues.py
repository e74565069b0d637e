"""The counseling-specific layer of `pii`: names from cues, credentials, a corpus's names, and the
crisis and help resources that a counseling reply must keep.

Everything generic (phone numbers, e-mail and web addresses, handles) lives in `pii`, built on
`phonenumbers` and Presidio; this module only knows how therapists write:

- introductions: "my name is Jane", "I'm Tom", "This is Liam Chen", "I am Dr. Ruiz";
- sign-offs anywhere a signature can start: "Thanks,\\nDana", "Hugs, Mei-Ling", "Hope this helps,
  Sam Okafor, LMFT" (also followed by a phone or web line), "- Jane Smith" on its own line;
- credentials after a name: "Jane Smith, LCSW", "Sam Lee, M.A., LPC", "Ana Ruiz PsyD";
- honorifics: "Dr. Jane Smith" (not the public figures in `PUBLIC_FIGURES`: "Dr. Seuss books");
- the names of a corpus (e.g. CounselChat's therapists), hyphens and apostrophes included.

Each function returns `(start, end)` spans of names (with the credentials that follow them, which
narrow a name down to one person); `pii` merges them with the other spans, so a name found by two
rules is replaced once, whole ("Dan Warren-Park, LPC" -> "[name]", never "Dan [name], [name]").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import regex

# ---------------------------------------------------------------------------- crisis resources

CRISIS_NUMBERS = frozenset(
    {
        "988",  # US/Canada Suicide & Crisis Lifeline
        *("8002738255", "18002738255"),  # US National Suicide Prevention Lifeline (before 988)
        *("8006624357", "18006624357"),  # SAMHSA National Helpline
        *("8664887386", "18664887386"),  # The Trevor Project
        *("8007997233", "18007997233"),  # US National Domestic Violence Hotline
        *("8006564673", "18006564673"),  # RAINN sexual assault hotline
        *("8004224453", "18004224453"),  # Childhelp National Child Abuse Hotline
        *("8007842433", "18007842433"),  # 1-800-SUICIDE
        *("8009506264", "18009506264"),  # NAMI HelpLine
        *("8775658860", "18775658860"),  # Trans Lifeline
        *("8006686868", "18006686868"),  # Kids Help Phone (Canada)
        *("8008264357", "18008264357"),  # US Veterans Crisis Line (old number)
        *("741741", "686868", "85258", "50808"),  # Crisis Text Line (US, CA, UK, IE)
        *("116123", "44116123", "353116123"),  # Samaritans (UK, Ireland)
        *("08457909090", "4408457909090"),  # Samaritans (old UK number)
        *("131114", "61131114", "0477131114"),  # Lifeline Australia (call, text)
        *("1800551800", "611800551800"),  # Kids Helpline Australia
        *("1300224636", "611300224636"),  # Beyond Blue
        *("08001111", "4408001111"),  # Childline UK
        *("0800543354", "64800543354", "1737"),  # Lifeline NZ, 1737 Need to talk?
        *("08082000247", "448082000247"),  # UK National Domestic Abuse Helpline (Refuge)
        *("08000684141", "0800585858", "08088084994", "03001233393"),  # Papyrus, CALM, Mix, Mind
        *("1800247247", "88788"),  # Women's Aid Ireland; US DV hotline by text
        *("116111", "911", "999", "112", "000", "111"),  # child helpline, emergency numbers
    }
)
"""Digits of public crisis and help lines (with and without country codes): never scrubbed."""

CRISIS_HOSTS = frozenset(
    {
        *("findahelpline.com", "988lifeline.org", "suicidepreventionlifeline.org"),
        *("thetrevorproject.org", "samhsa.gov", "findtreatment.gov", "crisistextline.org"),
        *("crisistextline.ca", "crisistextline.uk", "giveusashout.org", "samaritans.org"),
        *("samaritansusa.org", "childline.org.uk", "nationaldahelpline.org.uk", "lifeline.org.au"),
        *("kidshelpline.com.au", "beyondblue.org.au", "kidshelpphone.ca", "thehotline.org"),
        *("rainn.org", "childhelp.org", "childhelphotline.org", "befrienders.org", "iasp.info"),
        *("nami.org", "mind.org.uk", "translifeline.org", "veteranscrisisline.net"),
        *("talksuicide.ca", "988.ca", "lifeline.org.nz", "1737.org.nz", "suicide.org"),
        *("loveisrespect.org", "domesticshelters.org", "nimh.nih.gov", "mentalhealth.gov"),
        *("988lifeline.ca", "pieta.ie", "childline.ie", "spunout.ie", "yourmentalhealth.ie"),
    }
)
"""Hosts (and their sub-domains) of crisis and help resources: their addresses are kept."""

CRISIS_NAMES_RE = regex.compile(
    r"(?i:the\s+)?(?:Trevor\s+(?:Project|Lifeline|Text|Chat)|Samaritans|Kids\s+Help\s*(?:Phone|line)|"
    r"Crisis\s+Text\s+Line|Lifeline(?:\s+Australia)?|Childline|Beyond\s+Blue|Befrienders|"
    r"Find\s*a\s*Helpline|SAMHSA|RAINN|NAMI|Childhelp|Trans\s+Lifeline|Veterans\s+Crisis\s+Line)"
)
"""Names of help resources: a name rule never removes them ("the Trevor Project")."""

# ---------------------------------------------------------------------------- names

CREDENTIALS = (
    r"LCSW|LMSW|LICSW|LISW|LSW|LPC|LPCC|LPCA|LPC-S|LPCMH|LMHC|LMFT|LCPC|LCMHC|LMAC|LCAS|LCADC|LCDC|"
    r"NCC|CCTP|DCC|CHT|CPC|RMFT|CADC|CSAT|ATR|RPT|BCC|DBH|MFT|MFTI|MSW|MSc|MEd|MPH|"
    r"Ph\.?\s?D\.?|Psy\.?\s?D\.?|Ed\.?\s?D\.?|M\.?\s?D\.?|M\.?\s?A\.?|M\.?\s?S\.?|M\.Ed\.?|J\.?D\.?|"
    r"RN|RP|LMHP|LAMFT|LGPC|APCC|AMFT|ACSW|BCD|CEAP|CRC|PMHNP|NP|MBA|BA|BSW|LADC|CASAC|R\.C\.C\.|C\.C\.C\."
)
_CRED = rf"(?:{CREDENTIALS})(?:-[A-Z]{{1,2}})?(?![\p{{L}}])"  # LPC-S, LCSW-C, MFT-C
_AMBIGUOUS_CRED = regex.compile(r"^(?:MA|MS|MD|PA|DC)$")  # also US states: "Boston, MA 02108"
_PARTICLES = r"(?:van|von|der|den|de|del|della|da|di|du|la|le|bin|al|ben|st\.)"
NAME_WORD = r"(?:\p{Lu}['’](?=\p{Lu}))?\p{Lu}\p{Ll}+(?:\p{Lu}\p{Ll}+)*(?:[-‐]\p{Lu}?\p{Ll}+)*"
"""One capitalised name word: Tom, McCracken, O'Brien, Mei-Ling, Warren-Park, D’Angelo."""
FULL_NAME = rf"{NAME_WORD}(?:[ \t\xa0]+(?:\p{{Lu}}\.|{_PARTICLES}(?=[ \t\xa0]+\p{{Lu}})|{NAME_WORD})){{0,3}}"
_HONORIFIC = r"(?:Dr|Mr|Mrs|Ms|Mx|Prof|Rev|Fr|Sr)\.?"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NOT_NAMES = _words(
    """a an the and but or so if then also just really very still only always never now here there
    this that these those it its i you he she we they my your our their me him her us them not no
    yes ok okay sorry glad happy sad fine good great well sure afraid curious hoping writing
    thinking wondering currently thanks thank best take be remember please feel let what when
    where why how who which while because since after before as at in on of for to from with by
    about into over under again once today tomorrow yesterday monday tuesday wednesday thursday
    friday saturday sunday january february march july september october
    november december god jesus christ lord christian catholic jewish muslim buddhist hindu
    atheist american canadian british english irish australian mexican african asian black white
    latina latino latinx hispanic native gay lesbian bi bisexual trans transgender queer straight
    single married divorced pregnant autistic bipolar depressed anxious counseling counselling
    therapy therapist counselor counsellor psychologist psychiatrist doctor coach dear hi hello hey
    love hugs peace regards sincerely warmly cheers blessings namaste many kind warm all wishing
    good luck yours with some most more many every each any other another one two three first
    second next last new old big little such same different important hard easy true false
    facebook instagram twitter linkedin youtube google tiktok reddit amazon netflix internet
    email phone call text website online office clinic center centre practice group program
    dialectical cognitive behavioral behavioural emotionally focused narrative solution normal
    common difficult tough real totally completely absolutely exactly definitely probably possibly
    perfectly korean indian mexican filipino nigerian italian german french russian ukrainian
    iranian persian arab african caribbean jamaican haitian cuban dominican brazilian colombian
    pakistani bangladeshi vietnamese chinese japanese spanish polish jewish turkish swedish
    danish finnish scottish welsh kurdish european latin asexual pansexual nonbinary intersex
    adopted disabled deaf blind sober clean okay licensed certified registered clinical senior
    associate owner founder director everyone everybody someone somebody anyone nobody people"""
)
"""Capitalised words that a cue ("I'm", "Thanks,") is often followed by without being a name."""

PUBLIC_FIGURES = _words(
    """seuss phil oz ruth drew gottman brown siegel neff burns beck ellis linehan kolk levine lerner
    chapman johnson hallowell kübler-ross frankl freud jung rogers maslow seligman kabat-zinn hayes
    perry porges tatkin real amen hendrix firestone lieberman winnicott bowlby ainsworth adler
    erickson satir minuchin bowen glasser yalom kessler tolle mate maté weil fauci king spock
    phil's"""
)
"""Surnames of authors, researchers and public figures a reply may cite ("Dr. Gottman's research",
"Dr. Seuss books"): not personal information."""

_FOLLOW = (
    r"(?=[ \t\xa0]*(?:$|\n|\r|,|;|\||\(|\)|[-–—~/]|\d|\+|\[|www\.|https?:|@|\p{Lu}{2,}|"
    r"[.!]+[ \t\xa0]*(?:$|\n|\r|www\.|https?:|\d|\+|\(|\p{Lu}{2,}|\p{Lu}\p{Ll}+,))|[.!]*$)"
)
"""What may follow a signature's name: the end, a new line, credentials, a phone or web line."""

CLOSINGS = tuple(
    """warmly|warm regards|warmest regards|warm wishes|warmest wishes|sincerely|sincerely yours|
    yours|yours truly|yours sincerely|best|best regards|kind regards|kindest regards|best wishes|
    with best wishes|with best regards|with kind regards|with warm regards|regards|all the best|
    all my best|my best|best of luck|blessings|many blessings|take care|be well|stay well|
    stay safe|stay strong|peace|cheers|respectfully|with care|with love|with gratitude|
    with kindness|with warmth|with compassion|gratefully|thanks|many thanks|thanks again|
    thanks so much|thank you|thank you again|thank you so much|thank you for writing|
    thank you for asking|thank you for sharing|thank you for reaching out|
    thank you for your question|hugs|love|hope this helps|hope that helps|hope it helps|
    i hope this helps|i hope that helps|i hope it helps|hope this helps you|i hope this helps you|
    hope this helps a little|i hope this helps a little|good luck|wishing you well|
    wishing you the best|wishing you all the best|wishing you peace|wishing you healing|
    wishing you strength|namaste|in health|in peace|in gratitude|in service|talk soon|
    until next time|cordially|fondly|onward|in kindness|with hope|be gentle with yourself|
    take good care|all best|best to you|good luck to you|best of luck to you|
    with appreciation|sending hugs|sending love|kind wishes|xoxo|much love|love always|
    your counselor|your counsellor|your therapist|your friend|yours in health|sending you strength|
    sending you love|sending you hugs|sending you light|sending good vibes|warmth|in solidarity|
    solidarity|be kind to yourself|you've got this|you got this|good luck to you""".replace(
        "\n", " "
    ).split("|")
)
CLOSINGS = tuple(sorted({" ".join(c.split()) for c in CLOSINGS}))
"""Closings after which a signature may follow (lower case, single spaces)."""

_SEPARATORS = " \t\xa0\r\n,!.:;-–—~"
_NO_DASH = frozenset("-–—~")
_SEP_CAP = re.compile(r"[,!.:;\n\r\-–—~][ \t\xa0\r\n\-–—~]*(?=[A-Z\u00c0-\u00de])")
"""Where a signature's name may start: after punctuation or a line break (cheap, stdlib `re`)."""
_ONLY_HONORIFIC = regex.compile(_HONORIFIC)
NAME_AT = regex.compile(rf"(?:{_HONORIFIC}[ \t\xa0]+)?(?P<name>{FULL_NAME})")
SIGNATURE_AT = regex.compile(rf"(?:{_HONORIFIC}[ \t\xa0]+)?(?P<name>{FULL_NAME}){_FOLLOW}")
_INTRO_CUES = {  # found with str.find (fast): (letters that must precede it, cue pattern)
    "'m ": ("Ii", None),
    "’m ": ("Ii", None),
    "I am ": ("", None),
    "name": ("", regex.compile(r"(?i:name[ \t\xa0]+is|name['’]s)")),
    "his is ": ("Tt", None),
    "call me ": ("", None),
}
_INTRO_NEEDS_CONTEXT = ("his is ",)
_HONORIFIC_AT = regex.compile(rf"{_HONORIFIC}[ \t\xa0]+(?P<name>{FULL_NAME})")
_HONORIFICS = ("Dr", "Mr", "Ms", "Prof")  # "Mr" finds "Mrs" too
_CRED_START = re.compile(r"[ABCDEJLMNPR](?:[A-Z]|\.[ ]?[A-Z]|sy\.?[ ]?D|h\.?[ ]?D|Sc|Ed)")
_CRED_PREFIXES = frozenset(
    {a[:2] for a in CREDENTIALS.split("|") if "\\" not in a[:2]}
    | {"M.", "M ", "MD", "MA", "MS", "Ph", "Ps", "Ed", "J.", "JD", "R.", "C."}
)
"""First two characters of every credential: most capitalised candidates stop here."""
_CRED_AT = regex.compile(rf"{_CRED}(?:[ \t\xa0]*,?[ \t\xa0]*{_CRED})*")
CREDENTIAL_RE = regex.compile(
    rf"(?P<name>{FULL_NAME})(?:[ \t\xa0]*,[ \t\xa0]*|[ \t\xa0]+)(?P<cred>{_CRED}(?:[ \t\xa0]*,?[ \t\xa0]*{_CRED})*)"
)
NAME_LINE_RE = regex.compile(
    rf"(?m)^[ \t\xa0]*(?:[-–—~]+[ \t\xa0]*)?(?P<name>{FULL_NAME})[ \t\xa0]*,?[ \t\xa0]*$"
)
_CONTACT_LINE = regex.compile(r"(?i)\d{3}|@|www\.|https?:|\.(?:com|org|net)\b|" + _CRED)
_TAIL = 400


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The name span without leading or trailing non-name words ("Contact Jane Smith")."""
    words = list(regex.finditer(r"\S+", text[start:end]))
    while words and words[0].group(0).strip(".,").lower() in NOT_NAMES:
        words.pop(0)
    while words and words[-1].group(0).strip(".,").lower() in NOT_NAMES:
        words.pop()
    if not words:
        return None
    return start + words[0].start(), start + words[-1].end()


_CLOSING_LAST_WORDS = frozenset(c.rsplit(" ", 1)[-1] for c in CLOSINGS)


def _after_closing(text: str, p: int) -> bool:
    """Whether a closing ("Thanks,", "Hope this helps!\n-") ends just before position `p`."""
    before = text[max(0, p - 48) : p].rstrip(_SEPARATORS)
    words = before.rsplit(None, 1)
    if not words or words[-1].lower() not in _CLOSING_LAST_WORDS:
        return False
    before = " ".join(before.lower().split())
    if not before.endswith(CLOSINGS):
        return False
    for c in CLOSINGS:  # the closing must start at a word boundary
        if before.endswith(c):
            k = len(before) - len(c)
            if k == 0 or not before[k - 1].isalpha():
                return True
    return False


def _sign_offs(text: str, near: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Names after a closing. A signature sits at the end or next to a contact line: the text is
    searched in its last `_TAIL` characters and around `near` (the numbers and addresses found)
    only, which keeps long prose cheap."""
    if len(text) <= _TAIL:
        regions = [(0, len(text))]
    else:
        regions = _merge_regions(
            [(len(text) - _TAIL, len(text))]
            + [(max(0, a - _TAIL // 2), min(len(text), b + _TAIL // 2)) for a, b in near]
        )
    return [s for lo, hi in regions for s in _sign_offs_in(text, lo, hi)]


def _merge_regions(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(regions):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def _sign_offs_in(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    spans = []
    for m in _SEP_CAP.finditer(text, lo, hi):
        p = m.end()
        sep = m.group(0)
        dash = not _NO_DASH.isdisjoint(sep)
        if not (_after_closing(text, m.start() + 1) or (dash and _dash_signature(text, m.start()))):
            continue
        sig = SIGNATURE_AT.match(text, p)
        if sig:
            spans.append(sig.span())  # with its honorific: "Dr. [name]" would keep the title
    return spans


def _dash_signature(text: str, i: int) -> bool:
    """ "- Jane Smith" at the start of a line or after a sentence."""
    before = text[max(0, i - 3) : i].rstrip(" \t\xa0")
    return i == 0 or not before or before[-1] in "\n\r.!?"


def _intros(text: str) -> list[tuple[int, int]]:
    spans = []
    for cue, (lead, pattern) in _INTRO_CUES.items():
        i = text.find(cue)
        while i >= 0:
            start = i - len(lead and "x")  # the cue's first letter
            ok = start == 0 or (start > 0 and not text[start - 1].isalpha())
            if lead:
                ok = ok and start >= 0 and text[start] in lead
            q = i + len(cue)
            if ok and pattern is not None:
                m = pattern.match(text, i)
                ok, q = (m is not None), (m.end() if m else q)
            while q < len(text) and text[q] in " \t\xa0":
                q += 1
            ok = ok and q < len(text) and text[q].isupper()
            if ok:
                m = NAME_AT.match(text, q)
                if m and _intro_name_ok(text, max(start, 0), m, cue in _INTRO_NEEDS_CONTEXT):
                    spans.append(m.span())
            i = text.find(cue, i + 1)
    return spans


_HERE_INTRO = regex.compile(
    rf"(?:^|(?<=[\n.!?])|(?i:hi|hello|hey|greetings)[,!]?)[ \t\xa0]*(?P<name>{FULL_NAME})[ \t\xa0]+here"
    r"(?=[ \t\xa0]*(?:[.,!:;\-–—]|$))"
)


def _here_intros(text: str) -> list[tuple[int, int]]:
    """ "Hi, Karen here." / "Dr. Lee here": a name followed by "here" at the start of a sentence."""
    spans = []
    i = text.find(" here")
    while i >= 0:
        after = text[i + 5 : i + 6].lstrip(" \t\xa0") or text[i + 5 : i + 8].strip()[:1]
        if after and after not in ".,!:;-–—":  # "Karen here." / "Karen here, ..."
            i = text.find(" here", i + 1)
            continue
        found = [m for m in _HERE_INTRO.finditer(text, max(0, i - 60), i + 5) if m.end() == i + 5]
        if found:
            m = found[-1]
            first = m.group("name").split()[0].lower()
            if first not in NOT_NAMES:
                spans.append(m.span("name"))
        i = text.find(" here", i + 1)
    return spans


def _intro_name_ok(text: str, i: int, m: regex.Match, needs_context: bool) -> bool:
    first = m.group("name").split()[0]
    if first.lower() in NOT_NAMES or _public(m.group("name")):
        return False
    return not needs_context or _looks_like_intro(text, i)


def _honorifics(text: str) -> list[tuple[int, int]]:
    spans = []
    for h in _HONORIFICS:
        i = text.find(h)
        while i >= 0:
            if i == 0 or not text[i - 1].isalpha():
                m = _HONORIFIC_AT.match(text, i)
                if m and not _public(m.group("name")) and _trim(text, *m.span("name")):
                    spans.append(m.span())
            i = text.find(h, i + 1)
    return spans


def _credentials(text: str) -> list[tuple[int, int]]:
    spans = []
    for c in _CRED_START.finditer(text):
        if (c.start() and text[c.start() - 1].isalpha()) or c.group()[:2] not in _CRED_PREFIXES:
            continue
        if not _CRED_AT.match(text, c.start()):
            continue
        lo = max(0, c.start() - 60)
        for m in CREDENTIAL_RE.finditer(text, lo, c.start() + 40):
            if m.start("cred") == c.start() and not _state_not_credential(text, m):
                spans.append((m.start("name"), m.end("cred")))  # "Jane Doe, LPC" -> "[name]"
    return spans


def _name_lines(text: str) -> list[tuple[int, int]]:
    """A name alone on a line near the end, or just above a contact line (a signature block)."""
    lo = max(0, len(text) - _TAIL)
    if "\n" not in text[lo:]:
        return []
    spans = []
    for m in NAME_LINE_RE.finditer(text, lo):
        rest = text[m.end() :].lstrip("\r\n")
        next_line = rest.split("\n", 1)[0]
        before = text[: m.start()].rstrip(" \t\xa0")
        last_line = not rest.strip()
        signature = (_CONTACT_LINE.search(next_line) or last_line) and (
            not before or before[-1] in "\n!.,"
        )
        if signature and not any(w.lower() in NOT_NAMES for w in m.group("name").split()):
            spans.append(m.span("name"))
    return spans


def cue_spans(text: str, near: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Names recognisable from a cue: introductions, sign-offs, credentials, honorifics.

    `near`: spans of numbers and addresses already found (a signature may sit beside them)."""
    spans = (
        _sign_offs(text, near)
        + _intros(text)
        + _here_intros(text)
        + _honorifics(text)
        + _credentials(text)
    )
    spans += _name_lines(text)
    out = []
    for a, b in spans:
        t = _trim(text, a, b)
        if t and not _ONLY_HONORIFIC.fullmatch(text, *t):
            out.append(t)
    return [s for s in out if not _in_resource_name(text, s)]


def _looks_like_intro(text: str, i: int) -> bool:
    """ "This is Liam Chen" introduces someone when it opens the text, a line or a sentence, or a
    greeting precedes it; "this is Spanish for..." in running text does not."""
    before = text[max(0, i - 40) : i]
    return bool(regex.search(r"(?:^|[\n.!?]|(?i:hi|hello|hey|dear \S+)[,!]?)\s*$", before))


def _public(name: str) -> bool:
    words = name.lower().replace("’", "'").split()
    return bool(words) and (words[-1].removesuffix("'s") in PUBLIC_FIGURES)


def _state_not_credential(text: str, m: regex.Match) -> bool:
    """ "Boston, MA 02108" is a place: an ambiguous credential alone, followed by a ZIP code."""
    creds = regex.split(r"[ \t\xa0]*,[ \t\xa0]*|[ \t\xa0]+", m.group("cred").strip())
    if not all(_AMBIGUOUS_CRED.match(c) for c in creds if c):
        return False
    if regex.match(r"[ \t\xa0]*\d", text[m.end() :]):
        return True
    return bool(
        regex.search(
            r"(?i:\b(?:in|to|from|at|near|of|around|outside|visit)\s+)$", text[: m.start()]
        )
    )


def _in_resource_name(text: str, span: tuple[int, int]) -> bool:
    a, b = span
    window = text[max(0, a - 12) : b + 25]
    off = max(0, a - 12)
    return any(
        m.start() + off <= a and b <= m.end() + off or (m.start() + off < b and a < m.end() + off)
        for m in CRISIS_NAMES_RE.finditer(window)
    )


# ---------------------------------------------------------------------------- a corpus's names

_WORD_RE = regex.compile(r"\p{L}+")
_APOSTROPHES = "'’"
_DASHES = "-‐‑–"


def _name_pattern(name: str) -> str:
    """A regex for `name` that accepts either apostrophe, any hyphen and any run of spaces."""
    out = []
    for ch in name:
        if ch in _APOSTROPHES:
            out.append("['’]")
        elif ch in _DASHES:
            out.append("[-‐‑–]")
        elif ch.isspace():
            out.append(r"[ \t\xa0]+")
        else:
            out.append(regex.escape(ch))
    return "".join(out)


@functools.lru_cache(maxsize=128)
def _names_re(names: frozenset[str], ignore_case: bool) -> regex.Pattern | None:
    if not names:
        return None
    alts = sorted(names, key=len, reverse=True)
    return regex.compile(
        r"(?<![\p{L}])(?:" + "|".join(map(_name_pattern, alts)) + r")(?:(?![\p{L}])|(?=www\.))",
        regex.IGNORECASE if ignore_case else 0,
    )


@functools.lru_cache(maxsize=128)
def _by_first_word(names: frozenset[str]) -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for n in names:
        words = _WORD_RE.findall(n.lower())
        if words:
            index.setdefault(words[0], set()).add(n)
    return {k: frozenset(v) for k, v in index.items()}


def known_spans(text: str, names: Iterable[str], words: Iterable[str]) -> list[tuple[int, int]]:
    """Spans of given full names (any case) and single name words (exact case, so "Hope" the name
    is found and "hope" the word is not); hyphenated and apostrophe names included."""
    names = names if isinstance(names, frozenset) else frozenset(n for n in names if n)
    words = words if isinstance(words, frozenset) else frozenset(w for w in words if w)
    if not names and not words:
        return []
    present = set(_WORD_RE.findall(text.lower()))
    index = _by_first_word(names)
    candidates = frozenset().union(*(index[w] for w in present & index.keys()))
    own = frozenset(
        w
        for w in words
        if _WORD_RE.findall(w.lower())[:1] and present.issuperset(_WORD_RE.findall(w.lower()))
    )
    spans = []
    for pattern in (_names_re(candidates, True), _names_re(own, False)):
        if pattern is not None:
            spans.extend(m.span() for m in pattern.finditer(text))
    return spans
