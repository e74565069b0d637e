"""Data audit: what is in a counseling dataset before anything trains on it.

    python -m psycho_jax.data.audit --data=sample:preference_train --data=sample:preference_test \\
        --tokenizer=sample --out=/tmp/audit
    python -m psycho_jax.data.audit --data=train=hf:Psychotherapy-LLM/PsychoCounsel-Preference:train \\
        --data=test=hf:Psychotherapy-LLM/PsychoCounsel-Preference:test \\
        --tokenizer=../shared/assets/llama3/tokenizer.model --out=/tmp/audit --max_len=1024,2048

Each `--data` is `[LABEL=]SOURCE` (`sources.parse_source`); all sources of one audit are pairs or all
conversations. Prints and writes `report.md` and `report.json` to `--out`, with `lengths_<label>.png`
(token lengths) and `ratings_<label>.png` (per-principle rating gaps): row counts and skipped rows
per split, token-length distributions, chosen-vs-rejected length bias, per-principle rating gaps,
pairs whose rejected reply is rated safer than the chosen one, prompts shared across splits (the whole
prompt or conversation), personal-information hits by kind (`pii.find`: e-mails, web addresses and
handles, phone numbers, names), examples that repeat an id, per-turn labels and first speakers of
conversations, and how many rows each truncation policy would change at each `--max_len` (default the
configs' `data.max_len`) with the share of assistant tokens that stay targets (keep_last_turns, and
`data.windows`). Transcripts are read with `--role_map` / `--merge_consecutive` as training reads
them. Bad rows are counted, not fatal (`--on_error=raise` to stop at the first).
"""

from __future__ import annotations

import collections
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import regex
import tqdm
from absl import app, flags

from psycho_jax.data import pii, sources, templating
from psycho_jax.data import tokenizer as tk
from psycho_jax.data.formats import (
    PRINCIPLES,
    Conversation,
    ConversationOptions,
    Example,
    PreferencePair,
    SkipCounter,
    parse_role_map,
)

_MAX_EXAMPLES = 5  # ids listed per finding


def _stats(x: Sequence[float]) -> dict[str, float]:
    if not len(x):
        return {"n": 0}
    a = np.asarray(x, np.float64)
    q = np.percentile(a, [50, 90, 99])
    return {
        "n": len(a),
        "mean": round(float(a.mean()), 1),
        "min": round(float(a.min()), 1),
        "p50": round(float(q[0]), 1),
        "p90": round(float(q[1]), 1),
        "p99": round(float(q[2]), 1),
        "max": round(float(a.max()), 1),
    }


def _prompt_key(ex: Example) -> str:
    """The whole prompt (a pair's prompt turns, a conversation's turns), normalised: how prompts
    are compared across splits (a shared greeting alone is not a shared conversation)."""
    msgs = ex.messages if isinstance(ex, Conversation) else ex.prompt
    text = "\n".join(f"{m.role}: {m.content}" for m in msgs if m.role != "system")
    return regex.sub(r"[ \t]+", " ", text.strip().lower())


def _texts(ex: Example) -> list[str]:
    if isinstance(ex, Conversation):
        return [m.content for m in ex.messages]
    return [m.content for m in ex.prompt] + [ex.chosen, ex.rejected]


def _truncation(
    examples: Sequence[Example],
    full_lengths: dict[int, int],
    ct: templating.ChatTokenizer,
    max_lens: Sequence[int],
    assistant_total: int = 0,
) -> dict[str, Any]:
    """Rows each policy changes at each max_len (exact: long rows are re-tokenized), and for
    conversations the share of the `assistant_total` assistant tokens (of every row, uncut) that
    stay targets under keep_last_turns and under `data.windows`."""
    out = {}
    conversations = bool(examples) and isinstance(examples[0], Conversation)
    for max_len in max_lens:
        long_rows = [i for i, n in full_lengths.items() if n > max_len]
        keep = SkipCounter()
        trunc = templating.Truncation(max_len, "keep_last_turns")
        long = [examples[i] for i in long_rows]
        templating.tokenize_examples(long, ct, trunc, on_error="skip", skips=keep)
        row = {
            "longer_than_max_len": len(long_rows),
            "skip_policy_skips": len(long_rows),
            "keep_last_turns_changes": dict(keep.events),
            "keep_last_turns_skips": keep.total_skipped,
        }
        if conversations:
            total = assistant_total
            lost = keep.assistant_tokens[0] - keep.assistant_tokens[1]
            windows = SkipCounter()
            wtrunc = templating.Truncation(max_len, "keep_last_turns", windows=True)
            templating.tokenize_examples(long, ct, wtrunc, on_error="skip", skips=windows)
            wlost = windows.assistant_tokens[0] - windows.assistant_tokens[1]
            row["assistant_tokens_kept"] = {
                "keep_last_turns": round(1 - lost / total, 3) if total else None,
                "windows": round(1 - wlost / total, 3) if total else None,
            }
            row["windows_rows"] = windows.events.get("conversation windows", 0)
        out[str(max_len)] = row
    return out


