"""The package's layers, kept true: lower layers never import higher ones, and no module imports
itself back through others (imports inside functions count: a cycle hidden in a function is still
a cycle). The diagram in docs/architecture.md is this test's LAYERS, drawn."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "psycho_jax"

# Lowest first. A module may import its own layer and the layers below it. Modules directly under
# psycho_jax/ are the programs (and the config boundary): the top layer.
LAYERS = ("data", "core", "evaluation", "train", "")
PROGRAMS_IN_LAYERS = {"psycho_jax.data.audit"}  # a program that only uses its own layer


def _module_name(package: pathlib.Path, path: pathlib.Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _resolve(name: str, modules) -> str | None:
    """`psycho_jax.a.b.c` -> the longest prefix that is a module of the package."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[tuple[str, int]]]:
    """module -> {(imported psycho_jax module, line)}, every import statement at any depth."""
    modules = {_module_name(package, p): p for p in package.rglob("*.py")}
    graph: dict[str, set[tuple[str, int]]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                mod = _resolve(t, modules) if t.startswith("psycho_jax.") else None
                if mod and mod not in (name, "psycho_jax"):
                    edges.add((mod, node.lineno))
        graph[name] = edges
    return graph


def layer_of(module: str) -> int:
    parts = module.split(".")
    if module in PROGRAMS_IN_LAYERS or len(parts) == 2 and parts[1] not in LAYERS:
        return len(LAYERS) - 1
    return LAYERS.index(parts[1])


def upward_imports(package: pathlib.Path = PACKAGE) -> list[str]:
    return [
        f"{mod}:{line} imports {target}"
        for mod, edges in sorted(import_graph(package).items())
        for target, line in sorted(edges)
        if layer_of(target) > layer_of(mod)
    ]


def import_cycles(package: pathlib.Path = PACKAGE) -> list[str]:
    graph = {m: {t for t, _ in e} for m, e in import_graph(package).items()}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_every_folder_is_a_known_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS) - {""}


def test_lower_layers_never_import_higher_ones():
    bad = upward_imports()
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_catch_what_they_should(tmp_path):
    """Both checks fire on a package that breaks them, imports inside functions included."""
    pkg = tmp_path / "psycho_jax"
    for layer in ("data", "core", "evaluation", "train"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "m.py").write_text("def f():\n    from psycho_jax.train import t\n")
    (pkg / "train" / "t.py").write_text("")
    (pkg / "data" / "a.py").write_text("from psycho_jax.data import b\n")
    (pkg / "data" / "b.py").write_text("def f():\n    import psycho_jax.data.a\n")
    assert upward_imports(pkg) == ["psycho_jax.core.m:2 imports psycho_jax.train.t"]
    assert import_cycles(pkg) == ["psycho_jax.data.a -> psycho_jax.data.b -> psycho_jax.data.a"]


def test_the_architecture_page_names_every_module_in_its_layer():
    """docs/architecture.md's diagram lists each module on its layer's row (programs first)."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    diagram = doc.split("```")[1]
    rows: dict[str, set[str]] = {}
    current = None
    for line in diagram.splitlines():
        words = line.split()
        if not words or set(line.strip()) <= {"─"}:
            continue
        if words[0].rstrip("/") in (*LAYERS, "programs"):
            current = words[0].rstrip("/")
            words = words[1:]
        rows.setdefault(current, set()).update(w for w in words if not w.startswith("("))
    for module in import_graph():
        parts = module.split(".")
        if len(parts) < 2 or parts[-1] == "__init__" or (len(parts) == 2 and parts[1] in LAYERS):
            continue
        layer = "programs" if len(parts) == 2 else parts[1]
        assert parts[-1] in rows.get(layer, set()), (
            f"{module} is not on the {layer} row of the diagram"
        )
    named = {(layer, name) for layer, names in rows.items() for name in names}
    for layer, name in named:
        path = PACKAGE / (f"{name}.py" if layer == "programs" else f"{layer}/{name}.py")
        assert path.is_file(), f"docs/architecture.md names {layer}/{name}, which does not exist"
