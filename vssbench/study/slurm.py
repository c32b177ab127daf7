"""The Slurm launcher of ``vssbench reproduce`` (``--launcher slurm``): every step of a study's plan
that is not complete becomes one batch job.

A job runs ``vssbench reproduce step DIR STEP`` (:func:`run_job_step`): it rebuilds the plan from
``DIR/study.json`` and runs that one step with the local executor's :func:`run_step`, so a job
writes the same stamps, error files and outputs as ``vssbench reproduce`` on one machine, and the
same ``DIR`` can be continued with either launcher. A step's job depends (``afterok``) on the jobs
of the steps it needs and is cancelled by Slurm when one of them fails (``--kill-on-invalid-dep``);
a complete step is not submitted unless a step it needs is, and then its job gets ``--fresh`` (its
old outputs are discarded as when the local executor reruns it). Multi-GPU and multi-node jobs run
their step under ``torchrun`` (rendezvous on the allocation's first node).

Trainings ask for SIGUSR1 ``signal_seconds`` before their time limit (``--signal=B:USR1@N``): the
job script forwards it to the training, which saves ``last.pth`` and exits 75
(:data:`~vssbench.training.hooks.STOPPED_EXIT_STATUS`), and the job requeues itself
(``scontrol requeue``); the restart (``SLURM_RESTART_COUNT`` > 0) ignores ``--fresh`` and resumes.

Slurm is driven through its own commands (``sbatch --parsable``, ``squeue``, ``scontrol``,
``scancel``) as subprocesses, not a Python client: the steps are shell commands already, the job
scripts stay plain files that ``--dry-run`` prints and ``DIR/slurm/`` keeps, and nothing new is
installed. ``DIR/slurm/jobs.json`` records every job of every step (``job``, ``submitted`` UTC,
``fresh``); each job's output goes to ``DIR/slurm/<step>.<job id>.out``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from vssbench.errors import OptionError, VssbenchError
from vssbench.study.executor import Invoke, StepResult, run_step, stopped_report
from vssbench.study.plan import (
    Step,
    StudySettings,
    build_plan,
    check_machine,
    command_digest,
    is_complete,
    load_study,
    process_alive,
    read_stamp,
    read_started,
    save_study,
    stamp_path,
    started_path,
    step_slug,
)
from vssbench.training.hooks import STOPPED_EXIT_STATUS

#: Trainings: their jobs span ``train_nodes`` x ``train_gpus_per_node``, trap the time-limit signal
#: and requeue themselves.
TRAIN_KINDS: frozenset[str] = frozenset({"train", "pretrain"})
#: Steps whose jobs get GPUs and many CPUs; every other kind gets one CPU and no GPU.
COMPUTE_KINDS: frozenset[str] = TRAIN_KINDS | {"run", "profile"}
#: CPUs per GPU of a job when ``--slurm-cpus-per-task`` is not given.
CPUS_PER_GPU = 8
#: Port of the torchrun rendezvous on a job's first node.
RDZV_PORT = 29500
#: Slurm job states in which a job will still run, or runs: its step is not submitted again.
PENDING_STATES: frozenset[str] = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SPECIAL_EXIT", "RESV_DEL_HOLD"}
)
RUNNING_STATES: frozenset[str] = frozenset(
    {"RUNNING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)
#: How long a submission waits for the study's ending jobs (COMPLETING) before deciding what to submit.
ENDING_WAIT_S = 120
#: ``sbatch`` options the job scripts set themselves (``--slurm-extra`` may not), with the flag that
#: sets them where there is one.
OWN_OPTIONS: dict[str, str | None] = {
    "job-name": None,
    "output": None,
    "error": None,
    "open-mode": None,
    "chdir": None,
    "dependency": None,
    "kill-on-invalid-dep": None,
    "requeue": None,
    "no-requeue": None,
    "signal": "--slurm-signal-seconds",
    "nodes": "--slurm-nodes",
    "ntasks": None,
    "ntasks-per-node": None,
    "cpus-per-task": "--slurm-cpus-per-task",
    "gpus-per-node": "--slurm-gpus-per-node / --slurm-eval-gpus",
    "partition": "--slurm-partition",
    "account": "--slurm-account",
    "time": "--slurm-time",
    "qos": "--slurm-qos",
    "constraint": "--slurm-constraint",
}
_TIME = re.compile(
    r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$"
)


class SlurmError(VssbenchError):
    """Slurm refused or failed a request; the message names the step and Slurm's own words."""


