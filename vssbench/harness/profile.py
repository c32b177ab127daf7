"""``profile_method``: the params, GMACs and per-interval FPS of a method, without data.

The model is built as a run builds it (:func:`~vssbench.harness.adapters.build_adapter`) and
measured as a run is (:func:`~vssbench.harness.efficiency.measure_efficiency`), on synthetic
frames at exactly ``config.resolution``; the record has a run record's keys, accuracy keys null
(``train_seed``, as in a run: the ``--seed`` of the ``vssbench train`` that wrote the checkpoint,
when the file says so). :func:`write_records` saves a sweep's records as one JSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import vssbench
from vssbench.config import RunConfig
from vssbench.errors import OptionError
from vssbench.harness.adapters import (
    PROFILE_FRAMES,
    build_adapter,
    lead_in,
    load_summary,
    profile_frames,
    torch_threads,
)
from vssbench.harness.configs import effective_options, prepare_config
from vssbench.harness.distributed import DistContext, resolve_device
from vssbench.harness.efficiency import FpsJob, environment_fields, measure_efficiency
from vssbench.harness.evaluate import DTYPES, accumulate_diagnostics
from vssbench.models.checkpoint import LoadReport
from vssbench.results.records import empty_record, to_jsonable, utc_timestamp


def profile_method(
    config: RunConfig, frames: str = "video", fps_jobs: list[FpsJob] | None = None
) -> dict[str, Any]:
    """Params, GMACs and per-interval FPS of a method without data.

    ``config.resolution`` is the input size itself (rounded up to ``size_divisor`` if set).
    ``frames`` picks the ``interval`` input frames (seeded): ``"video"`` (default) renders a
    synthetic video in memory (:func:`vssbench.data.render_video`: moving objects, camera pan),
    so content-dependent methods (TFC's sparse update) cost what they cost on a real-looking
    video; ``"random"`` uses independent standard-normal images, a scene that changes completely
    every frame: their costly end. ``diagnostics`` shows how much was updated. Returns a record
    with the same keys as :func:`~vssbench.harness.runner.run_evaluation`'s, accuracy keys null.
    With ``fps_jobs`` (a list) the FPS timing is appended to it instead of run (``fps`` null,
    ``fps_protocol.pending`` true; :func:`~vssbench.harness.efficiency.finish_fps` completes it).
    """
    if frames not in PROFILE_FRAMES:
        raise OptionError(f"profile frames must be one of {', '.join(PROFILE_FRAMES)}, got {frames!r}")
    config = prepare_config(config)
    ctx = DistContext(device=resolve_device(config.device))
    with torch_threads(config.threads):
        adapter, load_report = build_adapter(config, ctx.device)
        size = _input_size(config)
        lead = lead_in(adapter)
        images = profile_frames(frames, lead + config.interval, size, config.seed)
        diagnostics = _diagnostics(adapter, images, ctx.device, DTYPES[config.dtype])
        record = _profile_record(config, size, diagnostics, load_report)
        record.update(environment_fields(ctx.device))
        where = (
            f"{config.interval} {'frames of a synthetic video' if frames == 'video' else 'random frames'}"
            + (f" after {lead} lead-in frames" if lead else "")
        )
        record.update(measure_efficiency(adapter, images, config, ctx, where, None, fps_jobs=fps_jobs))
        record["profile_frames"] = frames
    record["created"] = utc_timestamp()
    return to_jsonable(record)


def _input_size(config: RunConfig) -> tuple[int, int]:
    """``config.resolution`` rounded up to a multiple of ``config.size_divisor`` (when set)."""
    h, w = config.resolution
    if config.size_divisor:
        d = config.size_divisor
        h, w = -(-h // d) * d, -(-w // d) * d
    return h, w


def _diagnostics(
    adapter: torch.nn.Module, images: list[torch.Tensor], device: torch.device, dtype: torch.dtype
) -> dict[str, float]:
    """Per-frame means of the adapter's numeric ``last_step_info`` over ``images``."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        adapter.reset()
        for frame in images:
            adapter.step(frame.to(device=device, dtype=dtype))
            accumulate_diagnostics(sums, counts, adapter.last_step_info)
    return {k: sums[k] / counts[k] for k in sorted(sums)}


def _profile_record(
    config: RunConfig, size: tuple[int, int], diagnostics: dict[str, float], load_report: LoadReport | None
) -> dict[str, Any]:
    """A profile record before its environment and efficiency fields (accuracy keys null)."""
    record = empty_record(config)
    record.update(
        kind="profile",
        options=effective_options(config),
        split=None,
        num_videos=0,
        num_frames=0,
        input_size=list(size),
        diagnostics=diagnostics,
        world_size=1,
        vssbench_version=vssbench.__version__,
        efficiency="full",
        checkpoint_load=load_summary(load_report) if config.non_strict else None,
        train_seed=None if load_report is None else load_report.train_seed,
    )
    return record


#: The file :func:`write_records` writes in its folder (``vssbench profile --out DIR``).
RECORDS_FILE = "records.json"


def write_records(records: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write ``records`` as one JSON list (the ``--json`` output) to ``out/records.json``; returns its path.

    ``out`` and its parents are created. The file is written under a temporary name in ``out`` and
    renamed, so an interrupted write never leaves half a file (an earlier ``records.json`` stays
    whole until the new one replaces it).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORDS_FILE
    text = json.dumps(list(records), indent=2, allow_nan=False) + "\n"
    tmp = folder / f".{RECORDS_FILE}.{os.getpid()}.tmp"  # own name per process: no two writers share it
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


__all__ = ["RECORDS_FILE", "profile_method", "write_records"]
