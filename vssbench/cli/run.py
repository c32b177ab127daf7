"""``vssbench run`` and ``vssbench profile``: thin shells over :func:`vssbench.harness.run_sweep` and
:func:`vssbench.harness.profile_sweep`, sharing one set of model options (:func:`_model_options`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from vssbench.cli.params import CommaList, KeyValue, Size
from vssbench.errors import OptionError
from vssbench.harness import build_configs, profile_sweep, run_sweep, setup_distributed
from vssbench.harness.paper_profile import format_paper_profile, paper_profile
from vssbench.harness.profile import write_records
from vssbench.harness.runner import RunInterrupted
from vssbench.results.records import format_table


def _model_options(f: Any) -> Any:
    """The options shared by `run` and `profile`: what is built, on what, and how it is measured.

    The command receives them as keyword arguments; :func:`_configs_from` turns them (plus the
    command's own fields) into run configs.
    """
    options = [
        click.option(
            "--backbone",
            type=CommaList(),
            default="b0",
            show_default=True,
            help="MiT backbone b0..b5 (comma list or glob).",
        ),
        click.option(
            "--checkpoint",
            multiple=True,
            metavar="[METHOD[:BACKBONE]=]PATH",
            help="Weights to load (omitted: random init, accuracy meaningless and TFC's "
            "content-dependent cost untrained). Repeatable: a plain PATH for every row, "
            "METHOD=PATH or METHOD:BACKBONE=PATH for those rows (the most specific wins).",
        ),
        click.option(
            "--checkpoint-format", default="auto", show_default=True, help="auto, vssbench, mmseg, mit or hf."
        ),
        click.option(
            "--non-strict",
            is_flag=True,
            help="Load only the checkpoint keys that fit (a partial load; the record marks it).",
        ),
        click.option(
            "--interval",
            type=int,
            default=None,
            help="Keyframe interval, also the GMACs/FPS averaging window (default: the method's).",
        ),
        click.option(
            "--decoder-dim",
            type=int,
            default=None,
            help="Decoder embedding dim (default: the method's, 256).",
        ),
        click.option(
            "--set",
            "sets",
            type=KeyValue(),
            multiple=True,
            metavar="KEY=VALUE",
            help="Method option (repeatable); METHOD.KEY=VALUE sets it for that method only "
            "(tfc.threshold=0.5).",
        ),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option(
            "--dtype",
            type=click.Choice(["float32", "float16", "bfloat16"]),
            default="float32",
            show_default=True,
        ),
        click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)."),
        click.option(
            "--size-divisor", type=int, default=None, help="Round both sides up to a multiple (CFFM: 32)."
        ),
        click.option(
            "--warmup", type=int, default=1, show_default=True, help="FPS: untimed warm-up intervals."
        ),
        click.option(
            "--repeats",
            type=int,
            default=None,
            help="FPS: timed intervals (median)  [default: enough for ~10 s of timing, 3..30]",
        ),
        click.option(
            "--fps-timing",
            type=click.Choice(["interleaved", "sequential"]),
            default="interleaved",
            show_default=True,
            help="FPS of several rows: timed together at the end, their intervals taking turns (the "
            "ratios between rows hold when the load changes), or each right after its own row.",
        ),
        click.option(
            "--decoder",
            type=click.Choice(["folded", "reference"]),
            default="folded",
            show_default=True,
            help="Decoder mode of every method: folded (exact, cheaper) or reference (the literal "
            "architecture's cost).",
        ),
        click.option("--num-classes", type=int, default=124, show_default=True),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of the (random) initialization."
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print only the records on stdout, as one JSON list (also for one row).",
        ),
        click.option(
            "--json-lines",
            "as_json_lines",
            is_flag=True,
            help="Print only the records on stdout, one JSON object per line.",
        ),
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


def _configs_from(
    methods: list[str], size: tuple[int, int], common: dict[str, Any], **fields: Any
) -> list[Any]:
    """Run configs for ``methods`` from :func:`_model_options`' values (``common``, output flags
    popped) and the command's own ``fields``."""
    options: dict[str, Any] = dict(common.pop("sets"))
    decoder_dim = common.pop("decoder_dim")
    if decoder_dim is not None:
        options["decoder_dim"] = decoder_dim
    return build_configs(
        methods, common.pop("backbone"), options=options, resolution=size, **common, **fields
    )


def _echo_output(records: list[dict], as_json: bool, as_json_lines: bool) -> None:
    """The records as JSON (``--json``: one indented list; ``--json-lines``: one compact object per
    line) or as the summary table."""
    if as_json_lines:
        for record in records:
            click.echo(json.dumps(record, allow_nan=False, separators=(",", ":")))
    elif as_json:
        click.echo(json.dumps(list(records), indent=2, allow_nan=False))
    else:
        click.echo(format_table(records))


