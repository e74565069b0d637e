"""`pii`: each miss class of issue 29 caught, the resources and ordinary words kept, the optional NER
engine, and the audit's counts by kind. The labelled set's figures: tests/test_data_pii_eval.py."""

import pytest

from psycho_jax.data import pii

CAUGHT = [
    # phones: many countries' formats, unseparated digits, en dashes, " - ".
    ("phone", "Call me on +44 20 7946 0958 or 020 7946 0958.", ["7946 0958"]),
    ("phone", "Mobile 0412 345 678 or +61 2 9876 5432.", ["345 678", "9876 5432"]),
    ("phone", "Ruf an: +49 30 1234567 oder 030 12345678.", ["1234567", "12345678"]),
    ("phone", "Dublin office +353 1 234 5678, mobile 087 123 4567.", ["234 5678", "123 4567"]),
    ("phone", "Text 4155550144 or 555 - 0144 or 555–0144.", ["4155550144", "0144"]),
    ("phone", "Call 1-800-THERAPY-NOW or (312) 555-0199 ext. 4", ["555-0199"]),
    # e-mails: obfuscated, stray spaces, country domains.
    ("email", "Write to jane at gmail dot com", ["jane at gmail"]),
    ("email", "mei(at)counsel(dot)ie or kai [at] example [dot] de", ["mei(at)", "kai [at]"]),
    ("email", "JANE AT GMAIL DOT COM", ["JANE AT"]),
    ("email", "jane.doe @gmail.com or tom_b at hotmail.co.uk", ["jane.doe", "tom_b"]),
    ("email", "Email me at aroha.f at gmail dot com", ["aroha.f"]),
    # web addresses: shorteners, country domains, handles, a lost space before a number.
    ("url", "bit.ly/3xYz, t.co/abcd and tinyurl.com/calm123", ["bit.ly", "t.co", "tinyurl"]),
    ("url", "See beratung-berlin.de or mindcare.ie/contact", ["beratung", "mindcare"]),
    ("url", "Follow @calm_with_kai or instagram.com/mindful.kai", ["calm_with_kai", "mindful"]),
    ("url", "Visit Example.com404.293.5654", ["Example.com", "5654"]),
    ("url", "WWW.LIVINGYES.COM and www.LivingYes.org", ["LIVINGYES", "LivingYes"]),
    # names: introductions and sign-offs anywhere, credentials, no half-replaced names.
    ("name", "I'm Tom, and I work with teens.", ["Tom"]),
    ("name", "Hello! This is Liam Chen, a counselor in Ohio.", ["Liam", "Chen"]),
    ("name", "Thanks,\nDana\n555-0144\nwww.danacounsels.com", ["Dana"]),
    ("name", "Hugs, Mei-Ling\n\nP.S. Write back anytime.", ["Mei-Ling"]),
    ("name", "Hope this helps,\nSam Okafor, M.A., LPC\nwww.okafor.net", ["Sam", "Okafor"]),
    ("name", "Written by Ana Ruiz, M.D., who treats insomnia.", ["Ana", "Ruiz"]),
    ("name", "Be well and be you..Robin J. Landwehr, DBH, LPC, NCC", ["Robin", "Landwehr"]),
    ("name", "I hope that helps! -Kate", ["Kate"]),
    ("name", "Feel free to reach out!\n\nSarah\n(312) 555-0199", ["Sarah"]),
    ("name", "Hi, Karen here. I work with couples.", ["Karen"]),
    ("name", "Your counselor,\nJane", ["Jane"]),
    ("name", "Warmly,\n\nDr. Maria Gonzalez-Reyes\nLicensed Therapist", ["Maria", "Gonzalez"]),
    ("email", "Write to jane dot doe at gmail dot com", ["jane", "doe"]),
    ("phone", "From abroad: 0044 20 7946 0958 or +353 (0)87 123 4567", ["7946", "123 4567"]),
]


@pytest.mark.parametrize("kind,text,leaks", CAUGHT)
def test_caught(kind, text, leaks):
    out = pii.scrub(text)
    for leak in leaks:
        assert leak not in out, (leak, out)
    assert pii.find(text).get(kind), (kind, pii.find(text))


