"""Benchmark the metric core on one synthetic 480x853 video (CPU, one thread).

Times (1) the streaming run-length VC (``VCMetric``) against a straightforward windowed
computation (vectorized numpy with the official bounds: for each window, ``np.all`` over its
C frames) for C = 8 and 16, checking both give the same mVC; and (2) the whole per-frame
metric core the harness runs (``VideoEvaluator``: confusion matrix + VC8 + VC16).

Usage: python benchmarks/bench_vc.py [--frames 100] [--repeats 3] [--out benchmarks/results/vc_cpu.csv]
"""

from __future__ import annotations

import os

# numpy's elementwise kernels are single-threaded anyway; pin BLAS/OpenMP pools for a clean one-core figure
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import datetime
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vssbench.metrics import VCMetric, VideoEvaluator, compute_metrics
from vssbench.profiling import cpu_model

H, W, K = 480, 853, 124


def synthetic_video(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant GT (40-px label blocks, a void band, moving objects) and a prediction
    that follows it with flickering blocks and a jittering object boundary. uint8 [T, H, W]."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, K, (H // 40 + 1, W // 40 + 1), dtype=np.uint8)
    background = np.kron(blocks, np.ones((40, 40), np.uint8))[:H, :W]
    background[:24] = 255  # void band at the top
    yy, xx = np.mgrid[0:H, 0:W]
    objects = [
        (
            rng.integers(60, 400),
            rng.integers(60, 780),
            rng.integers(30, 90),
            rng.integers(-4, 5),
            rng.integers(-4, 5),
            rng.integers(0, K),
        )
        for _ in range(6)
    ]
    gt = np.empty((frames, H, W), np.uint8)
    pred = np.empty((frames, H, W), np.uint8)
    for t in range(frames):
        frame = background.copy()
        jitter = frame.copy()
        for cy, cx, r, vy, vx, label in objects:
            y, x = cy + vy * t, cx + vx * t
            frame[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = label
            rj = r + rng.integers(-2, 3)
            jitter[(yy - y) ** 2 + (xx - x) ** 2 < rj * rj] = label
        gt[t] = frame
        noisy = np.kron(rng.random((H // 40 + 1, W // 40 + 1)) < 0.05, np.ones((40, 40), bool))[:H, :W]
        jitter[noisy] = rng.integers(0, K)
        jitter[jitter == 255] = 0  # predictions are classes 0..K-1
        pred[t] = jitter
    return gt, pred


def windowed_mvc(gt: np.ndarray, pred: np.ndarray, clip: int) -> float:
    """The straightforward vectorized reference: per window, np.all over its C frames."""
    scores = []
    for s in range(gt.shape[0] - clip):  # official bound: the last window is not used
        in_g = np.all(gt[s + 1 : s + clip] == gt[s], axis=0)
        in_p = np.all(pred[s + 1 : s + clip] == pred[s], axis=0)
        area = np.count_nonzero(in_g)
        scores.append(np.count_nonzero(in_g & in_p) / area if area else np.nan)
    return float(np.nanmean(scores))


def streaming_mvc(gt: np.ndarray, pred: np.ndarray, clip: int) -> float:
    metric = VCMetric(clip)
    for t in range(gt.shape[0]):
        metric.update(pred[t], gt[t], "bench")
    return metric.compute()["mVC"]


def metric_core(gt: np.ndarray, pred: np.ndarray) -> dict:
    evaluator = VideoEvaluator(num_classes=K, clips=(8, 16))
    evaluator.begin_video("bench", gt.shape[0])
    for t in range(gt.shape[0]):
        evaluator.update(pred[t], gt[t])
    return compute_metrics(evaluator.end_video())


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vc_cpu.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    gt, pred = synthetic_video(args.frames)
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    rows = []
    for clip in (8, 16):
        t_stream, m_stream = timed(lambda: streaming_mvc(gt, pred, clip), args.repeats)
        t_window, m_window = timed(lambda: windowed_mvc(gt, pred, clip), args.repeats)
        if not np.isclose(m_stream, m_window, rtol=1e-12):
            raise SystemExit(f"mismatch at C={clip}: streaming {m_stream} vs windowed {m_window}")
        for method, seconds in (("streaming_runlength", t_stream), ("windowed_np_all", t_window)):
            rows.append(
                {
                    "benchmark": f"vc{clip}",
                    "method": method,
                    "time_s": seconds,
                    "mVC": m_stream,
                    "speedup": t_window / t_stream,
                }
            )
        print(
            f"C={clip}: streaming {t_stream:.3f}s, windowed {t_window:.3f}s, "
            f"speed-up {t_window / t_stream:.1f}x, mVC {m_stream:.4f}"
        )
    t_core, result = timed(lambda: metric_core(gt, pred), args.repeats)
    rows.append(
        {
            "benchmark": "metric_core_iou_vc8_vc16",
            "method": "VideoEvaluator",
            "time_s": t_core,
            "mVC": None,
            "speedup": None,
        }
    )
    print(
        f"metric core (IoU + VC8 + VC16): {t_core / args.frames * 1e3:.2f} ms/frame "
        f"(mIoU {result['mIoU']:.4f}, mVC8 {result['mVC8']:.4f}, mVC16 {result['mVC16']:.4f})"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = [
        "benchmark",
        "method",
        "frames",
        "height",
        "width",
        "time_s",
        "ms_per_frame",
        "speedup",
        "mVC",
        *machine,
    ]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "frames": args.frames,
                    "height": H,
                    "width": W,
                    "ms_per_frame": round(row["time_s"] / args.frames * 1e3, 3),
                    "time_s": round(row["time_s"], 4),
                    "speedup": "" if row["speedup"] is None else round(row["speedup"], 2),
                    "mVC": "" if row["mVC"] is None else round(row["mVC"], 6),
                    **machine,
                }
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
