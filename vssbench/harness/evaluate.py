"""The evaluation loop shared by ``vssbench run`` and training's periodic validation.

:func:`evaluate_video` streams one video through an adapter (``reset()``, then ``step()`` per
frame, decoded in the background by the data layer) into a :class:`VideoEvaluator`, and returns
the video's additive metric state with its timing and diagnostics. :func:`evaluate_videos` does
that for a list of videos and sums the states in the given order: the metrics of a validation
pass are computed exactly as a run's.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vssbench.errors import DataError
from vssbench.metrics import MetricState, VideoEvaluator, compute_metrics
from vssbench.models.decoder import resize_logits
from vssbench.results.records import to_jsonable

#: VC window lengths evaluated in every run (record keys mVC8, mVC16).
METRIC_CLIPS: tuple[int, ...] = (8, 16)
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

#: ``on_prediction(video, stem, pred)`` receives each H x W prediction (0..num_classes-1, numpy).
PredictionSink = Callable[[str, str, np.ndarray], None]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def frames_to_use(dataset: Any, video: str, max_frames: int | None) -> int:
    """Frames of ``video`` that an evaluation uses (all, or the first ``max_frames``)."""
    n = dataset.num_frames(video)
    return n if max_frames is None else min(n, max_frames)


def accumulate_diagnostics(sums: dict[str, float], counts: dict[str, int], info: dict[str, Any]) -> None:
    """Add each finite numeric field of ``last_step_info`` (bools count as 0/1; NaN is skipped)."""
    for key, value in (info or {}).items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if not isinstance(value, (bool, int, float, np.number)):
            continue
        value = float(value)
        if math.isfinite(value):
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1


def combine_diagnostics(entries: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per-frame means of each diagnostic over all videos (frames where it was NaN left out)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for entry in entries:
        for key, (s, c) in entry.get("diagnostics", {}).items():
            sums[key] = sums.get(key, 0.0) + s
            counts[key] = counts.get(key, 0) + c
    return {k: sums[k] / counts[k] for k in sorted(sums) if counts[k]}


def check_logits(adapter: torch.nn.Module, logits: Any, image: torch.Tensor, num_classes: int) -> None:
    """Refuse logits that are not N x num_classes x H x W at the input size (never silently wrong numbers)."""
    want = (image.shape[0], num_classes, *image.shape[-2:])
    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if got != want:
        name = getattr(getattr(adapter, "info", None), "name", type(adapter).__name__)
        raise ValueError(
            f"method {name!r}: step() returned logits of shape {got} for a frame of shape "
            f"{tuple(image.shape)}; expected {want} (N x num_classes x H x W at the input size)"
        )


def evaluate_video(
    adapter: torch.nn.Module,
    dataset: Any,
    video: str,
    num_frames: int,
    transform: Any,
    evaluator: Any,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    num_classes: int = 124,
    on_prediction: PredictionSink | None = None,
    show: bool = False,
) -> dict[str, Any]:
    """Stream the first ``num_frames`` frames of ``video`` through ``adapter`` and ``evaluator``.

    Per frame: ``adapter.step()`` on the normalized image, logits resized to the mask (bilinear),
    argmax, ``evaluator.update``. Returns ``{"video", "num_frames", "state" (the video's
    :class:`MetricState` as a dict), "diagnostics" ({key: [sum, count]}), "data_time_s",
    "model_time_s"}``. Run it under ``torch.no_grad()`` (the caller decides).
    """
    pred_dtype = torch.uint8 if num_classes <= 256 else torch.int64
    adapter.reset()
    evaluator.begin_video(video, num_frames)
    diag_sum: dict[str, float] = {}
    diag_count: dict[str, int] = {}
    data_time = model_time = 0.0
    seen = 0
    frames = dataset.iter_video(video, transform)
    try:
        for frame in tqdm(
            itertools.islice(frames, num_frames),
            total=num_frames,
            desc=video,
            unit="frame",
            leave=False,
            file=sys.stderr,
            disable=not show,
        ):
            data_time += float(frame.load_time)
            image = frame.image.to(device=device, dtype=dtype)
            synchronize(device)
            start = time.perf_counter()
            logits = adapter.step(image)
            synchronize(device)
            model_time += time.perf_counter() - start
            if seen == 0:
                check_logits(adapter, logits, image, num_classes)
            # max(dim).indices is argmax (first maximum on ties, as documented) and about twice as
            # fast on CPU for N x C x H x W logits.
            pred = resize_logits(logits.float(), tuple(frame.label.shape)).max(dim=1).indices[0]
            pred_np = pred.to(pred_dtype).cpu().numpy()
            evaluator.update(pred_np, frame.label)
            accumulate_diagnostics(diag_sum, diag_count, adapter.last_step_info)
            if on_prediction is not None:
                on_prediction(video, frame.stem, pred_np)
            seen += 1
    finally:
        frames.close()
    if seen != num_frames:
        raise DataError(
            dataset.root / "data" / video, f"expected {num_frames} frames, the reader gave {seen}"
        )
    state = evaluator.end_video()
    return {
        "video": video,
        "num_frames": num_frames,
        "state": to_jsonable(state.to_dict()),
        "diagnostics": {k: [diag_sum[k], diag_count[k]] for k in sorted(diag_sum)},
        "data_time_s": data_time,
        "model_time_s": model_time,
    }


def evaluate_videos(
    adapter: torch.nn.Module,
    dataset: Any,
    videos: Sequence[str],
    transform: Any,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    num_classes: int = 124,
    max_frames: int | None = None,
    metric_preset: str = "vspw",
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``adapter`` on ``videos`` of ``dataset`` and return the metrics of their summed states.

    The result is :func:`vssbench.metrics.compute_metrics` of the per-video states summed in the
    given order (the exact numbers ``vssbench run`` reports for the same videos and conditions),
    plus ``num_videos``, ``num_frames`` and ``diagnostics`` (per-frame means). The adapter is put
    in eval mode for the pass and returned to its previous mode afterwards.
    """
    device = torch.device(device)
    evaluator = VideoEvaluator(num_classes=num_classes, clips=METRIC_CLIPS, preset=metric_preset)
    total = MetricState.zeros(num_classes, METRIC_CLIPS)
    entries = []
    was_training = adapter.training
    adapter.eval()
    try:
        with torch.no_grad():
            for video in tqdm(
                videos, desc="validation", unit="video", file=sys.stderr, disable=not progress, leave=False
            ):
                entry = evaluate_video(
                    adapter,
                    dataset,
                    video,
                    frames_to_use(dataset, video, max_frames),
                    transform,
                    evaluator,
                    device=device,
                    dtype=dtype,
                    num_classes=num_classes,
                )
                total = total + MetricState.from_dict(entry["state"])
                entries.append(entry)
    finally:
        adapter.reset()
        adapter.train(was_training)
    metrics = compute_metrics(total)
    metrics["num_videos"] = len(entries)
    metrics["num_frames"] = sum(e["num_frames"] for e in entries)
    metrics["diagnostics"] = combine_diagnostics(entries)
    return metrics


__all__ = [
    "DTYPES",
    "METRIC_CLIPS",
    "accumulate_diagnostics",
    "combine_diagnostics",
    "evaluate_video",
    "evaluate_videos",
    "frames_to_use",
    "synchronize",
]
