"""The executor of ``vssbench reproduce``: runs a study's plan (:mod:`vssbench.study.plan`) into ``DIR``.

Each step's command is run by the ``invoke`` the caller hands over (the command line runs the
``vssbench`` group in-process, a test a fake); a step is skipped when it is complete, a failed
step blocks only the steps that need it, and ``DIR/README.md`` lists every step with the time
the invocation that made it took over it, and where the tables and the figure are.
:func:`run_step` runs one step with its stamps: the body of the local loop, and what each job of
the Slurm launcher runs (:mod:`vssbench.study.slurm`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from vssbench.data.synth import read_marker
from vssbench.harness.distributed import env_world_size, setup_distributed
from vssbench.study.plan import (
    Step,
    StudySettings,
    build_plan,
    check_machine,
    command_digest,
    describe_plan,
    is_complete,
    previous_digest,
    read_stamp,
    save_study,
    stamp_path,
    started_path,
    this_process,
)
from vssbench.training.hooks import STOPPED_EXIT_STATUS

#: Runs one ``vssbench`` argv (without the program name); raises when the command fails
#: (:class:`CommandFailed` when it ended with a non-zero exit status).
Invoke = Callable[[list[str]], None]


class CommandFailed(RuntimeError):
    """A step's command ended with a non-zero exit ``status``; ``output`` is the end of what it
    printed (its stderr, else its stdout). The message is the command's own: its last ``error:``
    line (else its last line) and the status, ``--iters 0: must be >= 1 (exit status 2)``."""

    def __init__(self, status: int, output: str) -> None:
        self.status, self.output = status, output
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        last = (errors or lines or [""])[-1].removeprefix("error:").strip()
        super().__init__(f"{last} (exit status {status})" if last else f"exit status {status}")


@dataclass
class StepResult:
    """How a step ended: ``status`` is done, skipped (complete already), failed, blocked (a step it
    needs failed) or stopped (a training stopped by a signal, ``last.pth`` saved).

    ``seconds`` and ``finished`` (UTC) are those of the invocation that made the step: this one
    for a done step, an earlier one (read back from its stamp) for a skipped one.
    """

    name: str
    status: str
    seconds: float | None = None
    error: str | None = None
    finished: str | None = None


def _discard_owned(step: Step, reason: str, log: Callable[[str], None], prefix: str) -> None:
    """Remove the step's own folder before a fresh start (a data folder only if it is synthetic)."""
    folder = step.owned
    if folder is None or not folder.exists():
        return
    if step.kind == "synth" and read_marker(folder) is None:
        return  # not a dataset we made: `data synth` refuses it with a clear error
    log(f"{prefix}: removing {folder} ({reason})")
    shutil.rmtree(folder)


