"""Per-interval FPS, GMACs and params of methods x backbones (the efficiency columns of Table 1).

Each row is :func:`vssbench.harness.profile_method` (the same protocol as ``vssbench profile``
and ``vssbench run``): one keyframe interval of a synthetic video rendered at ``--size``,
warm-up intervals excluded, the device synchronized around each timed interval (CUDA events on
GPU), FPS = interval frames / median interval time. Rows go to a CSV with the machine described
(device name, torch, threads, dtype, date). Random init: FPS and GMACs do not depend on the
weights, except through TFC's data-dependent share of updated points.

Examples::

    python benchmarks/bench_fps.py --methods segformer,feature_reuse,tfc --backbones b0 \\
        --out benchmarks/results/fps_cpu.csv
    python benchmarks/bench_fps.py --device cuda --backbones b0,b1,b5 --repeats 20 --warmup 5 \\
        --out benchmarks/results/fps_h100.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
from pathlib import Path

from vssbench.config import RunConfig
from vssbench.harness import build_configs, profile_sweep

FIELDS = [
    "method",
    "backbone",
    "params_M",
    "gmacs_keyframe",
    "gmacs_nonkeyframe",
    "gmacs_per_frame",
    "fps",
    "fps_spread_rel",
    "interval",
    "lead_in",
    "interval_time_s",
    "updated_fraction",
    "size",
    "device",
    "torch",
    "threads",
    "dtype",
    "decoder",
    "timer",
    "date",
    "error",
]


def row_of(record: dict) -> dict:
    """One CSV row from a profile record."""
    protocol = record.get("fps_protocol") or {}
    diagnostics = record.get("diagnostics") or {}
    params = record.get("params")
    return {
        "method": record["method"],
        "backbone": record["backbone"],
        "params_M": None if params is None else round(params / 1e6, 3),
        "gmacs_keyframe": record.get("gmacs_keyframe"),
        "gmacs_nonkeyframe": record.get("gmacs_nonkeyframe"),
        "gmacs_per_frame": record.get("gmacs_per_frame"),
        "fps": record.get("fps"),
        "fps_spread_rel": (record.get("fps_spread") or {}).get("relative"),
        "interval": record.get("interval"),
        "lead_in": protocol.get("lead_in"),
        "interval_time_s": protocol.get("interval_time_s"),
        "updated_fraction": diagnostics.get("updated_fraction"),
        "size": "x".join(str(v) for v in record.get("input_size") or []),
        "device": record.get("device"),
        "torch": record.get("torch"),
        "threads": record.get("threads"),
        "dtype": record.get("dtype"),
        "decoder": record.get("decoder"),
        "timer": protocol.get("timer"),
        "date": datetime.date.today().isoformat(),
        "error": record.get("error"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="segformer,feature_reuse,tfc")
    parser.add_argument("--backbones", default="b0")
    parser.add_argument("--size", default="480x853")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", default="video", choices=["video", "random"])
    parser.add_argument("--decoder", default="folded", choices=["folded", "reference"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fps_cpu.csv"))
    args = parser.parse_args(argv)

    height, width = (int(v) for v in args.size.lower().split("x"))
    configs: list[RunConfig] = build_configs(
        args.methods,
        args.backbones,
        resolution=(height, width),
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        decoder=args.decoder,
    )
    rows = [row_of(record) for record in profile_sweep(configs, frames=args.frames)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(
            f"{row['method']:14s} {row['backbone']:3s} params {row['params_M']}M  GMACs key/non-key/frame "
            f"{row['gmacs_keyframe']}/{row['gmacs_nonkeyframe']}/{row['gmacs_per_frame']}  FPS {row['fps']}"
            + (f"  ERROR {row['error']}" if row["error"] else ""),
            flush=True,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
