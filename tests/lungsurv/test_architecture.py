"""The package's layers hold: no upward import, no import cycle, no Kubeflow in the library.

Every ``import`` statement of every module is read (also those inside functions), so a lazy
import cannot hide a violation. docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import lungsurv

PACKAGE = Path(lungsurv.__file__).parent
SCIENCE = ("cohort", "imaging", "radiomics", "deep", "survival")
#: Each layer may import its own and lower layers; science subpackages may import each other.
RANK: dict[str, int] = {"core": 0, **dict.fromkeys(SCIENCE, 1), "synthetic": 2, "stages": 3}
RANK |= {"reports": 4, "top": 5}
#: Never imported by the library; the KServe SDK only by the top layer (deploy checks manifests).
FORBIDDEN_IN_LIBRARY = ("kfp", "components", "pipelines", "serving")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            # `from lungsurv.core import storage` imports the module lungsurv.core.storage
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package root holds only the version
    return parts[1] if parts[1] in RANK else "top"


GRAPH = _graph()


def test_every_subpackage_has_a_layer_and_a_docstring() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(RANK) - {"top"}
    for name in subpackages:
        assert ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    source = _layer(module)
    upward = [m for m in GRAPH[module] if RANK[_layer(m)] > RANK[source]]
    assert not upward, f"{module} ({source}) imports higher layers: {sorted(upward)}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_the_library_imports_no_kubeflow_or_serving_code(module: str) -> None:
    path = next(p for p in PACKAGE.rglob("*.py") if _module_name(p) == module)
    forbidden = FORBIDDEN_IN_LIBRARY + (("kserve",) if _layer(module) != "top" else ())
    bad = [m for m in _imports(path) if m.split(".")[0] in forbidden]
    assert not bad, f"{module} imports {bad}"


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state[target] == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if state[target] == 0:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if state[module] == 0:
            visit(module)


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The walker finds imports inside functions (the checks above would not be vacuous)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lungsurv.stages.convert import convert_cohort\n")
    assert "lungsurv.stages.convert" in _imports(module)
    assert RANK[_layer("lungsurv.stages.convert")] > RANK[_layer("lungsurv.imaging.convert")]


#: A function reads in one screen: at most this many lines, docstring included.
MAX_FUNCTION_LINES = 65


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_functions_read_in_one_screen(module: str) -> None:
    path = next(p for p in PACKAGE.rglob("*.py") if _module_name(p) == module)
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: {long}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_modules_stay_small(module: str) -> None:
    path = next(p for p in PACKAGE.rglob("*.py") if _module_name(p) == module)
    assert len(path.read_text().splitlines()) <= 500
