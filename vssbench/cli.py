"""The ``vssbench`` command line: a thin click shell, each command one library call."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from vssbench.errors import VssbenchError


class _Group(click.Group):
    """Turns a :class:`VssbenchError` into one clear line (full traceback only with --debug)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VssbenchError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="vssbench")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """vssbench: efficient and stable video semantic segmentation benchmark (VSPW, TFC).

    \b
    Example:
      vssbench run --method tfc --backbone b0
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@main.group()
def data() -> None:
    """Dataset utilities: synthesize a VSPW-mini, check a VSPW tree."""


@data.command("synth")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--videos", type=int, default=4, show_default=True, help="Number of videos (split over train/val).")
@click.option("--frames", type=int, default=20, show_default=True, help="Frames per video.")
@click.option("--size", default="180x320", show_default=True, help="Frame size HxW.")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(out: Path, videos: int, frames: int, size: str, seed: int) -> None:
    """Write a synthetic dataset in the exact VSPW layout.

    \b
    Example:
      vssbench data synth --out /tmp/vspw-mini --videos 6 --frames 24 --size 240x427
    """
    from vssbench.data.synth import synthesize

    root = synthesize(out, videos=videos, frames=frames, size=parse_size(size), seed=seed)
    click.echo(f"wrote synthetic VSPW-mini to {root}")


@data.command("check")
@click.option("--data", "root", type=click.Path(path_type=Path), required=True)
@click.option("--split", default="val", show_default=True)
def data_check(root: Path, split: str) -> None:
    """Validate a VSPW tree; list every problem with its path (exit 1 if any).

    \b
    Example:
      vssbench data check --data data/vspw/VSPW_480p --split val
    """
    from vssbench.data.check import check_dataset

    report = check_dataset(root, split=split)
    click.echo(report.format())
    if not report.ok:
        sys.exit(1)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` into (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW (e.g. 480x853), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise click.BadParameter(f"sides must be positive, got {text!r}")
    return h, w


if __name__ == "__main__":  # pragma: no cover
    main()
