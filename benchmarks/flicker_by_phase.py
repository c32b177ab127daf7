"""Where a trained model flickers: pixel accuracy and frame-to-frame change by frame phase (t mod P).

For each trained model (a ``vssbench train`` folder with ``model.pth``), runs the online protocol
over a split and reports, for each phase ``t mod P`` of the frame index, the mean pixel accuracy
(void excluded) and the mean fraction of pixels whose predicted class differs from the previous
frame's. A method whose frames cycle through sub-networks or keyframes (TDNet's paths, the
keyframe interval) shows it as accuracy or change that depends on the phase. One row per model
and phase goes to the CSV.

Usage (from the repository root, after ``vssbench reproduce all --out /tmp/study``)::

    python benchmarks/flicker_by_phase.py /tmp/study/train/segformer-b0 /tmp/study/train/tdnet-b0 \
        --data /tmp/study/data --size 96x160 --out benchmarks/results/study/flicker_by_phase.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vssbench import methods
from vssbench.data import TestTransform, VSPWDataset
from vssbench.models.decoder import resize_logits


def phase_stats(
    model: torch.nn.Module, dataset: VSPWDataset, size: tuple[int, int], period: int
) -> list[dict]:
    """Per phase: frames, mean pixel accuracy and mean fraction of pixels changed since the previous frame."""
    acc: dict[int, list[float]] = {p: [] for p in range(period)}
    changed: dict[int, list[float]] = {p: [] for p in range(period)}
    with torch.no_grad():
        for video in dataset.videos:
            model.reset()
            previous = None
            for frame in dataset.iter_video(video, TestTransform(size)):
                pred = resize_logits(model.step(frame.image), frame.label.shape).argmax(1)[0].numpy()
                valid = frame.label != 255
                phase = frame.index % period
                acc[phase].append(float((pred[valid] == frame.label[valid]).mean()))
                if previous is not None:
                    changed[phase].append(float((pred != previous).mean()))
                previous = pred
    return [
        {
            "phase": p,
            "frames": len(acc[p]),
            "pixel_acc": float(np.mean(acc[p])),
            "changed_vs_previous": float(np.mean(changed[p])) if changed[p] else float("nan"),
        }
        for p in range(period)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained", nargs="+", type=Path, help="vssbench train folders (with model.pth)")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--size", default="96x160", help="HxW")
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (default: print only)")
    args = parser.parse_args()

    size = tuple(int(v) for v in args.size.split("x"))
    dataset = VSPWDataset(args.data, args.split)
    rows = []
    for folder in args.trained:
        config = json.loads((folder / "config.json").read_text())
        method, backbone = config["method"], config["backbone"]
        model = methods.create(method, backbone, checkpoint=str(folder / "model.pth")).eval()
        for row in phase_stats(model, dataset, size, args.period):
            row = {"model": folder.name, "method": method, **row}
            rows.append(row)
            print(
                f"{row['model']:20s} phase {row['phase']}: pixel acc {row['pixel_acc']:.3f}, "
                f"changed vs previous frame {row['changed_vs_previous']:.3f}"
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
