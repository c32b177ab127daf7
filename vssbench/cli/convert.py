"""``vssbench convert``: write a checkpoint in another public layout (a thin shell over
:func:`vssbench.models.checkpoint.export_checkpoint`)."""

from __future__ import annotations

from pathlib import Path

import click

from vssbench.models.checkpoint import EXPORT_FORMATS, FORMATS, export_checkpoint


@click.command("convert", short_help="Write a checkpoint as an ImageNet mit_bX.pth, mmseg or HF file.")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "layout",
    type=click.Choice(list(EXPORT_FORMATS)),
    required=True,
    help="mit: the encoder alone, as ImageNet mit_bX.pth files hold it (what `train --init` reads); "
    "mmseg: NVlabs {'state_dict': ...}; hf: HF transformers Segformer keys (SegFormer only).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Layout of CHECKPOINT.",
)
def convert_cmd(checkpoint: Path, layout: str, out: Path, fmt: str) -> None:
    """Write CHECKPOINT (any layout `run --checkpoint` reads) as --out in layout --to.

    \b
    Examples:
      vssbench convert runs/pretrain/model.pth --to mit --out weights/mit_b0.pth
      vssbench convert runs/segformer-b0/model.pth --to mmseg --out segformer_b0.pth
    """
    if not out.parent.is_dir():
        raise click.UsageError(f"--out {out}: folder {out.parent} does not exist")
    done = export_checkpoint(checkpoint, out, layout, format=fmt)
    click.echo(
        f"wrote {done['path']} ({done['tensors']} tensors, {done['format']} -> {done['to']})", err=True
    )
