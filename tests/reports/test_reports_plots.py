"""Every plot kind writes a non-empty image of the expected pixel size, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vssbench import methods
from vssbench.cli import main
from vssbench.data import VSPWDataset, synthesize
from vssbench.models.checkpoint import save_checkpoint
from vssbench.reports import plots


def write_log(folder: Path, focal: bool, iters: int = 30) -> Path:
    """A training folder in the trainer's shape: config.json and log.jsonl (train + validation lines)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"method": "tfc", "backbone": "b0", "options": {"focal": focal}})
    )
    rng = np.random.default_rng(int(focal))
    with open(folder / "log.jsonl", "w") as f:
        for i in range(1, iters + 1):
            acc = 0.9 + (0.08 if focal else 0.0) * (1 - np.exp(-i / 10)) + rng.normal(0, 0.005)
            f.write(
                json.dumps(
                    {
                        "iter": i,
                        "loss": 3.0 / i,
                        "lr": 6e-5 * (1 - i / 100),
                        "loss_seg": 2.5 / i,
                        "loss_bce": 0.5 / i,
                        "mask_acc": acc,
                    }
                )
                + "\n"
            )
            if i % 10 == 0:
                f.write(
                    json.dumps(
                        {
                            "iter": i,
                            "val_mIoU": 0.1 * i / iters,
                            "val_wIoU": 0.2,
                            "val_mVC8": 0.8,
                            "val_mVC16": 0.75,
                        }
                    )
                    + "\n"
                )
        f.write('{"iter": 31, "loss"')  # a line cut off mid-write is ignored
    return folder


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_smooth_is_a_trailing_mean() -> None:
    assert np.allclose(plots.smooth(np.array([1.0, 2.0, 3.0, 4.0]), 2), [1.0, 1.5, 2.5, 3.5])


def test_mask_accuracy_and_curves_png_size_and_determinism(tmp_path: Path) -> None:
    logs = plots.read_logs([write_log(tmp_path / "a", True), write_log(tmp_path / "b", False)])
    assert (
        logs[0].label() == "TFC MiT-B0 (focal BCE)" and logs[1].label() == "TFC MiT-B0 (no BCE supervision)"
    )
    assert len(logs[0].series("mask_acc")[0]) == 30 and len(logs[0].series("val_mIoU")[0]) == 3
    out = plots.save_figure(plots.mask_accuracy_figure(logs, window=5, trivial=0.9), tmp_path / "fig4.png")
    assert png_size(out) == (int(plots.WIDTH * plots.DPI), int(3.6 * plots.DPI))
    again = plots.save_figure(plots.mask_accuracy_figure(logs, window=5, trivial=0.9), tmp_path / "fig4b.png")
    assert out.read_bytes() == again.read_bytes()
    fig = plots.curves_figure(logs, keys=["loss", "loss_bce", "mask_acc", "val_mIoU"])
    out = plots.save_figure(fig, tmp_path / "curves.png")
    assert png_size(out) == (int(plots.WIDTH * plots.DPI), int(2 * 2.4 * plots.DPI))
    image = np.asarray(Image.open(out).convert("L"))
    assert image.min() < 100 and image.max() == 255  # something was drawn
    for fmt in ("pdf", "svg"):
        a = plots.save_figure(plots.mask_accuracy_figure(logs), tmp_path / f"c1.{fmt}")
        b = plots.save_figure(plots.mask_accuracy_figure(logs), tmp_path / f"c2.{fmt}")
        assert a.stat().st_size > 1000 and a.read_bytes() == b.read_bytes()


def test_mask_accuracy_needs_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "seg"
    folder.mkdir()
    (folder / "log.jsonl").write_text(json.dumps({"iter": 1, "loss": 1.0}) + "\n")
    with pytest.raises(Exception, match="no 'mask_acc' values"):
        plots.mask_accuracy_figure(plots.read_logs([folder]))


