"""The model of a run and the frames it is measured on.

:func:`build_adapter` creates a method exactly as ``vssbench run`` and ``vssbench profile`` do
(seeded, checkpoint loaded, decoder mode set, moved to the device and dtype). The efficiency of a
run is measured on :func:`interval_frames` (real frames of its first video); ``vssbench profile``
uses :func:`profile_frames` (a rendered synthetic video, or random images).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image

from vssbench.config import RunConfig
from vssbench.data import TestTransform, render_video
from vssbench.harness.evaluate import DTYPES, frames_to_use
from vssbench.methods.base import create
from vssbench.models.checkpoint import LoadReport, load_checkpoint
from vssbench.models.decoder import set_decoder_mode

#: Input frames of ``vssbench profile``: a rendered synthetic video, or independent random images.
PROFILE_FRAMES: tuple[str, ...] = ("video", "random")


def build_adapter(config: RunConfig, device: torch.device) -> tuple[torch.nn.Module, LoadReport | None]:
    """Create the method (seeded, so a random init is the same on every rank and every resume).

    Returns the adapter and the checkpoint's :class:`LoadReport` (``None`` without a checkpoint);
    ``config.non_strict`` loads only the keys that fit.
    """
    torch.manual_seed(config.seed)
    adapter = create(
        config.method,
        backbone=config.backbone,
        num_classes=config.num_classes,
        **{**config.options, "interval": config.interval},
    )
    report = None
    if config.checkpoint is not None:
        report = load_checkpoint(
            adapter, config.checkpoint, format=config.checkpoint_format, strict=not config.non_strict
        )
        adapter.eval()
    # Every method alike: each decoder head in the model takes the run's mode (none: nothing to fold).
    set_decoder_mode(adapter, config.decoder)
    return adapter.to(device=device, dtype=DTYPES[config.dtype]).eval(), report


def load_summary(report: LoadReport | None) -> dict[str, Any] | None:
    """The record's ``checkpoint_load``: what a (partial) load left out, by kind (count and first keys)."""
    if report is None:
        return None
    summary: dict[str, Any] = {"format": report.format, "loaded": report.loaded}
    for kind in ("missing", "unexpected", "mismatched", "untouched"):
        keys = [k if isinstance(k, str) else k[0] for k in getattr(report, kind)]
        summary[kind] = len(keys)
        if keys:
            summary[f"{kind}_keys"] = keys[:10]
    return summary


def lead_in(adapter: torch.nn.Module) -> int:
    """Frames run before the measured interval: the adapter's ``steady_state_after`` (0 by default)."""
    return int(getattr(adapter, "steady_state_after", 0) or 0)


def interval_frames(
    dataset: Any, video: str, transform: Any, interval: int, max_frames: int | None
) -> list[torch.Tensor]:
    """The first ``interval`` frames of ``video`` (cycled when the video is shorter), on the CPU."""
    available_frames = min(interval, frames_to_use(dataset, video, max_frames))
    frames_iter = dataset.iter_video(video, transform)
    try:
        images = [frame.image for frame in itertools.islice(frames_iter, available_frames)]
    finally:
        frames_iter.close()
    return [images[i % len(images)] for i in range(interval)]


def profile_frames(kind: str, count: int, size: tuple[int, int], seed: int) -> list[torch.Tensor]:
    """``count`` normalized 1 x 3 x H x W frames: a rendered synthetic video, or random images."""
    if kind == "random":
        generator = torch.Generator().manual_seed(seed)
        return [torch.randn(1, 3, *size, generator=generator) for _ in range(count)]
    transform = TestTransform(resolution=size, keep_ratio=False)
    return [transform(Image.fromarray(rgb)) for rgb, _ in render_video(count, size, seed=seed)]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads inside the block (restored afterwards)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


__all__ = [
    "PROFILE_FRAMES",
    "build_adapter",
    "interval_frames",
    "lead_in",
    "load_summary",
    "profile_frames",
    "torch_threads",
]
