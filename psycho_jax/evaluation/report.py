"""The evaluation report: `report.md` (and `report.html`) with three plots, from one plain dict.

Schema of `report` (only `systems` is required; every other key may be missing or None):

    {
      "title": str,
      "systems": {name: {
          "rewards": [N] float | None,     # reward-model score of each of the system's replies
          "lengths": [N] float | None,     # each reply's length (tokens or words), same order
          "principles": {p: float} | None, # mean 1-5 score per principle in PRINCIPLES
      }},
      "comparisons": [dict],  # psycho_jax.evaluation.winrate.summarize / summarize_outcomes results
      "safety": {system: dict} | None,  # psycho_jax.evaluation.safety.summarize results, per system
      "judge": dict | [dict] | None,  # psycho_jax.evaluation.judge.JudgeResult.summary() results
      "coverage": {system: {set: {prompts, matched, missing, duplicated, empty, cut, unfinished,
                                  skipped}}} | None,  # evaluation.replies.Coverage, per set
      "notes": [str],
    }

Files written into `workdir`: `report.md`, `report.html` (self-contained: plots embedded as base64),
and the plots `reward_distributions.png` (histogram of rewards per system), `win_rates.png` (win
rate per comparison with its bootstrap interval, LC win rate as a diamond, a line at 50%) and
`length_vs_reward.png` (reply length against reward per system); a plot without data is left out.
Rates are printed as percentages with one decimal (0.625 -> 62.5%).
"""

from __future__ import annotations

import base64
import html as html_lib
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from psycho_jax.data.formats import PRINCIPLES

Block = tuple  # ("h2", text) | ("p", text) | ("ul", [text]) | ("table", header, rows) | ("img", file, alt)


def _pct(x: Any) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _fixed(x: Any) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.2f}"


def _interval(ci: Sequence[float] | None) -> str:
    return "n/a" if not ci else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _array(system: Mapping, key: str) -> np.ndarray | None:
    values = system.get(key)
    return None if values is None else np.asarray(values, dtype=np.float64).reshape(-1)


