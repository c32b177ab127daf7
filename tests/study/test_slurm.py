"""`vssbench reproduce --launcher slurm`: the job scripts, the flags, and a study on a real (local,
one-node) Slurm: dependencies, status, cancel and resubmit, a training requeued on its signal and
resumed bit-exactly, the faults. The tests that submit jobs use the ``local_slurm`` fixture
(skipped without slurm-wlm, munge and root; a failure under VSSBENCH_REQUIRE_SLURM=1)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.study.test_reproduce import _tiny_settings
from vssbench.cli import main
from vssbench.cli.reproduce import in_process
from vssbench.errors import OptionError
from vssbench.study import executor, plan, slurm

#: Every job of a test takes one CPU: two run at once on the 2 CPUs of a small machine.
ONE_CPU = slurm.SlurmOptions(cpus_per_task=1)


def _tiny(methods=("segformer", "tfc"), iters=2, train_extra=()) -> plan.StudySettings:
    """A study of seconds (test_reproduce's tiny study), one thread in the evaluations too."""
    base = _tiny_settings(methods=methods, iters=iters)
    return dataclasses.replace(
        base, run_args=(*base.run_args, "--threads", "1"), train_args=(*base.train_args, *train_extra)
    )


def _step(steps: list[plan.Step], name: str) -> plan.Step:
    return next(s for s in steps if s.name == name)


# ---------------------------------------------------------------------------------------------
# Job scripts and flags (no Slurm needed)


def test_job_scripts_have_dependencies_resources_and_the_step_command(tmp_path: Path) -> None:
    out = tmp_path / "study"
    steps = plan.build_plan(_tiny(), out, ["table1"])
    options = slurm.slurm_options(_tiny())  # synthetic on CPU: no GPU anywhere
    train = slurm.job_script(_step(steps, "train tfc-b0 seed0"), out, options, ["101"], fresh=True)
    assert "#SBATCH --dependency=afterok:101\n#SBATCH --kill-on-invalid-dep=yes\n" in train
    assert "#SBATCH --job-name=vssbench-study:train_tfc-b0_seed0\n" in train
    assert f"#SBATCH --output={out}/slurm/train_tfc-b0_seed0.%j.out\n" in train
    assert "--gpus-per-node" not in train and "srun" not in train and "torch.distributed.run" not in train
    assert f"{sys.executable} -m vssbench reproduce step {out} 'train tfc-b0 seed0' --fresh &\n" in train
    table = slurm.job_script(_step(steps, "table1 md"), out, options, ["7", "9"])
    assert "#SBATCH --dependency=afterok:7:9\n" in table and "#SBATCH --cpus-per-task=1\n" in table
    assert table.rstrip().endswith(f"exec {sys.executable} -m vssbench reproduce step {out} 'table1 md'")
    assert "--requeue" not in table and "trap" not in table
    data = slurm.job_script(_step(steps, "data"), out, options, [])
    assert "--dependency" not in data and "--kill-on-invalid-dep" not in data
    for script in (train, table, data):  # valid bash, and every #SBATCH line before the first command
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
        body = [line for line in script.splitlines() if line and not line.startswith("#")]
        assert script.index(body[0]) > script.rindex("#SBATCH")


def test_paper_resources_per_kind_and_torchrun_for_many_gpus_or_nodes(tmp_path: Path) -> None:
    settings = plan.paper_settings(str(tmp_path), init_dir=str(tmp_path / "w"))
    steps = plan.build_plan(settings, tmp_path / "study", ["table1"])
    options = slurm.slurm_options(settings, partition="gpu", time="2-00:00:00", extra=(("mem", "64G"),))
    resources = {s.kind: slurm.job_resources(s, options) for s in steps}
    assert resources == {
        "train": (1, 8, 64),  # nodes, GPUs per node, CPUs per task (8 per GPU)
        "run": (1, 1, 8),
        "profile": (1, 1, 8),
        "table": (1, 0, 1),
    }
    train = slurm.job_script(_step(steps, "train tfc-b1 seed0"), tmp_path / "study", options, [])
    for line in ("--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=64"):
        assert f"#SBATCH {line}\n" in train
    for line in ("--partition=gpu", "--time=2-00:00:00", "--mem=64G"):
        assert f"#SBATCH {line}\n" in train
    assert 'head="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in train
    launch = next(line for line in train.splitlines() if "torch.distributed.run" in line)
    assert launch.startswith(
        f"srun --ntasks-per-node=1 --cpus-per-task=64 {sys.executable} -m torch.distributed.run "
    )
    for part in (
        '--nnodes "$SLURM_JOB_NUM_NODES"',
        "--nproc-per-node 8",
        "--rdzv-backend c10d",
        '--rdzv-endpoint "$head:29500"',
        '--rdzv-id "$SLURM_JOB_ID"',
        f"-m vssbench reproduce step {tmp_path / 'study'} 'train tfc-b1 seed0' &",
    ):
        assert part in launch
    two_nodes = slurm.job_script(
        _step(steps, "train tfc-b1 seed0"),
        tmp_path / "study",
        slurm.SlurmOptions(train_gpus_per_node=4, train_nodes=2),
        [],
    )
    assert "#SBATCH --nodes=2\n" in two_nodes and "--nproc-per-node 4" in two_nodes
    assert "#SBATCH --cpus-per-task=32\n" in two_nodes
    # One GPU: no torchrun; evaluations with several GPUs run under torchrun too, the sweep on one.
    single = slurm.job_script(_step(steps, "run tfc-b1 seed0"), tmp_path / "study", options, [])
    assert "torch.distributed.run" not in single and "#SBATCH --gpus-per-node=1\n" in single
    four = slurm.SlurmOptions(eval_gpus=4)
    assert "--nproc-per-node 4" in slurm.job_script(_step(steps, "run tfc-b1 seed0"), tmp_path, four, [])
    assert slurm.job_resources(_step(steps, "efficiency b0"), four) == (1, 1, 8)


def test_a_training_job_traps_its_signal_and_requeues_itself(tmp_path: Path) -> None:
    steps = plan.build_plan(_tiny(), tmp_path, ["table1"])
    script = slurm.job_script(
        _step(steps, "train tfc-b0 seed0"), tmp_path, slurm.SlurmOptions(signal_seconds=600), []
    )
    assert "#SBATCH --requeue\n#SBATCH --signal=B:USR1@600\n" in script
    assert "trap forward_usr1 USR1\n" in script and 'kill -USR1 "$child"' in script
    assert 'if [ "$status" -eq 75 ] || { [ "$got_signal" -eq 1 ] && [ "$status" -ne 0 ]; }; then' in script
    assert '    scontrol requeue "$SLURM_JOB_ID"\n' in script and script.endswith('exit "$status"\n')


def test_the_trap_forwards_the_signal_waits_and_requeues(tmp_path: Path) -> None:
    """The script's own logic under bash: USR1 reaches the step, exit 75 requeues (scontrol faked)."""
    steps = plan.build_plan(_tiny(), tmp_path, ["table1"])
    script = slurm.job_script(_step(steps, "train tfc-b0 seed0"), tmp_path, slurm.SlurmOptions(), [])
    child = tmp_path / "child.py"
    child.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(75))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.args"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    launch = next(line for line in script.splitlines() if line.endswith(" &"))
    script = script.replace(launch, f"{sys.executable} {child} &")
    proc = subprocess.Popen(
        ["bash", "-c", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "42"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(10)  # SIGUSR1, as Slurm sends it to the batch shell (B:)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75
    assert "stopped (exit status 75); requeueing job 42" in stderr
    assert (tmp_path / "scontrol.args").read_text() == "requeue 42\n"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"train_gpus_per_node": -1}, "--slurm-gpus-per-node -1: must be >= 0"),
        ({"train_nodes": 0}, "--slurm-nodes 0: must be >= 1"),
        ({"eval_gpus": -2}, "--slurm-eval-gpus -2: must be >= 0"),
        ({"cpus_per_task": 0}, "--slurm-cpus-per-task 0: must be >= 1"),
        ({"signal_seconds": 0}, "--slurm-signal-seconds 0: must be >= 1"),
        ({"time": "3 days"}, "--slurm-time '3 days': must be one word"),
        ({"time": "1:2:3:4"}, "--slurm-time 1:2:3:4: expected minutes, MM:SS, HH:MM:SS"),
        (
            {"time": "4", "signal_seconds": 300},
            "--slurm-signal-seconds 300: must be less than --slurm-time 4",
        ),
        ({"partition": ""}, "--slurm-partition '': must be one word"),
        ({"extra": (("output", "x"),)}, "--slurm-extra output=x: the job scripts set --output themselves"),
        ({"extra": (("time", "1"),)}, "--slurm-extra time=1: use --slurm-time"),
        ({"extra": (("Mem", "1G"),)}, "--slurm-extra Mem=1G: KEY is an sbatch option without its dashes"),
    ],
)
def test_bad_slurm_options_name_their_flag(given: dict, message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        slurm.slurm_options(_tiny(), **given)


def test_slurm_time_formats() -> None:
    assert [
        slurm.time_limit_seconds(t) for t in ("90", "5:30", "12:00:00", "2-00", "1-2:03", "1-00:00:05")
    ] == [
        5400,
        330,
        43200,
        172800,
        93780,
        86405,
    ]
    assert slurm.time_limit_seconds("UNLIMITED") is None
    assert slurm.job_ids_text(["101", "102", "103", "107", "108", "110"]) == "101-103, 107-108, 110"


def test_the_dry_run_prints_every_job_script_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = CliRunner().invoke(
        main,
        [
            "reproduce",
            "table1",
            "--methods",
            "segformer,tfc",
            "--launcher",
            "slurm",
            "--dry-run",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    scripts = result.stdout.split("# [")[1:]
    assert [s.splitlines()[0] for s in scripts] == [
        "1] data",
        "2] pretrain b0",
        "3] encoder b0",
        "4] train segformer-b0 seed0",
        "5] run segformer-b0 seed0",
        "6] train tfc-b0 seed0",
        "7] run tfc-b0 seed0",
        "8] efficiency b0",
        "9] table1 md",
        "10] table1 latex",
    ]
    run_tfc = scripts[6]
    assert "#SBATCH --dependency=afterok:<train_tfc-b0_seed0>\n" in run_tfc
    assert "reproduce step" in run_tfc and "'run tfc-b0 seed0' --fresh" in run_tfc
    table = "#SBATCH --dependency=afterok:<run_segformer-b0_seed0>:<run_tfc-b0_seed0>:<efficiency_b0>\n"
    assert table in scripts[8]
    assert result.stderr.endswith(f"into {out}: one Slurm job each\n")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--slurm-partition", "gpu"], "error: --slurm-partition needs --launcher slurm"),
        (["--launcher", "slurm", "--slurm-nodes", "0"], "error: --slurm-nodes 0: must be >= 1"),
        (["--launcher", "slurm", "--slurm-extra", "mem"], "error: --slurm-extra mem: expected KEY=VALUE"),
        (["--launcher", "slurm", "--slurm-time", "soon"], "error: --slurm-time soon: expected minutes"),
    ],
)
def test_a_bad_slurm_flag_is_one_line_before_anything_is_written(
    tmp_path: Path, args: list[str], line: str
) -> None:
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["reproduce", "table1", "--out", str(out), *args])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(line) and len(result.stderr.splitlines()) == 1, result.stderr
    assert not out.exists()