@dataclass(frozen=True)
class SlurmOptions:
    """What the jobs of a study ask Slurm for (the ``--slurm-*`` flags of ``vssbench reproduce``).

    ``partition``, ``account``, ``time``, ``qos``, ``constraint`` and ``extra`` (``(key, value)``
    pairs: ``#SBATCH --key=value``, ``--key`` alone for an empty value) go to every job. GPUs and
    nodes are per kind of step: trainings ``train_nodes`` x ``train_gpus_per_node``, evaluations
    ``eval_gpus`` (torchrun when a job has more than one GPU or node), the efficiency sweep one GPU
    when evaluations have any, datasets, exports, tables and figures no GPU and one CPU.
    """

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    train_gpus_per_node: int = 0
    train_nodes: int = 1
    eval_gpus: int = 0
    #: CPUs of the one task of a training, evaluation or profile job (under torchrun each node's
    #: task, shared by its workers); None: 8 per GPU, or every CPU of this machine without GPUs.
    cpus_per_task: int | None = None
    #: Seconds before its time limit at which a training job gets SIGUSR1 (save, requeue, resume).
    signal_seconds: int = 300


def slurm_options(settings: StudySettings, **given: Any) -> SlurmOptions:
    """The study's defaults with the values ``given`` (those not None) on top, checked.

    Defaults: with ``--device cuda`` the paper preset's layout, 8 GPUs on one node per training and
    1 GPU per evaluation (the synthetic preset: 1 and 1); on CPU no GPU. Raises
    :class:`OptionError` naming the ``--slurm-*`` flag of a bad value.
    """
    cuda = settings.device.startswith("cuda")
    defaults = SlurmOptions(
        train_gpus_per_node=(8 if settings.preset == "paper" else 1) if cuda else 0,
        eval_gpus=1 if cuda else 0,
    )
    names = {f.name for f in fields(SlurmOptions)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"unknown Slurm option {unknown[0]!r}")
    options = replace(
        defaults, **{k: (tuple(v) if k == "extra" else v) for k, v in given.items() if v is not None}
    )
    check_options(options)
    return options


def check_options(options: SlurmOptions) -> None:
    """Refuse a value no job could be submitted with, naming its flag (:class:`OptionError`)."""
    for flag, value in (
        ("--slurm-partition", options.partition),
        ("--slurm-account", options.account),
        ("--slurm-time", options.time),
        ("--slurm-qos", options.qos),
        ("--slurm-constraint", options.constraint),
    ):
        if value is not None and (not value or re.search(r"[\s'\"]", value)):
            raise OptionError(f"{flag} {value!r}: must be one word (no spaces or quotes)")
    for flag, value, least in (
        ("--slurm-gpus-per-node", options.train_gpus_per_node, 0),
        ("--slurm-nodes", options.train_nodes, 1),
        ("--slurm-eval-gpus", options.eval_gpus, 0),
        ("--slurm-cpus-per-task", options.cpus_per_task, 1),
        ("--slurm-signal-seconds", options.signal_seconds, 1),
    ):
        if value is not None and value < least:
            raise OptionError(f"{flag} {value}: must be >= {least}")
    if options.signal_seconds > 65535:  # sbatch --signal's limit
        raise OptionError(f"--slurm-signal-seconds {options.signal_seconds}: must be <= 65535")
    if options.time is not None:
        limit = time_limit_seconds(options.time)
        if limit is not None and limit <= options.signal_seconds:
            raise OptionError(
                f"--slurm-signal-seconds {options.signal_seconds}: must be less than --slurm-time "
                f"{options.time} ({limit} s), or trainings are told to stop as they start"
            )
    for key, value in options.extra:
        shown = f"--slurm-extra {key}={value}"
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise OptionError(f"{shown}: KEY is an sbatch option without its dashes (e.g. mem=64G)")
        if key in OWN_OPTIONS:
            flag = OWN_OPTIONS[key]
            raise OptionError(
                f"{shown}: " + (f"use {flag}" if flag else f"the job scripts set --{key} themselves")
            )
        if re.search(r"[\n'\"]", value):
            raise OptionError(f"{shown}: VALUE may not hold quotes or a line break")


