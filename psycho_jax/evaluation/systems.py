"""The first stages of an evaluation (`psycho_jax.evaluate`): who is evaluated, on which prompts,
and their replies.

    parse_systems   `config.systems` -> `System`s (a checkpoint, a replies file or `reference`)
    prompt_sets     the main prompts and the crisis slice (`PromptSets`)
    file_replies / reference_replies / generated_replies
                    one system's replies to each prompt set and their coverage (`SystemReplies`)
    crisis_from_main
                    a crisis slice drawn from the main prompts takes the main replies

Loading a checkpoint is the program's part (`psycho_jax.evaluate`): a generating system comes here
as a `decode.Sampler`.
"""

from __future__ import annotations

import dataclasses
import pathlib

from absl import logging

from psycho_jax.core import decode
from psycho_jax.data.formats import DataError
from psycho_jax.evaluation import scoring
from psycho_jax.evaluation.replies import Coverage, Replies, check_replies
from psycho_jax.evaluation.settings import EvalSettings

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclasses.dataclass(frozen=True)
class System:
    """One system under evaluation: `kind` is "checkpoint", "file" or "reference"."""

    name: str
    kind: str
    source: str


def parse_systems(spec: str) -> list[System]:
    """`"a=/ckpt/a, gpt4o=replies.jsonl, ref=reference"` -> systems, in order."""
    systems = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, eq, source = part.partition("=")
        name, source = name.strip(), source.strip()
        if not eq or not name or not source:
            raise ValueError(f"config.systems: {part!r} is not name=source")
        if source == "reference":
            kind = "reference"
        elif pathlib.Path(source).suffix in TABLE_SUFFIXES:
            kind = "file"
        else:
            kind = "checkpoint"
        systems.append(System(name, kind, source))
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"config.systems: names repeat: {names}")
    if not systems:
        raise ValueError("config.systems is empty: name=source, comma separated")
    return systems


def replies_first(systems: list[System]) -> list[System]:
    """The order replies are gathered in: replies files and references first, so that their
    problems stop the run before anything is generated."""
    return sorted(systems, key=lambda s: s.kind == "checkpoint")


@dataclasses.dataclass(frozen=True)
class PromptSets:
    """The prompts every system answers (`main`) and the crisis slice of the safety table.

    Attributes:
        main: the held-out prompts (`config.prompts`).
        crisis: the crisis prompts, None for no safety slice.
        crisis_note: how the crisis slice was chosen (for the report).
        crisis_in_main: the crisis prompts are some of the main prompts: their replies are the
            main replies (`crisis_from_main`), not answered again.
    """

    main: list[scoring.Prompt]
    crisis: list[scoring.Prompt] | None
    crisis_note: str
    crisis_in_main: bool

    def all(self) -> dict[str, list[scoring.Prompt]]:
        """{"main": ..., "crisis": ...} (no "crisis" without a slice)."""
        return {"main": self.main} | ({} if self.crisis is None else {"crisis": self.crisis})

    def answered(self) -> dict[str, list[scoring.Prompt]]:
        """The sets systems answer: the crisis set only when it is not part of the main one."""
        return {"main": self.main} if self.crisis_in_main else self.all()


def crisis_prompts(c, main: list[scoring.Prompt]) -> tuple[list[scoring.Prompt] | None, str]:
    """The crisis slice and how it was chosen (`config.crisis`: "auto", a prompt spec or "")."""
    if not c.crisis:
        return None, "none (config.crisis is empty)"
    if c.crisis != "auto":
        return scoring.load_prompts(c.crisis, c.num_crisis), f"{c.crisis} (config.crisis)"
    if c.prompts.startswith("sample:"):
        return scoring.load_prompts("sample:crisis", c.num_crisis), "sample:crisis (shipped)"
    labelled = [p for p in main if p.crisis]
    if c.num_crisis:
        labelled = labelled[: c.num_crisis]
    if not labelled:
        return None, (
            f"none: no prompt of {c.prompts} has a crisis label (a true `crisis` column or a "
            "crisis topic/category); name a crisis set with config.crisis"
        )
    return labelled, f"the {len(labelled)} crisis-labelled prompts of {c.prompts}"


def prompt_sets(c: EvalSettings) -> PromptSets:
    """Stage 1: the prompts (`config.prompts`, `num_prompts`) and the crisis slice."""
    main = scoring.load_prompts(c.prompts, c.num_prompts)
    crisis, note = crisis_prompts(c, main)
    in_main = crisis is not None and c.crisis == "auto" and not c.prompts.startswith("sample:")
    return PromptSets(main, crisis, note, in_main)


