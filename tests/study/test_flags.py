"""`vssbench reproduce`: every flag is checked before anything is written, a plan command holds each
flag once, and a failed step reports the command's own message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.cli import reproduce as reproduce_module
from vssbench.cli.reproduce import in_process
from vssbench.study import executor, plan


@pytest.fixture
def no_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A study whose checks let it through fails its first step at once (no command runs)."""

    def refuse(cli):
        def invoke(argv: list[str]) -> None:
            raise AssertionError(f"a step ran: {argv[:2]}")

        return invoke

    monkeypatch.setattr(reproduce_module, "in_process", refuse)


def _reproduce(tmp_path: Path, *args: str) -> tuple[int, str, str, Path]:
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["reproduce", "all", "--out", str(out), *args])
    return result.exit_code, result.stdout, result.stderr, out


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    "args, line",
    [
        (["--iters", "0"], "error: --iters 0: must be >= 1"),
        (["--iters", "-3"], "error: --iters -3: must be >= 1"),
        (["--seed", "-1"], "error: --seeds -1: -1 must be >= 0 and < 4294967296"),
        (["--seeds", "0,x"], "error: --seeds 0,x: 'x' is not an integer"),
        (["--seeds", "1,1"], "error: --seeds 1,1: each seed once"),
        (["--seeds", "1", "--seed", "2"], "error: --seeds and --seed exclude each other"),
        (["--pretrain-iters", "-1"], "error: --pretrain-iters -1: must be >= 0 (0: no pretraining)"),
        (
            ["--backbones", "b0,b9"],
            "error: --backbones b0,b9: unknown backbone 'b9' for method 'segformer'; "
            "available: b0, b1, b2, b3, b4, b5",
        ),
        (["--methods", "tfc,nope"], "error: --methods tfc,nope: unknown method 'nope'"),
        (["--device", "tpu"], "error: --device tpu: must be cpu, cuda or cuda:N"),
    ],
)
def test_a_bad_flag_is_one_line_exit_2_before_anything_is_written(
    tmp_path: Path, args: list[str], line: str, dry_run: bool, no_steps: None
) -> None:
    code, stdout, stderr, out = _reproduce(tmp_path, *args, *(["--dry-run"] if dry_run else []))
    assert code == 2
    assert stderr.splitlines()[0].startswith(line), stderr
    assert len(stderr.splitlines()) == 1 and stdout == ""
    assert not out.exists()


def test_the_machine_is_checked_before_a_real_run_writes_anything(tmp_path: Path, no_steps: None) -> None:
    missing = tmp_path / "nowhere"
    code, _, stderr, out = _reproduce(tmp_path, "--data", str(missing), "--device", "cpu")
    assert (code, stderr) == (2, f"error: --data {missing}: no such folder\n")
    assert not out.exists()
    root = tmp_path / "vspw"
    root.mkdir()
    (root / "val.txt").write_text("v\n")
    code, _, stderr, out = _reproduce(tmp_path, "--data", str(root), "--device", "cpu")
    assert (code, stderr) == (2, f"error: --data {root}: {root / 'train.txt'}: split file not found\n")
    (root / "train.txt").write_text("t\n")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "mit_b0.pth").write_text("x")
    code, _, stderr, out = _reproduce(
        tmp_path, "--data", str(root), "--device", "cpu", "--backbones", "b0,b1", "--init-dir", str(weights)
    )
    assert (code, stderr) == (2, f"error: --init-dir {weights}: {weights / 'mit_b1.pth'} does not exist\n")
    assert not out.exists()
    # --dry-run shows the plan of a machine that has the data elsewhere: paths are not looked at.
    code, stdout, _, out = _reproduce(tmp_path, "--data", str(missing), "--dry-run")
    assert code == 0 and f"--data {missing}" in stdout and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_a_real_run(tmp_path: Path, no_steps: None) -> None:
    code, _, stderr, out = _reproduce(tmp_path, "--device", "cuda")
    assert code == 2 and stderr.startswith("error: --device cuda: device 'cuda' requested but CUDA is not")
    assert not out.exists()
    code, _, _, _ = _reproduce(tmp_path, "--device", "cuda", "--dry-run")
    assert code == 0