def time_limit_seconds(text: str) -> int | None:
    """Slurm's time format (``90``, ``12:00:00``, ``2-00:00:00``...) in seconds; None for UNLIMITED.

    Raises :class:`OptionError` naming ``--slurm-time`` for anything else.
    """
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise OptionError(
            f"--slurm-time {text}: expected minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
        )
    g = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    if "d" in g:
        return ((g["d"] * 24 + g["dh"]) * 60 + g.get("dm", 0)) * 60 + g.get("ds", 0)
    if "c" in g:  # HH:MM:SS
        return (g["a"] * 60 + g["b"]) * 60 + g["c"]
    if "b" in g:  # MM:SS
        return g["a"] * 60 + g["b"]
    return g["a"] * 60  # minutes


def job_resources(step: Step, options: SlurmOptions) -> tuple[int, int, int]:
    """``(nodes, GPUs per node, CPUs per task)`` of ``step``'s job."""
    if step.kind in TRAIN_KINDS:
        nodes, gpus = options.train_nodes, options.train_gpus_per_node
    elif step.kind == "run":
        nodes, gpus = 1, options.eval_gpus
    elif step.kind == "profile":  # one process times the sweep
        nodes, gpus = 1, min(options.eval_gpus, 1)
    else:
        return 1, 0, 1
    cpus = options.cpus_per_task or (CPUS_PER_GPU * gpus if gpus else os.cpu_count() or 2)
    return nodes, gpus, cpus


def _token(text: str) -> str:
    """An ``#SBATCH`` option as sbatch reads it back: quoted only when it holds a space or quote."""
    return shlex.quote(text) if re.search(r"[\s'\"]", text) else text


