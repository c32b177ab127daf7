"""Distributed training: 2 gloo processes x batch 1 reach the weights of 1 process x batch 2.

The ranks are two ``python -m vssbench train`` processes with torchrun's environment. BatchNorm is
synchronized (GlooSyncBatchNorm on CPU), drop path is off (per-rank randomness), and the masks hold
no ignored pixel, so that every clip weighs the same in both layouts' mean losses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vssbench.data import synthesize
from vssbench.training.recipes import build_config
from vssbench.training.run import train

ARGS = ["--method", "segformer", "--set", "drop_path_rate=0", "--iters", "3", "--crop", "32x32", "--lr", "1e-3",
        "--val-every", "0", "--checkpoint-every", "3", "--threads", "1", "--quiet"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.xfail(reason="open: iteration-1 losses differ (4.889 vs 4.994) although configs, data positions and "
                   "GlooSyncBatchNorm (== BatchNorm in one process) agree; not yet found", strict=False)
def test_two_processes_batch_1_equal_one_process_batch_2(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "mini", videos=6, frames=8, size=(32, 48), seed=3)
    for mask in root.glob("data/*/mask/*.png"):  # raw 0 and 255 (ignored) -> class 1: no ignored pixel
        raw = np.asarray(Image.open(mask))
        Image.fromarray(np.where((raw == 0) | (raw == 255), 1, raw).astype(np.uint8)).save(mask)

    config = build_config("synthetic", method="segformer", options={"drop_path_rate": "0"}, data=str(root), iters=3,
                          crop=(32, 32), lr=1e-3, batch_size=2, val_every=0, checkpoint_every=3, threads=1)
    train(config, tmp_path / "single", progress=False)

    port = free_port()
    cmd = [sys.executable, "-m", "vssbench", "train", *ARGS, "--data", str(root), "--preset", "synthetic",
           "--batch-size", "1", "--out", str(tmp_path / "dist"), "--json"]
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    assert outputs[1][0] == ""  # rank 1 prints nothing on stdout

    single = torch.load(tmp_path / "single" / "model.pth", weights_only=True)["state_dict"]
    dist = torch.load(tmp_path / "dist" / "model.pth", weights_only=True)["state_dict"]
    assert single.keys() == dist.keys()  # SyncBatchNorm leaves the checkpoint layout unchanged
    moved = 0
    for key, value in single.items():
        if value.is_floating_point():
            torch.testing.assert_close(dist[key], value, rtol=1e-4, atol=1e-5, msg=key)
            moved += 1
        else:
            assert torch.equal(dist[key], value), key
    assert moved > 100
    state = torch.load(tmp_path / "dist" / "last.pth", weights_only=True)
    assert state["config"]["world_size"] == 2 and len(state["rng"]) == 2