def audit_split(
    examples: Sequence[Example], ct: templating.ChatTokenizer, max_lens: Sequence[int]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Report and the raw length arrays (for plots) of one split's examples."""
    skips = SkipCounter()
    big = templating.Truncation(10**9)
    tokenized = templating.tokenize_examples(examples, ct, big, on_error="skip", skips=skips)
    report: dict[str, Any] = {"rows": len(examples), "tokenize_skipped": skips.as_dict()}
    arrays: dict[str, np.ndarray] = {}
    if examples and isinstance(examples[0], PreferencePair):
        p = np.asarray([len(t.prompt) for t in tokenized])
        c = np.asarray([len(t.chosen) for t in tokenized])
        r = np.asarray([len(t.rejected) for t in tokenized])
        arrays = {"prompt": p, "chosen": c, "rejected": r}
        report["kind"] = "pairs"
        report["tokens"] = {k: _stats(v) for k, v in arrays.items()}
        report["length_bias"] = {
            "chosen_longer": round(float(np.mean(c > r)), 3) if len(c) else None,
            "mean_chosen_minus_rejected": round(float(np.mean(c - r)), 1) if len(c) else None,
        }
        full = {t.index: len(t.prompt) + max(len(t.chosen), len(t.rejected)) for t in tokenized}
        rated = [
            e for e in examples if e.chosen_ratings is not None and e.rejected_ratings is not None
        ]
        if rated:
            gap = np.asarray([np.subtract(e.chosen_ratings, e.rejected_ratings) for e in rated])
            arrays["rating_gap"] = gap
            report["rating_gap"] = {
                name: {
                    "mean": round(float(gap[:, k].mean()), 2),
                    "chosen_higher": round(float(np.mean(gap[:, k] > 0)), 3),
                    "equal": round(float(np.mean(gap[:, k] == 0)), 3),
                    "rejected_higher": round(float(np.mean(gap[:, k] < 0)), 3),
                }
                for k, name in enumerate(PRINCIPLES)
            }
            s = PRINCIPLES.index("safety")
            safer = [e.id for e in rated if e.rejected_ratings[s] > e.chosen_ratings[s]]
            report["rejected_rated_safer"] = {"count": len(safer), "ids": safer[:_MAX_EXAMPLES]}
    else:
        n = np.asarray([len(t.tokens) for t in tokenized])
        a = np.asarray([int(t.loss_mask.sum()) for t in tokenized])
        turns = [sum(m.role == "assistant" for m in e.messages) for e in examples]
        arrays = {"conversation": n, "assistant": a}
        report["kind"] = "conversations"
        report["tokens"] = {k: _stats(v) for k, v in arrays.items()}
        report["assistant_turns"] = dict(sorted(collections.Counter(turns).items()))
        labels = collections.Counter(m.label for e in examples for m in e.messages if m.label)
        if labels:  # per-turn labels (e.g. support strategies) and how often each occurs
            report["turn_labels"] = dict(labels.most_common())
        first = collections.Counter(
            next(m.role for m in e.messages if m.role != "system") for e in examples
        )
        report["first_speaker"] = dict(first)
        full = {t.index: len(t.tokens) for t in tokenized}
    hits: collections.Counter[str] = collections.Counter()
    where: dict[str, list[str]] = collections.defaultdict(list)
    for e in tqdm.tqdm(examples, desc="audit: personal information", unit="row", disable=None):
        for text in _texts(e):
            for kind, k in pii.find(text).items():
                hits[kind] += k
                if len(where[kind]) < _MAX_EXAMPLES and e.id not in where[kind]:
                    where[kind].append(e.id)
    report["pii"] = {"hits": dict(hits), "ids": dict(where)}
    count, ids = sources.duplicate_ids(examples, _MAX_EXAMPLES)
    report["duplicate_ids"] = {"count": count, "ids": ids}
    report["truncation"] = _truncation(examples, full, ct, max_lens, skips.assistant_tokens[0])
    return report, arrays


def duplicates(splits: dict[str, Sequence[Example]]) -> dict[str, Any]:
    """Prompts (first user message, normalised) that occur in two splits."""
    keys = {name: {_prompt_key(e): e.id for e in ex} for name, ex in splits.items()}
    names = list(keys)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(keys[a]) & set(keys[b]))
            out[f"{a} & {b}"] = {
                "count": len(shared),
                "ids": [keys[a][k] for k in shared[:_MAX_EXAMPLES]],
            }
    return out