def run_step(
    step: Step,
    out: str | Path,
    invoke: Invoke,
    needs_ran: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    prefix: str | None = None,
) -> StepResult:
    """Run one step's command through ``invoke`` with its stamps; returns how it ended (done, failed,
    or stopped: a training stopped by a signal with ``last.pth`` saved, exit status 75).

    ``needs_ran``: a step it needs was (re)made since this step last ran (in this invocation, or in
    this Slurm submission). Its own folder is then removed first and an evaluation starts afresh;
    the folder is also removed when the step's command changed since its last start, and an
    incomplete synthetic dataset always. ``DIR/steps/<step>.started.json`` is written before the
    command, ``<step>.json`` after it succeeded, ``<step>.error.txt`` when it failed (the command as
    run, its own last words). Under torchrun the stamps are rank 0's and every rank runs the command
    (rank 0 alone for ``rank0_only`` steps).
    """
    out = Path(out)
    prefix = prefix or step.name
    rank, world = _rank_world()
    ran = set(step.needs) if needs_ran else set()
    job = {"job": os.environ["SLURM_JOB_ID"]} if os.environ.get("SLURM_JOB_ID") else {}
    log(f"{prefix}: {step.command()}")
    start = time.perf_counter()
    error, stopped = None, False
    argv = step.argv  # the command as run, once its --resume is known
    try:
        if rank == 0:
            (out / "steps").mkdir(parents=True, exist_ok=True)
            previous = previous_digest(out, step)
            if needs_ran:
                _discard_owned(step, "a step it needs ran now", log, prefix)
            elif previous is not None and previous != command_digest(step):
                _discard_owned(step, "its command changed", log, prefix)
            elif step.kind == "synth":
                _discard_owned(step, "incomplete or without a stamp", log, prefix)
            stamp_path(out, step).unlink(missing_ok=True)
            started = {"step": step.name, "digest": command_digest(step), "started": _now()}
            started_path(out, step).write_text(
                json.dumps({**started, **this_process(), **job}) + "\n",
                encoding="utf-8",
            )
        if world > 1 and env_world_size() > 1:
            if not step.rank0_only and "--device" in step.argv and not _group_up():
                # The group the command will use, up now: the barrier below must hold in a Slurm
                # job's only step (and a study's first) as well, or a rank could decide --resume
                # from a last.pth that rank 0 is removing.
                setup_distributed(step.argv[step.argv.index("--device") + 1])
            _barrier()  # every rank sees the folder removed before the command starts
        argv = step.argv_now(ran)
        if not step.rank0_only or rank == 0:
            invoke(argv)
    except Exception as exc:  # a failed step is reported; the others go on
        error = str(exc) if isinstance(exc, CommandFailed) else f"{type(exc).__name__}: {exc}"
        stopped = isinstance(exc, CommandFailed) and exc.status == STOPPED_EXIT_STATUS
        log(f"{prefix}: {'STOPPED' if stopped else 'FAILED'}: {error}")
        (out / "steps").mkdir(parents=True, exist_ok=True)
        stamp_path(out, step).with_suffix(".error.txt").write_text(_error_report(argv, exc), encoding="utf-8")
    if world > 1 and env_world_size() > 1:
        _barrier()
    seconds = round(time.perf_counter() - start, 1)  # as stamped: a rerun's README shows the same
    if error is not None:
        return StepResult(step.name, "stopped" if stopped else "failed", seconds, error)
    finished = _now()
    if rank == 0:
        if step.kind == "run":
            _prune_stale_runs(step.outputs[0])
        stamp_path(out, step).write_text(
            json.dumps(
                {
                    "step": step.name,
                    "command": step.command(),
                    "digest": command_digest(step),
                    "seconds": seconds,
                    "finished": finished,
                    **job,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
        started_path(out, step).unlink(missing_ok=True)
    log(f"{prefix}: done in {seconds:.0f} s")
    return StepResult(step.name, "done", seconds, None, finished)


def execute_plan(
    steps: Sequence[Step],
    out: str | Path,
    invoke: Invoke,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> list[StepResult]:
    """Run the steps in order through ``invoke`` (each by :func:`run_step`): complete ones are
    skipped, a failure blocks only its dependents.

    A complete step runs again when a step it needs ran in this invocation (new weights are
    evaluated again, new records tabulated again).

    Steps marked ``rank0_only`` run on rank 0 while the other ranks wait (under torchrun); every
    other step runs on every rank, as its command expects. A training stopped by a signal (SIGUSR1,
    SIGTERM: ``last.pth`` saved) ends the invocation there: the steps after it are not run.
    """
    out = Path(out)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    results: list[StepResult] = []
    failed: set[str] = set()
    ran: set[str] = set()
    for index, step in enumerate(steps, start=1):
        prefix = f"[{index}/{len(steps)}] {step.name}"
        blocked = [n for n in step.needs if n in failed]
        if blocked:
            failed.add(step.name)
            results.append(StepResult(step.name, "blocked", error=f"needs {', '.join(blocked)}"))
            log(f"{prefix}: blocked (needs {', '.join(blocked)})")
            continue
        if is_complete(out, step) and not set(step.needs) & ran:
            stamp = read_stamp(out, step) or {}  # the time of the invocation that made it
            results.append(
                StepResult(step.name, "skipped", stamp.get("seconds"), finished=stamp.get("finished"))
            )
            log(f"{prefix}: complete, skipped")
            continue
        result = run_step(step, out, invoke, bool(set(step.needs) & ran), log, prefix)
        results.append(result)
        if result.status == "done":
            ran.add(step.name)
        elif result.status == "stopped":
            log(f"{prefix}: stopped by a signal; run the same command again to continue")
            break
        else:
            failed.add(step.name)
    return results


def _error_report(argv: list[str], exc: Exception) -> str:
    """``DIR/steps/<step>.error.txt``: the command as run, then its own last words (a command that
    exited non-zero) or the traceback (one that raised)."""
    command = "vssbench " + shlex.join(argv)
    if isinstance(exc, CommandFailed):
        return f"{command}\nexit status {exc.status}; the end of its output:\n{exc.output.rstrip()}\n"
    return f"{command}\n{traceback.format_exc()}"


def stopped_report(error_file: Path) -> bool:
    """Is ``error_file`` (:func:`_error_report`) that of a training stopped by a signal, its
    ``last.pth`` saved (exit status 75), rather than of a failure?"""
    try:
        lines = error_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return len(lines) > 1 and lines[1].startswith(f"exit status {STOPPED_EXIT_STATUS};")


def _prune_stale_runs(folder: Path) -> None:
    """Keep only the newest run folder (by its record) of a run step's ``--out``.

    A step whose command changed writes a new ``<method>-<backbone>-<hash>`` folder beside the old
    one; the tables read the step's folder recursively, so the stale record must go.
    """
    runs = sorted((p.stat().st_mtime, p.parent) for p in Path(folder).glob("*/record.json"))
    for _, stale in runs[:-1]:
        shutil.rmtree(stale)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _group_up() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _group_up():
        dist.barrier()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _seeds_text(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"seeds {', '.join(map(str, seeds))} (each training and evaluation once per seed)"


def _encoder_text(settings: StudySettings) -> str:
    if settings.init_dir is not None:
        return f"every training starting from the ImageNet encoders of `{settings.init_dir}`"
    if settings.pretrain_iters:
        return (
            f"every training starting from the encoder of a per-frame SegFormer pretrained for "
            f"{settings.pretrain_iters} iterations on the training videos (`pretrain/mit_<backbone>.pth`, "
            "the stand-in for ImageNet)"
        )
    return "every training from random init"


def write_study_readme(
    out: Path, settings: StudySettings, steps: Sequence[Step], results: Sequence[StepResult], wall_s: float
) -> Path:
    """``DIR/README.md``: what the plan makes (counted from its steps), every step with its command,
    status and time, and links to the tables and figures.

    A step's seconds and finish time are those of the invocation that made it (from its stamp
    when this invocation skipped it, which its status says).
    """
    by_name = {r.name: r for r in results}
    made_earlier = sum(1 for r in results if r.status == "skipped")
    ran = sum(1 for r in results if r.status in ("done", "failed", "stopped"))
    total = sum(r.seconds or 0.0 for r in results if r.status in ("done", "skipped"))
    lines = [
        "# vssbench reproduce",
        "",
        f"Preset `{settings.preset}`, backbones {', '.join(settings.backbones)}, device `{settings.device}`, "
        f"{_seeds_text(settings.seeds)}, {_encoder_text(settings)}. The plan: {describe_plan(steps)}. "
        f"This invocation took {wall_s / 60:.1f} min and ran {ran} of them ({made_earlier} made by an "
        f"earlier invocation); the steps' own times add up to {total / 60:.1f} min. Settings: `study.json`.",
        "",
    ]
    outputs = [("Table 1", "table1.md"), ("Table 2", "table2.md"), ("Fig. 4", "fig4.png")]
    for title, name in outputs:
        path = out / name
        if path.exists():
            lines.append(
                f"- {title}: [{name}]({name})"
                + (f" (LaTeX: [{name[:-3]}.tex]({name[:-3]}.tex))" if name.endswith(".md") else "")
            )
    lines += ["", "| step | status | seconds | finished (UTC) | command |", "|---|---|---|---|---|"]
    for step in steps:
        r = by_name.get(step.name)
        status = r.status if r else "not run"
        if r is not None and r.status == "skipped":
            status = "skipped (made by an earlier invocation)"
        if r is not None and r.error:
            status += f": {r.error}"
        seconds = f"{r.seconds:.0f}" if r is not None and r.seconds is not None else ""
        finished = r.finished if r is not None and r.finished else ""
        lines.append(f"| {step.name} | {status} | {seconds} | {finished} | `{step.command()}` |")
    lines += [
        "",
        "Rows of Table 2 that change what is learned (interpolation mode, MSDA threshold, flow warping,",
        "similarity level, focal loss) were each trained; the frame-interval rows reuse the default TFC",
        "(`run --interval N`). Feature Reuse is trained with keyframe clips "
        "(`train --method feature_reuse`). Table 1's Params, GMACs and FPS come from one `vssbench profile`",
        "sweep per backbone over the first seed's weights (`efficiency/<backbone>/records.json`); its",
        "accuracy columns from the evaluations, mean ± standard deviation over the seeds.",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def reproduce(
    targets: Sequence[str],
    settings: StudySettings,
    out: str | Path,
    invoke: Invoke,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Plan and (unless ``dry_run``) execute a study, each step's command run by ``invoke``; returns
    ``{"steps", "results", "out", "wall_s"}``.

    Every setting is checked before anything is written (:func:`~vssbench.study.plan.check_settings`,
    and unless ``dry_run`` :func:`~vssbench.study.plan.check_machine`): :class:`OptionError`
    naming the flag and its value.
    """
    out = Path(out)
    steps = build_plan(settings, out, targets)
    if dry_run:
        return {"steps": steps, "results": [], "out": str(out), "wall_s": 0.0}
    check_machine(settings)
    out.mkdir(parents=True, exist_ok=True)
    save_study(out, settings, targets)
    start = time.perf_counter()
    results = execute_plan(steps, out, invoke, log=log)
    wall = time.perf_counter() - start
    rank, _ = _rank_world()
    if rank == 0:
        readme = write_study_readme(out, settings, steps, results, wall)
        log(f"study written to {out} (summary: {readme})")
    return {"steps": steps, "results": results, "out": str(out), "wall_s": wall}


__all__ = [
    "CommandFailed",
    "Invoke",
    "StepResult",
    "execute_plan",
    "stopped_report",
    "reproduce",
    "run_step",
    "write_study_readme",
]
