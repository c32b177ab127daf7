"""``vssbench table``, ``vssbench compare`` and ``vssbench plot``: thin click commands over
:mod:`vssbench.reports` (each one library call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vssbench.cli.params import CommaList, IntList, KeyValue, Size
from vssbench.errors import OptionError
from vssbench.reports.masks import load_mask_source, render_masks
from vssbench.reports.plots import (
    TRADEOFF_X,
    consistent_share,
    curves_figure,
    mask_accuracy_figure,
    read_logs,
    save_figure,
    tradeoff_figure,
)
from vssbench.reports.stats import compare_groups, intervals_to_json, seeds_text
from vssbench.reports.tables import (
    ablation_table,
    load_records,
    main_table,
    main_table_ci,
    read_speed_csv,
    render,
    speed_table,
    with_profile_costs,
)
from vssbench.results.records import to_jsonable


def _check_out(out: Path | None) -> None:
    """Refuse an ``--out`` whose folder does not exist, before any work (nothing is created)."""
    if out is not None and not out.parent.is_dir():
        raise OptionError(f"--out {out}: folder {out.parent} does not exist; create it first")


def _write(text: str, out: Path | None) -> None:
    """Print ``text`` or write it to ``out`` (and say where on stderr)."""
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    _check_out(out)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}", err=True)


def _format_for(fmt: str | None, out: Path | None) -> str:
    if fmt:
        return fmt
    suffix = out.suffix.lower() if out else ""
    return {".csv": "csv", ".tex": "latex", ".html": "html", ".htm": "html"}.get(suffix, "md")


_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "csv", "latex", "html"]),
    default=None,
    help="Output format (default: from --out's suffix, else md).",
)
_OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE instead of stdout (its folder must exist).",
)
_WITH_PAPER = click.option(
    "--with-paper", is_flag=True, help="Show the paper's numbers next to ours ('ours | paper')."
)


_EFFICIENCY_FROM = click.option(
    "--efficiency-from",
    "efficiency_from",
    type=click.Path(path_type=Path),
    default=None,
    help="Take Params, FPS and GMACs from `vssbench profile` records: a records.json, "
    "or a folder searched for record.json/records.json.",
)


def _profile_records(path: Path | None) -> list[dict] | None:
    """The profile records of ``--efficiency-from`` (None without it); one line when it holds none."""
    if path is None:
        return None
    records = load_records([path], names=("record.json", "records.json"))
    if not any(r.get("kind") == "profile" for r in records):
        raise OptionError(f"--efficiency-from {path}: no profile record (kind 'profile') in it")
    return records


@click.group("table", short_help="The paper's Tables 1-3 (main, ablation, speed) from records.")
def table_group() -> None:
    """The paper's tables (1: main, 2: ablation, 3: speed) from result records."""