def audit(
    splits: dict[str, Sequence[Example]],
    ct: templating.ChatTokenizer,
    max_lens: Sequence[int] = (1024,),
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The whole report (JSON-serialisable) and per-split length arrays."""
    report: dict[str, Any] = {"splits": {}, "max_lens": list(max_lens)}
    arrays = {}
    for name, examples in splits.items():
        report["splits"][name], arrays[name] = audit_split(examples, ct, max_lens)
    report["duplicate_prompts"] = duplicates(splits)
    return report, arrays


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Data audit", ""]
    for name, r in report["splits"].items():
        lines += [
            f"## {name}",
            "",
            f"- rows: {r['rows']} ({r['kind']}); loading skipped: "
            f"{r.get('load_skipped', {}).get('skipped') or 'none'}; tokenizing skipped: "
            f"{r['tokenize_skipped']['skipped'] or 'none'}",
        ]
        lines += [
            "",
            "| tokens | n | mean | min | p50 | p90 | p99 | max |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for k, s in r["tokens"].items():
            lines.append(
                f"| {k} | "
                + " | ".join(
                    str(s.get(f, "")) for f in ("n", "mean", "min", "p50", "p90", "p99", "max")
                )
                + " |"
            )
        if "length_bias" in r:
            b = r["length_bias"]
            lines += [
                "",
                f"- length bias: chosen longer in {b['chosen_longer']:.1%} of pairs; mean "
                f"chosen - rejected = {b['mean_chosen_minus_rejected']} tokens",
            ]
        if "rating_gap" in r:
            lines += [
                "",
                "| principle | mean gap (chosen - rejected) | chosen higher | equal | rejected higher |",
                "|---|---|---|---|---|",
            ]
            for p, g in r["rating_gap"].items():
                lines.append(
                    f"| {p} | {g['mean']} | {g['chosen_higher']:.1%} | {g['equal']:.1%} | "
                    f"{g['rejected_higher']:.1%} |"
                )
            s = r["rejected_rated_safer"]
            lines += [
                "",
                f"- rejected reply rated safer than chosen: {s['count']} pair(s) {s['ids']}",
            ]
        if "assistant_turns" in r:
            lines += ["", f"- assistant turns per conversation: {r['assistant_turns']}"]
            lines += [f"- first speaker: {r['first_speaker']}"]
        if r.get("turn_labels"):
            lines += [f"- per-turn labels: {r['turn_labels']}"]
        hits = r["pii"]["hits"]
        lines += [
            "",
            f"- personal information hits: {hits} (e.g. {r['pii']['ids']})"
            if hits
            else "- personal information hits: none",
            f"- examples repeating an earlier id: {r['duplicate_ids']['count']} "
            f"{r['duplicate_ids']['ids'] or ''}".rstrip(),
        ]
        for max_len, t in r["truncation"].items():
            line = (
                f"- max_len {max_len}: {t['longer_than_max_len']} row(s) longer; 'skip' drops them; "
                f"'keep_last_turns' changes {t['keep_last_turns_changes'] or 'none'} and skips "
                f"{t['keep_last_turns_skips']}"
            )
            kept = t.get("assistant_tokens_kept")
            if kept and kept["keep_last_turns"] is not None:
                line += (
                    f"; assistant tokens kept as targets: {kept['keep_last_turns']:.1%} "
                    f"(keep_last_turns), {kept['windows']:.1%} (data.windows: "
                    f"{t['windows_rows']} windows)"
                )
            lines.append(line)
        lines.append("")
    lines += ["## Prompts shared across splits (whole prompt or conversation)", ""]
    for pair, d in report["duplicate_prompts"].items() or {}:
        lines.append(f"- {pair}: {d['count']} {d['ids']}")
    return "\n".join(lines) + "\n"


def plot(arrays: dict[str, dict[str, np.ndarray]], out: pathlib.Path) -> list[str]:
    """Length histograms and rating-gap bars as PNG files; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for split, a in arrays.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for k, v in a.items():
            if k != "rating_gap" and len(v):
                ax.hist(v, bins=50, alpha=0.5, label=k)
        ax.set(xlabel="tokens", ylabel="rows", title=f"{split}: token lengths")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"lengths_{split}.png", dpi=100)
        plt.close(fig)
        names.append(f"lengths_{split}.png")
        if "rating_gap" in a:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.bar(PRINCIPLES, a["rating_gap"].mean(axis=0))
            ax.set(
                ylabel="mean chosen - rejected rating", title=f"{split}: rating gap per principle"
            )
            ax.tick_params(axis="x", rotation=30)
            fig.tight_layout()
            fig.savefig(out / f"ratings_{split}.png", dpi=100)
            plt.close(fig)
            names.append(f"ratings_{split}.png")
    return names


