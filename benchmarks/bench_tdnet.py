"""TDNet-B0 next to SegFormer-B0: params, GMACs and CPU FPS at 480x853 (Table 1's efficiency columns).

Each row is first :func:`vssbench.harness.profile_method` (the protocol of ``vssbench profile
--json``: the ``interval`` frames after ``reset()`` of a rendered synthetic video, warm-up
excluded, FPS = interval frames / median interval time). TDNet's first N-1 frames after
``reset()`` are cheaper than the rest (its FIFO is not full yet, so no attention propagation),
so the script adds the **steady state**: GMACs of the steps after the first cycle
(``count_gmacs`` over two cycles, mean of the second) and FPS of one cycle timed after a full
cycle has filled the FIFO (median of ``--repeats``, inference mode). For a per-frame method
both are the same as the profile's.

    python benchmarks/bench_tdnet.py --threads 1 --repeats 3 --out benchmarks/results/tdnet_cpu.csv
    python benchmarks/bench_tdnet.py --threads 1 --repeats 3 --decoder reference --append
"""

from __future__ import annotations

import argparse
import csv
import datetime
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from vssbench.config import RunConfig
from vssbench.data import render_video
from vssbench.data.transforms import normalize
from vssbench.harness import profile_method
from vssbench.methods import create
from vssbench.models.decoder import set_decoder_mode
from vssbench.profiling import count_gmacs

FIELDS = [
    "method",
    "backbone",
    "options",
    "decoder",
    "params_M",
    "gmacs_per_frame",
    "gmacs_steady",
    "gmacs_per_step",
    "fps",
    "fps_steady",
    "interval",
    "size",
    "device",
    "torch",
    "threads",
    "date",
    "cpu_share",
    "contended",
    "note",
]

#: (method, options) rows: SegFormer, TDNet as built by default, TDNet with APM and head at 1/4.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("segformer", {}),
    ("tdnet", {}),
    ("tdnet", {"feature_stride": 4}),
]


def steady_state(
    method: str,
    options: dict[str, Any],
    frames: list[torch.Tensor],
    interval: int,
    decoder: str,
    repeats: int,
) -> tuple[float, float, list[float]]:
    """(GMACs per frame, FPS, GMACs per step) of the second cycle of ``interval`` frames after reset()."""
    torch.manual_seed(0)
    model = create(method, backbone="b0", **options, interval=interval)
    set_decoder_mode(model, decoder)
    clip = [frames[i % len(frames)] for i in range(2 * interval)]
    per_step = count_gmacs(model, clip, 2 * interval)["gmacs_per_step"]
    gmacs = statistics.mean(per_step[interval:])
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round is warm-up
            model.reset()
            for frame in clip[:interval]:
                model.step(frame)
            start = time.perf_counter()
            for frame in clip[interval:]:
                model.step(frame)
            times.append(time.perf_counter() - start)
    return gmacs, interval / statistics.median(times[1:]), per_step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="480x853")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decoder", default="folded", choices=["folded", "reference"])
    parser.add_argument("--note", default="", help="free text for the note column")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tdnet_cpu.csv"))
    parser.add_argument(
        "--append", action="store_true", help="add rows to an existing --out instead of rewriting it"
    )
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    frames = [normalize(rgb)[None] for rgb, _ in render_video(8, (height, width), seed=0)]

    rows = []
    for method, options in VARIANTS:
        config = RunConfig(
            method=method,
            backbone="b0",
            options=dict(options),
            resolution=(height, width),
            threads=args.threads,
            repeats=args.repeats,
            decoder=args.decoder,
        )
        record = profile_method(config)
        interval = int(record["interval"])
        gmacs, fps, per_step = steady_state(method, options, frames, interval, args.decoder, args.repeats)
        rows.append(
            {
                "method": method,
                "backbone": "b0",
                "options": ";".join(f"{k}={v}" for k, v in options.items()),
                "decoder": args.decoder,
                "params_M": round(record["params"] / 1e6, 3),
                "gmacs_per_frame": round(record["gmacs_per_frame"], 3),
                "gmacs_steady": round(gmacs, 3),
                "gmacs_per_step": " ".join(f"{g:.3f}" for g in per_step),
                "fps": round(record["fps"], 3),
                "fps_steady": round(fps, 3),
                "interval": interval,
                "size": f"{height}x{width}",
                "device": record.get("device"),
                "torch": record.get("torch"),
                "threads": record.get("threads"),
                "date": datetime.date.today().isoformat(),
                "cpu_share": round(record["fps_protocol"]["cpu_share"], 3),
                "contended": record["fps_protocol"]["contended"],
                "note": args.note,
            }
        )
        print(
            {
                k: rows[-1][k]
                for k in (
                    "method",
                    "options",
                    "params_M",
                    "gmacs_per_frame",
                    "gmacs_steady",
                    "fps",
                    "fps_steady",
                )
            },
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    append = args.append and args.out.exists()
    with args.out.open("a" if append else "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        if not append:
            writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
