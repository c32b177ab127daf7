"""The efficiency of a run or profile: params, GMACs and per-interval FPS, with their protocol.

A run measures once, on rank 0, on one keyframe interval of real frames of its first video
(preloaded on the device, so data loading is excluded): parameters (grouped, dead), GMACs
(fvcore's convention, one multiply-add = one), per-interval FPS (warm-up excluded, device
synchronized, median of repeats). ``vssbench profile`` measures the same way on synthetic frames.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Sequence
from typing import Any

import torch

from vssbench.config import RunConfig
from vssbench.errors import OptionError
from vssbench.harness.adapters import interval_frames, lead_in
from vssbench.harness.distributed import DistContext
from vssbench.harness.evaluate import DTYPES
from vssbench.profiling import count_gmacs, count_parameters, environment, find_dead_parameters, measure_fps
from vssbench.results.store import RunLog

#: What a run measures besides accuracy: ``full`` (params incl. the dead-parameter search, GMACs,
#: FPS), ``fast`` (params, GMACs, FPS; no dead-parameter search), ``none`` (params only).
EFFICIENCY_MODES: tuple[str, ...] = ("full", "fast", "none")
#: Modes by how much they measure: a saved record of a higher level satisfies a lower request.
EFFICIENCY_LEVEL: dict[str, int] = {"none": 0, "fast": 1, "full": 2}


def check_efficiency_mode(efficiency: str) -> None:
    """Raise :class:`OptionError` unless ``efficiency`` is one of :data:`EFFICIENCY_MODES`."""
    if efficiency not in EFFICIENCY_MODES:
        raise OptionError(f"efficiency must be one of {', '.join(EFFICIENCY_MODES)}, got {efficiency!r}")


def environment_fields(device: torch.device) -> dict[str, Any]:
    """The record's environment keys (device, torch, threads, python, platform, cuda) for ``device``."""
    env = environment(str(device))
    return {k: env.get(k) for k in ("device", "torch", "threads", "python", "platform", "cuda")}


def run_efficiency(
    adapter: torch.nn.Module,
    dataset: Any,
    video: str,
    transform: Any,
    config: RunConfig,
    ctx: DistContext,
    log: RunLog,
    efficiency: str,
) -> dict[str, Any]:
    """The efficiency fields of a run's record, measured on the first frames of ``video``.

    ``input_size`` always; params only for ``efficiency="none"``; else :func:`measure_efficiency`.
    A failure never loses the accuracy: it becomes the record's ``error`` (traceback in the log).
    """
    fields: dict[str, Any] = {}
    try:
        lead = lead_in(adapter)
        frames = interval_frames(dataset, video, transform, lead + config.interval, config.max_frames)
        fields["input_size"] = list(frames[0].shape[-2:])
        if efficiency == "none":
            params = count_parameters(adapter)
            fields.update(
                params=params["total"], params_groups={**params["groups"], "other": params["other"]}
            )
        else:
            where = f"frames {lead}..{lead + config.interval - 1} of video {video}"
            fields.update(
                measure_efficiency(adapter, frames, config, ctx, where, log, dead_search=efficiency == "full")
            )
    except Exception as exc:  # noqa: BLE001 - any failure: the row says its efficiency is missing
        # The accuracy is complete and saved; the row still says that its efficiency is missing.
        fields["error"] = f"efficiency measurement failed: {type(exc).__name__}: {exc}"
        log.info(f"efficiency measurement FAILED:\n{traceback.format_exc()}")
    return fields


