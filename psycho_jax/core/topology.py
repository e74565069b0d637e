"""TPU slices without TPUs: the devices of a named slice, for compiling a program with the real TPU
compiler on any machine (`libtpu` installed: `pip install psycho_jax[tpu]`), and what the compiled
program holds (collectives, matrix-product FLOPs, loops' trip counts counted).

    python -m psycho_jax.main --config=configs/sft.py:llama3_8b --dry_run --topology=v5p-16

A slice is named as Cloud TPU names it: `v5p-16` (v4 and v5p count TensorCores, two per chip: 8
chips), `v6e-8`, `v5e-16` (one core per chip: 8, 16 chips); or as JAX's topology string
(`v5p:2x2x2`). `jax.experimental.topologies.get_topology_desc` gives the slice's compile-only
devices; a mesh built on them compiles with `jit(...).lower(...).compile()` and nothing runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from collections.abc import Sequence

import jax

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU generation: memory, bf16 peak, how slice names count it, its torus."""

    hbm_gib: float
    peak_bf16_flops: float  # per chip (Cloud TPU's published figures)
    hbm_bytes_per_second: float
    cores_per_chip: int  # what the `-N` of a slice name counts per chip
    dims: int  # 3: a 3-d torus (megacore chips); 2: a 2-d one


CHIPS = {
    "v4": Chip(32, 275e12, 1.2e12, 2, 3),
    "v5p": Chip(95, 459e12, 2.765e12, 2, 3),
    "v5e": Chip(16, 197e12, 0.819e12, 1, 2),
    "v6e": Chip(32, 918e12, 1.64e12, 1, 2),
}

# Chips -> torus shape (the shapes Cloud TPU provisions).
_SHAPES_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4),
              128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8)}  # fmt: skip
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
              256: (16, 16)}  # fmt: skip


def slice_names() -> list[str]:
    """Every slice name `devices` accepts in the `v5p-16` form."""
    names = []
    for gen, chip in CHIPS.items():
        shapes = _SHAPES_3D if chip.dims == 3 else _SHAPES_2D
        names += [f"{gen}-{n * chip.cores_per_chip}" for n in shapes]
    return names


@dataclasses.dataclass(frozen=True)
class Slice:
    """A named TPU slice: its generation, chip count and JAX topology string."""

    name: str
    generation: str
    chips: int
    topology: str  # e.g. "v5p:2x2x2"

    @property
    def chip(self) -> Chip:
        return CHIPS[self.generation]


