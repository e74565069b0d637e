"""Every third-party module the package imports is a declared requirement (issue 25).

`pip install -e .` alone must give everything `psycho_jax` and its `python -m psycho_jax.*` programs
import: this walks the package's imports (ast), maps each to its distribution
(`importlib.metadata.packages_distributions()`) and checks it against `setup.py`. Optional features
import their module lazily (inside the function that needs it) and name their extra in the error
message; they are listed in `OPTIONAL`. What the package needs at run time without importing it
(transformers' chat templates need jinja2, Parquet needs pyarrow) is listed in `RUNTIME_NEEDS`; only
an install-and-run in a clean venv proves that list complete, which `.ci/run` does first.
"""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "psycho_jax"

# module -> the extra that provides it; imported only inside functions, with "psycho_jax[extra]"
# in the module's error message.
OPTIONAL = {"tensorflow_datasets": "tfds", "wandb": "wandb", "spacy": "ner"}
# distribution -> why it is required though no module of ours imports it.
RUNTIME_NEEDS = {
    "jinja2": "transformers' apply_chat_template renders the chat template with it",
    "pyarrow": "pandas.read_parquet and datasets read Parquet with it",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0])


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(install_requires, {extra: requirements}) as written in setup.py, names normalised."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "setup"
    )
    kw = {
        k.arg: ast.literal_eval(k.value)
        for k in call.keywords
        if k.arg in ("install_requires", "extras_require")
    }
    base = {_requirement_name(r) for r in kw["install_requires"]}
    extras = {e: {_requirement_name(r) for r in reqs} for e, reqs in kw["extras_require"].items()}
    return base, extras


def imports() -> dict[str, list[tuple[str, int, bool]]]:
    """Top-level third-party module -> [(file, line, lazy)], lazy meaning inside a function."""
    found: dict[str, list[tuple[str, int, bool]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        lazy_nodes = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "psycho_jax" or top == "__future__":
                    continue
                rel = str(path.relative_to(ROOT))
                found.setdefault(top, []).append((rel, node.lineno, id(node) in lazy_nodes))
    return found


def test_every_import_is_a_declared_requirement():
    base, extras = declared()
    dists = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(imports().items()):
        first = f"{where[0][0]}:{where[0][1]}"
        if module in OPTIONAL:
            extra = OPTIONAL[module]
            eager = [f"{f}:{n}" for f, n, lazy in where if not lazy]
            if eager:
                problems.append(f"optional module {module} is imported at module level: {eager}")
            for file in {f for f, _, _ in where}:
                if f"psycho_jax[{extra}]" not in (ROOT / file).read_text(encoding="utf-8"):
                    problems.append(f"{file} imports {module} without naming 'psycho_jax[{extra}]'")
            if extra not in extras:
                problems.append(f"{module}: setup.py has no extra {extra!r}")
            continue
        owners = {_norm(d) for d in dists.get(module, [])}
        if not owners:
            problems.append(f"{module} ({first}) is not installed: no distribution provides it")
        elif not owners & base:
            problems.append(
                f"{module} ({first}) comes from {sorted(owners)}, which setup.py's install_requires "
                "does not declare (add it there, or make it an optional extra listed in OPTIONAL)"
            )
    assert not problems, "\n".join(problems)


def test_optional_extras_provide_their_modules():
    """The distributions of each extra provide the module the code imports for it (when installed)."""
    _, extras = declared()
    dists = importlib.metadata.packages_distributions()
    for module, extra in OPTIONAL.items():
        owners = {_norm(d) for d in dists.get(module, [])}
        if owners:  # installed in this venv: its distribution must be the extra's
            assert owners & extras[extra], (module, owners, extras[extra])


def test_runtime_needs_are_declared_and_no_requirement_is_stale():
    base, _ = declared()
    for dist, why in RUNTIME_NEEDS.items():
        assert _norm(dist) in base, f"{dist} must be in install_requires: {why}"
    dists = importlib.metadata.packages_distributions()
    provided = {_norm(d) for m in imports() for d in dists.get(m, [])}
    stale = sorted(base - provided - {_norm(d) for d in RUNTIME_NEEDS})
    assert not stale, f"install_requires lists {stale}, which nothing in psycho_jax imports"


def test_the_check_sees_an_undeclared_import(tmp_path, monkeypatch):
    """The walk finds imports inside functions and names the file: a new undeclared one fails."""
    pkg = tmp_path / "psycho_jax"
    pkg.mkdir()
    (pkg / "mod.py").write_text("import numpy\n\ndef f():\n    import pytest\n    return pytest\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "setup.py").write_text(
        "import setuptools\nsetuptools.setup(install_requires=['numpy>=1'], extras_require={})\n"
    )
    found = imports()
    assert found["pytest"] == [("psycho_jax/mod.py", 4, True)]
    with pytest.raises(AssertionError, match=r"pytest \(psycho_jax/mod.py:4\)"):
        test_every_import_is_a_declared_requirement()
