"""Recall per kind and survival of negatives of `pii.scrub` on the labelled set `data/pii_eval.jsonl`.

    PYTHONPATH=. python -m tests.pii_eval           # prints the report (and every miss)

A labelled span is caught when nothing identifying of it is left after scrubbing: the whole span is
gone, and so is its identifying core (an e-mail's local part, a web address's longest label, a
phone number's last seven digits, each word of a name). A negative survives when it is still there
verbatim. Names are scored twice: with no name list (cues only, as for a user's own corpus) and with
the corpus's names passed in (as the CounselChat loader does).
"""

from __future__ import annotations

import collections
import json
import pathlib
import re
import sys

from psycho_jax.data import pii

UNCUED = ("name/corpus-only",)
"""Classes whose names carry no cue: scored only with the corpus's names."""
EVAL_FILE = pathlib.Path(__file__).with_name("data") / "pii_eval.jsonl"


def load(path: pathlib.Path = EVAL_FILE) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def caught(kind: str, span: str, out: str) -> bool:
    """Whether `span` (of `kind`) left nothing identifying in the scrubbed `out`."""
    if kind == "name":  # one word of a name, as a word ("Chen" is not in "Chenoweth")
        return re.search(rf"(?<!\w){re.escape(span)}(?!\w)", out) is None
    if span in out:
        return False
    if kind == "phone":  # no group of two or more of its digits is left ("+44 20 [phone]")
        left = set(re.findall(r"\d{2,}", out))
        return not any(g in left for g in re.findall(r"\d{2,}", span))
    if kind == "email":
        local = re.split(r"(?i)\s*(?:@|[\(\[\{]\s*at\s*[\)\]\}]|\s+at\s+)", span, maxsplit=1)[0]
        return local.strip().lower() not in out.lower()
    if kind == "url":
        core = max(re.findall(r"[A-Za-z0-9_]{4,}", span) or [span], key=len)
        return core.lower() not in out.lower()
    raise ValueError(f"unknown kind {kind!r}")


def evaluate(rows: list[dict], with_names: bool) -> dict:
    found: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    misses: dict[str, list[str]] = collections.defaultdict(list)
    kept = negatives = 0
    lost: list[str] = []
    for r in rows:
        names = r["names"] if with_names else ()
        words = {w for n in names for w in n.split() if len(w) >= 3} if with_names else ()
        out = pii.scrub(r["text"], names, words)
        by_span: dict[tuple[str, str], bool] = {}
        for p in r["pii"]:
            if not with_names and r["class"] in UNCUED:
                continue
            by_span[(p["kind"], p["text"])] = caught(p["kind"], p["text"], out)
        for (kind, span), ok in by_span.items():
            total[kind] += 1
            found[kind] += ok
            if not ok:
                misses[kind].append(f"{r['id']}: {span!r} in {out!r}")
        for k in r["keep"]:
            negatives += 1
            if k in out:
                kept += 1
            else:
                lost.append(f"{r['id']}: {k!r} -> {out!r}")
    recall = {k: found[k] / total[k] for k in sorted(total)}
    return {
        "recall": recall,
        "counts": {k: (found[k], total[k]) for k in sorted(total)},
        "negatives_kept": kept / negatives if negatives else 1.0,
        "negatives": (kept, negatives),
        "misses": dict(misses),
        "lost": lost,
    }


def report(rows: list[dict]) -> str:
    lines = [f"pii evaluation: {len(rows)} snippets ({EVAL_FILE.name})"]
    for with_names in (False, True):
        res = evaluate(rows, with_names)
        label = "with the corpus's names" if with_names else "no name list"
        lines.append(f"- {label}:")
        for k, v in res["recall"].items():
            f, t = res["counts"][k]
            lines.append(f"    recall {k:5s} {v:.3f} ({f}/{t})")
        kept, n = res["negatives"]
        lines.append(f"    negatives kept {res['negatives_kept']:.3f} ({kept}/{n})")
        for k, m in res["misses"].items():
            lines += [f"    miss {k}: {x}" for x in m]
        lines += [f"    lost: {x}" for x in res["lost"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(load()))
    sys.exit(0)
