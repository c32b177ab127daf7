"""The ``vssbench train`` command: a thin click shell over :func:`vssbench.training.run.train`."""

from __future__ import annotations

import json
import os
import sys

import click

from vssbench.cli.params import KeyValue, Size
from vssbench.training.hooks import STOPPED_EXIT_STATUS, TrainingStopped
from vssbench.training.recipes import TrainConfig, build_config
from vssbench.training.run import train


@click.command("train")
@click.option("--method", required=True, help="Registered method name (see `vssbench methods`).")
@click.option("--backbone", default="b0", show_default=True, help="MiT backbone b0..b5.")
@click.option(
    "--data", "data_root", default=None, help="VSPW root (omitted: the embedded synthetic VSPW-mini)."
)
@click.option("--split", default="train", show_default=True, help="Training split.")
@click.option(
    "--preset",
    type=click.Choice(["paper", "synthetic"]),
    default=None,
    help="Recipe (default: paper with --data, synthetic without).",
)
@click.option("--iters", type=int, default=None, help="Training iterations (preset's by default).")
@click.option("--batch-size", type=int, default=None, help="Clips per process per iteration.")
@click.option("--crop", type=Size(), default=None, help="Training crop HxW.")
@click.option(
    "--lr", type=float, default=None, help="Base (encoder) learning rate; other groups x head_lr_mult."
)
@click.option(
    "--param-rule",
    type=click.Choice(["mmcv", "timm"]),
    default=None,
    help="Weight-decay and lr groups: mmcv (the released configs' custom_keys, default) or timm "
    "(no decay on norms, depthwise convs and 1-D parameters).",
)
@click.option(
    "--init",
    default=None,
    help="Initial weights: ImageNet mit_bX.pth (encoder only) or a SegFormer checkpoint.",
)
@click.option(
    "--init-format",
    type=click.Choice(["auto", "mit", "mmseg", "hf", "vssbench"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--interval", type=int, default=None, help="Keyframe interval = clip length of keyframe methods."
)
@click.option(
    "--set", "sets", type=KeyValue(), multiple=True, metavar="KEY=VALUE", help="Method option (repeatable)."
)
@click.option("--val-every", type=int, default=None, help="Validate every N iterations (0: never).")
@click.option("--val-videos", type=int, default=None, help="Validate on the first N videos of the val split.")
@click.option("--val-size", type=Size(), default=None, help="Validation resolution HxW (keep-ratio).")
@click.option("--checkpoint-every", type=int, default=None, help="Write last.pth every N iterations.")
@click.option(
    "--log-every", type=int, default=None, help="One log.jsonl line per N iterations (window means)."
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Run folder (default: runs/train/<method>-<backbone>-<preset>).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from <out>/last.pth (same config required); a finished training is left as it is.",
)
@click.option(
    "--stop-at",
    type=int,
    default=None,
    help="End this invocation after N iterations in total (resume later).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, cuda or cuda:N (LOCAL_RANK's GPU under torchrun).",
)
@click.option("--amp/--no-amp", default=None, help="Mixed precision (CUDA only; default on with CUDA).")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
@click.option("--json", "as_json", is_flag=True, help="Print only a summary record as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(
    method: str,
    backbone: str,
    data_root: str | None,
    split: str,
    preset: str | None,
    iters: int | None,
    batch_size: int | None,
    crop: tuple[int, int] | None,
    lr: float | None,
    param_rule: str | None,
    init: str | None,
    init_format: str,
    interval: int | None,
    sets: tuple[tuple[str, str], ...],
    val_every: int | None,
    val_videos: int | None,
    val_size: tuple[int, int] | None,
    checkpoint_every: int | None,
    log_every: int | None,
    out: str | None,
    resume: bool,
    stop_at: int | None,
    device: str,
    amp: bool | None,
    workers: int,
    seed: int,
    threads: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a method with the paper's recipe (or its synthetic scale-down) into a run folder.

    Writes <out>/config.json, log.jsonl (one line per logged iteration: iter, loss, lr and every
    scalar the method returns; validation lines with val_mIoU, val_wIoU, val_mVC8, val_mVC16),
    last.pth (full state, for --resume), model.pth (weights: `vssbench run --checkpoint`) and
    best.pth (best validation mIoU). Exit status 2 for bad input and for a non-finite loss; 75 when
    SIGUSR1 or SIGTERM stopped it (after the current iteration, last.pth saved: run it again with
    --resume).

    \b
    Examples:
      vssbench train --method tfc --backbone b0
      vssbench train --method segformer --iters 50 --out runs/seg --json
      vssbench train --method tfc --data data/vspw/VSPW_480p --init mit_b0.pth --device cuda
      torchrun --nproc-per-node 8 -m vssbench train --method tfc --data data/vspw/VSPW_480p \\
          --init mit_b1.pth --backbone b1 --device cuda --out runs/tfc-b1
    """
    options: dict[str, object] = dict(sets)
    if interval is not None:
        options["interval"] = interval
    config = build_config(
        preset,
        method=method,
        backbone=backbone,
        options=options,
        data=data_root,
        split=split,
        iters=iters,
        batch_size=batch_size,
        crop=crop,
        lr=lr,
        param_rule=param_rule,
        init=init,
        init_format=init_format,
        val_every=val_every,
        val_videos=val_videos,
        val_size=val_size,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        device=device,
        amp=device.startswith("cuda") if amp is None else amp,
        workers=workers,
        seed=seed,
        threads=threads,
    )
    out = out or f"runs/train/{method}-{backbone}-{config.preset}"
    is_main = int(os.environ.get("RANK", "0")) == 0

    def announce(run: TrainConfig) -> None:
        if is_main:
            click.echo(
                f"training {method}-{backbone} ({run.preset} preset, {run.iters} iterations) into {out}",
                err=True,
            )

    try:
        summary = train(config, out, resume=resume, stop_at=stop_at, progress=not quiet, on_start=announce)
    except TrainingStopped as stopped:  # a signal: last.pth saved, not an input error (exit 75, not 2)
        if is_main:
            click.echo(f"train: {stopped}", err=True)
        sys.exit(STOPPED_EXIT_STATUS)
    if not is_main:
        return
    if as_json:
        click.echo(json.dumps(summary, indent=2, allow_nan=False, default=str))
    elif summary["already_complete"]:  # a resumed training that had finished: one line, nothing changed
        done = "wrote " + ", ".join(summary["wrote"]) if summary["wrote"] else "nothing changed"
        click.echo(
            f"training already complete ({summary['iterations']} of {summary['max_iterations']} "
            f"iterations); {done}; results in {summary['out']}: " + ", ".join(sorted(summary["paths"]))
        )
    else:
        final = summary["final"]
        val = summary["val"]
        click.echo(
            f"{summary['iterations']} iterations in {summary['time_s']:.0f} s; "
            f"loss {final.get('loss')}; val mIoU {val.get('val_mIoU')} mVC8 {val.get('val_mVC8')}"
        )
        click.echo(f"wrote {summary['out']}: " + ", ".join(sorted(summary["paths"])), err=True)
    sys.stdout.flush()


__all__ = ["train_cmd"]
