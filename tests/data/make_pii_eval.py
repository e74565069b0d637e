"""Writes `pii_eval.jsonl`: a labelled set of therapist-style snippets for `psycho_jax.data.pii`.

    python tests/data/make_pii_eval.py          # rewrites tests/data/pii_eval.jsonl (seeded)

Each line: `{"id", "class", "text", "pii": [{"kind", "text"}], "keep": [...], "names": [...]}`:
`pii` are the spans that must be gone after `pii.scrub` (kind email / phone / url / name), `keep`
strings that must survive verbatim (crisis resources, ordinary words), `names` the corpus's names
for the snippet (the therapist column), used by the "with names" run. Templated but varied: many
countries' phone formats, every miss class of issue 29, and negatives. Written from the issue's
miss list, not from the scrubber's rules.
"""

from __future__ import annotations

import json
import pathlib
import random

FIRST = tuple(
    [
        "Tom",
        "Liam",
        "Jane",
        "Dana",
        "Sam",
        "Priya",
        "Kwame",
        "Aoife",
        "Siobhán",
        "Mei-Ling",
        "José",
        "Fatima",
        "Oluwaseun",
        "Björn",
        "Chloé",
        "Dmitri",
        "Aroha",
        "Ngozi",
        "Keisha",
        "Marisol",
        "Rhys",
        "Niamh",
        "Tariq",
        "Ingrid",
        "Mateo",
        "Yuki",
        "Zoë",
        "Andre",
        "Grace",
        "Emeka",
        "Hannah",
        "Robin",
        "Declan",
        "Anneliese",
        "Raj",
        "Sofia",
        "Malik",
        "Eun-ji",
        "Jean-Luc",
        "Kiri",
    ]
)
LAST = tuple(
    [
        "Chen",
        "O'Brien",
        "Warren-Park",
        "Okafor",
        "Müller",
        "García",
        "Nakamura",
        "Kowalski",
        "D'Angelo",
        "MacLeod",
        "Rahman",
        "Patel",
        "Johansson",
        "Nguyen",
        "Brennan",
        "Fitzgerald",
        "Schmidt",
        "Moreau",
        "Tanaka",
        "Achebe",
        "Lindqvist",
        "McCracken",
        "Hughes",
        "Delacroix",
        "Ferreira",
        "Kaur",
        "Novak",
        "Ramírez",
        "Whitfield",
        "Abernathy",
        "Osei",
        "Kim-Lopez",
        "Landwehr",
        "Sato",
    ]
)
CREDS = ["LPC", "LMFT", "LCSW", "PsyD", "M.D.", "M.A., LPC", "PhD", "MSW, LICSW", "LMHC", "Psy.D."]
CLOSINGS = [
    "Thanks,",
    "Thank you,",
    "Hugs,",
    "Hope this helps,",
    "I hope this helps,",
    "Warmly,",
    "Best,",
    "Best wishes,",
    "Kind regards,",
    "Take care,",
    "Be well,",
    "Sincerely,",
    "Cheers,",
    "All the best,",
    "Blessings,",
    "With care,",
    "Regards,",
    "Warm regards,",
    "Good luck!",
    "Many thanks,",
    "Wishing you well,",
    "Peace,",
    "Your counselor,",
    "xoxo,",
    "Sending you strength,",
    "Talk soon,",
]
FILLER = [
    "It sounds like you have been carrying a lot on your own.",
    "Many people feel this way after a breakup, and it does get easier with support.",
    "Try noticing when the anxious thoughts show up and what was happening just before.",
    "A counselor can help you sort through these feelings at your own pace.",
    "Your feelings make sense given everything you have described.",
    "Small steps, like a short walk each day, can make a real difference.",
    "It may help to talk with your partner when you both feel calm.",
    "Grief has no timetable, and there is no right way to feel.",
]
NEG_WORDS = [
    "I feel better.Life has been hard since the move.",
    "My kids love Dr. Seuss books at bedtime.",
    "Dr. Gottman's research on couples is worth reading.",
    "Between 2010-2015 I moved three times.",
    "We meet at 3:30 pm on Tuesdays.",
    "About 1 in 5 adults experience mental illness each year.",
    "I walk 10,000 steps a day.",
    "Support is available 24/7.",
    "Try it 3-4 times a week for 20-30 minutes.",
    "The DSM-5 lists these criteria.",
    "Look at the situation from a distance.",
    "At the end of the day, you decide.",
    "I read The 5 Love Languages with my partner.",
    "Best practices in therapy change over time.",
    "She lives in Boston, MA 02108 now.",
    "He was born on 12/05/1990.",
    "I'm so sorry you are going through this.",
    "I'm Catholic and my partner is not.",
    "This is a normal reaction to stress.",
    "Thanks, God bless you.",
    "It costs $1,500 per month.",
    "I did my Ph.D. in 2019, e.g. on sleep, i.e. insomnia.",
    "Take care of yourself this week.",
    "Hope this helps you feel less alone.",
    "My score was 27 out of 63 on the inventory.",
    "I have been sober since 2018.",
    "The Trevor Project is there for LGBTQ young people.",
    "Samaritans are there day and night.",
    "Kids Help Phone is free and confidential.",
    "In 2021 and 2022 things were hard.",
    "We tried it.It did not help.",
    "I'm American but I live abroad.",
    "Call your doctor if the side effects continue.",
    "Check out the book Mindset by Carol Dweck.",
    "This is Normal, and it passes.",
    "I'm Korean and my parents are strict.",
    "Everyone here is kind.",
    "Hope this helps you sleep better.",
    "Write down what you notice at night.",
    "He wrote 3 pages.Then he stopped.",
]
CRISIS = [
    "988",
    "1-800-273-8255",
    "1-800-273-TALK (8255)",
    "(800) 273-8255",
    "1-800-662-4357",
    "1-800-662-HELP (4357)",
    "1-866-488-7386",
    "741741",
    "116 123",
    "13 11 14",
    "1-800-668-6868",
    "1-800-799-7233",
    "1-800-656-4673",
    "0800 1111",
    "+44 116 123",
]
CRISIS_SITES = [
    "findahelpline.com",
    "988lifeline.org",
    "https://988lifeline.org/chat/",
    "thetrevorproject.org",
    "www.thetrevorproject.org/get-help",
    "samhsa.gov",
    "https://www.samhsa.gov/find-help/national-helpline",
    "crisistextline.org",
    "childline.org.uk",
    "https://www.childline.org.uk/get-support/",
    "samaritans.org",
    "lifeline.org.au",
    "kidshelpphone.ca",
    "www.kidshelpphone.ca",
]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def phones(rng: random.Random) -> list[tuple[str, str]]:
    """(number, format class) in many countries' formats."""
    d = lambda n: _digits(rng, n)  # noqa: E731
    a = str(rng.randint(201, 989))
    x = str(rng.randint(200, 999))
    return [
        (f"({a}) {x}-{d(4)}", "us-paren"),
        (f"{a}-{x}-{d(4)}", "us-dash"),
        (f"{a}.{x}.{d(4)}", "us-dot"),
        (f"+1 {a} {x} {d(4)}", "us-intl"),
        (f"1-{a}-{x}-{d(4)}", "us-1"),
        (f"{a}{x}{d(4)}", "us-unseparated"),
        (f"555 - 01{d(2)}", "us-spaced-dash"),
        (f"555–01{d(2)}", "us-en-dash"),
        (f"{a}–{x}–{d(4)}", "us-en-dash-full"),
        (f"+44 20 7{d(3)} {d(4)}", "uk-intl"),
        (f"020 7{d(3)} {d(4)}", "uk-national"),
        (f"07700 9{d(5)}", "uk-mobile"),
        (f"077009{d(5)}", "uk-unseparated"),
        (f"+44 (0)161 {d(3)} {d(4)}", "uk-intl-trunk"),
        (f"+61 2 9{d(3)} {d(4)}", "au-intl"),
        (f"(02) 9{d(3)} {d(4)}", "au-national"),
        (f"0412 {d(3)} {d(3)}", "au-mobile"),
        (f"04{d(8)}", "au-unseparated"),
        (f"+49 30 {d(7)}", "de-intl"),
        (f"030 {d(8)}", "de-national"),
        (f"+49 (0)30 {d(4)} {d(4)}", "de-trunk"),
        (f"0151 {d(8)}", "de-mobile"),
        (f"+353 1 {d(3)} {d(4)}", "ie-intl"),
        (f"01 {d(3)} {d(4)}", "ie-national"),
        (f"087 {d(3)} {d(4)}", "ie-mobile"),
        (f"+353 87 {d(3)} {d(4)}", "ie-mobile-intl"),
        (f"+64 9 {d(3)} {d(4)}", "nz-intl"),
        (f"+91 98{d(3)} {d(5)}", "in-intl"),
        (f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", "fr-intl"),
        (f"01 {d(2)} {d(2)} {d(2)} {d(2)}", "fr-national"),
        (f"604-555-01{d(2)}", "ca"),
        (f"{a}-{x}-{d(4)} ext. 12", "us-ext"),
    ]


def emails(rng: random.Random, first: str, last: str) -> list[tuple[str, str]]:
    f = first.lower().replace("ö", "o").replace("é", "e").replace("á", "a").replace("ë", "e")
    f = "".join(c for c in f if c.isalnum())
    l = "".join(c for c in last.lower() if c.isalnum())[:8]  # noqa: E741
    host = rng.choice(["gmail", "yahoo", "outlook", "protonmail", "counselingcenter", "mindcare"])
    tld = rng.choice(["com", "org", "net", "ie", "de", "co.uk", "com.au", "ca", "health"])
    return [
        (f"{f}.{l}@{host}.{tld}", "plain"),
        (f"{f}{rng.randint(1, 99)}@{host}.{tld}", "plain-digits"),
        (f"{f}.{l} @{host}.{tld}", "space-before-at"),
        (f"{f} @ {host}.{tld}", "spaces-around-at"),
        (f"{f} at {host} dot com", "at-dot-words"),
        (f"{f}.{l} at gmail dot com", "at-dot-words-dotted"),
        (f"{f}(at){host}(dot)com", "paren-at-dot"),
        (f"{f} (at) {host} (dot) {tld.split('.')[0]}", "paren-at-dot-spaced"),
        (f"{f}[at]{host}[dot]com", "bracket-at-dot"),
        (f"{f} [at] {host} [dot] org", "bracket-at-dot-spaced"),
        (f"{f.upper()} AT {host.upper()} DOT COM", "caps-at-dot"),
        (f"{f}_{l}{rng.randint(1, 9)} at gmail.com", "at-word-real-domain"),
        (f"{f}{{at}}{host}{{dot}}net", "brace-at-dot"),
        (f"{f} dot {l} at {host} dot com", "dotted-local-words"),
    ]


def urls(rng: random.Random, first: str, last: str) -> list[tuple[str, str]]:
    slug = "".join(c for c in (first + last).lower() if c.isalnum() and c.isascii())
    return [
        (f"https://www.{slug}counseling.com/about", "https"),
        (f"http://{slug}.com", "http"),
        (f"www.{slug}therapy.com", "www"),
        (f"WWW.{first.title()}Counseling.com", "www-caps"),
        (f"{slug}therapy.ie", "bare-ie"),
        (f"{slug}-beratung.de", "bare-de"),
        (f"{slug}.co.uk", "bare-co-uk"),
        (f"{slug}psychology.com.au/contact", "bare-au-path"),
        (f"bit.ly/{_digits(rng, 2)}xYz{rng.choice('abcdef')}", "shortener-bitly"),
        (f"tinyurl.com/{slug[:6]}{_digits(rng, 3)}", "shortener-tinyurl"),
        (f"t.co/{slug[:4]}{_digits(rng, 4)}", "shortener-tco"),
        (f"goo.gl/{slug[:5]}", "shortener-googl"),
        (f"{slug}.net", "bare-net"),
        (f"{slug}.health", "bare-newtld"),
        (f"psychologytoday.com/us/therapists/{slug}", "directory-path"),
        (f"linkedin.com/in/{slug}", "linkedin"),
    ]


def handles(rng: random.Random, first: str, last: str) -> list[tuple[str, str]]:
    f = "".join(c for c in first.lower() if c.isalnum() and c.isascii()) or "kai"
    return [
        (f"@{f}_{last.lower()[:4].strip(chr(39))}", "handle"),
        (f"@calm.with.{f}", "handle-dots"),
    ]


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def build(seed: int = 29) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []

    def add(cls, text, pii=(), keep=(), names=()):
        rows.append(
            {
                "id": f"{cls}-{len(rows)}",
                "class": cls,
                "text": text,
                "pii": [{"kind": k, "text": t} for k, t in pii],
                "keep": list(keep),
                "names": list(names),
            }
        )

    fill = lambda: rng.choice(FILLER)  # noqa: E731
    for _ in range(2):
        for number, cls in phones(rng):
            lead = rng.choice(
                [
                    "Call me at",
                    "You can reach my office on",
                    "Phone:",
                    "Text or call",
                    "My number is",
                    "Ring the clinic on",
                    "Contact me:",
                ]
            )
            add(f"phone/{cls}", f"{fill()} {lead} {number}. {fill()}", [("phone", number)])
    for _ in range(12):  # two numbers of different countries in one snippet
        (n1, c1), (n2, c2) = rng.sample(phones(rng), 2)
        add(
            f"phone/mixed-{c1}+{c2}",
            f"Office: {n1}, or after hours {n2}. {fill()}",
            [("phone", n1), ("phone", n2)],
        )
    for _ in range(4):
        first, last = _name(rng)
        for addr, cls in emails(rng, first, last):
            lead = rng.choice(
                ["Email me at", "Write to", "You can reach me at", "E-mail:", "Contact"]
            )
            add(f"email/{cls}", f"{fill()} {lead} {addr} anytime.", [("email", addr)])
    for _ in range(3):
        first, last = _name(rng)
        for url, cls in urls(rng, first, last):
            lead = rng.choice(["Visit", "More at", "See my site", "Book online at", "Find me at"])
            add(f"url/{cls}", f"{lead} {url} to learn more. {fill()}", [("url", url)])
        for h, cls in handles(rng, first, last):
            add(f"url/{cls}", f"{fill()} Follow me on Instagram {h} for tips.", [("url", h)])
    # Names from introductions.
    intros = [
        "I'm {n}",
        "Hi, I'm {n}",
        "My name is {n}",
        "This is {n}",
        "Hello! This is {n}",
        "I am {n}",
        "Hi there, my name's {n}",
        "I'm Dr. {n}",
        "Hi, {n} here",
    ]
    for k in range(48):
        first, last = _name(rng)
        full = first if k % 3 == 0 else f"{first} {last}"
        intro = intros[k % len(intros)].format(n=full)
        add(
            "name/intro",
            f"{intro}, a counselor in private practice. {fill()}",
            [("name", w) for w in full.split()],
            names=[f"{first} {last}"],
        )
    # Sign-offs, anywhere near the end, also followed by a phone or web line.
    for k in range(66):
        first, last = _name(rng)
        closing = CLOSINGS[k % len(CLOSINGS)]
        full = first if k % 2 else f"{first} {last}"
        layout = k % 6
        pii = [("name", w) for w in full.split()]
        if layout == 0:
            sig = f"{closing}\n{full}"
        elif layout == 1:
            sig = f"{closing} {full}"
        elif layout == 2:
            number = phones(rng)[rng.randrange(9)][0]
            sig = f"{closing}\n{full}\n{number}"
            pii.append(("phone", number))
        elif layout == 3:
            url = urls(rng, first, last)[2][0]
            sig = f"{closing}\n{full}\n{url}"
            pii.append(("url", url))
        elif layout == 4:
            sig = f"{closing}\n{full}, {CREDS[k % len(CREDS)]}"
        else:
            sig = f"{closing}\n\n- {full}\nCounselor, Riverside Wellness"
        add("name/sign-off", f"{fill()} {fill()}\n\n{sig}", pii, names=[f"{first} {last}"])
    for _ in range(10):
        first, last = _name(rng)
        full = f"{first} {last}"
        add(
            "name/dash-signature",
            f"{fill()}\n-- {full}",
            [("name", w) for w in full.split()],
            names=[full],
        )
    # Credentials and honorifics in running text.
    for k in range(30):
        first, last = _name(rng)
        cred = CREDS[k % len(CREDS)]
        full = f"{first} {last}"
        text = rng.choice(
            [
                f"{full}, {cred} is a therapist who works with teens.",
                f"Written by {full}, {cred}.",
                f"{fill()} ({full} {cred.split(',')[0]})",
                f"Dr. {full} has seen this many times.",
            ]
        )
        add("name/credential", text, [("name", w) for w in full.split()], names=[full])
    # Corpus names only (the therapist column): hyphens, apostrophes, mid-text mentions.
    for _ in range(24):
        first, last = _name(rng)
        full = f"{first} {last}"
        text = rng.choice(
            [
                f"When I worked with {full} we tried this.",
                f"As {last} says, be patient.",
                f"Ask {first} about groups.",
            ]
        )
        words = [w for w in full.split() if w in text]
        add("name/corpus-only", text, [("name", w) for w in words], names=[full])
    # Negatives: crisis resources and ordinary words that must survive.
    for c in CRISIS:
        add(
            "negative/crisis-line", f"If you are in crisis, call {c} right away. {fill()}", keep=[c]
        )
    for s in CRISIS_SITES:
        add("negative/crisis-site", f"{fill()} More support: {s}.", keep=[s])
    for s in NEG_WORDS:
        add("negative/ordinary", f"{s} {fill()}", keep=[s])
    add(
        "negative/mixed",
        "Call SAMHSA at 1-800-662-4357 or The Trevor Project at 1-866-488-7386. Text HOME to 741741."
        " Samaritans: 116 123. Lifeline Australia: 13 11 14. Kids Help Phone: 1-800-668-6868.",
        keep=[
            "1-800-662-4357",
            "The Trevor Project",
            "1-866-488-7386",
            "741741",
            "116 123",
            "13 11 14",
            "1-800-668-6868",
            "Samaritans",
            "Kids Help Phone",
        ],
    )
    return rows


def main() -> None:
    rows = build()
    path = pathlib.Path(__file__).with_name("pii_eval.jsonl")
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} snippets to {path}")


if __name__ == "__main__":
    main()