def test_tradeoff_png(tmp_path: Path) -> None:
    records = [
        {
            "method": m,
            "backbone": b,
            "fps": fps,
            "gmacs_per_frame": g,
            "mVC8": vc,
            "mIoU": iou,
            "options": {},
            "interval": 4,
        }
        for m, b, fps, g, vc, iou in [
            ("segformer", "b0", 37.5, 14.2, 0.827, 0.329),
            ("segformer", "b1", 34.9, 30.0, 0.847, 0.365),
            ("tfc", "b0", 38.2, 9.5, 0.853, 0.329),
            ("tfc", "b1", 37.1, 20.0, 0.868, 0.367),
        ]
    ]
    out = plots.save_figure(plots.tradeoff_figure(records, with_paper=True), tmp_path / "t.png")
    assert png_size(out) == (int(plots.WIDTH * plots.DPI), int(3.8 * plots.DPI))
    with pytest.raises(Exception, match="no record has both"):
        plots.tradeoff_figure([{"method": "tfc", "backbone": "b0", "fps": 3.0, "mVC8": None}])


def test_similarity_masks_and_cli(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "data", videos=3, frames=6, size=(64, 64), seed=0)
    torch.manual_seed(0)
    model = methods.create("tfc", "b0")
    ckpt = tmp_path / "tfc_b0.pth"
    save_checkpoint(model, ckpt)
    dataset = VSPWDataset(root, "val")
    video = dataset.videos[0]
    from vssbench.data import TestTransform

    panels = plots.similarity_masks(model, dataset, video, [1, 5], TestTransform((64, 64)))
    assert [(p.t, p.k) for p in panels] == [(1, 0), (5, 4)]
    p = panels[0]
    assert p.similarity.shape == (16, 16) and p.changed.shape == (16, 16) and p.image.shape == (64, 64, 3)
    # the true mask is the keyframe label != frame label at 1/4 (nearest), ignoring 255
    k_label = dataset.read_label(video, dataset.frame_stems(video)[0])[::4, ::4]
    t_label = dataset.read_label(video, dataset.frame_stems(video)[1])[::4, ::4]
    assert np.array_equal(p.changed, k_label != t_label)
    assert np.array_equal(p.valid, (k_label != 255) & (t_label != 255))
    expected = ((np.clip(p.similarity, 0, 1) >= p.threshold) == (k_label == t_label))[p.valid].mean()
    assert p.accuracy == pytest.approx(expected)
    with pytest.raises(Exception, match="frame 4 of .* is a keyframe"):
        plots.similarity_masks(model, dataset, video, [4], TestTransform((64, 64)))

    out = tmp_path / "fig3.png"
    result = CliRunner().invoke(
        main,
        [
            "plot",
            "masks",
            str(ckpt),
            "--data",
            str(root),
            "--video",
            video,
            "--frames",
            "1,2,3",
            "--size",
            "64x64",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    w, h = png_size(out)
    assert w == int(plots.WIDTH * plots.DPI) and h == int((3 * (plots.WIDTH / 4 + 0.45) + 0.3) * plots.DPI)
    result = CliRunner().invoke(
        main,
        [
            "plot",
            "masks",
            str(ckpt),
            "--data",
            str(root),
            "--frames",
            "0",
            "--size",
            "64x64",
            "--out",
            str(tmp_path / "x.png"),
        ],
    )
    assert result.exit_code == 2 and "is a keyframe" in result.output


def test_plot_cli_mask_accuracy_and_curves(tmp_path: Path) -> None:
    a, b = write_log(tmp_path / "a", True), write_log(tmp_path / "b", False)
    runner = CliRunner()
    out = tmp_path / "fig4.png"
    result = runner.invoke(
        main, ["plot", "mask-accuracy", str(a), str(b / "log.jsonl"), "--trivial", "0.9", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert png_size(out) == (1280, 720)
    result = runner.invoke(
        main, ["plot", "curves", str(a), "--keys", "loss,val_mIoU", "--out", str(tmp_path / "c.svg")]
    )
    assert result.exit_code == 0 and (tmp_path / "c.svg").stat().st_size > 0
    result = runner.invoke(main, ["plot", "curves", str(a), "--out", str(tmp_path / "c.gif")])
    assert result.exit_code == 2 and "unknown figure format '.gif'" in result.output