@table_group.command("main", short_help="Table 1: accuracy, stability and cost per method and backbone.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_WITH_PAPER
@click.option(
    "--ci",
    is_flag=True,
    help="Add 95% bootstrap intervals to the deltas (over videos; rows of several seeds: over seeds, "
    "then videos).",
)
@click.option("--samples", type=int, default=2000, show_default=True, help="Bootstrap resamples (with --ci).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed (with --ci).")
@_EFFICIENCY_FROM
@_FORMAT
@_OUT
def table_main(
    runs: tuple[Path, ...],
    with_paper: bool,
    ci: bool,
    samples: int,
    seed: int,
    efficiency_from: Path | None,
    fmt: str | None,
    out: Path | None,
) -> None:
    """Table 1: Methods, Backbone, Type, mIoU, mVC8, mVC16, Params, FPS, GMACs/frame.

    RUNS are run folders, folders searched recursively for record.json, or record files. Rows
    are grouped by backbone; non-image methods show the difference to SegFormer on the same
    backbone under the same conditions, e.g. 85.3 (+2.6). Rows whose conditions differ are
    marked † with the differing fields; randomly initialized rows *. Runs of one row with
    different checkpoints (seeds) make one row: means, accuracy with the standard deviation
    (49.0 ±1.2). --efficiency-from replaces each row's Params, FPS and GMACs/frame by its
    profile record's (same method, backbone, options; '-' without one).

    \b
    Examples:
      vssbench table main runs/ --with-paper
      vssbench table main runs/ --ci --format latex --out table1.tex
      vssbench table main runs/ --ci --efficiency-from efficiency/
    """
    _check_out(out)
    records = load_records(runs)
    efficiency = _profile_records(efficiency_from)
    intervals, notes = main_table_ci(records, samples=samples, seed=seed) if ci else (None, [])
    result = main_table(records, with_paper=with_paper, ci=intervals, efficiency=efficiency)
    result.notes.extend(notes)
    _write(render(result, _format_for(fmt, out)), out)


@table_group.command("ablation")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_WITH_PAPER
@_FORMAT
@_OUT
def table_ablation(runs: tuple[Path, ...], with_paper: bool, fmt: str | None, out: Path | None) -> None:
    """Table 2: ablation groups recognised from each record's options.

    \b
    Rows (TFC options as `vssbench run --set`; the interval with --interval):
      Linear Interp.     feature_reuse | tfc update=none | + interp=hard | + interp=fixed
      Sparse MSDA        feature_reuse | tfc interp=none [threshold=1.0|0.5] | interp=none update=flow
      Cosine Similarity  tfc (defaults) | tfc similarity_level=1
      Focal Loss         tfc (defaults) | tfc focal=false (the checkpoint trained without it)
      Frame Interval     tfc --interval 4 .. 9
    Rows without a record are left out.

    \b
    Example:
      vssbench table ablation runs/ablation --with-paper
    """
    _check_out(out)
    _write(render(ablation_table(load_records(runs), with_paper=with_paper), _format_for(fmt, out)), out)


@table_group.command("speed", short_help="Table 3: sparse MSDA against MiT stages 3-4.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_WITH_PAPER
@click.option("--core", default=None, help="Sparse MSDA sampling core of the CSV (default embedding_bag).")
@_FORMAT
@_OUT
def table_speed(
    inputs: tuple[Path, ...], with_paper: bool, core: str | None, fmt: str | None, out: Path | None
) -> None:
    """Table 3: sparse MSDA against MiT stages 3-4, from bench_sparse_msda.py CSVs and/or records.

    \b
    Example:
      vssbench table speed benchmarks/results/sparse_msda_cpu.csv --with-paper
      vssbench table speed benchmarks/results/sparse_msda_cpu.csv runs/profile/
    """
    _check_out(out)
    csv_rows: list[dict[str, str]] = []
    record_paths = []
    for p in inputs:
        if p.suffix.lower() == ".csv":
            csv_rows.extend(read_speed_csv(p))
        else:
            record_paths.append(p)
    records = load_records(record_paths) if record_paths else []
    _write(
        render(speed_table(csv_rows, records, with_paper=with_paper, core=core), _format_for(fmt, out)), out
    )


@click.command("compare", short_help="Bootstrap interval of RUN_A - RUN_B (over seeds, then videos).")
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "--metric",
    "metrics",
    type=CommaList(),
    default="mIoU,mVC8,mVC16",
    show_default=True,
    help="Comma list of metrics.",
)
@click.option("--samples", type=int, default=2000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--level",
    type=float,
    default=0.95,
    show_default=True,
    help="Confidence level of the percentile interval.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {metric: {"diff", "low", "high", "a", "b"}} (fractions; groups add "seeds_a", "seeds_b").',
)
def compare_cmd(
    run_a: str, run_b: str, metrics: list[str], samples: int, seed: int, level: float, as_json: bool
) -> None:
    """Bootstrap interval of RUN_A - RUN_B from the runs' videos.jsonl.

    RUN_A and RUN_B are each a run folder, a folder holding one or several runs (every run
    below it, such as runs/<row> of `vssbench reproduce` with one run per seed), or folders
    joined by commas (a1,a2,a3). Two single runs: a paired bootstrap over videos; each resample
    draws the videos with replacement and pools them as the official metrics do (IoU from the
    summed confusion matrices, VC from the summed window scores). Groups: the runs of one row
    trained with different seeds, paired by their records' train_seed; each resample draws the
    paired seeds, then the videos of each, and averages the seeds' metrics. Refused when the
    runs' videos or conditions differ, or when a group's runs are not one row's (same method,
    backbone, options, conditions; different checkpoints).

    \b
    Examples:
      vssbench compare runs/tfc-b0-<hash> runs/segformer-b0-<hash>
      vssbench compare study/runs/tfc-b0 study/runs/segformer-b0
      vssbench compare runs/tfc/s0,runs/tfc/s1,runs/tfc/s2 runs/seg/s0,runs/seg/s1,runs/seg/s2
    """
    result = compare_groups(run_a, run_b, metrics, samples=samples, seed=seed, level=level)
    intervals = result.intervals
    left_out = f"left out (no run with the same train_seed on the other side): {'; '.join(result.left_out)}"
    if as_json:
        if result.left_out:
            click.echo(left_out, err=True)  # stdout holds the JSON alone
        data = intervals_to_json(intervals)
        if not result.single:
            for entry in data.values():
                entry.update(seeds_a=list(result.seeds_a), seeds_b=list(result.seeds_b))
        click.echo(json.dumps(to_jsonable(data), indent=2, allow_nan=False))
        return
    if result.single:
        click.echo(
            f"A = {result.runs_a[0]}\nB = {result.runs_b[0]}\n"
            f"A - B, {100 * level:g}% paired-bootstrap interval "
            f"({samples} resamples over videos, seed {seed}):"
        )
        means = ""
    else:
        for side, runs, seeds in (("A", result.runs_a, result.seeds_a), ("B", result.runs_b, result.seeds_b)):
            n = len(runs)
            click.echo(
                f"{side} = {n} seed{'' if n == 1 else 's'} (train_seed {seeds_text(seeds)}): "
                + ", ".join(str(r) for r in runs)
            )
        if result.left_out:
            click.echo(left_out)
        click.echo(
            f"A - B, {100 * level:g}% bootstrap interval over seeds, then videos "
            f"({samples} resamples, seeds paired by train_seed, seed {seed}):"
        )
        means = ", means over seeds"
    for name, iv in intervals.items():
        click.echo(f"  {name:<7} {iv.format()}   (A {100 * iv.a:.1f}, B {100 * iv.b:.1f}{means})")


@click.group("plot", short_help="Figures: Fig. 4 mask accuracy, Fig. 3 masks, trade-off, curves.")
def plot_group() -> None:
    """Figures: mask-accuracy (Fig. 4), masks (Fig. 3), tradeoff, curves."""


_FIG_OUT = click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="FILE.png, .pdf or .svg (its folder must exist).",
)