def test_a_plan_command_holds_each_flag_once(tmp_path: Path) -> None:
    """A user's --iters replaces the preset's value in the command instead of following it."""
    for preset in ("synthetic", "paper"):
        for iters in (None, 40):
            settings = (
                plan.synthetic_settings(iters=iters)
                if preset == "synthetic"
                else plan.paper_settings(str(tmp_path), iters=iters)
            )
            steps = plan.build_plan(settings, tmp_path / "study", plan.TARGETS)
            for step in steps:
                # --set and the efficiency sweep's per-row --checkpoint METHOD:BACKBONE=PATH repeat by design
                repeatable = ("--set", "--checkpoint") if step.kind == "profile" else ("--set",)
                flags = [a for a in step.argv if a.startswith("--") and "=" not in a and a not in repeatable]
                assert len(flags) == len(set(flags)), step.command()
            trains = [s for s in steps if s.kind == "train"]
            expected = iters if iters is not None else {"synthetic": plan.STUDY_ITERS, "paper": None}[preset]
            for step in trains:
                value = step.argv[step.argv.index("--iters") + 1] if "--iters" in step.argv else None
                assert value == (None if expected is None else str(expected)), step.command()
                if preset == "synthetic":  # validation halfway and at the end, whatever the iterations
                    assert step.argv[step.argv.index("--val-every") + 1] == str(expected // 2)
    # The default plan's training command, as the committed study's stamps record it.
    steps = plan.build_plan(plan.synthetic_settings(), Path("/tmp/study"), ["table1"])
    train = next(s for s in steps if s.name == "train segformer-b0 seed0")
    assert train.command() == (
        "vssbench train --method segformer --backbone b0 --data /tmp/study/data --device cpu "
        "--preset synthetic --crop 64x64 --iters 150 --val-size 96x160 --val-every 75 --val-videos 2 "
        "--seed 0 --out /tmp/study/train/segformer-b0/seed0 --init /tmp/study/pretrain/mit_b0.pth [--resume]"
    )


def test_a_failed_step_reports_the_command_s_own_message(tmp_path: Path, data_root: Path) -> None:
    """The console line names the step and the command's one-line error; the error file holds it."""
    settings = plan.StudySettings(
        preset="paper",
        data=str(data_root),
        methods=("segformer",),
        train_args=("--preset", "synthetic", "--batch-size", "0", "--quiet"),
        run_args=("--size", "32x48"),
    )
    steps = plan.build_plan(settings, tmp_path, ["table1"])
    lines: list[str] = []
    results = executor.execute_plan(steps, tmp_path, in_process(main), log=lines.append)
    assert [r.status for r in results] == ["failed", "blocked", "blocked", "blocked"]
    message = "batch_size must be >= 1, got 0"
    assert results[0].error == f"{message} (exit status 2)"
    assert f"[1/4] train segformer-b0 seed0: FAILED: {message} (exit status 2)" in lines
    error = (tmp_path / "steps" / "train_segformer-b0_seed0.error.txt").read_text()
    assert error.splitlines()[0] == "vssbench " + " ".join(steps[0].argv_now())
    assert "exit status 2" in error and f"error: {message}" in error
    assert "Traceback" not in error


def test_the_runner_s_error_names_the_command_s_own_message(tmp_path: Path, capsys) -> None:
    invoke = in_process(main)
    with pytest.raises(executor.CommandFailed) as failed:
        invoke(["data", "synth", "--out", str(tmp_path / "x"), "--videos", "0"])
    assert str(failed.value) == "--videos 0: must be >= 1 (exit status 2)"
    assert failed.value.status == 2
    assert failed.value.output.splitlines()[-1] == "error: --videos 0: must be >= 1"
    # what the command printed still reaches the terminal
    assert capsys.readouterr().err == "error: --videos 0: must be >= 1\n"
    # a usage error click would print (unknown flag) is one too
    with pytest.raises(executor.CommandFailed, match=r"^No such option '--nope'\. \(exit status 2\)$"):
        invoke(["methods", "--nope"])