@functools.lru_cache(maxsize=1)
def _torchrun_signals() -> tuple[str, ...]:
    """torchrun's option that forwards SIGUSR1 to its workers, where this torch has it (2.8+)."""
    # Heavy import, and only for a distributed training's script.
    from torch.distributed.run import get_args_parser

    if "--signals-to-handle" in get_args_parser().format_help():
        return ("--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    return ()


def job_script(
    step: Step, out: str | Path, options: SlurmOptions, dependencies: Sequence[str], fresh: bool = False
) -> str:
    """The batch script of ``step``'s job: ``#SBATCH`` lines, then ``vssbench reproduce step``.

    ``dependencies`` are the job ids it waits for (``afterok``; ``--dry-run`` passes step names in
    angle brackets). ``fresh``: a step it needs is (re)made by this submission. The job runs in
    this process's working folder with this Python. A training's script traps SIGUSR1 (sent
    ``signal_seconds`` before the time limit), forwards it to the step, and requeues the job when
    the step stopped (exit status 75) or failed after the signal.
    """
    out = Path(out)
    slug = step_slug(step)
    folder = out.absolute()
    nodes, gpus, cpus = job_resources(step, options)
    distributed = step.kind in COMPUTE_KINDS and step.kind != "profile" and (gpus > 1 or nodes > 1)
    training = step.kind in TRAIN_KINDS
    sbatch = [
        f"--job-name=vssbench-{out.resolve().name}:{slug}",
        f"--output={folder / 'slurm' / f'{slug}.%j.out'}",
        "--open-mode=append",  # a requeued job's restart appends to the same file
        f"--chdir={os.getcwd()}",  # the plan's paths are relative to it when DIR is
        f"--nodes={nodes}",
        "--ntasks-per-node=1" if distributed else "--ntasks=1",
        f"--cpus-per-task={cpus}",
    ]
    if gpus:
        sbatch.append(f"--gpus-per-node={gpus}")
    for key in ("partition", "account", "time", "qos", "constraint"):
        value = getattr(options, key)
        if value:
            sbatch.append(f"--{key}={value}")
    if dependencies:
        sbatch += [f"--dependency=afterok:{':'.join(dependencies)}", "--kill-on-invalid-dep=yes"]
    if training:
        sbatch += ["--requeue", f"--signal=B:USR1@{options.signal_seconds}"]
    sbatch += [f"--{key}={value}" if value else f"--{key}" for key, value in options.extra]

    python = shlex.quote(sys.executable)
    step_args = " ".join(shlex.quote(a) for a in ["reproduce", "step", str(out), step.name])
    step_args += " --fresh" if fresh else ""
    lines = [
        "#!/bin/bash",
        f"# vssbench reproduce: step '{step.name}' of the study {out}; it runs",
        f"#   {step.command()}",
        *[f"#SBATCH {_token(option)}" for option in sbatch],
        "export PYTHONUNBUFFERED=1",
    ]
    if distributed:
        torchrun = [
            "--nnodes",
            '"$SLURM_JOB_NUM_NODES"',
            "--nproc-per-node",
            str(max(gpus, 1)),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f'"$head:{RDZV_PORT}"',
            "--rdzv-id",
            '"$SLURM_JOB_ID"',
            *(_torchrun_signals() if training else []),
        ]
        lines.append('head="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"')
        # srun takes --cpus-per-task from its own flag only (Slurm 22.05+), not from the allocation.
        srun = f"srun --ntasks-per-node=1 --cpus-per-task={cpus}"
        command = f"{srun} {python} -m torch.distributed.run {' '.join(torchrun)} "
        command += f"-m vssbench {step_args}"  # torchrun: one process per GPU on every node
    else:
        command = f"{python} -m vssbench {step_args}"
    if not training:
        return "\n".join([*lines, f"exec {command}", ""])
    name = step.name.replace("'", "")
    lines += [
        f"# Slurm sends USR1 {options.signal_seconds} s before the time limit: the training saves last.pth",
        f"# and exits {STOPPED_EXIT_STATUS}, and the job requeues itself; its restart resumes from last.pth.",
        "got_signal=0",
        "child=",
        "forward_usr1() {",
        "    got_signal=1",
        '    if [ -n "$child" ]; then kill -USR1 "$child" 2>/dev/null || true; fi',
        "}",
        "trap forward_usr1 USR1",
        f"{command} &",
        "child=$!",
        'wait "$child"',
        "status=$?",
        'while [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; do  # wait was cut short by the trap',
        '    wait "$child"',
        "    status=$?",
        "done",
        f'if [ "$status" -eq {STOPPED_EXIT_STATUS} ] || '
        '{ [ "$got_signal" -eq 1 ] && [ "$status" -ne 0 ]; }; then',
        f"    echo \"vssbench: step '{name}' stopped (exit status $status); "
        'requeueing job $SLURM_JOB_ID" >&2',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Talking to Slurm


@dataclass(frozen=True)
class JobState:
    """One job as ``squeue`` reports it: ``state`` (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED,
    ...), ``elapsed`` (its run time, Slurm's ``[D-]H:MM:SS``), ``reason`` (why it waits or ended) and
    ``dependency`` (``afterok:12(failed)``)."""

    job: str
    state: str
    elapsed: str = ""
    reason: str = ""
    dependency: str = ""

    @property
    def active(self) -> bool:
        """Pending or running: the job will still make its step."""
        return self.state in PENDING_STATES or self.state in RUNNING_STATES

    @property
    def ending(self) -> bool:
        """Its processes end (COMPLETING: a cancelled training may still be saving ``last.pth``)."""
        return self.state == "COMPLETING"


def _require(command: str, what: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise OptionError(f"{what}: {command} not found on PATH")
    return path


def _slurm(argv: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; :class:`SlurmError` (``what``: Slurm's error lines) when it fails."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"{what}: {argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise SlurmError(f"{what}: {_slurm_words(done)}")
    return done


def _slurm_words(done: subprocess.CompletedProcess[str]) -> str:
    """A failed Slurm command's error lines as one line (``sbatch: error: A; B``)."""
    lines = [line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    errors = [re.sub(r"^\w+: error: ", "", line) for line in lines if ": error: " in line]
    program = Path(str(done.args[0])).name
    if errors:
        return f"{program}: error: " + "; ".join(errors)
    return f"{program}: " + (lines[-1] if lines else f"exit status {done.returncode}")


def job_states(jobs: Iterable[str]) -> dict[str, JobState]:
    """What ``squeue`` knows of ``jobs`` (finished ones too, until Slurm forgets them), by job id."""
    ids = sorted({str(j) for j in jobs if j}, key=lambda j: (len(j), j))
    if not ids:
        return {}
    _require("squeue", "--launcher slurm")
    argv = ["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}", "--format=%i|%T|%M|%r|%E"]
    try:
        done = _slurm(argv, "squeue")
    except SlurmError as exc:
        if "Invalid job id" in str(exc):  # one id that Slurm no longer knows
            return {}
        raise
    states = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5 and parts[0] in ids:
            job, state, elapsed, reason, dependency = parts
            state = state.split()[0].rstrip("+")  # "CANCELLED by 0" -> CANCELLED
            states[job] = JobState(job, state, elapsed, reason, "" if dependency == "(null)" else dependency)
    return states


def jobs_path(out: str | Path) -> Path:
    """``DIR/slurm/jobs.json``: every job submitted for every step, oldest first."""
    return Path(out) / "slurm" / "jobs.json"


def read_jobs(out: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``DIR/slurm/jobs.json`` as ``{step name: [{"job", "submitted", "fresh"}, ...]}`` ({} when none)."""
    try:
        value = json.loads(jobs_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_jobs(out: Path, jobs: dict[str, list[dict[str, Any]]]) -> None:
    path = jobs_path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jobs, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _latest(jobs: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    return {name: str(entries[-1]["job"]) for name, entries in jobs.items() if entries}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def job_ids_text(ids: Sequence[str]) -> str:
    """Job ids as ranges: ``101-104, 107``."""
    numbers = sorted(int(i) for i in ids if str(i).isdigit())
    parts: list[str] = []
    for n in numbers:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts + [str(i) for i in ids if not str(i).isdigit()])


# ---------------------------------------------------------------------------------------------
# Submitting, following, cancelling


def submit_plan(
    steps: Sequence[Step],
    out: str | Path,
    options: SlurmOptions,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, str]:
    """Submit one job per step that is not complete, chained by ``afterok``; returns
    ``{step name: job id}`` of the jobs submitted now.

    A complete step is submitted again when a step it needs is (its job then gets ``--fresh``). A
    step whose latest job (``DIR/slurm/jobs.json``) is still pending or running is not submitted
    again: its dependents wait for that job. Each script is kept as ``DIR/slurm/<step>.sh``. When
    ``sbatch`` refuses a job, the jobs this call submitted before it are cancelled and
    :class:`SlurmError` names the step and sbatch's error.
    """
    out = Path(out)
    _require("sbatch", "--launcher slurm")
    (out / "slurm").mkdir(parents=True, exist_ok=True)
    jobs = read_jobs(out)
    latest = _latest(jobs)
    queue = job_states(latest.values())
    deadline = time.monotonic() + ENDING_WAIT_S
    while any(s.ending for s in queue.values()) and time.monotonic() < deadline:
        ending = [s.job for s in queue.values() if s.ending]
        log(f"waiting for the jobs {job_ids_text(ending)} to end (their steps' stamps are being written)")
        time.sleep(2)
        queue = job_states(latest.values())
    made: dict[str, str] = {}  # step -> the job that makes it (submitted now or still queued)
    submitted: dict[str, str] = {}
    for step in steps:
        previous = queue.get(latest.get(step.name, ""))
        if previous is not None and previous.active:
            made[step.name] = previous.job
            log(f"{step.name}: job {previous.job} still {previous.state.lower()}, kept")
            continue
        remade = [n for n in step.needs if n in made]
        if not remade and is_complete(out, step):
            continue
        path = out / "slurm" / f"{step_slug(step)}.sh"
        path.write_text(
            job_script(step, out, options, [made[n] for n in remade], bool(remade)), encoding="utf-8"
        )
        try:
            done = _slurm(["sbatch", "--parsable", str(path)], f"--launcher slurm: step '{step.name}'")
        except SlurmError as exc:
            message = str(exc)
            if submitted:
                cancel_jobs(list(submitted.values()))
                message += f" (cancelled the {len(submitted)} jobs submitted before it: "
                message += f"{job_ids_text(list(submitted.values()))})"
            raise SlurmError(message) from None
        job = done.stdout.strip().split(";")[0]
        made[step.name] = submitted[step.name] = job
        jobs.setdefault(step.name, []).append({"job": job, "submitted": _now(), "fresh": bool(remade)})
        _write_jobs(out, jobs)  # after every job: the record never misses one Slurm holds
        after = f" after {', '.join(f'{n} ({made[n]})' for n in remade)}" if remade else ""
        log(f"{step.name}: job {job}{after}")
    return submitted


def cancel_jobs(jobs: Sequence[str]) -> None:
    """``scancel`` the ``jobs`` (a running training saves ``last.pth`` on the SIGTERM)."""
    if jobs:
        _require("scancel", "reproduce cancel")
        _slurm(["scancel", *jobs], "scancel")


def cancel_study(out: str | Path) -> list[str]:
    """Cancel the pending and running jobs of the study in ``out``; returns their ids."""
    jobs = read_jobs(out)
    ids = [str(entry["job"]) for entries in jobs.values() for entry in entries]
    active = [job for job, state in job_states(ids).items() if state.active]
    cancel_jobs(active)
    return active


def submit_study(
    targets: Sequence[str],
    settings: StudySettings,
    out: str | Path,
    options: SlurmOptions,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Plan a study and submit it to Slurm (:func:`submit_plan`); returns ``{"steps", "jobs", "out"}``,
    with ``dry_run`` ``{"steps", "scripts", "out"}`` instead: every step's job script as a first
    submission into an empty ``out`` would write it (dependencies by step name), nothing submitted.

    Every setting is checked before anything is written, ``sbatch`` looked for and the machine
    checked (its paths, not CUDA: the jobs run elsewhere); then ``DIR/study.json`` is written.
    """
    out = Path(out)
    steps = build_plan(settings, out, targets)
    if dry_run:
        by_name = {s.name: s for s in steps}
        scripts = [
            (
                step,
                job_script(
                    step, out, options, [f"<{step_slug(by_name[n])}>" for n in step.needs], bool(step.needs)
                ),
            )
            for step in steps
        ]
        return {"steps": steps, "scripts": scripts, "out": str(out)}
    _require("sbatch", "--launcher slurm")
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise OptionError("--launcher slurm: submit from one process, not under torchrun")
    check_machine(settings, check_device=False)
    out.mkdir(parents=True, exist_ok=True)
    save_study(out, settings, targets)
    return {"steps": steps, "jobs": submit_plan(steps, out, options, log), "out": str(out)}


def _plan_as_submitted(out: Path) -> tuple[list[Step], Path]:
    """The study's steps with DIR spelled as it was given when the study was saved (the stamps'
    digests hold that spelling), and the folder its relative paths start from."""
    settings, targets = load_study(out)
    record = json.loads((out / "study.json").read_text(encoding="utf-8"))
    spelled, cwd = record.get("out"), record.get("cwd")
    if spelled and cwd and (Path(cwd) / spelled).resolve() == out.resolve():
        return build_plan(settings, Path(spelled), targets), Path(cwd)
    return build_plan(settings, out, targets), Path()


def _last_line(path: Path) -> str | None:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    lines = [line.rsplit("\r", 1)[-1] for line in lines if line]
    return lines[-1] if lines else None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def study_status(out: str | Path) -> list[dict[str, Any]]:
    """Every step of the study in ``out`` with its ``state`` (complete, running, pending, failed,
    cancelled, not submitted; unknown when jobs were submitted but ``squeue`` is not on PATH), its
    latest ``job`` id, Slurm's ``slurm`` state and ``reason``, ``elapsed`` time and ``error``: the
    last line of ``DIR/steps/<step>.error.txt`` (when written since the job was submitted), else of
    the job's ``.out`` file; for a job Slurm cancelled because a step it needs failed, which one.

    A step the local launcher started (after the step's latest job, if any) and that has neither
    finished nor failed is ``running`` while the process in its started stamp lives on this host,
    ``interrupted`` when it does not, ``started`` when it ran on another host; ``note`` says which
    (pid, start time). In a study never submitted to Slurm, a step not started is ``not run``.

    Reads the stamps (a step is complete as for the executor) and asks Slurm.
    """
    out = Path(out)
    steps, root = _plan_as_submitted(out)
    jobs = read_jobs(out)
    latest = _latest(jobs)
    asked = bool(latest) and shutil.which("squeue") is not None
    queue = job_states(latest.values()) if asked else {}
    step_of = {str(e["job"]): name for name, entries in jobs.items() for e in entries}
    rows = []
    for step in steps:
        job = latest.get(step.name)
        q = queue.get(job or "")
        stamp = read_stamp(out, step)
        complete = (
            all((root / p).exists() for p in step.outputs)
            and stamp is not None
            and stamp.get("digest") == command_digest(step)
        )
        error_file = stamp_path(out, step).with_suffix(".error.txt")
        local = _local_start(out, step, jobs.get(step.name, []), error_file)
        note = None
        if q is not None and q.state in PENDING_STATES:
            state = "pending"
        elif q is not None and (q.state in RUNNING_STATES or q.ending):
            state = "running"
        elif complete:
            state = "complete"
        elif local is not None:
            # run by the local launcher (or `reproduce step`) since its latest job, not finished
            alive = process_alive(local)
            if alive is None:
                state = "started"
                host = local.get("host")
                where = f"on {host}, not visible from here" if host else "no process recorded"
                note = f"started {local['started']} ({where})"
            elif alive:
                state, note = "running", f"here, pid {local['pid']}"
            else:
                state, note = "interrupted", f"started {local['started']}; the same command continues it"
        elif job is not None and not asked:
            state = "unknown"
        elif q is not None and q.state == "CANCELLED":
            state = "cancelled"
        elif q is not None and q.state == "COMPLETED":
            state = "not submitted"  # made, then changed or removed since
        elif job is not None or error_file.exists():
            state = "failed"  # a failed job, one Slurm forgot, or a failed local run
        else:
            state = "not submitted" if jobs else "not run"  # a study never submitted to Slurm: not run
        error = None
        if state in ("failed", "cancelled"):
            error = _why(out, step, job, q, jobs, step_of, error_file)
        elapsed = q.elapsed if q is not None and q.state not in PENDING_STATES else ""
        if state == "complete" and q is None:
            elapsed = _clock((stamp or {}).get("seconds"))
        elif state in ("running", "interrupted", "started") and q is None and local is not None:
            elapsed = _clock(_since(local.get("started")))
        rows.append(
            {
                "step": step.name,
                "kind": step.kind,
                "state": state,
                "job": job,
                "slurm": q.state if q is not None else None,
                "reason": q.reason if q is not None and q.reason not in ("None", "") else None,
                "elapsed": elapsed,
                "error": error,
                "note": note,
            }
        )
    return rows


def _local_start(
    out: Path, step: Step, entries: list[dict[str, Any]], error_file: Path
) -> dict[str, Any] | None:
    """The step's started stamp when a local run (no ``job`` in it) of its current command started
    it after its latest Slurm submission and has not failed since (its error file is older, or is
    that of a training stopped by a signal with its ``last.pth`` saved)."""
    started = read_started(out, step)
    if started is None or "job" in started or started.get("digest") != command_digest(step):
        return None
    begun = _timestamp(started.get("started"))
    if begun is None:
        return None
    if entries and (_timestamp(entries[-1].get("submitted")) or 0.0) > begun:
        return None
    if error_file.exists() and error_file.stat().st_mtime >= begun and not stopped_report(error_file):
        return None
    return started


def _timestamp(text: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:  # also None (no such key)
        return None


def _since(text: Any) -> float | None:
    begun = _timestamp(text)
    return None if begun is None else max(0.0, time.time() - begun)


def _why(
    out: Path,
    step: Step,
    job: str | None,
    q: JobState | None,
    jobs: dict[str, list[dict[str, Any]]],
    step_of: dict[str, str],
    error_file: Path,
) -> str | None:
    """The last words of a failed or cancelled step (see :func:`study_status`)."""
    if q is not None and q.reason == "DependencyNeverSatisfied":
        failed = [
            f"{step_of.get(j, 'job')} (job {j})"
            for j in re.findall(r"(\d+)\((?:failed|cancelled)\)", q.dependency)
        ]
        what = ", ".join(failed) or "a job it depends on"
        return f"not run: {what} did not succeed (DependencyNeverSatisfied)"
    submitted = None
    if job is not None:
        entry = next((e for e in jobs.get(step.name, []) if str(e["job"]) == job), {})
        submitted = _timestamp(entry.get("submitted"))
    if error_file.exists() and (submitted is None or error_file.stat().st_mtime >= submitted - 1):
        line = _last_line(error_file)
        if line:
            return line
    if job is not None:
        line = _last_line(out / "slurm" / f"{step_slug(step)}.{job}.out")
        if line:
            return line
    if q is not None and q.state == "CANCELLED":
        return "cancelled before it started" + (
            f" (it was waiting: {q.reason})" if q.reason != "None" else ""
        )
    return q.reason if q is not None else None


def run_job_step(
    out: str | Path,
    name: str,
    invoke: Invoke,
    fresh: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> StepResult:
    """What one Slurm job runs: step ``name`` of the study in ``out``, its plan rebuilt from
    ``DIR/study.json``, through :func:`~vssbench.study.executor.run_step`.

    ``fresh``: a step it needs was (re)made by this submission (its folder is discarded, an
    evaluation starts afresh). It is ignored when this job already started the step before Slurm
    requeued it (``SLURM_RESTART_COUNT`` > 0 and the step's stamp names this job), so a requeued
    training resumes from its ``last.pth``. A complete step that is not fresh is skipped.
    """
    out = Path(out)
    settings, targets = load_study(out)
    steps = {s.name: s for s in build_plan(settings, out, targets)}
    if name not in steps:
        raise OptionError(f"{out}: the study has no step {name!r} (steps: {', '.join(steps)})")
    step = steps[name]
    needs_ran = fresh and not _restarted(out, step)
    if not needs_ran and is_complete(out, step):
        stamp = read_stamp(out, step) or {}
        log(f"{name}: complete, skipped")
        return StepResult(name, "skipped", stamp.get("seconds"), finished=stamp.get("finished"))
    return run_step(step, out, invoke, needs_ran, log, prefix=name)


def _restarted(out: Path, step: Step) -> bool:
    """This job is a requeued restart that had started (or finished) ``step`` before."""
    job = os.environ.get("SLURM_JOB_ID")
    try:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        restarts = 0
    if not job or restarts < 1:
        return False
    for path in (started_path(out, step), stamp_path(out, step)):
        try:
            if str(json.loads(path.read_text(encoding="utf-8")).get("job")) == job:
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


__all__ = [
    "CPUS_PER_GPU",
    "JobState",
    "SlurmError",
    "SlurmOptions",
    "cancel_jobs",
    "cancel_study",
    "check_options",
    "job_ids_text",
    "job_resources",
    "job_script",
    "job_states",
    "jobs_path",
    "read_jobs",
    "run_job_step",
    "slurm_options",
    "study_status",
    "submit_plan",
    "submit_study",
    "time_limit_seconds",
]
