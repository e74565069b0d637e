"""Where a profiled step's time goes: XLA:CPU op times from a `jax.profiler` trace, by kind.

    python bench/train_step.py --framework=jax --shape=medium --task=sft --data=counsel \
        --model_dir=DIR --warmup=1 --steps=1 --windows=1 --profile=/tmp/prof
    python bench/profile_summary.py /tmp/prof [--hlo=DUMP/module_*.jit_train_step.cpu_after_optimizations.txt]

Reads the newest `*.trace.json.gz` under the directory, takes the events of XLA:CPU's threads
(`tf_XLA*`: the intra-op pool and the client threads that run small ops inline), computes each
op's self time (its duration less its nested events'), leaves out the executor's own events (their
self time is waiting for the ops they launched) and sums the rest by kind: matrix products
(YNNPACK fusions, dots), collectives (the mesh's all-gathers and reductions), waits, data movement
(copies, transposes, concatenations, pads, slices) and the rest (element-wise fusions,
reductions). With `--hlo` (an optimized-HLO dump, `XLA_FLAGS="--xla_dump_to=D
--xla_dump_hlo_as_text"`) the top ops are listed with the JAX operation they came from.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys

KINDS = ("matmul", "collective", "wait", "movement", "other")
_MOVEMENT = ("copy", "transpose", "concatenate", "pad", "slice", "gather", "scatter", "bitcast")


def kind(name: str) -> str:
    """The kind of an XLA:CPU op from its trace name (`ynn_fusion.12`, `all-gather.3`, ...)."""
    if name.startswith("ynn_fusion") or "dot" in name or "convolution" in name:
        return "matmul"
    if name.startswith(("all-", "reduce-scatter", "collective-permute")):
        return "collective"
    if name.startswith(("Rendezvous", "Wait", "InvokeRendezvous")):
        return "wait"
    words = re.sub(r"\.\d+$", "", name).split("_")
    if all(w in _MOVEMENT or w in ("fusion", "wrapped") for w in words):
        return "movement"
    return "other"


# Events of the executor, not ops: launching a program, waiting for its thunks.
_BOOKKEEPING = ("ThunkExecutor", "CommonPjRt", "PjRt", "[")


def self_times(trace: dict, thread_prefix: str = "tf_XLA") -> collections.Counter:
    """Op name -> summed self time (microseconds) over the threads named `thread_prefix*`."""
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in trace["traceEvents"]
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    per_thread = collections.defaultdict(list)
    for e in trace["traceEvents"]:
        key = (e.get("pid"), e.get("tid"))
        if e.get("ph") == "X" and threads.get(key, "").startswith(thread_prefix):
            per_thread[key].append(e)
    out: collections.Counter = collections.Counter()
    for events in per_thread.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[dict] = []
        for e in events:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                out[stack[-1]["name"]] -= e["dur"]
            out[e["name"]] += e["dur"]
            stack.append(e)
    return collections.Counter(
        {name: us for name, us in out.items() if not name.startswith(_BOOKKEEPING)}
    )


def by_kind(times: collections.Counter) -> dict[str, float]:
    """Seconds per kind (`KINDS`)."""
    out = dict.fromkeys(KINDS, 0.0)
    for name, us in times.items():
        out[kind(name)] += us / 1e6
    return out


def hlo_sources(path: str) -> dict[str, str]:
    """Instruction name -> `shape | op_name` from an optimized-HLO text dump."""
    out = {}
    pattern = re.compile(r"^\s*%?([\w.\-]+) = (\S+) [^\n]*?op_name=\"([^\"]*)\"", re.M)
    for m in pattern.finditer(pathlib.Path(path).read_text()):
        out[m.group(1)] = f"{m.group(2)} | {m.group(3)[-80:]}"
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace_dir", help="a jax.profiler.trace directory")
    parser.add_argument("--hlo", default="", help="optimized-HLO text dump of the same program")
    parser.add_argument("--top", type=int, default=15, help="ops listed outside matrix products")
    args = parser.parse_args(argv)
    files = sorted(
        pathlib.Path(args.trace_dir).rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime
    )
    if not files:
        sys.exit(f"no *.trace.json.gz under {args.trace_dir}")
    with gzip.open(files[-1]) as f:
        times = self_times(json.load(f))
    if not times:
        sys.exit(f"{files[-1]}: no XLA:CPU op events (tf_XLA* threads)")
    kinds = by_kind(times)
    total = sum(kinds.values())
    print(f"{files[-1]}\nop thread time {total:.3f} s (summed over threads)\n")
    print("| kind | seconds | share |\n|---|---|---|")
    for k, s in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {s:.3f} | {100 * s / total:.1f}% |")
    sources = hlo_sources(args.hlo) if args.hlo else {}
    print(f"\ntop {args.top} ops outside matrix products (self time):")
    others = [(n, us) for n, us in times.most_common() if kind(n) != "matmul"]
    for name, us in others[: args.top]:
        print(f"  {us / 1e6:7.3f} s  {name}  {sources.get(name, '')}")


if __name__ == "__main__":
    main()