def test_no_sbatch_on_path_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["reproduce", "table1", "--launcher", "slurm", "--out", str(out)])
    assert (result.exit_code, result.stderr) == (2, "error: --launcher slurm: sbatch not found on PATH\n")
    assert not out.exists()


def test_a_requeued_job_resumes_instead_of_starting_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--fresh (a need was remade) holds for the job's first start, not for its requeued restart."""
    settings = _tiny(methods=("tfc",))
    plan.save_study(tmp_path, settings, ["table1"])
    step = _step(plan.build_plan(settings, tmp_path, ["table1"]), "train tfc-b0 seed0")
    folder = step.owned
    calls: list[list[str]] = []

    def invoke(argv: list[str]) -> None:
        calls.append(argv)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "last.pth").write_text("state")

    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert slurm.run_job_step(tmp_path, step.name, invoke, fresh=True, log=lambda m: None).status == "done"
    assert "--resume" not in calls[-1]
    assert json.loads(plan.stamp_path(tmp_path, step).read_text())["job"] == "77"
    plan.stamp_path(tmp_path, step).unlink()  # as if the job stopped before finishing
    plan.started_path(tmp_path, step).write_text(
        json.dumps({"digest": plan.command_digest(step), "job": "77"})
    )
    (step.outputs[0]).unlink(missing_ok=True)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # Slurm requeued job 77: resume, keep the folder
    assert slurm.run_job_step(tmp_path, step.name, invoke, fresh=True, log=lambda m: None).status == "done"
    assert calls[-1][-1] == "--resume"
    # The same restart of a job that never started this step: --fresh holds.
    plan.stamp_path(tmp_path, step).unlink()
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    plan.started_path(tmp_path, step).write_text(
        json.dumps({"digest": plan.command_digest(step), "job": "77"})
    )
    assert slurm.run_job_step(tmp_path, step.name, invoke, fresh=True, log=lambda m: None).status == "done"
    assert "--resume" not in calls[-1]
    # A complete step without --fresh is skipped; an unknown step is an error naming it.
    (folder / "model.pth").write_text("w")
    (folder / "log.jsonl").write_text("{}")
    assert slurm.run_job_step(tmp_path, step.name, invoke, log=lambda m: None).status == "skipped"
    with pytest.raises(OptionError, match="the study has no step 'train nope'"):
        slurm.run_job_step(tmp_path, "train nope", invoke, log=lambda m: None)


