"""Sweeps time their rows' FPS interleaved: after every row's accuracy, in turns, recorded as such;
a contended timing is marked and warned about; a sweep stopped in its FPS phase resumes it.

Tiny synthetic VSPW-mini (conftest ``data_root``), random-init B0 at 32x48, one thread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from vssbench import profiling
from vssbench.config import RunConfig
from vssbench.harness import profile_sweep, run_sweep
from vssbench.harness import runner as runner_module
from vssbench.harness import sweep as sweep_module
from vssbench.harness.configs import prepare_config, row_name
from vssbench.harness.efficiency import FpsJob, time_fps_jobs
from vssbench.harness.runner import RunInterrupted
from vssbench.methods import create
from vssbench.profiling import SHARE_SCHEDSTAT, IntervalTimer

METHODS = ("segformer", "feature_reuse")


def configs(root: Path, **changes: Any) -> list[RunConfig]:
    fields = dict(backbone="b0", data=str(root), resolution=(32, 48), warmup=0, repeats=2, threads=1)
    fields.update(changes)
    return [prepare_config(RunConfig(method=m, **fields)) for m in METHODS]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``eval:<method>`` per evaluated video and ``time:<method>`` per timed FPS interval, in order."""
    seen: list[str] = []
    evaluate = runner_module.evaluate_video

    def evaluating(adapter: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(f"eval:{adapter.info.name}")
        return evaluate(adapter, *args, **kwargs)

    time_one = IntervalTimer.time_one

    def timing(self: IntervalTimer, release: bool = False) -> float:
        seen.append(f"time:{self.adapter.info.name}")
        return time_one(self, release=release)

    monkeypatch.setattr(runner_module, "evaluate_video", evaluating)
    monkeypatch.setattr(IntervalTimer, "time_one", timing)
    return seen


def saved(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(record["run_dir"]) / "record.json").read_text(encoding="utf-8"))


def test_a_sweep_times_its_rows_in_turns_after_every_accuracy(
    data_root: Path, tmp_path: Path, events: list[str]
) -> None:
    records = run_sweep(configs(data_root), out=tmp_path, progress=False, efficiency="fast")
    # 3 videos per row, then the FPS phase: 2 repeats each, rounds rotated (A B, then B A)
    assert events == [
        *["eval:segformer"] * 3,
        *["eval:feature_reuse"] * 3,
        "time:segformer",
        "time:feature_reuse",
        "time:feature_reuse",
        "time:segformer",
    ]
    names = [row_name(c) for c in configs(data_root)]
    for record, other in zip(records, reversed(names)):
        protocol = record["fps_protocol"]
        assert record["fps"] == pytest.approx(
            record["fps_protocol"]["interval"] / protocol["interval_time_s"]
        )
        assert protocol["interleaved"] is True and protocol["interleaved_with"] == [other]
        assert len(protocol["interval_times_s"]) == 2 and "pending" not in protocol
        assert isinstance(protocol["contended"], bool) and 0 < protocol["cpu_share"] <= 1
        assert saved(record) == record  # record.json rewritten with the FPS
    log = (Path(records[0]["run_dir"]) / "log.txt").read_text(encoding="utf-8")
    assert f"interleaved with {names[1]}" in log


def test_sequential_timing_and_groups_of_one_time_each_row_after_its_accuracy(
    data_root: Path, tmp_path: Path, events: list[str]
) -> None:
    expected = [
        *["eval:segformer"] * 3,
        *["time:segformer"] * 2,
        *["eval:feature_reuse"] * 3,
        *["time:feature_reuse"] * 2,
    ]
    records = run_sweep(
        configs(data_root), out=tmp_path / "a", progress=False, efficiency="fast", fps_timing="sequential"
    )
    assert events == expected
    assert all(
        r["fps_protocol"]["interleaved"] is False and r["fps_protocol"]["interleaved_with"] == []
        for r in records
    )
    events.clear()
    # a group budget of 1 byte: every row's weights fill a group by themselves
    records = run_sweep(
        configs(data_root), out=tmp_path / "b", progress=False, efficiency="fast", fps_group_bytes=1
    )
    assert events == expected
    assert all(r["fps_protocol"]["interleaved"] is False and r["fps"] > 0 for r in records)
    with pytest.raises(Exception, match="fps_timing must be one of interleaved, sequential"):
        run_sweep(configs(data_root), out=tmp_path / "c", fps_timing="random")