def _saved(fig: Any, out: Path) -> None:
    click.echo(f"wrote {save_figure(fig, out)}", err=True)


@plot_group.command("mask-accuracy", short_help="Fig. 4: binary-mask accuracy against iteration.")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--smooth", "window", type=int, default=1, show_default=True, help="Moving-average window (log points)."
)
@click.option(
    "--trivial",
    default="auto",
    show_default=True,
    help="Dashed all-consistent reference: auto (from the first log's training data), none, or a fraction.",
)
@click.option(
    "--trivial-videos", type=int, default=20, show_default=True, help="Videos read for --trivial auto."
)
@_FIG_OUT
def plot_mask_accuracy(
    logs: tuple[Path, ...], window: int, trivial: str, trivial_videos: int, out: Path
) -> None:
    """Fig. 4: binary-mask accuracy against iteration from training logs (DIR or DIR/log.jsonl).

    \b
    Example:
      vssbench plot mask-accuracy train/tfc-b0 train/tfc-b0-nofocal --smooth 20 --out fig4.png
    """
    _check_out(out)
    read = read_logs(logs)
    reference: float | None
    if trivial == "none":
        reference = None
    elif trivial == "auto":
        config = read[0].config
        interval = (config.get("options") or {}).get("interval") or config.get("interval") or 4
        reference = consistent_share(
            config.get("data"), config.get("split", "train"), int(interval), trivial_videos
        )
        click.echo(f"all-consistent mask accuracy on the training data: {100 * reference:.1f}%", err=True)
    else:
        try:
            reference = float(trivial)
        except ValueError:
            raise OptionError(f"--trivial must be auto, none or a fraction, got {trivial!r}") from None
    _saved(mask_accuracy_figure(read, window=window, trivial=reference), out)


@plot_group.command("curves", short_help="Training loss terms and validation metrics against iteration.")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--keys", type=CommaList(), default=None, help="Comma list of log keys (default: every numeric key)."
)
@click.option(
    "--smooth",
    "window",
    type=int,
    default=1,
    show_default=True,
    help="Moving-average window of training keys.",
)
@_FIG_OUT
def plot_curves(logs: tuple[Path, ...], keys: list[str] | None, window: int, out: Path) -> None:
    """Training loss terms and validation metrics against iteration.

    \b
    Example:
      vssbench plot curves train/tfc-b0 --keys loss,loss_seg,loss_bce,val_mIoU --out curves.png
    """
    _check_out(out)
    _saved(curves_figure(read_logs(logs), keys=keys or None, window=window), out)