def test_a_training_stopped_by_a_signal_ends_a_local_invocation(tmp_path: Path) -> None:
    """Exit status 75 (last.pth saved) is not a failure to go on past: the invocation ends there."""
    steps = plan.build_plan(_tiny(), tmp_path, ["table1"])
    calls: list[str] = []

    def invoke(argv: list[str]) -> None:
        calls.append(argv[0])
        if argv[0] == "train":
            raise executor.CommandFailed(75, "train: stopped by SIGTERM at iteration 3; last.pth saved")
        for out in _step(steps, "data").outputs:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("x")

    results = executor.execute_plan(steps, tmp_path, invoke, log=lambda m: None)
    assert [(r.name, r.status) for r in results] == [
        ("data", "done"),
        ("train segformer-b0 seed0", "stopped"),
    ]
    assert calls == ["data", "train"]
    error = plan.stamp_path(tmp_path, steps[1]).with_suffix(".error.txt").read_text()
    assert error.splitlines()[-1] == "train: stopped by SIGTERM at iteration 3; last.pth saved"


def test_study_json_keeps_the_targets_and_old_ones_mean_all(tmp_path: Path) -> None:
    settings = _tiny(methods=("tfc",))
    plan.save_study(tmp_path, settings, ["table1", "fig4"])
    assert plan.load_study(tmp_path) == (settings, ["table1", "fig4"])
    record = json.loads((tmp_path / "study.json").read_text())
    del record["targets"], record["out"], record["cwd"]
    (tmp_path / "study.json").write_text(json.dumps(record))
    assert plan.load_study(tmp_path) == (settings, list(plan.TARGETS))


