"""Sparse MSDA cost against the share of updated points, next to MiT stages 3-4 (TFC paper, Table 3).

TFC replaces stages 3-4 of the backbone at non-keyframes by reused keyframe features plus a
sparse MSDA update of the points whose similarity is below the threshold. This script times,
at the evaluation size (480x853 by default), batch 1, fp32, eval/inference mode:

* ``mit_stages_3_4``: stages 3 and 4 of MiT (random init) from a stage-2 map, per backbone;
* ``sparse_msda``: :func:`vssbench.models.msda.sparse_msda_update` of the d=256 deformable layer
  on a random mask holding ``share`` of the 1/4-resolution points (gather, offsets, weights,
  sampling, output projection, FFN, scatter), with the pyramid's values projected beforehand;
* ``msda_value_proj``: the dense part that does not depend on the queries: ``value_proj`` of the
  pyramid levels 1-2 (levels 3-4 come from the keyframe and TFC caches their projection).

The MSDA layer is the same for every backbone (the pyramid is projected to the decoder's 256
channels first), so its rows have backbone ``any``. Timing: one warm-up call, then the median
(and min) of ``--repeats`` calls, ``--threads`` intra-op threads. Results go to a CSV whose rows
also name the machine (CPU model, threads, torch version, date, 1-minute load average at start).

Example::

    python benchmarks/bench_sparse_msda.py --threads 2 --repeats 5 \
        --out benchmarks/results/sparse_msda_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vssbench.models import msda
from vssbench.models.mit import MixTransformer
from vssbench.models.msda import DeformableEncoderLayer, flatten_levels, sparse_msda_update

#: The sampling cores compared: the library's weighted gather and Deformable DETR's grid_sample form.
CORES = {"embedding_bag": msda.ms_deform_attn, "grid_sample": msda.ms_deform_attn_grid_sample}

FIELDS = [
    "what",
    "core",
    "backbone",
    "share",
    "points",
    "median_ms",
    "min_ms",
    "repeats",
    "size",
    "device",
    "cpu",
    "threads",
    "torch",
    "date",
    "loadavg_1min",
]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() as a fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_call(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) wall time of ``fn`` in milliseconds over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def stage_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """MiT output sizes at strides 4, 8, 16, 32 (ceil divisions, as the overlapping patch convs)."""
    sizes = []
    h, w = -(-height // 4), -(-width // 4)
    for _ in range(4):
        sizes.append((h, w))
        h, w = -(-h // 2), -(-w // 2)
    return sizes


def random_mask(h: int, w: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """A 1 x h x w mask with exactly round(share * h * w) points selected at random."""
    count = round(share * h * w)
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[torch.randperm(h * w, generator=generator)[:count]] = True
    return mask.view(1, h, w)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="480x853", help="input H x W (default 480x853)")
    parser.add_argument("--backbones", default="b0,b1,b5")
    parser.add_argument("--shares", default="0.1,0.2,0.4,1.0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per MSDA setting")
    parser.add_argument("--stage-repeats", type=int, default=3, help="timed calls of stages 3-4 per backbone")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sparse_msda_cpu.csv"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    height, width = (int(v) for v in args.size.lower().split("x"))
    sizes = stage_sizes(height, width)
    machine = {
        "size": f"{height}x{width}",
        "device": "cpu",
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        # Other processes on the machine distort CPU timings; the record says how busy it was.
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    rows: list[dict[str, object]] = []

    def record(
        what: str,
        backbone: str,
        share: float,
        points: int,
        median: float,
        best: float,
        repeats: int,
        core: str = "",
    ) -> None:
        row = {"what": what, "core": core, "backbone": backbone, "share": share, "points": points}
        row.update(median_ms=round(median, 3), min_ms=round(best, 3), repeats=repeats, **machine)
        rows.append(row)
        print(
            f"{what:16s} {core:13s} {backbone:4s} share={share:<5} points={points:6d} "
            f"median={median:9.2f} ms min={best:9.2f} ms",
            flush=True,
        )

    layer = DeformableEncoderLayer().eval()
    with torch.no_grad():  # trained-like offsets/weights instead of the init grid
        layer.self_attn.sampling_offsets.weight.normal_(0.0, 0.05)
        layer.self_attn.attention_weights.weight.normal_(0.0, 0.05)
    d = layer.d_model
    pyramid = [torch.randn(1, d, h, w) for h, w in sizes]
    z = torch.randn(1, d, *sizes[0])
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        tokens, _ = flatten_levels(pyramid)
        value = layer.self_attn.project_value(tokens)
        low = flatten_levels(pyramid[:2])[0]
        median, best = time_call(lambda: layer.self_attn.project_value(low), args.repeats)
        record("msda_value_proj", "any", float("nan"), low.shape[1], median, best, args.repeats)
        masks = {float(s): random_mask(*sizes[0], float(s), generator) for s in args.shares.split(",")}
        for core, function in CORES.items():
            msda.ms_deform_attn = function  # the layer looks the core up at call time
            try:
                for share, mask in masks.items():
                    median, best = time_call(
                        lambda: sparse_msda_update(layer, z, pyramid, mask, value=value), args.repeats
                    )
                    record("sparse_msda", "any", share, int(mask.sum()), median, best, args.repeats, core)
            finally:
                msda.ms_deform_attn = CORES["embedding_bag"]

        for backbone in args.backbones.split(","):
            mit = MixTransformer(backbone).eval()
            x2 = torch.randn(1, mit.embed_dims[1], *sizes[1])
            median, best = time_call(
                lambda mit=mit: mit.forward_stage(3, mit.forward_stage(2, x2)), args.stage_repeats
            )
            record(
                "mit_stages_3_4", backbone, 1.0, sizes[2][0] * sizes[2][1], median, best, args.stage_repeats
            )
            del mit

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    times = {
        row["share"]: row["median_ms"]
        for row in rows
        if row["what"] == "sparse_msda" and row["core"] == "embedding_bag"
    }
    if 0.2 in times and 1.0 in times:
        ratio = times[0.2] / times[1.0]
        print(f"t(20%) / t(100%) = {ratio:.3f} ({'ok' if ratio <= 0.35 else 'ABOVE 0.35'})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
