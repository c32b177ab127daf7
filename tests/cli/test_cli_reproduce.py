"""`vssbench reproduce`: the plan it prints, and the in-process runner it hands the executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.cli import reproduce as reproduce_module
from vssbench.cli.reproduce import in_process
from vssbench.study import build_plan, synthetic_settings


def test_in_process_runs_a_command_and_raises_on_a_non_zero_exit(tmp_path: Path, capsys) -> None:
    invoke = in_process(main)
    invoke(["methods"])  # exit status 0 (click's SystemExit(0) or a plain return) is success
    assert "segformer" in capsys.readouterr().out
    # a report with problems (on stdout): sys.exit(1); the error names its last line
    with pytest.raises(RuntimeError, match=r"^1 problem\(s\) in .*missing split val \(exit status 1\)$"):
        invoke(["data", "check", "--data", str(tmp_path / "missing")])
    with pytest.raises(
        RuntimeError, match=r"^--videos 0: must be >= 1 \(exit status 2\)$"
    ):  # one line, exit 2
        invoke(["data", "synth", "--out", str(tmp_path / "x"), "--videos", "0"])
    assert capsys.readouterr().err == "error: --videos 0: must be >= 1\n"


def test_dry_run_prints_the_plan(tmp_path: Path) -> None:
    args = ["reproduce", "table1", "--methods", " tfc,", "--out", str(tmp_path), "--dry-run"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    steps = build_plan(synthetic_settings(methods=["tfc"]), tmp_path, ["table1"])
    expected = "".join(f"# [{i}] {step.name}\n{step.command()}\n" for i, step in enumerate(steps, start=1))
    assert result.stdout == expected
    assert (
        result.stderr
        == f"# {len(steps)} steps (1 dataset, 1 pretraining, 1 encoder export, 1 training, 1 evaluation, "
        f"1 efficiency sweep, 2 tables) into {tmp_path}\n"
    )


def test_the_command_hands_the_executor_its_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handed: dict[str, Any] = {}

    def fake_reproduce(targets, settings, out, invoke, dry_run=False):
        handed.update(targets=targets, invoke=invoke)
        return {"steps": [], "results": [], "out": str(out), "wall_s": 0.0}

    monkeypatch.setattr(reproduce_module, "reproduce", fake_reproduce)
    result = CliRunner().invoke(main, ["reproduce", "all", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert handed["targets"] == ["table1", "table2", "fig4"]
    with pytest.raises(RuntimeError, match=r"missing split val \(exit status 1\)$"):
        handed["invoke"](["data", "check", "--data", str(tmp_path / "missing")])
