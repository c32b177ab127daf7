"""Layers point one way: a module imports only from its own layer or lower ones, at module level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vssbench

PACKAGE = Path(vssbench.__file__).parent

#: Layer of each part of the package (lower may be imported by higher, never the reverse).
LAYERS: dict[str, int] = {
    "vssbench": 0,
    "vssbench.errors": 0,
    "vssbench.config": 0,
    "vssbench.paper": 0,
    "vssbench.data": 1,
    "vssbench.models": 2,
    "vssbench.methods": 3,
    "vssbench.metrics": 4,
    "vssbench.profiling": 4,
    "vssbench.results": 5,
    "vssbench.harness": 6,
    "vssbench.training": 6,
    "vssbench.reports": 7,
    "vssbench.study": 8,
    "vssbench.cli": 9,
}
#: The parts checked here (the CLI and the study sit on top and may import anything below them).
CHECKED = ("config", "paper", "data", "metrics", "profiling", "results", "harness", "training", "reports")


def layer(module: str) -> int:
    """The layer of ``module``: that of its longest listed prefix."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise AssertionError(f"{module} has no layer")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def vssbench_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported vssbench module, imported inside a function or class?) for every import of ``tree``."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, nested) for a in child.names if a.name.split(".")[0] == "vssbench")
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "vssbench":
                # "from vssbench import methods" imports vssbench.methods: name each imported object.
                found.extend((f"{child.module}.{a.name}", nested) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def checked_files() -> list[Path]:
    files = []
    for part in CHECKED:
        path = PACKAGE / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")])
    return [f for f in files if f.name != "cli.py"]  # leftovers of the CLI's move to vssbench/cli/


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_sit_at_the_top(path: Path) -> None:
    name = module_name(path)
    for target, nested in vssbench_imports(ast.parse(path.read_text(encoding="utf-8"))):
        assert not nested, f"{name} imports {target} inside a function (move it to the top)"
        assert layer(target) <= layer(name), f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"


def test_the_layer_check_sees_a_violation() -> None:
    tree = ast.parse("import vssbench.errors\ndef f():\n    from vssbench import reports\n")
    assert vssbench_imports(tree) == [("vssbench.errors", False), ("vssbench.reports", True)]
    assert layer("vssbench.reports.tables") > layer("vssbench.harness.runner")
