"""Distributed training: 2 gloo processes x batch 1 reach the weights of 1 process x batch 2.

The ranks are two ``python -m vssbench train`` processes with torchrun's environment. BatchNorm is
synchronized (GlooSyncBatchNorm on CPU); drop path and the decoder's Dropout2d are off (their masks
are drawn per process, so 2 processes draw other masks than 1: with dropout on, the losses differ
from iteration 1 on); the masks hold no ignored pixel, so that every clip weighs the same in both
layouts' mean losses.

Parameters whose gradient is zero in exact arithmetic are not determined by the data: their float32
gradients are rounding noise (~1e-10, different in the two layouts), which AdamW normalizes into
steps of up to the full lr. In SegFormer at 32 px crops they are the biases a BatchNorm cancels
(``decode_head.linear_c*.proj.bias`` and ``backbone.norm4.bias``, a per-channel shift of the fuse
conv's input) and the query projections (one key token in every stage: softmax over one key is 1).
The test finds them by their float64 gradient, checks that they are exactly those, and compares
every other weight at rtol 1e-4; the BatchNorm's ``running_mean`` (which follows those biases'
shift) is replaced by the check that both models compute the same function in training mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vssbench.data import synthesize
from vssbench.methods import create
from vssbench.training.recipes import build_config
from vssbench.training.run import train

OPTIONS = {"drop_path_rate": "0", "dropout": "0"}
ARGS = [
    "--method",
    "segformer",
    "--set",
    "drop_path_rate=0",
    "--set",
    "dropout=0",
    "--iters",
    "3",
    "--crop",
    "32x32",
    "--lr",
    "1e-3",
    "--val-every",
    "0",
    "--checkpoint-every",
    "3",
    "--threads",
    "1",
    "--quiet",
]


def null_gradient_parameters(crop: int = 32) -> set[str]:
    """Parameters of SegFormer-B0 whose float64 gradient on a random batch is zero
    (< 1e-12 of the largest)."""
    torch.manual_seed(0)
    model = create("segformer", num_classes=124, **OPTIONS).double().train()
    images = torch.randn(2, 2, 3, crop, crop, dtype=torch.float64)
    labels = torch.randint(0, 124, (2, 2, crop, crop))
    model.forward_train(images, labels)["loss"].backward()
    grads = {k: p.grad.abs().max().item() for k, p in model.named_parameters()}
    largest = max(grads.values())
    return {k for k, g in grads.items() if g <= 1e-12 * largest}


@pytest.mark.slow
def test_two_processes_batch_1_equal_one_process_batch_2(tmp_path: Path, launch_two_ranks) -> None:
    root = synthesize(tmp_path / "mini", videos=6, frames=8, size=(32, 48), seed=3)
    for mask in root.glob("data/*/mask/*.png"):  # raw 0 and 255 (ignored) -> class 1: no ignored pixel
        raw = np.asarray(Image.open(mask))
        Image.fromarray(np.where((raw == 0) | (raw == 255), 1, raw).astype(np.uint8)).save(mask)

    config = build_config(
        "synthetic",
        method="segformer",
        options=OPTIONS,
        data=str(root),
        iters=3,
        crop=(32, 32),
        lr=1e-3,
        batch_size=2,
        val_every=0,
        checkpoint_every=3,
        threads=1,
    )
    train(config, tmp_path / "single", progress=False)

    cmd = [
        sys.executable,
        "-m",
        "vssbench",
        "train",
        *ARGS,
        "--data",
        str(root),
        "--preset",
        "synthetic",
        "--batch-size",
        "1",
        "--out",
        str(tmp_path / "dist"),
        "--json",
    ]
    results = launch_two_ranks(cmd, 600)
    for returncode, _, err in results:
        assert returncode == 0, err
    assert results[1][1] == ""  # rank 1 prints nothing on stdout

    # the same losses at every iteration (rank-averaged in the distributed log)
    logs = {
        name: [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        for name in ("single", "dist")
    }
    assert [line["iter"] for line in logs["dist"]] == [1, 2, 3]
    for a, b in zip(logs["single"], logs["dist"]):
        assert b["lr"] == a["lr"] and b["loss"] == pytest.approx(a["loss"], rel=1e-5)

    null = null_gradient_parameters()
    assert null == {f"decode_head.linear_c{i}.proj.bias" for i in range(1, 5)} | {"backbone.norm4.bias"} | {
        f"backbone.block{s}.{b}.attn.q.{w}" for s in range(1, 5) for b in range(2) for w in ("weight", "bias")
    }
    single = torch.load(tmp_path / "single" / "model.pth", weights_only=True)["state_dict"]
    dist = torch.load(tmp_path / "dist" / "model.pth", weights_only=True)["state_dict"]
    assert single.keys() == dist.keys()  # SyncBatchNorm leaves the checkpoint layout unchanged
    moved = 0
    for key, value in single.items():
        if key in null or key.endswith("running_mean"):
            continue
        if value.is_floating_point():
            torch.testing.assert_close(dist[key], value, rtol=1e-4, atol=1e-5, msg=key)
            moved += 1
        else:
            assert torch.equal(dist[key], value), key
    assert moved > 150

    # the same function: training-mode logits (batch statistics) of both models on the same clips
    models = []
    for weights in (single, dist):
        model = create("segformer", num_classes=124, **OPTIONS).train()
        model.load_state_dict(weights)
        models.append(model)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = (m.decode_head(m.encode(images)) for m in models)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)

    state = torch.load(tmp_path / "dist" / "last.pth", weights_only=True)
    assert state["config"]["world_size"] == 2 and len(state["rng"]) == 2