def test_a_sweep_stopped_in_its_fps_phase_resumes_it(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[str]
) -> None:
    def interrupted(jobs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "time_fps_jobs", interrupted)
    with pytest.raises(RunInterrupted):
        run_sweep(configs(data_root), out=tmp_path, progress=False, efficiency="fast")
    stores = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(stores) == 2
    for store in stores:  # accuracy and GMACs saved, FPS pending: not a complete record
        record = json.loads((store / "record.json").read_text(encoding="utf-8"))
        assert record["mIoU"] is not None and record["gmacs_per_frame"] > 0
        assert record["fps"] is None and record["fps_protocol"]["pending"] is True
    monkeypatch.setattr(sweep_module, "time_fps_jobs", time_fps_jobs)
    events.clear()
    records = run_sweep(configs(data_root), out=tmp_path, progress=False, efficiency="fast", resume=True)
    assert not any(e.startswith("eval:") for e in events)  # the videos are kept
    assert [e for e in events if e.startswith("time:")] == [
        "time:segformer",
        "time:feature_reuse",
        "time:feature_reuse",
        "time:segformer",
    ]
    for record in records:
        assert record["fps"] > 0 and record["fps_protocol"]["interleaved"] is True
        assert saved(record) == record


def test_a_resume_keeps_complete_rows_and_says_their_fps_is_from_earlier(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_sweep(configs(data_root), out=tmp_path, progress=False, efficiency="fast")
    pending = dict(first[1], fps=None, fps_protocol={**first[1]["fps_protocol"], "pending": True})
    (Path(first[1]["run_dir"]) / "record.json").write_text(json.dumps(pending), encoding="utf-8")
    capsys.readouterr()
    again = run_sweep(configs(data_root), out=tmp_path, progress=False, efficiency="fast", resume=True)
    assert again[0] == first[0]  # complete: not measured again, its interleaved_with still says so
    assert again[0]["fps_protocol"]["interleaved_with"] == [row_name(configs(data_root)[1])]
    protocol = again[1]["fps_protocol"]
    assert again[1]["fps"] > 0 and protocol["interleaved"] is False and protocol["interleaved_with"] == []
    err = capsys.readouterr().err
    assert f"note: the FPS of {Path(first[0]['run_dir']).name} come from an earlier timing" in err


def test_a_contended_timing_is_marked_and_warned_about_naming_the_row(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(profiling.CpuMeter, "share", lambda self, threads: (0.42, SHARE_SCHEDSTAT, 0.42))
    records = run_sweep(configs(data_root), out=tmp_path, progress=False, efficiency="fast")
    err = capsys.readouterr().err
    for record in records:
        name = row_name(configs(data_root)[METHODS.index(record["method"])])
        protocol = record["fps_protocol"]
        assert protocol["contended"] is True and protocol["cpu_share"] == 0.42
        assert "cpu_share below 0.90" in protocol["contention"]
        warning = f"WARNING: {name}: FPS timed on a busy machine, cpu_share 0.42"
        assert sum(line.startswith(warning) for line in err.splitlines()) == 1
        assert warning in (Path(record["run_dir"]) / "log.txt").read_text(encoding="utf-8")


def test_time_fps_jobs_a_failing_job_keeps_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    config = prepare_config(RunConfig(method="segformer", backbone="b0", warmup=0, repeats=2, threads=1))
    good = create("segformer", backbone="b0").eval()
    bad = create("segformer", backbone="b0").eval()
    bad.step = lambda image: (_ for _ in ()).throw(RuntimeError("broken step"))  # type: ignore[method-assign]
    frames = [torch.randn(1, 3, 32, 48) for _ in range(config.interval)]
    jobs = [
        FpsJob("good", good, frames, config, torch.device("cpu"), 0, "toy frames"),
        FpsJob("bad", bad, frames, config, torch.device("cpu"), 0, "toy frames"),
    ]
    fine, failed = time_fps_jobs(jobs)
    assert fine["fps"] > 0 and fine["fps_protocol"]["interleaved_with"] == ["bad"]
    assert failed["fps"] is None and "RuntimeError: broken step" in failed["error"]


def test_profile_sweep_interleaves_too(events: list[str]) -> None:
    rows = [
        RunConfig(method=m, backbone="b0", resolution=(32, 48), warmup=0, repeats=2, threads=1)
        for m in METHODS
    ]
    records = profile_sweep(rows)
    assert [e for e in events if e.startswith("time:")] == [
        "time:segformer",
        "time:feature_reuse",
        "time:feature_reuse",
        "time:segformer",
    ]
    assert [r["fps_protocol"]["interleaved_with"] for r in records] == [
        [row_name(prepare_config(rows[1]))],
        [row_name(prepare_config(rows[0]))],
    ]
    single = profile_sweep(rows[:1])[0]["fps_protocol"]
    assert single["interleaved"] is False and single["interleaved_with"] == []