def parse(name: str) -> Slice:
    """`v5p-16` or `v5p:2x2x2` -> a Slice; an unknown name raises, listing the valid ones."""
    name = name.strip().lower()
    if m := re.fullmatch(r"(v4|v5p|v5e|v6e):(\d+(?:x\d+)+)", name):
        gen, shape = m.group(1), tuple(int(s) for s in m.group(2).split("x"))
        if len(shape) == CHIPS[gen].dims:
            return Slice(name, gen, math.prod(shape), name)
    if m := re.fullmatch(r"(v4|v5p|v5e|v6e|v5litepod)-(\d+)", name):
        gen = "v5e" if m.group(1) == "v5litepod" else m.group(1)
        chip = CHIPS[gen]
        cores = int(m.group(2))
        shapes = _SHAPES_3D if chip.dims == 3 else _SHAPES_2D
        shape = shapes.get(cores // chip.cores_per_chip)
        if shape and cores % chip.cores_per_chip == 0:
            topology = f"{gen}:{'x'.join(map(str, shape))}"
            return Slice(name, gen, math.prod(shape), topology)
    raise ValueError(
        f"unknown TPU slice {name!r}; valid: {', '.join(slice_names())}, or a JAX topology "
        "such as v5p:2x2x2 (3-d for v4/v5p, 2-d for v5e/v6e)"
    )


def require_libtpu() -> None:
    """Raises with the install command when the TPU compiler (`libtpu`) is missing."""
    if importlib.util.find_spec("libtpu") is None:
        raise RuntimeError(
            "compiling for a TPU slice needs the TPU compiler: pip install 'psycho_jax[tpu]' "
            "(jax[tpu], which brings the matching libtpu); no TPU is needed"
        )


def prepare_environment() -> None:
    """Environment for loading libtpu on a machine without TPUs, set before it loads: no cloud
    metadata queries, and no exclusive lock (another JAX process on the host may hold libtpu's)."""
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def devices(name: str) -> tuple[Slice, list[jax.Device]]:
    """The compile-only devices of a slice (one per chip; megacore on v4/v5p)."""
    s = parse(name)
    require_libtpu()
    prepare_environment()
    from jax.experimental import topologies

    kwargs = {}
    if s.chip.dims == 3:
        kwargs["chip_config_name"] = "megacore"
    if s.chips == 1:
        kwargs["chips_per_host_bounds"] = (1, 1, 1)
    desc = topologies.get_topology_desc(platform="tpu", topology_name=s.topology, **kwargs)
    return s, list(desc.devices)


# ----------------------------------------------------------------------------- the compiled program

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
                "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}  # fmt: skip
_SHAPE = re.compile(r"\b(pred|[su](?:8|16|32|64)|bf16|f16|f32|f64)\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+([\w\-]+)\((.*)$")


def _shapes(text: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(d, tuple(int(x) for x in dims.split(",") if x)) for d, dims in _SHAPE.findall(text)]


def _nbytes(text: str) -> int:
    return sum(_DTYPE_BYTES[d] * math.prod(s) for d, s in _shapes(text))


@dataclasses.dataclass
class HloSummary:
    """Collectives and matrix-product FLOPs of an optimized HLO module, per device.

    `collectives[op]` = (instructions in the program, executions per step, bytes per step):
    executions count a loop body's instruction once per trip (`known_trip_count`), and the bytes
    are each execution's result (all-gather: the gathered array; reduce-scatter: the scattered
    shard; all-reduce: the reduced array). The TPU compiler writes a reduce-scatter as a custom
    fusion (`calls=%all-reduce-scatter...`) of an all-reduce and a dynamic slice: counted as
    the reduce-scatter it runs as, not as the all-reduce inside it. `dot_flops` = 2 x output
    elements x contracted size of every dot and convolution, times its executions: the per-step
    FLOPs the compiler's
    `cost_analysis()` undercounts by counting each loop body once (`dot_flops_once` is the figure
    without trip counts, comparable to it). Exact for the unoptimized program's dots
    (`Lowered.as_text(dialect="hlo")`); the TPU compiler rewrites batched dots into windowed
    convolutions, whose window taps this counts as products (an overcount)."""

    collectives: dict[str, tuple[int, int, int]]
    dot_flops: float
    dot_flops_once: float
    loops: list[int]  # the trip count of each while loop
    # the largest collectives: (bytes per step, op, result shape, executions, JAX op name)
    largest: list[tuple[int, str, str, int, str]] = dataclasses.field(default_factory=list)


def _split_call(rest: str) -> tuple[list[str], str]:
    """`a, b), attrs...` (the text after an op's open parenthesis) -> operand names, attributes."""
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "("
        if ch == ")":
            if depth == 0:  # operands print as "%name" or "shape %name" (optimized) or "name"
                names = [o.split()[-1].lstrip("%") for o in _top_level(rest[:i]) if o.strip()]
                return names, rest[i + 1 :]
            depth -= 1
    return [], rest


def _top_level(text: str) -> list[str]:
    """`text` split at commas outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _trip_count(condition: list[str]) -> int:
    """A while loop's trip count from its condition `i < constant(N)` (JAX's loops count from 0);
    1 when the condition has another form."""
    root = [line for line in condition if line.lstrip().startswith("ROOT")]
    if not root or "compare(" not in root[0] or "direction=LT" not in root[0]:
        return 1
    consts = [int(m.group(1)) for line in condition if (m := re.search(r"constant\((\d+)\)", line))]
    return consts[0] if len(consts) == 1 else 1


def summarize_hlo(text: str, axis_sizes: dict[str, int] | None = None) -> HloSummary:
    """Walks the optimized HLO's call graph from ENTRY, multiplying by while loops' trip counts
    (`known_trip_count`, or the condition's `i < N`); conditional branches count as taken (an
    upper bound: the head's skipped chunks). In the unoptimized program a `shard_map` body holds
    one shard's shapes: with the mesh's `axis_sizes`, its work counts once per shard of its manual
    axes (Shardy's `manual_axes`), so that the total stays the whole program's."""
    comps: dict[str, list[tuple[str, str, str, list[str], str]]] = {}
    raw: dict[str, list[str]] = {}
    entry = current = None
    for line in text.splitlines():
        if m := re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line):
            current = m.group(2)
            comps[current], raw[current] = [], []
            entry = current if m.group(1) else entry
        elif current is not None and line.strip() == "}":
            current = None
        elif current is not None and (m := _INSTR.match(line)):
            raw[current].append(line)
            operands, attrs = _split_call(m.group(4))
            comps[current].append((m.group(1), m.group(2), m.group(3), operands, attrs))
    counts: dict[str, list[int]] = {op: [0, 0, 0] for op in COLLECTIVES}
    flops = [0.0, 0.0]
    loops: list[int] = []
    seen: set[str] = set()
    found: list[tuple[int, str, str, int, str]] = []
    no_descent = ("reduce", "reduce-window", "scatter", "sort", "select-and-scatter", "map")

    def visit(name: str, mult: int) -> None:
        static = name not in seen
        seen.add(name)
        body = comps.get(name, [])
        shapes = {n: r for n, r, *_ in body}
        for i, (_, result, op, operands, attrs) in enumerate(body):
            base = op.removesuffix("-start")
            if base in COLLECTIVES and not op.endswith("-done"):
                c = counts[base]
                c[0] += static
                c[1] += mult
                # an async start returns (operands..., results..., contexts): the result is its
                # largest array (a reduce-scatter's: its smallest but for the scalar contexts)
                arrays = [x for x in _shapes(result) if x[1]] or _shapes(result)
                sizes = [_DTYPE_BYTES[d] * math.prod(dims) for d, dims in arrays]
                pick = min if base == "reduce-scatter" else max
                nbytes = _nbytes(result) if not op.endswith("-start") else pick(sizes)
                c[2] += mult * nbytes
                where = re.search(r'op_name="([^"]*)"', attrs)
                d, dims = arrays[sizes.index(pick(sizes))]
                shape = f"{d}[{','.join(map(str, dims))}]"
                found.append((mult * nbytes, base, shape, mult, where.group(1) if where else ""))
                continue  # its reduction computation is not a call
            if op == "fusion" and re.search(r"calls=%?all-reduce-scatter", attrs):
                # the TPU compiler's reduce-scatter: a custom fusion of an all-reduce and the
                # slice each device keeps (`tpu-all-reduce-scatter-fusion`), run as one
                # reduce-scatter; its result is the shard
                c = counts["reduce-scatter"]
                c[0], c[1], c[2] = c[0] + static, c[1] + mult, c[2] + mult * _nbytes(result)
                where = re.search(r'op_name="([^"]*)"', attrs)
                shape = result.split("{")[0].strip()
                found.append((mult * _nbytes(result), "reduce-scatter", shape, mult,
                              where.group(1) if where else ""))  # fmt: skip
                continue
            if op in ("dot", "convolution"):
                operand_shapes = " ".join(shapes.get(o, "") for o in operands[:2])
                f = _dot_flops(result, operand_shapes, attrs)
                flops[0] += mult * f
                flops[1] += f if static else 0
            if op == "while":
                t = re.search(r'"known_trip_count":\{"n":"(\d+)"', attrs)
                cond = re.search(r"condition=%?([\w.\-]+)", attrs)
                condition = raw.get(cond.group(1), []) if cond else []
                trips = int(t.group(1)) if t else _trip_count(condition)
                if static:
                    loops.append(trips)
                if b := re.search(r"body=%?([\w.\-]+)", attrs):
                    visit(b.group(1), mult * trips)
                continue
            if op in no_descent:
                continue
            for callee in re.findall(
                r"(?:calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)", attrs
            ):
                shards = 1
                if "manual_computation_body" in callee and axis_sizes:
                    later = (a for *_, a in body[i + 1 :] if "xla.sdy.manual_axes" in a)
                    axes = re.search(r"manual_axes=\"#sdy<manual_axes\{([^}]*)\}", next(later, ""))
                    names = re.findall(r'\\"(\w+)\\"', axes.group(1)) if axes else []
                    shards = math.prod(axis_sizes.get(a, 1) for a in names)
                visit(callee, mult * shards)
            if b := re.search(r"branch_computations=\{([^}]*)\}", attrs):
                for callee in re.findall(r"%?([\w.\-]+)", b.group(1)):
                    visit(callee, mult)

    if entry is not None:
        visit(entry, 1)
    largest = sorted(found, reverse=True)[:5]
    return HloSummary(
        {op: tuple(c) for op, c in counts.items()}, flops[0], flops[1], loops, largest
    )


def _dot_flops(result: str, operands: str, attrs: str) -> float:
    """2 x output elements x contracted elements of one dot (its lhs's contracting dimensions) or
    convolution (its kernel's elements per output feature, `dim_labels`)."""
    out, shapes = _shapes(result), _shapes(operands)
    if not out or len(shapes) < 2:
        return 0.0
    if m := re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs):
        dims = [int(d) for d in m.group(1).split(",") if d]
        contracted = math.prod(shapes[0][1][d] for d in dims)
    elif m := re.search(r"dim_labels=[^_]*_([^-]*)->", attrs):
        kernel = shapes[1][1]
        if len(m.group(1)) != len(kernel) or "o" not in m.group(1):
            return 0.0
        # per output feature: the kernel's input features (per group) x its window
        contracted = math.prod(kernel) // kernel[m.group(1).index("o")]
    else:
        return 0.0
    return 2.0 * math.prod(out[0][1]) * contracted


def platform_of(devices: Sequence[jax.Device]) -> str:
    """The platform a program for `devices` is compiled for ("tpu", "cpu", "gpu")."""
    p = devices[0].platform
    return "gpu" if p in ("cuda", "rocm") else p
