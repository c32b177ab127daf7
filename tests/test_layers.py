"""The package's import graph: layers point one way, no cycle, no function-local import of vssbench.

Parsed from the source (``ast``), so an import inside a function counts like one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vssbench

ROOT = Path(vssbench.__file__).parent

#: Lower layers never import higher ones (docs/development.md, "Layout and layers").
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
    "vssbench.testing": 5,
    "vssbench.harness": 6,
    "vssbench.training": 7,
    "vssbench.reports": 8,
    "vssbench.study": 9,
    "vssbench.cli": 10,
    "vssbench.__main__": 10,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    name = module
    while name not in LAYERS:
        if "." not in name:
            raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")
        name = name.rsplit(".", 1)[0]
    return LAYERS[name]


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or None


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported vssbench module, line, at module level) for every import statement in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    top = {id(node) for node in tree.body}
    # Imports under `if TYPE_CHECKING:` at module level count as module level.
    for node in tree.body:
        if isinstance(node, ast.If):
            top.update(id(child) for child in node.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("vssbench") else None
            if target and target != module:
                found.append((target, node.lineno, id(node) in top))
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_belongs_to_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_imports_point_down_the_layers() -> None:
    wrong = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {target} "
        f"(layer {_layer(target)} > {_layer(m)})"
        for m, edges in GRAPH.items()
        for target, line, _ in edges
        if _layer(target) > _layer(m)
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_function_local_import_of_vssbench() -> None:
    local = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {target} inside a function"
        for m, edges in GRAPH.items()
        for target, line, at_top in edges
        if not at_top
    ]
    assert not local, (
        "move these imports to the top of the module (a cycle is fixed, not dodged):\n" + "\n".join(local)
    )


def test_no_import_cycle() -> None:
    edges = {m: sorted({t for t, _, _ in found}) for m, found in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", ["vssbench.models.decoder", "vssbench.methods.base"])
def test_the_checker_sees_imports(module: str) -> None:
    # Guard against a checker that finds nothing (and so passes for the wrong reason).
    assert GRAPH[module], f"no vssbench import found in {module}"
