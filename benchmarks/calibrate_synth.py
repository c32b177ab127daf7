"""Calibrate the synthetic study's difficulty: train per-frame SegFormer-B0, measure mIoU and mVC8.

The study needs data on which a per-frame model, once trained, is unstable (val mVC8 <= 85) while
the task is still learned (val mIoU >= 50). This script runs exactly the commands of
``vssbench reproduce table1 --methods segformer`` (the study's dataset, training schedule and
evaluation settings, from :func:`vssbench.study.plan.synthetic_settings`) with the given
difficulty knobs on top, each in its own ``python -m vssbench`` process (the times include its
start, a few seconds), and appends one row to ``benchmarks/results/synth_calibration.csv``.
Only SegFormer's numbers decide the setting: never TFC's or any other method's.

Usage (from the repository root)::

    python benchmarks/calibrate_synth.py --note "the study preset"
    python benchmarks/calibrate_synth.py --knob noise=12 --knob lookalike=0.2 --note "noisier"
    python benchmarks/calibrate_synth.py --iters 300 --note "the schedule twice as long"
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vssbench.data.synth import resolve_difficulty
from vssbench.reports.tables import load_records
from vssbench.study.plan import STUDY_ITERS, synthetic_settings

RESULTS = Path(__file__).resolve().parent / "results" / "synth_calibration.csv"
COLUMNS = [
    "created",
    "difficulty",
    "knobs",
    "videos",
    "frames",
    "size",
    "seed",
    "iters",
    "lr",
    "batch",
    "crop",
    "threads",
    "train_s",
    "eval_s",
    "final_loss",
    "mIoU",
    "mVC8",
    "mVC16",
    "loadavg",
    "note",
]


def _vssbench(argv: list[str]) -> None:
    """Run one ``vssbench`` command as a user would; a non-zero exit status raises CalledProcessError."""
    subprocess.run([sys.executable, "-m", "vssbench", *argv], check=True)


def _option(args: tuple[str, ...], name: str) -> str:
    """The value of ``--name`` in a study argument tuple (either ``--name=v`` or ``--name v``)."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise KeyError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Difficulty knob on top of the study preset (repeatable).",
    )
    parser.add_argument(
        "--synth-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Override a dataset argument of the study (videos, val_videos, frames, size).",
    )
    parser.add_argument(
        "--iters", type=int, default=None, help=f"Training iterations (study: {STUDY_ITERS})."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    parser.add_argument(
        "--keep", type=Path, default=None, help="Work in this folder (kept) instead of a temporary one."
    )
    parser.add_argument("--no-record", action="store_true", help="Print only; do not append to the CSV.")
    args = parser.parse_args()

    knobs = dict(k.split("=", 1) for k in args.knob)
    settings = synthetic_settings(methods=("segformer",), iters=args.iters, seed=args.seed)
    synth_args = dict(a.lstrip("-").split("=", 1) for a in settings.synth_args)
    synth_args.update(kv.replace("-", "_").split("=", 1) for kv in args.synth_arg)
    settings = dataclasses.replace(
        settings, synth_args=tuple(f"--{k.replace('_', '-')}={v}" for k, v in synth_args.items())
    )
    difficulty = _option(settings.synth_args, "--difficulty")
    resolved = resolve_difficulty(difficulty, **knobs)  # a bad knob fails here, before any work
    iters = args.iters or STUDY_ITERS
    train_args = list(settings.train_args)
    if args.iters is not None:
        train_args[train_args.index("--iters") + 1] = str(iters)
        train_args[train_args.index("--val-every") + 1] = str(max(1, iters // 2))

    with tempfile.TemporaryDirectory(prefix="synth-cal-") as tmp:
        work = args.keep or Path(tmp)
        data, train, runs = work / "data", work / "train", work / "runs"
        _vssbench(
            [
                "data",
                "synth",
                "--out",
                str(data),
                *settings.synth_args,
                *(f"--knob={k}={v}" for k, v in knobs.items()),
            ]
        )
        start = time.perf_counter()
        _vssbench(
            [
                "train",
                "--method",
                "segformer",
                "--backbone",
                "b0",
                "--data",
                str(data),
                "--device",
                "cpu",
                "--seed",
                str(args.seed),
                *train_args,
                "--out",
                str(train),
            ]
        )
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        _vssbench(
            [
                "run",
                "--method",
                "segformer",
                "--backbone",
                "b0",
                "--data",
                str(data),
                "--device",
                "cpu",
                "--quiet",
                *settings.run_args,
                "--checkpoint",
                str(train / "model.pth"),
                "--out",
                str(runs),
                "--efficiency",
                "none",
            ]
        )
        eval_s = time.perf_counter() - start
        (record,) = load_records([runs])
        log = [json.loads(line) for line in (train / "log.jsonl").read_text().splitlines() if line.strip()]
        losses = [e["loss"] for e in log if "loss" in e]

    row = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "difficulty": difficulty,
        "knobs": json.dumps(resolved.to_dict(), sort_keys=True),
        "videos": "/".join(synth_args[k] for k in ("videos", "val_videos") if k in synth_args),
        "frames": _option(settings.synth_args, "--frames"),
        "size": _option(settings.synth_args, "--size"),
        "seed": args.seed,
        "iters": iters,
        "lr": "preset",
        "batch": "preset",
        "crop": _option(tuple(train_args), "--crop"),
        "threads": "",
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "final_loss": round(losses[-1], 4) if losses else "",
        "mIoU": round(100 * record["mIoU"], 2),
        "mVC8": round(100 * record["mVC8"], 2),
        "mVC16": round(100 * record["mVC16"], 2),
        "loadavg": round(os.getloadavg()[0], 1),
        "note": "study commands (vssbench train --preset synthetic + vssbench run); " + args.note,
    }
    print(json.dumps(row), flush=True)
    if not args.no_record:
        new = not RESULTS.exists()
        with RESULTS.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)


if __name__ == "__main__":
    main()
