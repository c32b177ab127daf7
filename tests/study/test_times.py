"""A study's README keeps each step's time from the invocation that made it, and says which steps
an invocation skipped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.study.test_reproduce import _tiny_settings
from vssbench.cli import main
from vssbench.cli.reproduce import in_process
from vssbench.study import executor, plan


def _rows(readme: Path) -> dict[str, tuple[str, str, str]]:
    """``{step: (status, seconds, finished)}`` of the README's step table."""
    rows = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("step", "---"):
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


def _fake_invoke(steps: list[plan.Step]):
    """Make each step's outputs; a training takes 0.6 s (1 s in the README)."""

    def invoke(argv: list[str]) -> None:
        step = next(s for s in steps if s.argv == [a for a in argv if a != "--resume"])
        if step.kind == "train":
            time.sleep(0.6)
        for out in step.outputs:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.mkdir(exist_ok=True) if step.kind == "run" else out.write_text("x")

    return invoke


def test_a_rerun_keeps_the_step_times_of_the_invocation_that_made_them(tmp_path: Path) -> None:
    settings = _tiny_settings(methods=("segformer",))
    steps = plan.build_plan(settings, tmp_path, ["table1"])
    executor.reproduce(["table1"], settings, tmp_path, _fake_invoke(steps), log=lambda m: None)
    first = _rows(tmp_path / "README.md")
    assert list(first) == [s.name for s in steps]
    assert first["train segformer-b0 seed0"][:2] == ("done", "1")
    stamp = json.loads((tmp_path / "steps" / "train_segformer-b0_seed0.json").read_text())
    assert 0.6 <= stamp["seconds"] < 1.5 and first["train segformer-b0 seed0"][2] == stamp["finished"]

    result = executor.reproduce(["table1"], settings, tmp_path, _fake_invoke(steps), log=lambda m: None)
    assert {r.status for r in result["results"]} == {"skipped"}
    assert result["results"][1].seconds == stamp["seconds"]
    second = _rows(tmp_path / "README.md")
    for name, (status, seconds, finished) in second.items():
        assert status == "skipped (made by an earlier invocation)", name
        assert (seconds, finished) == first[name][1:], name
    text = (tmp_path / "README.md").read_text()
    assert "ran 0 of them (5 made by an earlier invocation)" in text
    total = sum(json.loads(p.read_text())["seconds"] for p in (tmp_path / "steps").glob("*.json"))
    assert f"the steps' own times add up to {total / 60:.1f} min" in text


@pytest.mark.slow
def test_a_rerun_of_a_miniature_study_keeps_its_step_times(tmp_path: Path) -> None:
    settings = _tiny_settings(methods=("segformer",))
    executor.reproduce(["table1"], settings, tmp_path, in_process(main), log=lambda m: None)
    first = _rows(tmp_path / "README.md")
    assert {status for status, _, _ in first.values()} == {"done"}
    assert first["train segformer-b0 seed0"][1] != "" and first["data"][2] != ""
    again = executor.reproduce(["table1"], settings, tmp_path, in_process(main), log=lambda m: None)
    assert {r.status for r in again["results"]} == {"skipped"}
    second = _rows(tmp_path / "README.md")
    assert {status for status, _, _ in second.values()} == {"skipped (made by an earlier invocation)"}
    assert {k: v[1:] for k, v in second.items()} == {k: v[1:] for k, v in first.items()}
