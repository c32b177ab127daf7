"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path


def run_args(root: Path, out: Path, *extra: str) -> list[str]:
    """``vssbench run`` arguments for a quick evaluation of the tiny test tree (``extra`` appended)."""
    return [
        "run",
        "--data",
        str(root),
        "--size",
        "32x48",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
