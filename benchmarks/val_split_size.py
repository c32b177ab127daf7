"""How many val videos the synthetic study needs: bootstrap interval width against the val split's size.

Two run folders (``vssbench run`` on the same, large val split; e.g. TFC and SegFormer trained from
the study's pretrained encoder) give per-video metric states. For each size n, ``--draws`` random
subsets of n videos are drawn (without replacement, seeded); on each subset the paired bootstrap
over videos (:func:`vssbench.reports.stats.paired_bootstrap`, the official pooled metrics) gives the
95% interval of A - B, and its half-width ((high - low) / 2) is averaged over the subsets. One CSV
row per metric and size. The val split's size is then chosen on these widths and on evaluation
time alone (nothing here looks at which method is ahead).

Usage (from the repository root)::

    python benchmarks/val_split_size.py RUN_A RUN_B --sizes 6,12,18,24,36,48 \
        --out benchmarks/results/val_split_size.csv
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vssbench.reports.stats import load_video_states, paired_bootstrap
from vssbench.results.store import find_run_dir


def widths(
    run_a: Path, run_b: Path, sizes: list[int], metrics: list[str], draws: int, samples: int, seed: int
) -> list[dict]:
    """Mean and spread of the 95% half-width of A - B per metric and val-split size."""
    states_a, states_b = load_video_states(run_a), load_video_states(run_b)
    videos = sorted(set(states_a) & set(states_b))
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        if n > len(videos):
            raise SystemExit(f"--sizes: {n} is more than the {len(videos)} videos both runs share")
        half: dict[str, list[float]] = {m: [] for m in metrics}
        diff: dict[str, list[float]] = {m: [] for m in metrics}
        for d in range(draws if n < len(videos) else 1):
            subset = sorted(rng.choice(len(videos), size=n, replace=False))
            chosen = [videos[i] for i in subset]
            intervals = paired_bootstrap(
                [states_a[v] for v in chosen], [states_b[v] for v in chosen], metrics, samples, seed + d
            )
            for m, iv in intervals.items():
                half[m].append(100.0 * (iv.high - iv.low) / 2.0)
                diff[m].append(100.0 * iv.diff)
        for m in metrics:
            rows.append(
                {
                    "metric": m,
                    "videos": n,
                    "draws": len(half[m]),
                    "half_width_mean": round(float(np.mean(half[m])), 2),
                    "half_width_sd": round(float(np.std(half[m])), 2),
                    "diff_sd_across_subsets": round(float(np.std(diff[m])), 2),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--sizes", default="6,12,18,24,36,48")
    parser.add_argument("--metrics", default="mIoU,mVC8,mVC16")
    parser.add_argument("--draws", type=int, default=20, help="random subsets per size")
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples per subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    run_a, run_b = find_run_dir(args.run_a), find_run_dir(args.run_b)
    rows = widths(
        run_a,
        run_b,
        [int(s) for s in args.sizes.split(",")],
        args.metrics.split(","),
        args.draws,
        args.samples,
        args.seed,
    )
    machine = f"{platform.machine()}, {platform.system()}, torch {torch.__version__}"
    for row in rows:
        row.update(run_a=str(run_a), run_b=str(run_b), machine=machine)
        print(
            f"{row['metric']:<6} n={row['videos']:>3}  half-width {row['half_width_mean']:5.2f} "
            f"(sd {row['half_width_sd']:.2f} over {row['draws']} subsets)"
        )
    if args.out is not None:
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