@dataclasses.dataclass
class SystemReplies:
    """One system's replies to each prompt set ({"main": ..., "crisis": ...}; None where it has
    none) and their coverage (the scoring stage adds how many were cut)."""

    replies: dict[str, Replies | None]
    coverage: dict[str, Coverage]


def reference_replies(sets: dict[str, list[scoring.Prompt]]) -> SystemReplies:
    """The prompt files' own (single-turn) reference replies."""
    out = SystemReplies({}, {})
    for k, ps in sets.items():
        ok = all(p.reference for p in ps) and all(p.num_turns == 1 for p in ps)
        out.replies[k] = [(p.reference,) for p in ps] if ok else None
        n = len(ps)
        out.coverage[k] = Coverage(n, n if ok else 0, 0 if ok else n)
        out.coverage[k].skipped = "" if ok else "the prompts have no (single-turn) references"
    return out


def file_replies(
    system: System, sets: dict[str, list[scoring.Prompt]], on_bad_replies: str
) -> SystemReplies:
    """A replies file's replies to each prompt set, checked before anything is generated:
    problems raise (`on_bad_replies="error"`) or leave the system out of that set (counted)."""
    out = SystemReplies({}, {})
    for k, ps in sets.items():
        replies, cov, problems = check_replies(system.source, ps)
        if replies is None and not problems:
            problems = [
                DataError(
                    system.source,
                    None,
                    "id",
                    f"none of its ids match the {len(ps)} {k} prompts (e.g. {ps[0].id!r})",
                )
            ]
            if k != "main":  # a file for the main prompts has no crisis replies: shown, no error
                cov.skipped, problems = "no replies for these prompts", []
        if problems:
            if on_bad_replies == "error":
                raise ValueError(
                    f"system {system.name!r} ({k} prompts): {problems[0]}"
                    + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
                    + "; fix the file or set on_bad_replies=skip to leave the system out"
                ) from problems[0]
            cov.skipped = f"{len(problems)} problem(s), e.g. {problems[0]}"
            logging.warning("system %s, %s prompts: left out: %s", system.name, k, cov.skipped)
            replies = None
        out.replies[k], out.coverage[k] = replies, cov
    return out


def generate_replies(
    sampler, prompts: list[scoring.Prompt], c: EvalSettings
) -> tuple[Replies, int]:
    """A checkpoint's replies, turn by turn (a multi-turn prompt's next user turn follows the
    model's own reply), and how many generations stopped at `max_new_tokens`."""
    replies: list[list[str]] = [[] for _ in prompts]
    unfinished = 0
    for t in range(max(p.num_turns for p in prompts)):
        todo = [i for i, p in enumerate(prompts) if p.num_turns > t]
        convs = [prompts[i].context([*replies[i], ""]) for i in todo]
        out = sampler.reply(convs, c.sampling, batch_size=c.batch_size, seed=c.seed + t)
        for i, r in zip(todo, out, strict=True):
            replies[i].append(r.text)
            unfinished += not r.finished
    return [tuple(r) for r in replies], unfinished


def generated_replies(
    name: str, sampler: decode.Sampler, sets: dict[str, list[scoring.Prompt]], c
) -> SystemReplies:
    """A checkpoint's replies to each prompt set (`config.sampling`, `batch_size`, `seed`)."""
    out = SystemReplies({}, {})
    for k, ps in sets.items():
        out.replies[k], unfinished = generate_replies(sampler, ps, c)
        empty = sum(not r[-1].strip() for r in out.replies[k])
        out.coverage[k] = Coverage(len(ps), len(ps), empty=empty, unfinished=unfinished)
        logging.info("%s: %d replies to %s (%d hit max_new_tokens, %d empty)", name, len(ps), k,
                     unfinished, empty)  # fmt: skip
    return out


def crisis_from_main(replies: dict[str, SystemReplies], sets: PromptSets) -> None:
    """A crisis slice drawn from the main prompts: each system's crisis replies (and their
    coverage) are its replies to those main prompts."""
    at = {p.id: i for i, p in enumerate(sets.main)}
    crisis = sets.crisis
    for r in replies.values():
        main = r.replies["main"]
        r.replies["crisis"] = None if main is None else [main[at[p.id]] for p in crisis]
        cov = Coverage(
            len(crisis), 0 if main is None else len(crisis), skipped=r.coverage["main"].skipped
        )
        if main is not None:
            cov.empty = sum(not x[-1].strip() for x in r.replies["crisis"])
        r.coverage["crisis"] = cov
