"""``vssbench data synth`` and ``vssbench data check`` (thin shells over :mod:`vssbench.data`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vssbench.cli.params import KeyValue, Size
from vssbench.data.check import check_dataset
from vssbench.data.synth import PRESET_SHAPES, write_dataset


@click.group("data")
def data_group() -> None:
    """Dataset utilities: synthesize a VSPW-mini, check a VSPW tree."""


@data_group.command("synth")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--difficulty",
    default="easy",
    show_default=True,
    help="Preset: easy (the original scenes), medium, hard, or study (the synthetic study's data: "
    "small frames, few classes, calibrated so that per-frame SegFormer-B0 flickers).",
)
@click.option(
    "--knob",
    "knobs",
    type=KeyValue(one_line=True),
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one difficulty knob (repeatable), e.g. --knob noise=8 --knob lookalike=0.5. "
    "Knobs: noise, jpeg_quality, jpeg_jitter, brightness_flicker, white_balance_flicker, "
    "motion_blur, shake, speed, min_objects, max_objects, object_scale, lookalike, thin, "
    "object_classes, band_choices.",
)
@click.option(
    "--videos",
    type=int,
    default=None,
    help="Number of videos (split over train/val)  [default: 4; study: 36]",
)
@click.option(
    "--val-videos",
    type=int,
    default=None,
    help="Videos in the val split (the first ones); one more goes to test, the rest to train  "
    "[default: half the videos; study: 6 of its 36]",
)
@click.option(
    "--more-val-videos",
    type=int,
    default=0,
    show_default=True,
    metavar="K",
    help="K more videos rendered after --videos and appended to the val split; train and test, and "
    "every other video's files, stay byte-identical to the dataset without them.",
)
@click.option("--frames", type=int, default=None, help="Frames per video  [default: 20; study: 24]")
@click.option(
    "--size", type=Size(one_line=True), default=None, help="Frame size HxW  [default: 180x320; study: 96x160]"
)
@click.option("--seed", type=int, default=0, show_default=True)
def synth_cmd(
    out: Path,
    difficulty: str,
    knobs: tuple[tuple[str, str], ...],
    videos: int | None,
    val_videos: int | None,
    more_val_videos: int,
    frames: int | None,
    size: tuple[int, int] | None,
    seed: int,
) -> None:
    """Write a synthetic dataset in the exact VSPW layout.

    \b
    Example:
      vssbench data synth --out /tmp/vspw-mini --videos 6 --frames 24 --size 240x427
      vssbench data synth --out /tmp/vspw-study --difficulty study
      vssbench data synth --out /tmp/vspw-study-val --difficulty study --more-val-videos 6
      vssbench data synth --out /tmp/vspw-noisy --knob noise=10 --knob jpeg_quality=40
    """
    if videos is None and difficulty not in PRESET_SHAPES:
        videos = 4  # the command's default; a preset's own shape comes from write_dataset
    root = write_dataset(
        out,
        difficulty=difficulty,
        videos=videos,
        frames=frames,
        size=size,
        seed=seed,
        val_videos=val_videos,
        more_val_videos=more_val_videos,
        **dict(knobs),
    )
    click.echo(f"wrote synthetic VSPW-mini ({difficulty}) to {root}")


@data_group.command("check")
@click.option("--data", "root", type=click.Path(path_type=Path), required=True)
@click.option("--split", default="val", show_default=True)
def check_cmd(root: Path, split: str) -> None:
    """Validate a VSPW tree; list every problem with its path (exit 1 if any).

    \b
    Example:
      vssbench data check --data data/vspw/VSPW_480p --split val
    """
    report = check_dataset(root, split=split)
    click.echo(report.format())
    if not report.ok:
        sys.exit(1)
