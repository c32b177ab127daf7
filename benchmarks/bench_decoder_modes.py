"""Decoder modes: per-interval FPS and GMACs of SegFormer, Feature Reuse and TFC, folded vs reference.

For every backbone x method (plus TFC with ``threshold=0``, no point updated, on B0) and both
decoder modes, in the same process: build the random-init model as the harness does
(``RunConfig(decoder=...)``), count GMACs over one keyframe interval of the rendered synthetic
video (``count_gmacs``), time that interval (``measure_fps``: warm-up excluded, median of
repeats) and record TFC's share of updated points. Both modes compute the same logits (tests
check 1e-5 relative); only the cost differs.

    python benchmarks/bench_decoder_modes.py                     # B0, B1 (3 repeats) and B5 (1 repeat)
    python benchmarks/bench_decoder_modes.py --backbones b0 --repeats 5 --out /tmp/modes.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from vssbench.config import RunConfig
from vssbench.harness import normalize_config
from vssbench.harness.paper_profile import build_model, mean_updated_fraction, synthetic_frames
from vssbench.profiling import count_gmacs, environment, measure_fps

FIELDS = [
    "backbone",
    "method",
    "options",
    "decoder",
    "size",
    "interval",
    "gmacs_keyframe",
    "gmacs_nonkeyframe",
    "gmacs_per_frame",
    "fps",
    "interval_time_s",
    "warmup",
    "repeats",
    "updated_fraction",
    "threads",
    "device",
    "torch",
    "note",
]


def measure(
    backbone: str, method: str, options: dict, decoder: str, size: tuple[int, int], warmup: int, repeats: int
) -> dict:
    """GMACs and per-interval FPS of one configuration (random init, synthetic video).

    The first pass over the interval (which collects the diagnostics) is the warm-up; ``warmup``
    adds untimed intervals to it. ``repeats=0`` measures GMACs only.
    """
    config = normalize_config(
        RunConfig(method=method, backbone=backbone, options=options, resolution=size, decoder=decoder)
    )
    adapter = build_model(config)
    frames = synthetic_frames(config.interval, size, config.seed)
    updated = mean_updated_fraction(adapter, frames)
    gmacs = count_gmacs(adapter, frames, config.interval)
    fps = {"fps": float("nan"), "interval_time_s": float("nan")}
    if repeats > 0:
        fps = measure_fps(adapter, frames, config.interval, warmup=warmup, repeats=repeats)
    return {
        "backbone": backbone,
        "method": method,
        "options": ",".join(f"{k}={v}" for k, v in sorted(options.items())),
        "decoder": decoder,
        "size": f"{size[0]}x{size[1]}",
        "interval": config.interval,
        "gmacs_keyframe": round(gmacs["gmacs_keyframe"], 3),
        "gmacs_nonkeyframe": round(gmacs["gmacs_nonkeyframe"], 3),
        "gmacs_per_frame": round(gmacs["gmacs_per_frame"], 3),
        "fps": round(fps["fps"], 3),
        "interval_time_s": round(fps["interval_time_s"], 3),
        "warmup": warmup,
        "repeats": repeats,
        "updated_fraction": "" if updated is None else round(updated, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="b0,b1,b5")
    parser.add_argument("--methods", default="segformer,feature_reuse,tfc")
    parser.add_argument("--size", default="480x853")
    parser.add_argument("--repeats", type=int, default=3, help="timed intervals (B0-B4)")
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed intervals beyond the first (diagnostics) pass"
    )
    parser.add_argument("--b5-repeats", type=int, default=1, help="timed intervals for B5 (0: GMACs only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--note", default="2-core VM shared with other jobs (busy): FPS are noisy, compare within a row pair"
    )
    parser.add_argument("--out", default="benchmarks/results/decoder_modes_cpu.csv")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    env = environment("cpu")
    jobs = []
    for backbone in args.backbones.split(","):
        variants = [(m, {}) for m in args.methods.split(",")]
        if backbone == "b0" and "tfc" in args.methods.split(","):
            variants.append(("tfc", {"threshold": 0.0}))
        for method, options in variants:
            for decoder in ("reference", "folded"):
                jobs.append((backbone, method, options, decoder))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for backbone, method, options, decoder in jobs:
            big = backbone == "b5"
            start = time.perf_counter()
            row = measure(
                backbone,
                method,
                options,
                decoder,
                (h, w),
                warmup=0 if big else args.warmup,
                repeats=args.b5_repeats if big else args.repeats,
            )
            row.update(threads=env["threads"], device=env["device"], torch=env["torch"], note=args.note)
            writer.writerow(row)
            f.flush()
            print(
                f"{backbone} {method} {row['options'] or '-'} {decoder}: "
                f"GMACs key {row['gmacs_keyframe']:.2f} "
                f"non-key {row['gmacs_nonkeyframe']:.2f} per frame {row['gmacs_per_frame']:.2f}, "
                f"FPS {row['fps']:.2f} "
                f"({time.perf_counter() - start:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