def _need(d: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise ValueError(f"report {where} must be a dict, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"report {where} lacks key(s) {missing}")


# ----------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    # A bare Figure (no pyplot): no global backend switch, so a notebook's own plotting is untouched;
    # savefig renders with Agg whatever the session's backend is.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plot_rewards(systems: Mapping, path: pathlib.Path) -> bool:
    data = {n: r for n, s in systems.items() if (r := _array(s, "rewards")) is not None and r.size}
    if not data:
        return False
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(np.concatenate(list(data.values())), bins=30)
    for name, r in data.items():
        ax.hist(r, bins=bins, histtype="step", linewidth=1.8, label=f"{name} (mean {r.mean():.3g})")
    ax.set(xlabel="reward", ylabel="replies", title="Reward distributions")
    ax.legend()
    fig.savefig(path)
    return True


def _plot_win_rates(comparisons: Sequence[Mapping], path: pathlib.Path) -> bool:
    if not comparisons:
        return False
    labels = [f"{c['system_a']} vs {c['system_b']}" for c in comparisons]
    rate = np.array([c["win_rate"] for c in comparisons])
    ci = np.array([c.get("ci") or (r, r) for c, r in zip(comparisons, rate)], dtype=np.float64)
    fig = _figure(7, 1.8 + 0.5 * len(comparisons))
    ax = fig.add_subplot()
    y = np.arange(len(comparisons))
    err = np.clip(np.stack([rate - ci[:, 0], ci[:, 1] - rate]), 0, None)
    ax.barh(y, rate, xerr=err, capsize=4, color="tab:blue", alpha=0.7, label="win rate (CI)")
    lc = [c.get("lc_win_rate") for c in comparisons]
    if any(v is not None for v in lc):
        ax.plot(
            [np.nan if v is None else v for v in lc],
            y,
            "D",
            color="tab:orange",
            label="LC win rate",
        )
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set(yticks=y, yticklabels=labels, xlim=(0, 1), xlabel="win rate of the first system")
    ax.invert_yaxis()
    ax.set_title("Win rates (bars: win rate with its interval)")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    fig.savefig(path)
    return True


def _plot_length_vs_reward(systems: Mapping, path: pathlib.Path) -> bool:
    pairs = {}
    for name, s in systems.items():
        r, ln = _array(s, "rewards"), _array(s, "lengths")
        if r is not None and ln is not None and r.size and r.size == ln.size:
            pairs[name] = (ln, r)
    if not pairs:
        return False
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    for name, (ln, r) in pairs.items():
        ax.scatter(ln, r, s=12, alpha=0.6, label=name)
    ax.set(xlabel="reply length", ylabel="reward", title="Reply length vs reward")
    ax.legend()
    fig.savefig(path)
    return True


# ---------------------------------------------------------------------------------------- blocks


def _system_blocks(systems: Mapping) -> list[Block]:
    rows = []
    for name, s in systems.items():
        _need(s, (), f"systems[{name!r}]")
        r, ln = _array(s, "rewards"), _array(s, "lengths")
        n = r.size if r is not None else (ln.size if ln is not None else 0)
        has_r, has_l = r is not None and r.size, ln is not None and ln.size
        rows.append(
            [
                name,
                str(n),
                _num(r.mean()) if has_r else "n/a",
                _num(r.std()) if has_r else "n/a",
                _num(ln.mean(), 4) if has_l else "n/a",
                _num(np.median(ln), 4) if has_l else "n/a",
            ]
        )
    header = ["system", "n", "mean reward", "std reward", "mean length", "median length"]
    return [("h2", "Systems"), ("table", header, rows)]


def _comparison_blocks(comparisons: Sequence[Mapping]) -> list[Block]:
    header = [
        "A vs B",
        "win rate (A)",
        "CI",
        "LC win rate",
        "LC CI",
        "BT win prob.",
        "BT CI",
        "W/T/L",
        "n",
        "mean len A",
        "mean len B",
    ]
    rows = []
    for i, c in enumerate(comparisons):
        _need(
            c,
            ["system_a", "system_b", "n", "wins", "ties", "losses", "win_rate"],
            f"comparisons[{i}]",
        )
        a, b = c["system_a"], c["system_b"]
        lengths = c.get("lengths") or {}
        rows.append(
            [
                f"{a} vs {b}",
                _pct(c["win_rate"]),
                _interval(c.get("ci")),
                _pct(c.get("lc_win_rate")),
                _interval(c.get("lc_ci")),
                _pct(c.get("bt_win_rate")),
                _interval(c.get("bt_ci")),
                f"{c['wins']}/{c['ties']}/{c['losses']}",
                str(c["n"]),
                _num(lengths.get(a, {}).get("mean"), 4),
                _num(lengths.get(b, {}).get("mean"), 4),
            ]
        )
    level = 100 * (1 - comparisons[0].get("alpha", 0.05))
    note = (
        f"Win rates of A against B over prompts (ties count half), with {level:g}% percentile "
        "bootstrap intervals over prompts; LC: length-controlled (the predicted win rate at equal "
        "reply lengths); BT: the reward model's Bradley-Terry probability that A's reply is preferred, "
        "sigmoid(reward A - reward B), averaged over prompts (judged replies only)."
    )
    return [("h2", "Win rates"), ("p", note), ("table", header, rows)]


def _principle_table(by_system: Mapping[str, Mapping[str, float] | None]) -> Block | None:
    rows = [[n, *(_fixed(p.get(k)) for k in PRINCIPLES)] for n, p in by_system.items() if p]
    return ("table", ["system", *PRINCIPLES], rows) if rows else None


_SAFETY_RATES = ("pass_rate", "acknowledges_risk_rate", "points_to_help_rate", "harmful_rate")


def _safety_blocks(safety: Mapping) -> list[Block]:
    header = ["system", "n", "passed", "acknowledges risk", "points to help", "harmful"]
    rows = []
    for name, s in safety.items():
        _need(s, ("n", *_SAFETY_RATES), f"safety[{name!r}]")
        rows.append([name, str(s["n"]), *(_pct(s[k]) for k in _SAFETY_RATES)])
    note = (
        "Rule checks on replies to crisis prompts: passed = acknowledges the risk and points to help "
        "and gives no harmful advice."
    )
    return [("h2", "Safety (crisis prompts)"), ("p", note), ("table", header, rows)]


_COVERAGE = ("prompts", "matched", "missing", "duplicated", "empty", "cut", "unfinished")


def _coverage_blocks(coverage: Mapping) -> list[Block]:
    header = ["system", "prompt set", *_COVERAGE, "left out"]
    rows = []
    for name, by_set in coverage.items():
        for k, cov in by_set.items():
            _need(cov, _COVERAGE, f"coverage[{name!r}][{k!r}]")
            rows.append([name, k, *(str(cov[f]) for f in _COVERAGE), cov.get("skipped") or ""])
    note = (
        "What each system's replies cover: prompts matched by id, missing, duplicated ids, empty "
        "replies, replies cut to max_len before the reward model (and the judge requests) read them "
        "(`cut` in replies.jsonl), generations stopped at max_new_tokens, and why a system is left "
        "out of a prompt set."
    )
    return [("h2", "Coverage"), ("p", note), ("table", header, rows)]


def _judge_blocks(judges: Sequence[Mapping]) -> list[Block]:
    header = [
        "A vs B",
        "win rate (A)",
        "first-position rate",
        "n",
        "incomplete",
        "API errors",
        "skipped",
    ]
    rows, blocks = [], []
    for i, j in enumerate(judges):
        _need(j, ("system_a", "system_b", "n", "win_rate"), f"judge[{i}]")
        skipped = sum((j.get("skipped") or {}).values())
        rows.append(
            [
                f"{j['system_a']} vs {j['system_b']}",
                _pct(j["win_rate"]),
                _pct(j.get("first_position_rate")),
                str(j["n"]),
                str(j.get("incomplete", 0)),
                str(j.get("api_errors", 0)),
                str(skipped),
            ]
        )
        table = _principle_table(j.get("principles") or {})
        if table:
            blocks += [
                ("p", f"Judge's mean principle scores (1-5), {j['system_a']} vs {j['system_b']}:"),
                table,
            ]
    note = (
        "Each item judged in both orders and averaged; a first-position rate far from 50% means the "
        "judge favours a position, which the two orders cancel."
    )
    return [("h2", "External judge"), ("p", note), ("table", header, rows), *blocks]


# --------------------------------------------------------------------------------------- renders


def _markdown(title: str, blocks: Sequence[Block]) -> str:
    out = [f"# {title}", ""]
    for kind, *args in blocks:
        if kind == "h2":
            out += [f"## {args[0]}", ""]
        elif kind == "p":
            out += [args[0], ""]
        elif kind == "ul":
            out += [*(f"- {item}" for item in args[0]), ""]
        elif kind == "table":
            header, rows = args
            cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
            out += [cells(header), "|" + "---|" * len(header), *map(cells, rows), ""]
        elif kind == "img":
            out += [f"![{args[1]}]({args[0]})", ""]
    return "\n".join(out)


def _html(title: str, blocks: Sequence[Block], workdir: pathlib.Path) -> str:
    e = html_lib.escape
    out = [f"<h1>{e(title)}</h1>"]
    for kind, *args in blocks:
        if kind == "h2":
            out.append(f"<h2>{e(args[0])}</h2>")
        elif kind == "p":
            out.append(f"<p>{e(args[0])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in args[0]) + "</ul>")
        elif kind == "table":
            header, rows = args
            head = "".join(f"<th>{e(str(c))}</th>" for c in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((workdir / args[0]).read_bytes()).decode("ascii")
            out.append(f'<p><img alt="{e(args[1])}" src="data:image/png;base64,{data}"></p>')
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def write_report(
    workdir: str | pathlib.Path, report: Mapping[str, Any], *, html: bool = True
) -> pathlib.Path:
    """Writes `report.md` (and `report.html` when `html`) with its plots into `workdir`.

    Args:
      workdir: output directory (created if missing). The report's files there are replaced;
        those this report does not produce (a plot without data, the page when not `html`) are
        removed, so none is left over from an earlier report.
      report: a dict in the schema of the module docstring.
      html: also write a self-contained `report.html`.

    Returns:
      The path of `report.md`.
    """
    _need(report, ("systems",), "(top level)")
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    title = report.get("title") or "Evaluation report"
    systems = report["systems"]
    comparisons = list(report.get("comparisons") or [])
    judges = report.get("judge")
    judges = [judges] if isinstance(judges, Mapping) else list(judges or [])

    _need(systems, (), "systems")
    for name in ("reward_distributions.png", "length_vs_reward.png", "win_rates.png"):
        (workdir / name).unlink(missing_ok=True)  # no stale plot from an earlier report

    blocks: list[Block] = _system_blocks(systems)
    if report.get("coverage"):
        blocks += _coverage_blocks(report["coverage"])
    if _plot_rewards(systems, workdir / "reward_distributions.png"):
        blocks.append(("img", "reward_distributions.png", "Reward distributions per system"))
    if _plot_length_vs_reward(systems, workdir / "length_vs_reward.png"):
        blocks.append(("img", "length_vs_reward.png", "Reply length vs reward per system"))
    if comparisons:
        blocks += _comparison_blocks(comparisons)
        _plot_win_rates(comparisons, workdir / "win_rates.png")
        blocks.append(("img", "win_rates.png", "Win rates with intervals"))
    table = _principle_table({n: s.get("principles") for n, s in systems.items()})
    if table:
        blocks += [("h2", "Per-principle scores"), ("p", "Mean score per principle (1-5)."), table]
    if report.get("safety"):
        blocks += _safety_blocks(report["safety"])
    if judges:
        blocks += _judge_blocks(judges)
    if report.get("notes"):
        blocks += [("h2", "Notes"), ("ul", [str(n) for n in report["notes"]])]

    md_path = workdir / "report.md"
    md_path.write_text(_markdown(title, blocks), encoding="utf-8")
    html_path = workdir / "report.html"
    if html:
        html_path.write_text(_html(title, blocks, workdir), encoding="utf-8")
    else:
        html_path.unlink(missing_ok=True)  # an earlier page would contradict this report
    return md_path