KEPT = [
    "Call SAMHSA at 1-800-662-4357 or The Trevor Project at 1-866-488-7386 (thetrevorproject.org).",
    "Childline: childline.org.uk/get-support or https://www.childline.org.uk/",
    "Text HOME to 741741, call 988, 116 123, Lifeline 13 11 14 or 1-800-273-TALK (8255).",
    "Kids Help Phone 1-800-668-6868, kidshelpphone.ca; findahelpline.com; samaritans.org",
    "Samaritans: jo@samaritans.org. Call 1-800-662-HELP (4357).",
    "I feel better.Life is hard. We read Dr. Seuss books and Dr. Gottman's research.",
    "In 2010-2015 I walked 10,000 steps at 3:30 pm, 24/7, 3-4 times a week.",
    "I'm so sorry. I'm Catholic. This is a normal reaction. Thanks, God bless.",
    "She lives in Boston, MA 02108 now. He was born on 12/05/1990. The U.S. has resources.",
    "Look at the situation from a distance. At the end of the day, you decide.",
    "This is Normal. Everyone here is kind. I'm Korean and proud. Licensed Therapist",
    "National Domestic Abuse Helpline 0808 2000 247; emergency services (911/112/999).",
]


@pytest.mark.parametrize("text", KEPT)
def test_kept(text):
    assert pii.scrub(text) == text
    assert pii.find(text) == {}


def test_whole_address_decides_the_allow_list():
    assert pii.scrub("see childline.org.uk.example.com") == "see [website]"
    assert pii.is_crisis_site("https://www.samhsa.gov/find-help")
    assert not pii.is_crisis_site("samhsa.gov.evil.net")
    assert pii.is_crisis_number("+1 (800) 273-8255") and not pii.is_crisis_number("555-0144")


def test_corpus_names_hyphens_apostrophes_and_credentials():
    names, words = ["Dan Warren-Park", "Siobhán O'Brien"], ["Warren-Park", "O'Brien", "Siobhán"]
    out = pii.scrub(
        "Dan Warren-Park, LPC said so. O’Brien agreed; siobhán o'brien too.", names, words
    )
    assert out == "[name] said so. [name] agreed; [name] too.", out
    assert pii.scrub("I hope Hope is well", words=["Hope"]) == "I hope [name] is well"


def test_signature_with_credentials_is_one_name():
    text = "Take small steps.\n\nWarmly,\nDr. Jane Doe, LPC-S"
    assert pii.scrub(text) == "Take small steps.\n\nWarmly,\n[name]"
    assert pii.find(text) == {"name": 1}
    assert pii.scrub("Thanks,\nJane\n555-0144") == "Thanks,\n[name]\n[phone]"
    # a name glued to an address ("Chowwww." lost a space): neither half survives
    assert pii.scrub("Dr. Virginia Chowwww.psychologyresource.ca") == "[name] [website]"
    assert pii.scrub("You can do it!Earl Lewiswww.Site.Com", ["Earl Lewis"]) == (
        "You can do it![name][website]"
    )


def test_spans_do_not_overlap_and_cover_the_text():
    text = "Hi, I'm Jane Doe (jane.doe@example.org, +44 20 7946 0958). Best,\nJane"
    spans = pii.default().spans(text)
    assert [s.kind for s in spans] == ["name", "email", "phone", "name"]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


def test_ner_engine_is_optional_with_a_clear_message(tmp_path):
    with pytest.raises(ImportError, match=r"psycho_jax\[ner\]"):
        pii.Scrubber(ner_model="en_core_web_not_installed")
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Priya"}])
    nlp.to_disk(tmp_path / "ner")
    scrubber = pii.Scrubber(ner_model=str(tmp_path / "ner"))
    assert scrubber.scrub("Priya said the group helps.") == "[name] said the group helps."
    assert pii.scrub("Priya said the group helps.") == "Priya said the group helps."  # no cue


def test_lean_analyze_matches_presidio():
    """The recognisers' fast `analyze` gives exactly what Presidio's `PatternRecognizer.analyze`
    gives (spans, entity, score) on the evaluation set's texts."""
    import json
    import pathlib

    from presidio_analyzer import PatternRecognizer

    from psycho_jax.data import pii_recognizers as pr

    rows = pathlib.Path(__file__).parent / "data" / "pii_eval.jsonl"
    texts = [json.loads(line)["text"] for line in rows.read_text().splitlines()]
    texts += [
        "Visit www.example.ie or https://bit.ly/3xYz, write to jane @gmail.com, IG: @calm.kai"
    ]
    key = lambda r: (r.start, r.end, r.entity_type, r.score)  # noqa: E731
    found = 0
    for rec in (pr.Email(), pr.Url(), pr.Handle()):
        for text in texts:
            lean = sorted(map(key, rec.analyze(text, rec.supported_entities)))
            assert lean == sorted(
                map(key, PatternRecognizer.analyze(rec, text, rec.supported_entities))
            ), text
            found += len(lean)
    assert found > 100  # the texts do hold addresses and handles