def measure_efficiency(
    adapter: torch.nn.Module,
    frames: Sequence[torch.Tensor],
    config: RunConfig,
    ctx: DistContext,
    where: str,
    log: RunLog | None,
    dead_search: bool = True,
) -> dict[str, Any]:
    """Params (grouped, dead), GMACs and per-interval FPS of ``adapter`` on ``frames``.

    ``frames`` are the adapter's lead-in frames followed by one keyframe interval; ``where`` says
    in the protocol which frames they are. ``dead_search=False`` skips :func:`find_dead_parameters`
    (``params_dead``/``params_inference`` stay null). The FPS spread over the timed repeats goes
    into ``fps_spread``.
    """
    on_device = [f.to(device=ctx.device, dtype=DTYPES[config.dtype]) for f in frames]
    lead = len(on_device) - config.interval  # the adapter's steady_state_after (see lead_in)
    params, gmacs, fps = _measure(adapter, on_device, config, ctx.device, lead, log, dead_search)
    h, w = on_device[0].shape[-2:]
    protocol = _fps_protocol(
        fps, config, f"{where} at {h}x{w}, preloaded on {ctx.device}", lead, ctx.distributed
    )
    return {
        "params": params["total"],
        "params_groups": {**params.get("groups", {}), "other": params.get("other")},
        "params_dead": params.get("dead") if dead_search else None,
        "params_inference": params.get("total_inference") if dead_search else None,
        "gmacs_keyframe": gmacs["gmacs_keyframe"],
        "gmacs_nonkeyframe": gmacs["gmacs_nonkeyframe"],
        "gmacs_per_frame": gmacs["gmacs_per_frame"],
        "gmacs_per_step": gmacs.get("gmacs_per_step"),
        "gmacs_by_operator": gmacs.get("gmacs_by_operator"),
        "gmacs_input_shape": gmacs.get("input_shape"),
        "gmacs_unsupported": gmacs.get("unsupported_ops"),
        "gmacs_convention": gmacs.get("macs_convention"),
        "fps": fps["fps"],
        "fps_spread": _fps_spread(fps, config.interval),
        "fps_protocol": protocol,
    }


def _measure(
    adapter: torch.nn.Module,
    frames: list[torch.Tensor],
    config: RunConfig,
    device: torch.device,
    lead: int,
    log: RunLog | None,
    dead_search: bool,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(params, gmacs, fps) of :mod:`vssbench.profiling` on device-resident ``frames``;
    times go to ``log``."""
    # Order matters: autograd first (no inference-mode caches yet), timing last.
    start = time.perf_counter()
    dead = find_dead_parameters(adapter, frames) if dead_search else []
    params = count_parameters(adapter, dead)
    after_params = time.perf_counter()
    gmacs = count_gmacs(adapter, list(frames), config.interval, lead_in=lead)
    after_gmacs = time.perf_counter()
    fps = measure_fps(
        adapter,
        frames,
        config.interval,
        warmup=config.warmup,
        repeats=config.repeats,
        device=str(device),
        lead_in=lead,
    )
    adapter.reset()
    if log is not None:
        log.info(
            f"efficiency: dead-parameter search {after_params - start:.2f}s, GMAC count "
            f"{after_gmacs - after_params:.2f}s, FPS timing {time.perf_counter() - after_gmacs:.2f}s"
        )
        if dead:
            log.info(
                f"dead parameters (never influence an output): {dead[:20]}{' ...' if len(dead) > 20 else ''}"
            )
    return params, gmacs, fps


def _fps_spread(fps: dict[str, Any], interval: int) -> dict[str, float] | None:
    """``{"min", "median", "max", "relative"}`` of the per-repeat FPS (None without repeat times)."""
    rates = sorted(interval / t for t in fps.get("interval_times_s", []) if t > 0)
    if not rates:
        return None
    median = statistics.median(rates)
    return {"min": rates[0], "median": median, "max": rates[-1], "relative": (rates[-1] - rates[0]) / median}


def _fps_protocol(
    fps: dict[str, Any], config: RunConfig, frames: str, lead: int, distributed: bool
) -> dict[str, Any]:
    """The record's ``fps_protocol``: which frames were timed, how often, and what the FPS is."""
    return {
        "frames": frames,
        "interval": config.interval,
        "lead_in": lead,
        "warmup": config.warmup,
        "repeats": fps.get("repeats", config.repeats),
        "repeats_rule": "given"
        if config.repeats is not None
        else "auto: enough intervals for ~10 s of timing, 3..30",
        "interval_time_s": fps.get("interval_time_s"),
        "interval_times_s": fps.get("interval_times_s"),
        "timer": fps.get("timer"),
        "statistic": "interval frames / median interval time; warm-up excluded; device synchronized; "
        "data loading excluded",
        "scope": "rank 0 only" if distributed else "single process",
    }


__all__ = [
    "EFFICIENCY_LEVEL",
    "EFFICIENCY_MODES",
    "check_efficiency_mode",
    "environment_fields",
    "measure_efficiency",
    "run_efficiency",
]
