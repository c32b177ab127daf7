"""Training benchmark (not a test): `vssbench train --preset synthetic` on CPU.

Trains TFC-B0 (with and without the focal loss) and SegFormer-B0 on the embedded synthetic
VSPW-mini, plus SegFormer-B0 at two other learning rates (the measurement behind the synthetic
preset's lr), each run a separate `vssbench train --json` process, all in parallel with one
torch thread each. Records wall time, iterations/s, validation mIoU and mVC8 after training and
the final mask accuracy into benchmarks/results/train_cpu.csv, and keeps each run's log.jsonl and
config.json under benchmarks/results/train_synthetic/<run>/ (no .pth).

    python benchmarks/bench_train.py                       # the preset's iterations
    python benchmarks/bench_train.py --iters 60 --crop 64x64 --batch-size 2   # a busy machine
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

RUNS: dict[str, list[str]] = {
    "tfc-b0-focal": ["--method", "tfc"],
    "tfc-b0-nofocal": ["--method", "tfc", "--set", "focal=false"],
    "segformer-b0": ["--method", "segformer"],
    "segformer-b0-lr6e-5": ["--method", "segformer", "--lr", "6e-5"],
    "segformer-b0-lr2e-3": ["--method", "segformer", "--lr", "2e-3"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--crop", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--val-videos", type=int, default=None)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--note", default="CPU shared with other jobs (load average > 10 on 2 cores)")
    args = parser.parse_args()

    common = ["--preset", "synthetic", "--threads", "1", "--json", "--quiet"]
    for flag, value in (
        ("--iters", args.iters),
        ("--crop", args.crop),
        ("--batch-size", args.batch_size),
        ("--val-videos", args.val_videos),
    ):
        if value is not None:
            common += [flag, str(value)]
    if args.iters is not None:  # validate once, at the end
        common += ["--val-every", str(args.iters), "--checkpoint-every", str(args.iters)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    procs = {}
    for name in args.runs.split(","):
        cmd = [sys.executable, "-m", "vssbench", "train", *RUNS[name], *common, "--out", str(tmp / name)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs[name] = (
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
            time.perf_counter(),
            cmd,
        )
    rows = []
    for name, (proc, began, _cmd) in procs.items():
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - began
        if proc.returncode != 0:
            print(f"{name} failed:\n{stderr[-2000:]}", file=sys.stderr)
            continue
        summary = json.loads(stdout)
        dest = RESULTS / "train_synthetic" / name
        dest.mkdir(parents=True, exist_ok=True)
        for file in ("log.jsonl", "config.json"):
            shutil.copy(tmp / name / file, dest / file)
        lines = [json.loads(line) for line in (tmp / name / "log.jsonl").read_text().splitlines()]
        train_lines = [line for line in lines if "loss" in line]
        first = train_lines[: max(1, len(train_lines) // 10)]
        last = train_lines[-max(1, len(train_lines) // 10) :]

        def mean(key: str, part: list[dict]) -> float | None:
            values = [line[key] for line in part if line.get(key) is not None]
            return round(sum(values) / len(values), 4) if values else None

        config = json.loads((tmp / name / "config.json").read_text())
        rows.append(
            {
                "run": name,
                "method": summary["method"],
                "backbone": summary["backbone"],
                "preset": summary["preset"],
                "iters": summary["iterations"],
                "batch_size": config["batch_size"],
                "crop": "x".join(map(str, config["crop"])),
                "lr": config["lr"],
                "warmup_iters": config["warmup_iters"],
                "options": json.dumps(config["options"]),
                "wall_s": round(wall, 1),
                "train_s": summary["time_s"],
                "iters_per_s": summary["iters_per_s"],
                "loss_first10pct": mean("loss", first),
                "loss_last10pct": mean("loss", last),
                "mask_acc_first10pct": mean("mask_acc", first),
                "mask_acc_last10pct": mean("mask_acc", last),
                "val_mIoU": summary["val"].get("val_mIoU"),
                "val_mVC8": summary["val"].get("val_mVC8"),
                "val_videos": summary["val"].get("val_videos"),
                "threads": 1,
                "parallel_runs": len(procs),
                "note": args.note,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if rows:
        out = RESULTS / "train_cpu.csv"
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
