"""The labelled evaluation set (`tests/data/pii_eval.jsonl`, written by `tests/data/make_pii_eval.py`)
meets issue 29's targets; `PYTHONPATH=. python -m tests.pii_eval` prints the figures and misses."""

import collections

from tests import pii_eval


def test_set_is_large_and_covers_the_miss_classes():
    rows = pii_eval.load()
    classes = collections.Counter(r["class"].split("/")[0] for r in rows)
    assert len(rows) >= 300 and min(classes.values()) >= 40, classes
    formats = {r["class"] for r in rows}
    for needed in (
        "phone/uk-national",
        "phone/au-mobile",
        "phone/de-intl",
        "phone/ie-intl",
        "phone/us-unseparated",
        "phone/us-en-dash",
        "phone/us-spaced-dash",
        "email/at-dot-words",
        "email/paren-at-dot",
        "email/bracket-at-dot",
        "email/space-before-at",
        "url/handle",
        "url/shortener-bitly",
        "url/bare-ie",
        "url/bare-de",
        "name/intro",
        "name/sign-off",
        "name/credential",
        "negative/crisis-line",
        "negative/crisis-site",
        "negative/ordinary",
    ):
        assert needed in formats, needed


def test_targets_without_and_with_the_corpus_names():
    rows = pii_eval.load()
    cued = pii_eval.evaluate(rows, with_names=False)
    named = pii_eval.evaluate(rows, with_names=True)
    report = pii_eval.report(rows)
    for kind in ("email", "phone", "url"):
        assert cued["recall"][kind] >= 0.99, report
    assert cued["recall"]["name"] >= 0.95 and named["recall"]["name"] >= 0.99, report
    assert cued["negatives_kept"] >= 0.99 and named["negatives_kept"] >= 0.99, report
    assert sum(t for _, t in cued["counts"].values()) > 400  # spans scored, not just snippets


def test_the_scoring_counts_partial_leaks_as_misses():
    assert not pii_eval.caught("phone", "+44 20 7946 0958", "call +44 20 [phone]")
    assert not pii_eval.caught("email", "jane at gmail dot com", "jane [email]")
    assert not pii_eval.caught("name", "Chen", "Thanks, Liam Chen")
    assert pii_eval.caught("name", "Chen", "Thanks, [name] (Chenoweth Road)")
