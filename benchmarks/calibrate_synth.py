"""Calibrate the synthetic study's difficulty: train per-frame SegFormer-B0, measure mIoU and mVC8.

The study needs data on which a per-frame model, once trained, is unstable (val mVC8 <= 85) while
the task is still learned (val mIoU >= 50). This script writes a synthetic dataset with the given
difficulty, trains a random-init SegFormer-B0 with the ``synthetic`` training recipe of
``vssbench.training.recipes`` (AdamW lr 6e-4, decoder at 10x, 30-iteration linear warm-up, poly
decay, batch 4 clips of 4 frames, 96x96 crops of a random 0.5-2.0 resize, flip, photometric
distortion), evaluates on the val split with the shared evaluation loop and appends one row to
``benchmarks/results/synth_calibration.csv``. Only SegFormer's numbers decide the setting.

Usage (from the repository root)::

    python benchmarks/calibrate_synth.py --difficulty study --iters 300
    python benchmarks/calibrate_synth.py --difficulty easy --knob noise=8 --iters 300 --note "noise only"
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vssbench import methods
from vssbench.data import ClipAugment, TestTransform, VSPWClipDataset, VSPWDataset
from vssbench.data.synth import PRESET_SHAPES, resolve_difficulty, write_dataset
from vssbench.harness.evaluate import evaluate_videos

RESULTS = Path(__file__).resolve().parent / "results" / "synth_calibration.csv"
COLUMNS = [
    "created", "difficulty", "knobs", "videos", "frames", "size", "seed", "iters", "lr", "batch", "crop",
    "threads", "train_s", "eval_s", "final_loss", "mIoU", "mVC8", "mVC16", "loadavg", "note",
]


def train_segformer(
    root: Path, size: tuple[int, int], iters: int, lr: float, batch: int, crop: int, seed: int,
    on_eval: Callable[[int, torch.nn.Module, float], None] | None = None, eval_every: int = 0,
) -> tuple[torch.nn.Module, float]:
    """A random-init SegFormer-B0 trained ``iters`` iterations on ``root``'s train split; (model, last loss).

    With ``eval_every``, ``on_eval(iteration, model, loss)`` is called every that many iterations
    (the schedule stays that of ``iters``), so one run gives the whole learning curve.
    """
    torch.manual_seed(seed)
    model = methods.create("segformer", "b0", num_classes=124)
    groups = model.parameter_groups()
    encoder = {id(p) for p in groups["encoder"].parameters()}
    enc_params = [p for p in model.parameters() if id(p) in encoder]
    head_params = [p for p in model.parameters() if id(p) not in encoder]
    mult = float(getattr(model, "head_lr_mult", 10.0))
    optimizer = torch.optim.AdamW(
        [{"params": enc_params, "lr": lr}, {"params": head_params, "lr": lr * mult}],
        lr=lr, betas=(0.9, 0.999), weight_decay=0.01,
    )
    base = [g["lr"] for g in optimizer.param_groups]
    warmup = 30

    def factor(i: int) -> float:
        f = 1.0 - i / iters
        if i < warmup:
            f *= 1 - (1 - i / warmup) * (1 - 1e-6)
        return f

    augment = ClipAugment(scale=(size[1], size[0]), ratio_range=(0.5, 2.0), crop=(crop, crop))
    dataset = VSPWClipDataset(root, "train", sampler=model.train_sampler(), augment=augment, seed=seed)
    rng = np.random.default_rng(seed)
    model.train()
    loss_value = float("nan")
    for i in range(iters):
        for g, b in zip(optimizer.param_groups, base):
            g["lr"] = b * factor(i)
        items = [dataset[int(j)] for j in rng.integers(0, len(dataset), batch)]
        images = torch.stack([it["images"] for it in items])
        labels = torch.stack([it["labels"] for it in items])
        out = model.forward_train(images, labels)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        loss_value = float(out["loss"].detach())
        if (i + 1) % 50 == 0:
            print(f"  iter {i + 1}/{iters} loss {loss_value:.3f}", file=sys.stderr, flush=True)
        if on_eval is not None and eval_every and (i + 1) % eval_every == 0 and i + 1 < iters:
            on_eval(i + 1, model, loss_value)
            model.train()
    return model, loss_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--difficulty", default="study")
    parser.add_argument("--knob", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--videos", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", default=None, help="HxW")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="")
    parser.add_argument("--eval-every", type=int, default=0, help="Also evaluate (and record) every N iterations.")
    parser.add_argument("--no-record", action="store_true", help="Print only; do not append to the CSV.")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    knobs = dict(k.split("=", 1) for k in args.knob)
    resolved = resolve_difficulty(args.difficulty, **knobs)
    shape = dict({"videos": 12, "frames": 24, "size": (96, 160)}, **PRESET_SHAPES.get(args.difficulty, {}))
    videos = args.videos or int(shape["videos"])
    frames = args.frames or int(shape["frames"])
    size = tuple(int(v) for v in args.size.split("x")) if args.size else tuple(shape["size"])
    def record(iteration: int, metrics: dict, train_s: float, eval_s: float, loss: float) -> None:
        row = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "difficulty": args.difficulty,
            "knobs": json.dumps(resolved.to_dict(), sort_keys=True),
            "videos": videos, "frames": frames, "size": "x".join(map(str, size)), "seed": args.seed,
            "iters": iteration if iteration == args.iters else f"{iteration}/{args.iters}",
            "lr": args.lr, "batch": args.batch, "crop": args.crop, "threads": args.threads,
            "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "final_loss": round(loss, 4),
            "mIoU": round(100 * metrics["mIoU"], 2), "mVC8": round(100 * metrics["mVC8"], 2),
            "mVC16": round(100 * metrics["mVC16"], 2), "loadavg": round(os.getloadavg()[0], 1),
            "note": args.note,
        }
        print(json.dumps(row), flush=True)
        if not args.no_record:
            new = not RESULTS.exists()
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with RESULTS.open("a", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow(row)

    with tempfile.TemporaryDirectory(prefix="synth-cal-") as tmp:
        root = write_dataset(Path(tmp) / "data", args.difficulty, videos, frames, size, args.seed, **knobs)
        val = VSPWDataset(root, "val")
        start = time.perf_counter()
        spent = {"eval": 0.0}

        def evaluate(iteration: int, model: torch.nn.Module, loss: float) -> None:
            t0 = time.perf_counter()
            metrics = evaluate_videos(model, val, val.videos, TestTransform(size), num_classes=124)
            eval_s = time.perf_counter() - t0
            spent["eval"] += eval_s
            record(iteration, metrics, t0 - start - (spent["eval"] - eval_s), eval_s, loss)

        model, loss = train_segformer(
            root, size, args.iters, args.lr, args.batch, args.crop, args.seed, evaluate, args.eval_every
        )
        evaluate(args.iters, model, loss)


if __name__ == "__main__":
    main()