@click.command("run")
@click.option(
    "--method",
    type=CommaList(),
    required=True,
    help="Method name, comma list or glob over the registry ('tfc,segformer', '*').",
)
@click.option(
    "--data", "data_root", default=None, help="VSPW root (omitted: the embedded synthetic VSPW-mini)."
)
@click.option("--split", default="val", show_default=True)
@click.option(
    "--size",
    type=Size(),
    default="480x853",
    show_default=True,
    help="Test resolution HxW (keep-ratio resize).",
)
@click.option("--max-videos", type=int, default=None, help="Evaluate only the first N videos of the split.")
@click.option("--max-frames", type=int, default=None, help="Evaluate only the first N frames of each video.")
@click.option(
    "--efficiency",
    type=click.Choice(["full", "fast", "none"]),
    default="full",
    show_default=True,
    help="full: params (with the dead-parameter search), GMACs, FPS; fast: no dead-parameter search; "
    "none: accuracy and params only.",
)
@click.option("--metric-preset", type=click.Choice(["vspw", "cffm"]), default="vspw", show_default=True)
@click.option(
    "--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Results store."
)
@click.option(
    "--resume", is_flag=True, help="Continue the run folder of the same config, skipping finished videos."
)
@click.option(
    "--save-preds",
    default=None,
    type=click.Path(file_okay=False),
    help="Write predictions as PNGs of class ids 0..123 (evaluation space, at the mask's size): "
    "DIR/<video>/<stem>.png for one row, "
    "DIR/<method>-<backbone>[-<options>]/<video>/<stem>.png per row of a sweep.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_model_options
def run_cmd(
    method: list[str],
    data_root: str | None,
    split: str,
    size: tuple[int, int],
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
      vssbench run --method segformer,tfc --checkpoint segformer=seg.pth --checkpoint tfc:b0=tfc.pth
      torchrun --nproc-per-node 4 -m vssbench run --method tfc --device cuda --data data/vspw/VSPW_480p
    """
    as_json, as_json_lines = _output_flags(common)
    fps_timing = common.pop("fps_timing")
    configs = _configs_from(
        method,
        size,
        common,
        data=data_root,
        split=split,
        max_videos=max_videos,
        max_frames=max_frames,
        metric_preset=metric_preset,
    )
    is_main = setup_distributed(common["device"]).is_main
    try:
        records = run_sweep(
            configs,
            out=out,
            resume=resume,
            save_preds=save_preds,
            progress=not quiet,
            efficiency=efficiency,
            fps_timing=fps_timing,
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


@click.command("profile")
@click.option(
    "--method",
    type=CommaList(),
    default=None,
    help="Method name, comma list or glob over the registry (required without --paper).",
)
@click.option("--size", type=Size(), default="480x853", show_default=True, help="Input size HxW.")
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
    help="Paper-comparable GMACs instead: SegFormer and TFC on B0 and B5 at 480x480, decoder widths 256 "
    "and 768, reference decoder (unless --decoder is given), next to the paper's Sec. 4.2 values. No FPS.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Also write the records as one JSON list to DIR/records.json (DIR created).",
)
@_model_options
def profile_cmd(
    method: list[str] | None,
    size: tuple[int, int],
    frames: str,
    paper: bool,
    out: str | None,
    **common: Any,
) -> None:
    """Params (grouped, dead), GMACs and per-interval FPS without data.

    The inputs are one keyframe interval of a synthetic video rendered at --size (moving
    objects, camera pan), so that methods whose cost depends on content (TFC updates the points
    that changed) are measured on a real-looking video; --frames random uses independent random
    images instead.

    The record has the same keys as `vssbench run`'s, accuracy keys null. --json prints a JSON
    list (also for one row), --json-lines one record per line; --out DIR also writes that list to
    DIR/records.json (replaced whole, never half-written). Each row may have its own checkpoint
    (--checkpoint METHOD=PATH or METHOD:BACKBONE=PATH). Exit status 1 when any row has an
    error, 2 for bad input (options, checkpoint).

    \b
    Examples:
      vssbench profile --method tfc --backbone b0
      vssbench profile --method 'segformer,tfc' --backbone b1 --size 512x512 --num-classes 150 --json
      vssbench profile --method tfc --decoder reference
      vssbench profile --method segformer,tfc --checkpoint segformer=seg.pth --checkpoint tfc=tfc.pth \\
        --out profiles/
      vssbench profile --paper
    """
    if paper:
        if out is not None:
            raise click.UsageError("--out writes profile records; --paper prints the paper comparison")
        source = click.get_current_context().get_parameter_source("decoder")
        mode = common["decoder"] if source == click.core.ParameterSource.COMMANDLINE else "reference"
        rows = paper_profile(decoder=mode, seed=common["seed"])
        text = (
            json.dumps(rows, indent=2, allow_nan=False) if common["as_json"] else format_paper_profile(rows)
        )
        click.echo(text)
        return
    if method is None:
        raise click.UsageError("--method is required (or use --paper)")

    as_json, as_json_lines = _output_flags(common)
    fps_timing = common.pop("fps_timing")
    records = profile_sweep(_configs_from(method, size, common), frames=frames, fps_timing=fps_timing)
    _echo_output(records, as_json, as_json_lines)
    if out is not None:
        try:
            path = write_records(records, out)
        except OSError as exc:
            raise OptionError(f"--out {out}: cannot write the records ({exc.strerror or exc})") from None
        click.echo(f"wrote {len(records)} records to {path}", err=True)
    if any(r.get("error") for r in records):
        sys.exit(1)
