"""The ``vssbench reproduce`` command: a thin shell over :func:`vssbench.study.reproduce`, whose
steps it runs through the ``vssbench`` group in this process (:func:`in_process`), and over
:mod:`vssbench.study.slurm` (``--launcher slurm``).

``vssbench reproduce table1|table2|fig4|all`` plans a study into ``--out`` and runs it here, or with
``--launcher slurm`` submits one batch job per step that is not complete (``--dry-run`` prints the
commands, or the job scripts). Three targets take the study folder as a second argument:

* ``reproduce status DIR``: every step with its state (complete, running, pending, failed,
  cancelled, not submitted; for a local run also interrupted, not run), Slurm job id, elapsed
  time and the last line of its error;
* ``reproduce cancel DIR``: cancels the study's pending and running Slurm jobs;
* ``reproduce step DIR STEP [--fresh]``: runs the one step ``STEP`` of the study saved in
  ``DIR/study.json``; what each Slurm job runs (``--fresh``: a step it needs was remade by the same
  submission). Exit status 0 when the step is done or was complete, 75 when a training stopped on
  a signal with ``last.pth`` saved, 1 when it failed.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from vssbench.cli.params import CommaList, KeyValue
from vssbench.errors import OptionError
from vssbench.study import (
    STUDY_PRETRAIN_ITERS,
    TARGETS,
    CommandFailed,
    StudySettings,
    describe_plan,
    paper_settings,
    reproduce,
    synthetic_settings,
)
from vssbench.study.slurm import (
    cancel_study,
    job_ids_text,
    run_job_step,
    slurm_options,
    study_status,
    submit_study,
)
from vssbench.training.hooks import STOPPED_EXIT_STATUS


class _Tail:
    """A text stream that passes everything on to ``stream`` and keeps the end of it."""

    def __init__(self, stream: Any, keep: int = 20_000) -> None:
        self.stream, self.keep, self._text = stream, keep, ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for a binary stream with write(b"")
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._text = (self._text + text)[-self.keep :]
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def last_lines(self, count: int = 20) -> str:
        """The last ``count`` non-empty lines, each as a terminal shows it (a progress bar's last state)."""
        lines = [line.rsplit("\r", 1)[-1].rstrip() for line in self._text.split("\n")]
        return "\n".join([line for line in lines if line][-count:])


def in_process(cli: click.Command) -> Callable[[list[str]], None]:
    """A study's step runner: one ``vssbench`` argv through ``cli`` (the ``vssbench`` group) in this
    process, as a user would type it. What the command prints still reaches stdout and stderr; a
    non-zero exit status (or a usage error) raises :class:`~vssbench.study.CommandFailed` holding the
    end of its stderr (of its stdout when stderr got nothing), so the executor reports the step's
    failure in the command's own words."""

    def invoke(argv: list[str]) -> None:
        streams = sys.stdout, sys.stderr
        out, err = _Tail(streams[0]), _Tail(streams[1])
        sys.stdout, sys.stderr = out, err

        def failed(code: int, last: str = "") -> CommandFailed:
            said = err.last_lines() or out.last_lines()
            return CommandFailed(code, f"{said}\n{last}" if last else said)

        try:
            cli.main(args=list(argv), prog_name="vssbench", standalone_mode=False)
        except SystemExit as exc:  # a VssbenchError (exit 2) or a failed row (sys.exit(1))
            if exc.code not in (0, None):
                raise failed(exc.code if isinstance(exc.code, int) else 1) from None
        except click.ClickException as exc:  # a usage error click would have printed
            raise failed(exc.exit_code, f"error: {exc.format_message()}") from None
        finally:
            sys.stdout, sys.stderr = streams

    return invoke


def _seed_list(seeds: list[str] | None, seed: int | None) -> list[int]:
    """The study's seeds from ``--seeds`` (comma list) or ``--seed`` (one), default [0]."""
    if seeds is not None and seed is not None:
        raise OptionError("--seeds and --seed exclude each other")
    if seed is not None:
        return [seed]
    values = []
    for text in seeds or ["0"]:
        try:
            values.append(int(text))
        except ValueError:
            raise OptionError(f"--seeds {','.join(seeds or [])}: {text!r} is not an integer") from None
    return values


_SLURM_FLAGS = {
    "slurm_partition": "--slurm-partition",
    "slurm_account": "--slurm-account",
    "slurm_time": "--slurm-time",
    "slurm_qos": "--slurm-qos",
    "slurm_constraint": "--slurm-constraint",
    "slurm_extra": "--slurm-extra",
    "slurm_gpus_per_node": "--slurm-gpus-per-node",
    "slurm_nodes": "--slurm-nodes",
    "slurm_eval_gpus": "--slurm-eval-gpus",
    "slurm_cpus_per_task": "--slurm-cpus-per-task",
    "slurm_signal_seconds": "--slurm-signal-seconds",
}


@click.command("reproduce", short_help="Regenerate the paper's Table 1, Table 2 and Fig. 4 as a study.")
@click.argument(
    "target",
    metavar="TARGET",
    type=click.Choice(["table1", "table2", "fig4", "all", "status", "cancel", "step"]),
)
@click.argument("folder", nargs=-1, metavar="[DIR]")
@click.option(
    "--preset",
    type=click.Choice(["synthetic", "paper"]),
    default=None,
    help="synthetic (default without --data): B0 from random init on a synthetic study dataset; "
    "paper (default with --data): B0/B1/B5, the paper's recipe, 480x853.",
)
@click.option("--data", "data_root", default=None, help="VSPW root (preset paper).")
@click.option(
    "--backbones", type=CommaList(), default=None, help="Comma list (synthetic: b0; paper: b0,b1,b5)."
)
@click.option(
    "--methods", type=CommaList(), default=None, help="Table 1 methods, comma list (default: all six)."
)
@click.option(
    "--out",
    default="runs/study",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Study folder: data, train/, runs/, tables, figures, README.md.",
)
@click.option("--device", default=None, help="cpu, cuda (default: cpu for synthetic, cuda for paper).")
@click.option(
    "--iters", type=int, default=None, help="Training iterations of every model (default: the preset's)."
)
@click.option(
    "--seeds",
    type=CommaList(),
    default=None,
    help="Comma list of training seeds: every training and evaluation runs once per seed; tables "
    "show mean ± spread  [default: 0]",
)
@click.option("--seed", type=int, default=None, help="One training seed (same as --seeds N).")
@click.option(
    "--pretrain-iters",
    type=int,
    default=None,
    help="Synthetic preset: iterations of the per-frame SegFormer pretraining whose encoder every "
    f"training starts from (0: random init)  [default: {STUDY_PRETRAIN_ITERS}]",
)
@click.option(
    "--init-dir",
    default=None,
    help="Folder of ImageNet mit_bX.pth files (preset paper): --init of every training.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (steps and their commands; with --launcher slurm every job script) without "
    "running it.",
)
@click.option(
    "--launcher",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="local: run the steps in this process; slurm: submit one batch job per step that is not "
    "complete (chained by afterok) and return at once.",
)
@click.option("--slurm-partition", default=None, help="Partition of every job.")
@click.option("--slurm-account", default=None, help="Account charged for every job.")
@click.option(
    "--slurm-time", default=None, help="Time limit of every job (Slurm's format: 90, 12:00:00, 2-00:00:00)."
)
@click.option("--slurm-qos", default=None, help="QOS of every job.")
@click.option("--slurm-constraint", default=None, help="Node features every job needs (--constraint).")
@click.option(
    "--slurm-extra",
    type=KeyValue(one_line=True),
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other sbatch option for every job, as #SBATCH --KEY=VALUE (repeatable; mem=64G).",
)
@click.option(
    "--slurm-gpus-per-node",
    type=int,
    default=None,
    help="GPUs per node of a training job (default with --device cuda: paper 8, synthetic 1; cpu: 0).",
)
@click.option("--slurm-nodes", type=int, default=None, help="Nodes of a training job  [default: 1]")
@click.option(
    "--slurm-eval-gpus",
    type=int,
    default=None,
    help="GPUs of an evaluation job (default: 1 with cuda, else 0).",
)
@click.option(
    "--slurm-cpus-per-task",
    type=int,
    default=None,
    help="CPUs of a training, evaluation or profile job (default: 8 per GPU; without GPUs every CPU of "
    "this machine); table, plot and data jobs take 1.",
)
@click.option(
    "--slurm-signal-seconds",
    type=int,
    default=None,
    help="A training job gets SIGUSR1 this long before its time limit, saves last.pth and requeues "
    "itself  [default: 300]",
)
@click.option("--fresh", is_flag=True, hidden=True, help="reproduce step: a step it needs was remade.")
def reproduce_cmd(
    target: str,
    folder: tuple[str, ...],
    preset: str | None,
    data_root: str | None,
    backbones: list[str] | None,
    methods: list[str] | None,
    out: str,
    device: str | None,
    iters: int | None,
    seeds: list[str] | None,
    seed: int | None,
    pretrain_iters: int | None,
    init_dir: str | None,
    dry_run: bool,
    launcher: str,
    fresh: bool,
    **slurm: Any,
) -> None:
    """Regenerate Table 1, Table 2 and Fig. 4: train, evaluate and report, resumably.

    Every step is an ordinary `vssbench data synth | train | run | table | plot` command into
    --out; a step whose outputs are complete (made by the same command) is skipped, so an
    interrupted study continues when the same command is run again, and a failed step is
    reported while the others go on. --out/README.md lists every step, its command, status and
    time, and links the tables (Markdown and LaTeX) and the figure.

    With --launcher slurm every step that is not complete becomes one Slurm job, depending on the
    jobs of the steps it needs; `reproduce status DIR` shows each step's state, job and last error,
    `reproduce cancel DIR` cancels the study's pending and running jobs. The same DIR can be
    continued with either launcher.

    \b
    Examples:
      vssbench reproduce all                                   # synthetic study, 2 CPU cores
      vssbench reproduce table1 --dry-run
      vssbench reproduce all --seeds 0,1,2 --out study3               # mean ± spread over 3 seeds
      vssbench reproduce all --preset paper --data data/vspw/VSPW_480p --init-dir weights/ --dry-run
      torchrun --nproc-per-node 8 -m vssbench reproduce all --preset paper --data data/vspw/VSPW_480p \\
          --init-dir weights/
      vssbench reproduce all --preset paper --data data/vspw/VSPW_480p --init-dir weights/ \\
          --out study --launcher slurm --slurm-partition gpu --slurm-time 2-00:00:00
      vssbench reproduce status study
      vssbench reproduce cancel study
    """
    root = click.get_current_context().find_root().command
    if target in ("status", "cancel", "step"):
        _folder_command(target, folder, fresh, root)
        return
    if folder:
        raise OptionError(
            f"reproduce {target}: unexpected argument {folder[0]!r} (the study folder is --out)"
        )
    if fresh:
        raise OptionError("--fresh is for `reproduce step` (what a Slurm job runs)")
    if launcher == "local":
        given = [flag for key, flag in _SLURM_FLAGS.items() if slurm[key] not in (None, ())]
        if given:
            raise OptionError(f"{given[0]} needs --launcher slurm")
    preset = preset or ("paper" if data_root else "synthetic")
    seed_list = _seed_list(seeds, seed)
    if preset == "paper":
        if not data_root:
            raise OptionError("--preset paper needs --data (the VSPW_480p root)")
        if pretrain_iters:
            raise OptionError(
                f"--pretrain-iters {pretrain_iters}: for --preset synthetic only "
                "(the paper preset starts from the ImageNet files of --init-dir)"
            )
        settings = paper_settings(data_root, backbones, methods, device or "cuda", iters, seed_list, init_dir)
    else:
        if init_dir:
            raise OptionError(
                "--init-dir is for --preset paper (the synthetic study pretrains its own encoder, "
                "--pretrain-iters)"
            )
        if data_root:
            raise OptionError("--preset synthetic makes its own dataset; drop --data or use --preset paper")
        settings = synthetic_settings(backbones, methods, device or "cpu", iters, seed_list, pretrain_iters)
    targets = list(TARGETS) if target == "all" else [target]
    if launcher == "slurm":
        _submit(targets, settings, out, dry_run, slurm)
        return
    # Each step runs through the root group (the `vssbench` command this one was called from).
    invoke = in_process(root)
    result = reproduce(targets, settings, out, invoke=invoke, dry_run=dry_run)
    if dry_run:
        for index, step in enumerate(result["steps"], start=1):
            click.echo(f"# [{index}] {step.name}")
            click.echo(step.command())
        click.echo(f"# {describe_plan(result['steps'])} into {out}", err=True)
        return
    failed = [r for r in result["results"] if r.status in ("failed", "blocked", "stopped")]
    ok = len(result["results"]) - len(failed)
    click.echo(
        f"study in {out}: {ok} steps ok, {len(failed)} failed or blocked; "
        f"{result['wall_s'] / 60:.1f} min; see {out}/README.md",
        err=True,
    )
    stopped = [r for r in result["results"] if r.status == "stopped"]
    if stopped:
        click.echo(
            f"stopped by a signal in {stopped[0].name}; run the same command again to continue", err=True
        )
        sys.exit(STOPPED_EXIT_STATUS)
    if failed:
        sys.exit(1)


def _submit(
    targets: list[str], settings: StudySettings, out: str, dry_run: bool, flags: dict[str, Any]
) -> None:
    """``--launcher slurm``: submit the study (or print its job scripts) and return at once."""
    options = slurm_options(
        settings,
        partition=flags["slurm_partition"],
        account=flags["slurm_account"],
        time=flags["slurm_time"],
        qos=flags["slurm_qos"],
        constraint=flags["slurm_constraint"],
        extra=flags["slurm_extra"] or None,
        train_gpus_per_node=flags["slurm_gpus_per_node"],
        train_nodes=flags["slurm_nodes"],
        eval_gpus=flags["slurm_eval_gpus"],
        cpus_per_task=flags["slurm_cpus_per_task"],
        signal_seconds=flags["slurm_signal_seconds"],
    )
    result = submit_study(targets, settings, out, options, dry_run=dry_run)
    if dry_run:
        for index, (step, script) in enumerate(result["scripts"], start=1):
            click.echo(f"# [{index}] {step.name}")
            click.echo(script)
        click.echo(f"# {describe_plan(result['steps'])} into {out}: one Slurm job each", err=True)
        return
    jobs = list(result["jobs"].values())
    follow = f"follow with: vssbench reproduce status {shlex.quote(out)} (squeue --me)"
    if jobs:
        click.echo(f"submitted {len(jobs)} jobs to Slurm: {job_ids_text(jobs)}; {follow}")
    else:
        click.echo(f"nothing to submit: every step of {out} is complete or has a job queued; {follow}")


def _folder_command(target: str, folder: tuple[str, ...], fresh: bool, root: click.Command) -> None:
    """``reproduce status DIR``, ``reproduce cancel DIR`` and ``reproduce step DIR STEP``."""
    wanted = 2 if target == "step" else 1
    usage = "reproduce step DIR STEP [--fresh]" if target == "step" else f"reproduce {target} DIR"
    if len(folder) != wanted:
        raise OptionError(
            f"{usage}: expected {'DIR and STEP' if wanted == 2 else 'DIR'}, got {len(folder)} arguments"
        )
    if fresh and target != "step":
        raise OptionError(f"--fresh is for reproduce step, not {target}")
    out = folder[0]
    if target == "step":
        result = run_job_step(out, folder[1], in_process(root), fresh=fresh)
        if result.status == "stopped":
            sys.exit(STOPPED_EXIT_STATUS)
        if result.status not in ("done", "skipped"):
            sys.exit(1)
        return
    if target == "cancel":
        cancelled = cancel_study(out)
        if cancelled:
            click.echo(f"cancelled {len(cancelled)} jobs of {out}: {job_ids_text(cancelled)}")
        else:
            click.echo(f"no pending or running job of {out}")
        return
    rows = study_status(out)
    header = ("step", "state", "job", "elapsed", "note")
    table = [header]
    for row in rows:
        note = row["error"] or row["note"] or ""
        if not note and row["state"] == "pending" and row["reason"]:
            note = f"waiting: {row['reason']}"
        table.append((row["step"], row["state"], row["job"] or "", row["elapsed"], note))
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        click.echo(("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]).rstrip())
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    click.echo(f"{len(rows)} steps: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
