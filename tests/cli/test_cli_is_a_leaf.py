"""The command line is a leaf package: nothing in the library imports it (STYLE.md rule 19)."""

from __future__ import annotations

import ast
from pathlib import Path

import vssbench

PACKAGE = Path(vssbench.__file__).resolve().parent
#: Scripts that start the CLI: ``python -m vssbench`` runs this file; no module imports it.
ENTRY_POINTS = {Path("__main__.py")}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``source`` (a module of ``package``), function-local
    ones included and relative ones resolved; ``from X import n`` also yields ``X.n`` (n may be a
    submodule)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def imports_cli(module: str) -> bool:
    return module == "vssbench.cli" or module.startswith("vssbench.cli.")


def test_the_finder_sees_every_kind_of_import() -> None:
    source = (
        "import vssbench.cli\n"
        "from vssbench import cli\n"
        "def f():\n"
        "    from vssbench.cli.params import Size\n"
        "from .. import cli as c\n"
        "from ..cli import main\n"
        "from vssbench.client import x\n"
        "from . import plan\n"
        "import vssbench.clinic\n"
    )
    hits = sorted({line for line, module in imported_modules(source, "vssbench.study") if imports_cli(module)})
    assert hits == [1, 2, 4, 5, 6]


def test_no_library_module_imports_the_cli() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    offenders = []
    for path in files:
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or relative in ENTRY_POINTS:
            continue
        package = ".".join(("vssbench", *relative.parent.parts))
        offenders += [f"vssbench/{relative}:{line}: {module}"
                      for line, module in imported_modules(path.read_text(encoding="utf-8"), package)
                      if imports_cli(module)]
    assert len(files) > 40  # the walk sees the package
    assert offenders == []
