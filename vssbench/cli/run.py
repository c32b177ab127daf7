"""The ``vssbench`` command line: a thin click shell, each command one library call."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

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


@main.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print the descriptions as JSON.")
def methods_cmd(as_json: bool) -> None:
    """List the registered methods with their paper, type and options (the keys of --set).

    \b
    Example:
      vssbench methods
    """
    import json as _json

    from vssbench.methods import available, describe

    described = [describe(name) for name in available()]
    if as_json:
        click.echo(_json.dumps(described, indent=2))
        return
    for d in described:
        click.echo(f"{d['name']}  [{d['type']}]  {d['paper']}")
        if d["description"]:
            click.echo(f"    {d['description']}")
        click.echo("    options: " + ", ".join(f"{k}={v!r}" for k, v in d["options"].items()))


@main.group()
def data() -> None:
    """Dataset utilities: synthesize a VSPW-mini, check a VSPW tree."""


@data.command("synth")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--difficulty", default="easy", show_default=True,
              help="Preset: easy (the original scenes), medium, hard, or study (the synthetic study's data: "
                   "small frames, few classes, calibrated so that per-frame SegFormer-B0 flickers).")
@click.option("--knob", "knobs", multiple=True, metavar="KEY=VALUE",
              help="Override one difficulty knob (repeatable), e.g. --knob noise=8 --knob lookalike=0.5. "
                   "Knobs: noise, jpeg_quality, jpeg_jitter, brightness_flicker, white_balance_flicker, motion_blur, "
                   "shake, speed, min_objects, max_objects, object_scale, lookalike, thin, object_classes, band_choices.")
@click.option("--videos", type=int, default=None, help="Number of videos (split over train/val)  [default: 4; study: 36]")
@click.option("--val-videos", type=int, default=None,
              help="Videos in the val split (the first ones); one more goes to test, the rest to train  "
                   "[default: half the videos; study: 6 of its 36]")
@click.option("--frames", type=int, default=None, help="Frames per video  [default: 20; study: 24]")
@click.option("--size", default=None, help="Frame size HxW  [default: 180x320; study: 96x160]")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(
    out: Path, difficulty: str, knobs: tuple[str, ...], videos: int | None, val_videos: int | None, frames: int | None,
    size: str | None, seed: int,
) -> None:
    """Write a synthetic dataset in the exact VSPW layout.

    \b
    Example:
      vssbench data synth --out /tmp/vspw-mini --videos 6 --frames 24 --size 240x427
      vssbench data synth --out /tmp/vspw-study --difficulty study
      vssbench data synth --out /tmp/vspw-noisy --knob noise=10 --knob jpeg_quality=40
    """
    from vssbench.data.synth import PRESET_SHAPES, write_dataset
    from vssbench.errors import OptionError

    overrides: dict[str, str] = {}
    for item in knobs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--knob {item!r}: expected KEY=VALUE, e.g. noise=8")
        overrides[key.strip()] = value.strip()
    hw = None
    if size is not None:
        try:
            hw = parse_size(size)
        except click.BadParameter as exc:
            raise OptionError(f"--size {size}: {exc.message}") from None
    if videos is None and difficulty not in PRESET_SHAPES:
        videos = 4  # the command's default; a preset's own shape comes from write_dataset
    root = write_dataset(
        out, difficulty=difficulty, videos=videos, frames=frames, size=hw, seed=seed, val_videos=val_videos, **overrides
    )
    click.echo(f"wrote synthetic VSPW-mini ({difficulty}) to {root}")


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


def _model_options(f: Any) -> Any:
    """The options shared by `run` and `profile`: what is built, on what, and how it is measured.

    The command receives them as keyword arguments; :func:`_configs_from` turns them (plus the
    command's own fields) into run configs.
    """
    options = [
        click.option("--backbone", default="b0", show_default=True, help="MiT backbone b0..b5 (comma list or glob)."),
        click.option("--checkpoint", default=None,
                     help="Weights to load (omitted: random init, accuracy meaningless and TFC's content-dependent "
                          "cost untrained)."),
        click.option("--checkpoint-format", default="auto", show_default=True, help="auto, vssbench, mmseg, mit or hf."),
        click.option("--non-strict", is_flag=True,
                     help="Load only the checkpoint keys that fit (a partial load; the record marks it)."),
        click.option("--interval", type=int, default=None,
                     help="Keyframe interval, also the GMACs/FPS averaging window (default: the method's)."),
        click.option("--decoder-dim", type=int, default=None, help="Decoder embedding dim (default: the method's, 256)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Method option (repeatable); METHOD.KEY=VALUE sets it for that method only "
                          "(tfc.threshold=0.5)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32",
                     show_default=True),
        click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)."),
        click.option("--size-divisor", type=int, default=None, help="Round both sides up to a multiple (CFFM: 32)."),
        click.option("--warmup", type=int, default=1, show_default=True, help="FPS: untimed warm-up intervals."),
        click.option("--repeats", type=int, default=None,
                     help="FPS: timed intervals (median)  [default: enough for ~10 s of timing, 3..30]"),
        click.option("--decoder", type=click.Choice(["folded", "reference"]), default="folded", show_default=True,
                     help="Decoder mode of every method: folded (exact, cheaper) or reference (the literal "
                          "architecture's cost)."),
        click.option("--num-classes", type=int, default=124, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the (random) initialization."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print only the records on stdout, as one JSON list (also for one row)."),
        click.option("--json-lines", "as_json_lines", is_flag=True,
                     help="Print only the records on stdout, one JSON object per line."),
    ]
    for option in reversed(options):  # click lists options in decorator order, top first
        f = option(f)
    return f


def _output_flags(common: dict[str, Any]) -> tuple[bool, bool]:
    """Pop (``--json``, ``--json-lines``) out of :func:`_model_options`' values; they exclude each other."""
    as_json, as_json_lines = common.pop("as_json"), common.pop("as_json_lines")
    if as_json and as_json_lines:
        raise click.UsageError("--json and --json-lines exclude each other")
    return as_json, as_json_lines


def _configs_from(method: str, size: str, common: dict[str, Any], **fields: Any) -> list[Any]:
    """Run configs for ``method`` from :func:`_model_options`' values (``common``, output flags
    popped) and the command's own ``fields``."""
    from vssbench.harness import build_configs

    options = parse_sets(common.pop("sets"))
    decoder_dim = common.pop("decoder_dim")
    if decoder_dim is not None:
        options["decoder_dim"] = decoder_dim
    return build_configs(method, common.pop("backbone"), options=options, resolution=parse_size(size), **common, **fields)


def _echo_output(records: list[dict], as_json: bool, as_json_lines: bool) -> None:
    """The records as JSON (``--json``/``--json-lines``) or as the summary table."""
    from vssbench.harness import format_table

    if as_json or as_json_lines:
        echo_records(records, lines=as_json_lines)
    else:
        click.echo(format_table(records))


@main.command("run")
@click.option("--method", required=True, help="Method name, comma list or glob over the registry ('tfc,segformer', '*').")
@click.option("--data", "data_root", default=None, help="VSPW root (omitted: the embedded synthetic VSPW-mini).")
@click.option("--split", default="val", show_default=True)
@click.option("--size", default="480x853", show_default=True, help="Test resolution HxW (keep-ratio resize).")
@click.option("--max-videos", type=int, default=None, help="Evaluate only the first N videos of the split.")
@click.option("--max-frames", type=int, default=None, help="Evaluate only the first N frames of each video.")
@click.option(
    "--efficiency",
    type=click.Choice(["full", "fast", "none"]),
    default="full",
    show_default=True,
    help="full: params (with the dead-parameter search), GMACs, FPS; fast: no dead-parameter search; none: accuracy "
    "and params only.",
)
@click.option("--metric-preset", type=click.Choice(["vspw", "cffm"]), default="vspw", show_default=True)
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Results store.")
@click.option("--resume", is_flag=True, help="Continue the run folder of the same config, skipping finished videos.")
@click.option(
    "--save-preds",
    default=None,
    type=click.Path(file_okay=False),
    help="Write predictions as PNGs of class ids 0..123 (evaluation space, at the mask's size): DIR/<video>/<stem>.png "
    "for one row, DIR/<method>-<backbone>[-<options>]/<video>/<stem>.png per row of a sweep.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_model_options
def run_cmd(
    method: str,
    data_root: str | None,
    split: str,
    size: str,
    max_videos: int | None,
    max_frames: int | None,
    efficiency: str,
    metric_preset: str,
    out: str,
    resume: bool,
    save_preds: str | None,
    quiet: bool,
    **common: Any,
) -> None:
    """Evaluate methods over a split; print a summary row each and write records to --out.

    Each method x backbone gets a folder <out>/<method>-<backbone>[-<options>]-<config_hash>/ (the
    options tag names the options set away from the method's defaults) with record.json,
    config.json, log.txt, videos.jsonl and per_class.csv; nothing is written for a run that fails
    its checks (options, data, checkpoint). Without --resume an existing folder of the same config
    is replaced (stderr says so when it held finished videos); with --resume its finished videos
    are kept and skipped, and a run with nothing left is not measured or written again. The
    checkpoint's sha256 is part of the config: --resume refuses a checkpoint whose content
    changed. A method that fails becomes a row with an error (traceback in its log.txt) and the
    sweep goes on. Ctrl-C stops after the video being written; rerun with --resume to continue.

    --json prints a JSON list of records (always a list, also for one row: `jq '.[0].mIoU'`);
    --json-lines prints one record per line (`jq -c 'select(.error == null)'`); nothing else
    goes to stdout then. Under torchrun (WORLD_SIZE > 1) videos are sharded across ranks and rank
    0 alone prints and writes the records.

    Exit status: 0 when every run succeeded, 1 when any row has an error, 2 for bad input (data,
    options, checkpoint), 130 when interrupted (Ctrl-C).

    \b
    Examples:
      vssbench run --method tfc --backbone b0
      vssbench run --method 'tfc,segformer' --backbone b0,b1 --data data/vspw/VSPW_480p --json
      vssbench run --method tfc --set threshold=0.5 --set interp=hard --interval 6
      vssbench run --method '*' --set tfc.threshold=0.5 --save-preds preds/
      torchrun --nproc-per-node 4 -m vssbench run --method tfc --device cuda --data data/vspw/VSPW_480p
    """
    from vssbench.harness import run_sweep, setup_distributed
    from vssbench.harness.runner import RunInterrupted

    as_json, as_json_lines = _output_flags(common)
    configs = _configs_from(
        method, size, common, data=data_root, split=split, max_videos=max_videos, max_frames=max_frames,
        metric_preset=metric_preset,
    )
    is_main = setup_distributed(common["device"]).is_main
    try:
        records = run_sweep(
            configs, out=out, resume=resume, save_preds=save_preds, progress=not quiet, efficiency=efficiency
        )
    except RunInterrupted as exc:
        click.echo(f"\n{exc}" if not quiet else str(exc), err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted before the first video finished; nothing to resume", err=True)
        sys.exit(130)
    if is_main:
        _echo_output(records, as_json, as_json_lines)
        if not (as_json or as_json_lines):
            for record in records:
                if record.get("run_dir"):
                    click.echo(f"record: {record['run_dir']}/record.json", err=True)
    if any(r.get("error") for r in records):
        sys.exit(1)


@main.command("profile")
@click.option("--method", default=None, help="Method name, comma list or glob over the registry (required without --paper).")
@click.option("--size", default="480x853", show_default=True, help="Input size HxW.")
@click.option(
    "--frames",
    type=click.Choice(["video", "random"]),
    default="video",
    show_default=True,
    help="Inputs: a rendered synthetic video, or random images (content-dependent methods' costliest case).",
)
@click.option(
    "--paper",
    is_flag=True,
    help="Paper-comparable GMACs instead: SegFormer and TFC on B0 and B5 at 480x480, decoder widths 256 and 768, "
    "reference decoder (unless --decoder is given), next to the paper's Sec. 4.2 values. No FPS.",
)
@_model_options
def profile_cmd(method: str | None, size: str, frames: str, paper: bool, **common: Any) -> None:
    """Params (grouped, dead), GMACs and per-interval FPS without data.

    The inputs are one keyframe interval of a synthetic video rendered at --size (moving
    objects, camera pan), so that methods whose cost depends on content (TFC updates the points
    that changed) are measured on a real-looking video; --frames random uses independent random
    images instead.

    The record has the same keys as `vssbench run`'s, accuracy keys null. --json prints a JSON
    list (also for one row), --json-lines one record per line. Exit status 1 when any row has an
    error, 2 for bad input (options, checkpoint).

    \b
    Examples:
      vssbench profile --method tfc --backbone b0
      vssbench profile --method 'segformer,tfc' --backbone b1 --size 512x512 --num-classes 150 --json
      vssbench profile --method tfc --decoder reference
      vssbench profile --paper
    """
    import json as _json

    if paper:
        from vssbench.harness.paper_profile import format_paper_profile, paper_profile

        source = click.get_current_context().get_parameter_source("decoder")
        mode = common["decoder"] if source == click.core.ParameterSource.COMMANDLINE else "reference"
        rows = paper_profile(decoder=mode, seed=common["seed"])
        click.echo(_json.dumps(rows, indent=2, allow_nan=False) if common["as_json"] else format_paper_profile(rows))
        return
    if method is None:
        raise click.UsageError("--method is required (or use --paper)")

    from vssbench.harness import profile_sweep

    as_json, as_json_lines = _output_flags(common)
    records = profile_sweep(_configs_from(method, size, common), frames=frames)
    _echo_output(records, as_json, as_json_lines)
    if any(r.get("error") for r in records):
        sys.exit(1)


def echo_records(records: list[dict], lines: bool = False) -> None:
    """Records on stdout: one JSON list (indented), or with ``lines`` one compact object per line."""
    import json as _json

    if lines:
        for record in records:
            click.echo(_json.dumps(record, allow_nan=False, separators=(",", ":")))
    else:
        click.echo(_json.dumps(list(records), indent=2, allow_nan=False))


def parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    """Parse repeated ``--set key=value`` into a dict (values stay strings; the method coerces them)."""
    options: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        options[key.strip()] = value.strip()
    return options


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` into (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW (e.g. 480x853), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise click.BadParameter(f"sides must be positive, got {text!r}")
    return h, w


# Reports (vssbench/reports/cli.py): tables, paired bootstrap, figures.
from vssbench.reports.cli import compare as _compare_cmd, plot as _plot_group, table as _table_group  # noqa: E402

main.add_command(_table_group)
main.add_command(_compare_cmd)
main.add_command(_plot_group)

from vssbench.training.cli import train_cmd as _train_cmd  # noqa: E402

main.add_command(_train_cmd)

from vssbench.harness.reproduce_cli import reproduce_cmd as _reproduce_cmd  # noqa: E402

main.add_command(_reproduce_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()
