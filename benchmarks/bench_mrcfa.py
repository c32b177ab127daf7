"""Steady-state per-frame GMACs and FPS of MRCFA with and without its reference cache.

``vssbench profile`` averages over the first ``interval`` frames of a video; for MRCFA those are
mostly the per-frame fallback frames 0..2, so this script measures the steady state instead.
Every frame t >= 3 has a 4-frame clip (hard-coded clips for 3..8, [t-9, t-6, t-3, t] after), and
the work of a step depends only on the clip length, so frames 3.. cost exactly what frames
t >= 9 cost.

* GMACs (fvcore, one multiply-add = one): :func:`count_gmacs` over frames 0..3; the row keeps
  frame 3 (steady state), frame 0 (fallback) and the mean of frames 0..3 (the profile window).
* FPS: after ``reset()`` and frames 0..2 untimed, ``--frames`` frames from 3 on are timed one
  step each (``time.perf_counter``, inference mode); FPS = 1 / median step time.

Random init and random frames (neither cost depends on the weights or the content). Sizes are
aligned to multiples of 32 as the MRCFA protocol does (480x853 -> 480x864).

Example::

    python benchmarks/bench_mrcfa.py --backbones b0,b1 --out benchmarks/results/mrcfa_cpu.csv \\
        --note "busy shared 2-core CPU"
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import statistics
import time
from pathlib import Path

import torch

from vssbench.methods import create
from vssbench.profiling import count_gmacs, count_parameters, environment

FIELDS = [
    "method",
    "backbone",
    "mode",
    "params_M",
    "gmacs_per_frame",
    "gmacs_fallback",
    "gmacs_first_interval",
    "fps",
    "step_times_s",
    "size",
    "device",
    "torch",
    "threads",
    "date",
    "note",
]
STEADY = 3  # first frame with a 4-frame clip (same work as any t >= 9)


def measure(backbone: str, cache: bool, size: tuple[int, int], frames: int, seed: int = 0) -> dict:
    """One row: params, GMACs (steady, fallback, first interval) and steady-state FPS."""
    torch.manual_seed(seed)
    model = create("mrcfa", backbone=backbone, cache=cache)
    h, w = (math.ceil(s / 32) * 32 for s in size)
    generator = torch.Generator().manual_seed(seed)
    video = [torch.randn(1, 3, h, w, generator=generator) for _ in range(STEADY + frames)]
    gmacs = count_gmacs(model, video[: STEADY + 1], STEADY + 1)
    if gmacs["unsupported_ops"]:
        raise RuntimeError(f"unsupported ops: {gmacs['unsupported_ops']}")
    steps = gmacs["gmacs_per_step"]
    times: list[float] = []
    with torch.inference_mode():
        model.reset()
        for t, frame in enumerate(video):
            start = time.perf_counter()
            model.step(frame)
            if t >= STEADY:
                times.append(time.perf_counter() - start)
    return {
        "method": "mrcfa",
        "backbone": backbone,
        "mode": "cache" if cache else "recompute",
        "params_M": round(count_parameters(model)["total"] / 1e6, 3),
        "gmacs_per_frame": round(steps[STEADY], 3),
        "gmacs_fallback": round(steps[0], 3),
        "gmacs_first_interval": round(sum(steps[:4]) / 4, 3),
        "fps": round(1.0 / statistics.median(times), 4),
        "step_times_s": " ".join(f"{x:.3f}" for x in times),
        "size": f"{h}x{w}",
    }


def main() -> None:
    """Parse arguments, measure every backbone x mode, write the CSV."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", default="b0,b1")
    parser.add_argument("--modes", default="cache,recompute")
    parser.add_argument("--size", default="480x853")
    parser.add_argument("--frames", type=int, default=3, help="timed steady-state frames")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    env = environment("cpu")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = f"{args.note}; load average {load:.1f} at start".strip("; ")
    rows = []
    for backbone in args.backbones.split(","):
        for mode in args.modes.split(","):
            row = measure(backbone, mode == "cache", size, args.frames)
            row.update(
                device=env["device"],
                torch=env["torch"],
                threads=env["threads"],
                date=datetime.date.today().isoformat(),
                note=note,
            )
            print(row, flush=True)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