def run(
    data: Sequence[str],
    tokenizer: str,
    out: str,
    max_lens: Sequence[int],
    on_error: str = "skip",
    options: ConversationOptions | None = None,
) -> dict:
    """Loads the sources (transcripts read with `options`), audits them, writes report.md /
    report.json / PNGs to `out`."""
    splits: dict[str, list[Example]] = {}
    load_skips: dict[str, SkipCounter] = {}
    for item in data:
        label, _, spec = item.partition("=") if "=" in item.split(":", 1)[0] else ("", "", item)
        src = sources.parse_source(spec)
        label = label or (src.split or pathlib.Path(src.location).stem)
        load_skips[label] = SkipCounter()
        splits[label] = sources.load_source(
            src, on_error=on_error, skips=load_skips[label], options=options
        )
    ct = templating.ChatTokenizer(tk.load_tokenizer(tokenizer))
    report, arrays = audit(splits, ct, max_lens)
    for label, sk in load_skips.items():
        report["splits"][label]["load_skipped"] = sk.as_dict()
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["plots"] = plot(arrays, out_dir)
    md = to_markdown(report)
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(md)
    return report


def define_flags() -> None:
    """Command-line flags; defined only when run as a program, so importing this module (tests,
    notebooks, other CLIs) never clashes with another module's flags."""
    flags.DEFINE_multi_string(
        "data", None, "[LABEL=]SOURCE, repeated (see psycho_jax.data.sources)"
    )
    flags.DEFINE_string(
        "tokenizer", "sample", "'sample', a Meta tokenizer.model, or an HF tokenizer dir"
    )
    flags.DEFINE_string("out", None, "directory for report.md, report.json and the PNG plots")
    flags.DEFINE_list(
        "max_len",
        [str(templating.DEFAULT_MAX_LEN)],
        "max lengths at which to count truncations (default: the configs' data.max_len)",
    )
    flags.DEFINE_enum("on_error", "skip", ["skip", "raise"], "bad rows: count them, or stop")
    flags.DEFINE_string(
        "role_map", "", "extra speaker names -> roles, e.g. 'Interviewer=assistant,Caller=user'"
    )
    flags.DEFINE_bool("merge_consecutive", False, "join consecutive turns of one speaker")


def main(argv: Sequence[str]) -> None:
    del argv
    if not flags.FLAGS.data or not flags.FLAGS.out:
        raise app.UsageError("--data and --out are required")
    run(
        flags.FLAGS.data,
        flags.FLAGS.tokenizer,
        flags.FLAGS.out,
        [int(x) for x in flags.FLAGS.max_len],
        flags.FLAGS.on_error,
        ConversationOptions(parse_role_map(flags.FLAGS.role_map), flags.FLAGS.merge_consecutive),
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