@plot_group.command("tradeoff", short_help="A metric against FPS, GMACs or Params, one colour per method.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--x",
    "x",
    default="fps",
    show_default=True,
    help=f"Cost axis: {', '.join(TRADEOFF_X)} (--with-paper: fps or params, the paper's columns).",
)
@click.option(
    "--y", "y", default="mVC8", show_default=True, help="Any record metric (mVC8, mVC16, mIoU, ...)."
)
@click.option("--size", default="mIoU", show_default=True, help="Record metric for the marker area.")
@_WITH_PAPER
@_EFFICIENCY_FROM
@_FIG_OUT
def plot_tradeoff(
    runs: tuple[Path, ...],
    x: str,
    y: str,
    size: str,
    with_paper: bool,
    efficiency_from: Path | None,
    out: Path,
) -> None:
    """Stability (mVC8) against speed (FPS) or cost (GMACs/frame), one colour per method.

    Marker area follows --size (legend); a method's backbones are joined by a line. With
    --with-paper the paper's Table 1 points are added: on the same axes for --x params, in a
    panel of their own for --x fps (its GPU at 480x853 is not our machine); the paper has no
    GMACs per frame, so --x gmacs_* --with-paper is refused. FPS timed on a busy machine are
    drawn hollow. --efficiency-from takes each run's costs from its `vssbench profile` record
    (same method, backbone and options), as `table main` does.

    \b
    Example:
      vssbench plot tradeoff runs/ --x gmacs_per_frame --y mVC16 --out tradeoff.png
      vssbench plot tradeoff runs/ --x fps --with-paper --out tradeoff-fps.png
    """
    _check_out(out)
    records = load_records(runs)
    profiles = _profile_records(efficiency_from)
    if profiles is not None:
        records = with_profile_costs(records, profiles)
    _saved(tradeoff_figure(records, x=x, y=y, size=size, with_paper=with_paper), out)


@plot_group.command("masks", short_help="Fig. 3: predicted and true label-change masks (runs a model).")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--video", default=None, help="Video id (default: the split's first).")
@click.option(
    "--frames",
    type=IntList(one_line=True),
    default="1,2,3",
    show_default=True,
    help="Comma list of non-keyframe indices.",
)
@click.option("--method", default=None, help="Method of a checkpoint (default: from the run/checkpoint).")
@click.option("--backbone", default=None, help="Backbone of a checkpoint (default: from the run/checkpoint).")
@click.option(
    "--data",
    "data_root",
    default=None,
    help="VSPW root (default: the run's, else the embedded synthetic one).",
)
@click.option("--split", default=None, help="Split (default: the run's, else val).")
@click.option(
    "--size",
    type=Size(),
    default=None,
    help="Test resolution HxW (default: the run's, else the frames' own size).",
)
@click.option(
    "--set",
    "sets",
    type=KeyValue(),
    multiple=True,
    metavar="KEY=VALUE",
    help="Method option (repeatable), e.g. threshold=0.5.",
)
@_FIG_OUT
def plot_masks(
    source: Path,
    video: str | None,
    frames: list[int],
    method: str | None,
    backbone: str | None,
    data_root: str | None,
    split: str | None,
    size: tuple[int, int] | None,
    sets: tuple[tuple[str, str], ...],
    out: Path,
) -> None:
    """Fig. 3: keyframe, frame, predicted mask (w < threshold) and true label-change mask.

    SOURCE is a run folder (config.json: method, backbone, options, checkpoint, data), a folder
    holding one run, a training folder (config.json + model.pth) or a checkpoint file. This plot
    runs the model, at the run's resolution, else at the frames' own size. In the true mask,
    white is a changed label, black an unchanged one, grey a void pixel (label 255 in the
    keyframe or the frame), which no accuracy counts.

    \b
    Examples:
      vssbench plot masks runs/tfc-b5-<hash> --video 1001_xyz --frames 2,5,7 --out fig3.png
      vssbench plot masks tfc_b0.pth --method tfc --backbone b0 --frames 1,2,3 --out fig3.png
    """
    _check_out(out)
    source_info = load_mask_source(source, method=method, backbone=backbone)
    fig = render_masks(
        source_info,
        video=video,
        frames=frames,
        data=data_root,
        split=split,
        size=size,
        options=dict(sets),
    )
    _saved(fig, out)
