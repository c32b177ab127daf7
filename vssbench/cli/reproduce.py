"""The ``vssbench reproduce`` command: a thin shell over :func:`vssbench.study.reproduce`, whose
steps it runs through the ``vssbench`` group in this process (:func:`in_process`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from vssbench.cli.params import CommaList
from vssbench.errors import OptionError
from vssbench.study import (
    STUDY_PRETRAIN_ITERS,
    TARGETS,
    CommandFailed,
    describe_plan,
    paper_settings,
    reproduce,
    synthetic_settings,
)


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


@click.command("reproduce", short_help="Regenerate the paper's Table 1, Table 2 and Fig. 4 as a study.")
@click.argument("target", type=click.Choice(["table1", "table2", "fig4", "all"]))
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
@click.option("--dry-run", is_flag=True, help="Print the plan (steps and their commands) without running it.")
def reproduce_cmd(
    target: str,
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
) -> None:
    """Regenerate Table 1, Table 2 and Fig. 4: train, evaluate and report, resumably.

    Every step is an ordinary `vssbench data synth | train | run | table | plot` command into
    --out; a step whose outputs are complete (made by the same command) is skipped, so an
    interrupted study continues when the same command is run again, and a failed step is
    reported while the others go on. --out/README.md lists every step, its command, status and
    time, and links the tables (Markdown and LaTeX) and the figure.

    \b
    Examples:
      vssbench reproduce all                                   # synthetic study, 2 CPU cores
      vssbench reproduce table1 --dry-run
      vssbench reproduce all --seeds 0,1,2 --out study3               # mean ± spread over 3 seeds
      vssbench reproduce all --preset paper --data data/vspw/VSPW_480p --init-dir weights/ --dry-run
      torchrun --nproc-per-node 8 -m vssbench reproduce all --preset paper --data data/vspw/VSPW_480p \
          --init-dir weights/
    """
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
    # Each step runs through the root group (the `vssbench` command this one was called from).
    invoke = in_process(click.get_current_context().find_root().command)
    result = reproduce(targets, settings, out, invoke=invoke, dry_run=dry_run)
    if dry_run:
        for index, step in enumerate(result["steps"], start=1):
            click.echo(f"# [{index}] {step.name}")
            click.echo(step.command())
        click.echo(f"# {describe_plan(result['steps'])} into {out}", err=True)
        return
    failed = [r for r in result["results"] if r.status in ("failed", "blocked")]
    ok = len(result["results"]) - len(failed)
    click.echo(
        f"study in {out}: {ok} steps ok, {len(failed)} failed or blocked; "
        f"{result['wall_s'] / 60:.1f} min; see {out}/README.md",
        err=True,
    )
    if failed:
        sys.exit(1)
