"""Where to draw the line between an idle and a contended FPS timing: cpu_share and FPS under load.

SegFormer-B0 (random init, interval 4, torch's default threads) is timed with
:func:`vssbench.profiling.measure_fps` at each ``--sizes`` beside each kind of background load,
started half a second before the timing and killed after it:

* ``idle``: nothing;
* ``2 x 30% duty`` / ``2 x 50% duty``: two processes busy 30 / 50 ms of every 100 ms;
* ``1 busy loop`` / ``2 busy loops``: ``while True: pass``.

One CSV row per size and load: FPS, its ratio to the idle FPS of the same size (measured in the same
run), ``cpu_share``, the runnable-task count ``others_runnable`` (recorded, not decisive) and what
the current rule says (``contended``). ``CONTENTION_SHARE`` is chosen on these shares.

Usage (from the repository root, on an otherwise idle machine)::

    python benchmarks/contention_threshold.py --out benchmarks/results/contention_threshold.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from vssbench import methods
from vssbench.profiling import environment, measure_fps

BUSY = "while True: pass"
DUTY = (
    "import time\n"
    "while True:\n"
    "    t = time.perf_counter()\n"
    "    while time.perf_counter() - t < {busy}: pass\n"
    "    time.sleep({idle})\n"
)
LOADS: dict[str, list[str]] = {
    "idle": [],
    "2 x 30% duty": [DUTY.format(busy=0.03, idle=0.07)] * 2,
    "2 x 50% duty": [DUTY.format(busy=0.05, idle=0.05)] * 2,
    "1 busy loop": [BUSY],
    "2 busy loops": [BUSY] * 2,
}


def measure(sizes: list[tuple[int, int]], repeats: int | None) -> list[dict]:
    model = methods.create("segformer", backbone="b0")
    model.eval()
    rows = []
    for h, w in sizes:
        frames = [torch.randn(1, 3, h, w) for _ in range(4)]
        idle_fps = None
        for name, codes in LOADS.items():
            loads = [subprocess.Popen([sys.executable, "-c", code]) for code in codes]
            time.sleep(0.5)
            try:
                result = measure_fps(model, frames, interval=4, warmup=1, repeats=repeats)
            finally:
                for p in loads:
                    p.kill()
                for p in loads:
                    p.wait()
            time.sleep(0.5)
            idle_fps = result["fps"] if name == "idle" else idle_fps
            rows.append(
                {
                    "size": f"{h}x{w}",
                    "load": name,
                    "fps": round(result["fps"], 3),
                    "fps_vs_idle": round(result["fps"] / idle_fps, 3),
                    "cpu_share": round(result["cpu_share"], 3),
                    "others_runnable": round(result["others_runnable"], 2),
                    "contended": result["contended"],
                    "threads": result["threads"],
                    "repeats": result["repeats"],
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="96x160,480x853", help="HxW sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=None, help="timed intervals (default: automatic)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/contention_threshold.csv"))
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = measure(sizes, args.repeats)
    env = environment("cpu")
    for row in rows:
        row.update(machine=env["device"], torch=env["torch"], date=time.strftime("%Y-%m-%d"))
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
