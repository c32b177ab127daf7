"""The ``vssbench reproduce`` command (a thin shell over :mod:`vssbench.study.reproduce`)."""

from __future__ import annotations

import sys

import click

from vssbench.errors import OptionError


@click.command("reproduce")
@click.argument("target", type=click.Choice(["table1", "table2", "fig4", "all"]))
@click.option("--preset", type=click.Choice(["synthetic", "paper"]), default=None,
              help="synthetic (default without --data): B0 from random init on a synthetic study dataset; "
                   "paper (default with --data): B0/B1/B5, the paper's recipe, 480x853.")
@click.option("--data", "data_root", default=None, help="VSPW root (preset paper).")
@click.option("--backbones", default=None, help="Comma list (synthetic: b0; paper: b0,b1,b5).")
@click.option("--methods", default=None, help="Table 1 methods, comma list (default: all six).")
@click.option("--out", default="runs/study", show_default=True, type=click.Path(file_okay=False),
              help="Study folder: data, train/, runs/, tables, figures, README.md.")
@click.option("--device", default=None, help="cpu, cuda (default: cpu for synthetic, cuda for paper).")
@click.option("--iters", type=int, default=None, help="Training iterations of every model (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--init-dir", default=None, help="Folder of ImageNet mit_bX.pth files (preset paper): --init of every training.")
@click.option("--dry-run", is_flag=True, help="Print the plan (steps and their commands) without running it.")
def reproduce_cmd(
    target: str,
    preset: str | None,
    data_root: str | None,
    backbones: str | None,
    methods: str | None,
    out: str,
    device: str | None,
    iters: int | None,
    seed: int,
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
      vssbench reproduce all --preset paper --data data/vspw/VSPW_480p --init-dir weights/ --dry-run
      torchrun --nproc-per-node 8 -m vssbench reproduce all --preset paper --data data/vspw/VSPW_480p \
          --init-dir weights/
    """
    from vssbench.study.reproduce import TARGETS, paper_settings, reproduce, synthetic_settings

    preset = preset or ("paper" if data_root else "synthetic")
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    if preset == "paper":
        if not data_root:
            raise OptionError("--preset paper needs --data (the VSPW_480p root)")
        settings = paper_settings(data_root, split(backbones), split(methods), device or "cuda", iters, seed, init_dir)
    else:
        if init_dir:
            raise OptionError("--init-dir is for --preset paper (the synthetic study trains from random init)")
        if data_root:
            raise OptionError("--preset synthetic makes its own dataset; drop --data or use --preset paper")
        settings = synthetic_settings(split(backbones), split(methods), device or "cpu", iters, seed)
    targets = list(TARGETS) if target == "all" else [target]
    result = reproduce(targets, settings, out, dry_run=dry_run)
    if dry_run:
        for index, step in enumerate(result["steps"], start=1):
            click.echo(f"# [{index}] {step.name}")
            click.echo(step.command())
        click.echo(f"# {len(result['steps'])} steps into {out}", err=True)
        return
    failed = [r for r in result["results"] if r.status in ("failed", "blocked")]
    click.echo(f"study in {out}: {len(result['results']) - len(failed)} steps ok, {len(failed)} failed or blocked; "
               f"{result['wall_s'] / 60:.1f} min; see {out}/README.md", err=True)
    if failed:
        sys.exit(1)