def test_status_of_a_local_study_running_interrupted_failed_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reproduce status` of a study run by the local launcher: its started stamps name the process."""
    settings = _tiny(methods=("tfc",))
    plan.save_study(tmp_path, settings, ["table1"])
    step = _step(plan.build_plan(settings, tmp_path, ["table1"]), "data")
    seen: list[dict] = []

    def status_of(step: plan.Step) -> dict:
        return {row["step"]: row for row in slurm.study_status(tmp_path)}[step.name]

    def invoke(argv: list[str]) -> None:
        seen.append(status_of(step))
        raise KeyboardInterrupt  # Ctrl-C: the step neither finishes nor fails

    with pytest.raises(KeyboardInterrupt):
        executor.run_step(step, tmp_path, invoke, log=lambda m: None)
    assert (seen[0]["state"], seen[0]["note"], seen[0]["error"]) == (
        "running",
        f"here, pid {os.getpid()}",
        None,
    )
    rows = {row["step"]: row for row in slurm.study_status(tmp_path)}
    assert rows[step.name]["state"] == "running"  # this (test) process still lives
    assert {row["state"] for name, row in rows.items() if name != step.name} == {"not run"}

    started = json.loads(plan.started_path(tmp_path, step).read_text())
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    plan.started_path(tmp_path, step).write_text(json.dumps({**started, "pid": int(ended.stdout)}))
    row = status_of(step)
    assert (row["state"], row["note"]) == (
        "interrupted",
        f"started {started['started']}; the same command continues it",
    )
    assert re.fullmatch(r"\d+:\d\d:\d\d", row["elapsed"])
    plan.started_path(tmp_path, step).write_text(json.dumps({**started, "host": "elsewhere"}))
    row = status_of(step)
    assert (row["state"], row["note"]) == (
        "started",
        f"started {started['started']} (on elsewhere, not visible from here)",
    )

    def stop(argv: list[str]) -> None:  # a training stopped by SIGTERM, last.pth saved: not a failure
        raise executor.CommandFailed(75, "train: stopped by SIGTERM at iteration 3; last.pth saved")

    assert executor.run_step(step, tmp_path, stop, log=lambda m: None).status == "stopped"
    row = status_of(step)
    assert row["state"] == "running"  # its stamp names this (test) process, which lives on
    restarted = json.loads(plan.started_path(tmp_path, step).read_text())
    plan.started_path(tmp_path, step).write_text(json.dumps({**restarted, "pid": int(ended.stdout)}))
    row = status_of(step)
    assert (row["state"], row["error"]) == ("interrupted", None)

    def fail(argv: list[str]) -> None:
        raise ValueError("no such thing")

    assert executor.run_step(step, tmp_path, fail, log=lambda m: None).status == "failed"
    row = status_of(step)
    assert (row["state"], row["error"]) == ("failed", "ValueError: no such thing")
    # A Slurm submission after the local start: Slurm's view decides (no squeue here: unknown).
    plan.started_path(tmp_path, step).write_text(
        json.dumps({**started, "started": "2000-01-01T00:00:00+00:00"})
    )
    (tmp_path / "slurm").mkdir()
    slurm.jobs_path(tmp_path).write_text(
        json.dumps({step.name: [{"job": "5", "submitted": "2001-01-01T00:00:00+00:00"}]})
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    row = status_of(step)
    assert (row["state"], row["job"]) == ("unknown", "5")


# ---------------------------------------------------------------------------------------------
# On a local Slurm


def _all_jobs(out: Path) -> list[str]:
    return [str(e["job"]) for entries in slurm.read_jobs(out).values() for e in entries]


def _wait(out: Path, timeout: float = 300) -> dict[str, slurm.JobState]:
    """Poll until no job of the study is pending or running."""
    deadline = time.monotonic() + timeout
    while True:
        states = slurm.job_states(_all_jobs(out))
        if not any(s.active or s.ending for s in states.values()):
            return states
        if time.monotonic() > deadline:
            slurm.cancel_study(out)
            raise AssertionError(f"jobs still queued after {timeout} s: {states}")
        time.sleep(1)


def _wait_for_iterations(log: Path, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"{log}: fewer than {count} lines after {timeout} s")


def _status(out: Path) -> tuple[dict[str, dict], str]:
    result = CliRunner().invoke(main, ["reproduce", "status", str(out)])
    assert result.exit_code == 0, result.output
    return {row["step"]: row for row in slurm.study_status(out)}, result.stdout


def _scontrol(job: str) -> dict[str, str]:
    line = subprocess.run(
        ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, check=True
    ).stdout
    return dict(field.split("=", 1) for field in line.split() if "=" in field)


def test_a_miniature_study_on_slurm_equals_the_local_one(local_slurm: Path, tmp_path: Path) -> None:
    settings = _tiny()
    out = tmp_path / "slurm-study"
    try:
        result = slurm.submit_study(["table1"], settings, out, ONE_CPU, log=lambda m: None)
        jobs = result["jobs"]
        assert list(jobs) == [s.name for s in result["steps"]]  # every step is a job
        rows, text = _status(out)  # at once: queued, nothing complete yet
        assert {r["state"] for r in rows.values()} <= {"pending", "running"}
        assert all(r["job"] == jobs[name] for name, r in rows.items())
        assert "pending" in text and jobs["table1 md"] in text
        _wait(out)
    finally:
        slurm.cancel_study(out)
    # Each job waited for the jobs of the steps it needs.
    for step in result["steps"]:
        script = (out / "slurm" / f"{plan.step_slug(step)}.sh").read_text()
        needed = [jobs[n] for n in step.needs]
        assert (f"#SBATCH --dependency=afterok:{':'.join(needed)}\n" in script) == bool(needed), step.name
        started = _scontrol(jobs[step.name])["StartTime"]
        for job in needed:
            assert started >= _scontrol(job)["EndTime"], (step.name, job)
        assert _scontrol(jobs[step.name])["JobState"] == "COMPLETED"
    assert all(plan.is_complete(out, s) for s in result["steps"])
    rows, text = _status(out)
    assert {r["state"] for r in rows.values()} == {"complete"}
    assert text.splitlines()[-1] == "7 steps: 7 complete"
    # Nothing to submit again; and Table 1 is the one the local launcher makes.
    assert slurm.submit_plan(result["steps"], out, ONE_CPU, log=lambda m: None) == {}
    local = tmp_path / "local-study"
    done = executor.reproduce(["table1"], settings, local, in_process(main), log=lambda m: None)
    assert {r.status for r in done["results"]} == {"done"}
    ours = (out / "table1.md").read_text().replace(str(out), "DIR")
    assert ours == (local / "table1.md").read_text().replace(str(local), "DIR")
    # Either launcher continues the other's study: nothing left to do in either folder.
    local_steps = plan.build_plan(settings, local, ["table1"])
    assert slurm.submit_plan(local_steps, local, ONE_CPU, log=lambda m: None) == {}
    again = executor.execute_plan(result["steps"], out, in_process(main), log=lambda m: None)
    assert {r.status for r in again} == {"skipped"}


@pytest.mark.slow
def test_a_training_requeued_on_its_signal_then_cancelled_resumes_bit_exactly(
    local_slurm: Path, tmp_path: Path
) -> None:
    """The time-limit signal (USR1 to the batch shell) stops the training with last.pth saved and
    the job requeues itself; a cancel mid-way and the same submission again continue it; its final
    weights are those of one uninterrupted training."""
    settings = _tiny(methods=("segformer",), iters=60, train_extra=("--checkpoint-every", "5"))
    out = tmp_path / "study"
    name = "train segformer-b0 seed0"
    log = out / "train" / "segformer-b0" / "seed0" / "log.jsonl"
    try:
        first = slurm.submit_study(["table1"], settings, out, ONE_CPU, log=lambda m: None)["jobs"]
        job = first[name]
        _wait_for_iterations(log, 5)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
        _wait_for_iterations(log, 12)  # the restart of the same job continues the log
        assert _scontrol(job)["Restarts"] == "1"
        lines = [json.loads(line)["iter"] for line in log.read_text().splitlines()]
        assert lines == list(range(1, len(lines) + 1))  # resumed exactly where it stopped
        cancel = CliRunner().invoke(main, ["reproduce", "cancel", str(out)])
        assert cancel.exit_code == 0 and cancel.stdout.startswith("cancelled 4 jobs of"), cancel.output
        _wait(out)
        rows, text = _status(out)
        assert rows["data"]["state"] == "complete"
        assert {rows[n]["state"] for n in rows if n != "data"} == {"cancelled"}, text
        assert rows[name]["error"], text  # the job's last words (Slurm's CANCELLED line or the stop)
        assert not plan.is_complete(out, _step(plan.build_plan(settings, out, ["table1"]), name))
        again = slurm.submit_study(["table1"], settings, out, ONE_CPU, log=lambda m: None)["jobs"]
        assert set(again) == set(first) - {"data"}  # the complete dataset is not submitted again
        script = (out / "slurm" / "train_segformer-b0_seed0.sh").read_text()
        assert "--fresh" not in script and "--dependency" not in script
        _wait(out)
    finally:
        slurm.cancel_study(out)
    rows, _ = _status(out)
    assert {r["state"] for r in rows.values()} == {"complete"}
    iters = [json.loads(line)["iter"] for line in log.read_text().splitlines()]
    assert iters.count(1) == 1 and iters[-1] == 60  # never started afresh
    # The same command in one go, here.
    step = _step(plan.build_plan(settings, out, ["table1"]), name)
    argv = list(step.argv)
    argv[argv.index("--out") + 1] = str(tmp_path / "straight")
    in_process(main)(argv)
    a = torch.load(out / "train" / "segformer-b0" / "seed0" / "model.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "straight" / "model.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_job_cancels_its_dependents_and_status_says_why(local_slurm: Path, tmp_path: Path) -> None:
    settings = _tiny(methods=("segformer",), train_extra=("--batch-size", "0"))
    out = tmp_path / "study"
    try:
        jobs = slurm.submit_study(["table1"], settings, out, ONE_CPU, log=lambda m: None)["jobs"]
        states = _wait(out)
    finally:
        slurm.cancel_study(out)
    name = "train segformer-b0 seed0"
    assert states[jobs["data"]].state == "COMPLETED" and states[jobs[name]].state == "FAILED"
    for dependent in ("run segformer-b0 seed0", "table1 md", "table1 latex"):
        assert states[jobs[dependent]].state == "CANCELLED"
        assert states[jobs[dependent]].reason == "DependencyNeverSatisfied"
    rows, text = _status(out)
    assert rows[name]["state"] == "failed" and rows[name]["error"] == "error: batch_size must be >= 1, got 0"
    run = rows["run segformer-b0 seed0"]
    assert run["state"] == "cancelled"
    assert run["error"] == (f"not run: {name} (job {jobs[name]}) did not succeed (DependencyNeverSatisfied)")
    assert "batch_size must be >= 1, got 0" in text
    steps = plan.build_plan(settings, out, ["table1"])
    assert [s.name for s in steps if plan.is_complete(out, s)] == ["data"]


def test_submission_through_the_cli_prints_the_jobs_and_cancel_stops_them(
    local_slurm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    args = ["reproduce", "table1", "--methods", "segformer", "--iters", "1", "--out", str(out)]
    args += ["--launcher", "slurm", "--slurm-cpus-per-task", "1"]
    try:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        jobs = slurm.read_jobs(out)
        assert list(jobs) == [s.name for s in plan.build_plan(plan.load_study(out)[0], out, ["table1"])]
        ids = [entries[0]["job"] for entries in jobs.values()]
        assert result.stdout == (
            f"submitted {len(ids)} jobs to Slurm: {slurm.job_ids_text(ids)}; "
            f"follow with: vssbench reproduce status {out} (squeue --me)\n"
        )
        # A second submission keeps the queued jobs: nothing new.
        result = CliRunner().invoke(main, args)
        assert result.stdout.startswith(
            f"nothing to submit: every step of {out} is complete or has a job queued"
        )
        cancel = CliRunner().invoke(main, ["reproduce", "cancel", str(out)])
        assert cancel.exit_code == 0
        assert cancel.stdout == f"cancelled {len(ids)} jobs of {out}: {slurm.job_ids_text(ids)}\n"
        _wait(out)
        assert CliRunner().invoke(main, ["reproduce", "cancel", str(out)]).stdout == (
            f"no pending or running job of {out}\n"
        )
        rows, _ = _status(out)
        assert {r["state"] for r in rows.values()} == {"cancelled"}
    finally:
        slurm.cancel_study(out)


def test_an_unknown_partition_is_one_line_naming_the_step(local_slurm: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["reproduce", "table1", "--methods", "segformer", "--out", str(out), "--launcher", "slurm"]
    result = CliRunner().invoke(main, [*args, "--slurm-partition", "nope"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        "error: --launcher slurm: step 'data': sbatch: error: invalid partition specified: nope; "
        "Batch job submission failed: Invalid partition name specified\n"
    )
    assert slurm.read_jobs(out) == {}  # nothing submitted
