"""The efficiency of a run or profile: params, GMACs and per-interval FPS, with their protocol.

A run measures once, on rank 0, on one keyframe interval of real frames of its first video
(preloaded on the device, so data loading is excluded): parameters (grouped, dead), GMACs
(fvcore's convention, one multiply-add = one), per-interval FPS (warm-up excluded, device
synchronized, median of repeats). ``vssbench profile`` measures the same way on synthetic frames.

Every FPS timing says whether it was contended (``fps_protocol.cpu_share``, ``contended``; the
rule is :func:`vssbench.profiling.assess_contention`). The FPS timing of a row is an
:class:`FpsJob`: timed at once, or, in a sweep, collected (``run_efficiency(fps_jobs=...)``) and timed with
the other rows' jobs, their intervals taking turns (:func:`time_fps_jobs`), so that a change of
load during the sweep falls on every row alike.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vssbench.config import RunConfig
from vssbench.errors import OptionError
from vssbench.harness.adapters import interval_frames, lead_in
from vssbench.harness.configs import row_name
from vssbench.harness.distributed import DistContext
from vssbench.harness.evaluate import DTYPES
from vssbench.profiling import (
    CONTENTION_SHARE,
    LOAD_SAMPLES,
    LOAD_SPACING_S,
    IntervalTimer,
    count_gmacs,
    count_parameters,
    environment,
    find_dead_parameters,
    time_interleaved,
)
from vssbench.results.records import to_jsonable
from vssbench.results.store import RunLog, RunStore

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
    fps_jobs: list[FpsJob] | None = None,
) -> dict[str, Any]:
    """The efficiency fields of a run's record, measured on the first frames of ``video``.

    ``input_size`` always; params only for ``efficiency="none"``; else :func:`measure_efficiency`.
    A failure never loses the accuracy: it becomes the record's ``error`` (traceback in the log).
    With ``fps_jobs`` (a sweep's list; not distributed) the FPS timing is left to the caller: the
    row's :class:`FpsJob` is appended to it and the fields say ``fps_protocol.pending``.
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
            jobs = None if ctx.distributed else fps_jobs  # rank 0 alone times: no waiting ranks
            fields.update(
                measure_efficiency(
                    adapter, frames, config, ctx, where, log, dead_search=efficiency == "full", fps_jobs=jobs
                )
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
    fps_jobs: list[FpsJob] | None = None,
) -> dict[str, Any]:
    """Params (grouped, dead), GMACs and per-interval FPS of ``adapter`` on ``frames``.

    ``frames`` are the adapter's lead-in frames followed by one keyframe interval; ``where`` says
    in the protocol which frames they are. ``dead_search=False`` skips :func:`find_dead_parameters`
    (``params_dead``/``params_inference`` stay null). The FPS spread over the timed repeats goes
    into ``fps_spread``. With ``fps_jobs`` (a list) the FPS is not timed here: its
    :class:`FpsJob` is appended and ``fps``/``fps_spread`` stay null, ``fps_protocol.pending``
    true, until :func:`finish_fps` fills them in.
    """
    on_device = [f.to(device=ctx.device, dtype=DTYPES[config.dtype]) for f in frames]
    lead = len(on_device) - config.interval  # the adapter's steady_state_after (see lead_in)
    params, gmacs = _measure(adapter, on_device, config, lead, log, dead_search)
    h, w = on_device[0].shape[-2:]
    job = FpsJob(
        row=row_name(config),
        adapter=adapter,
        frames=on_device,
        config=config,
        device=ctx.device,
        lead=lead,
        where=f"{where} at {h}x{w}, preloaded on {ctx.device}",
        distributed=ctx.distributed,
        log=log,
        log_path=log.path if log is not None else None,
    )
    fields = {
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
    }
    if fps_jobs is not None:
        fps_jobs.append(job)
        return {
            **fields,
            "fps": None,
            "fps_spread": None,
            "fps_protocol": {**_base_protocol(job), "pending": True},
        }
    timed = time_fps_jobs([job])[0]
    if "error" in timed:
        raise timed.pop("exception")
    return {**fields, **timed}


def _measure(
    adapter: torch.nn.Module,
    frames: list[torch.Tensor],
    config: RunConfig,
    lead: int,
    log: RunLog | None,
    dead_search: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, gmacs) of :mod:`vssbench.profiling` on device-resident ``frames``; times go to ``log``."""
    # Order matters: autograd first (no inference-mode caches yet), timing (time_fps_jobs) last.
    start = time.perf_counter()
    dead = find_dead_parameters(adapter, frames) if dead_search else []
    params = count_parameters(adapter, dead)
    after_params = time.perf_counter()
    gmacs = count_gmacs(adapter, list(frames), config.interval, lead_in=lead)
    adapter.reset()
    if log is not None:
        log.info(
            f"efficiency: dead-parameter search {after_params - start:.2f}s, GMAC count "
            f"{time.perf_counter() - after_params:.2f}s"
        )
        if dead:
            log.info(
                f"dead parameters (never influence an output): {dead[:20]}{' ...' if len(dead) > 20 else ''}"
            )
    return params, gmacs


# --- FPS timing: at once, or interleaved with the other rows of a sweep -------------------------


@dataclass
class FpsJob:
    """One row's FPS timing, ready to run: the adapter, its frames on the device, what they are.

    Made by :func:`measure_efficiency`; timed by :func:`time_fps_jobs`, alone or with other rows;
    :func:`finish_fps` puts the result into the row's record (and its run folder, if any).
    """

    row: str
    adapter: torch.nn.Module
    frames: list[torch.Tensor]
    config: RunConfig
    device: torch.device
    lead: int
    where: str
    distributed: bool = False
    log: RunLog | None = None
    log_path: Path | None = None

    @property
    def weight_bytes(self) -> int:
        """Bytes of the adapter's parameters and buffers (what keeping it for a later phase costs)."""
        tensors = [*self.adapter.parameters(), *self.adapter.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def run_dir(self) -> Path | None:
        """The run folder whose record this timing completes (None for a profile)."""
        return None if self.log_path is None else self.log_path.parent


def time_fps_jobs(jobs: Sequence[FpsJob]) -> list[dict[str, Any]]:
    """Time the jobs' FPS, their timed intervals taking turns (:func:`~vssbench.profiling.time_interleaved`).

    Returns per job the record fields ``fps``, ``fps_spread`` and ``fps_protocol`` (with the
    contention reading and ``interleaved``/``interleaved_with``), or, for a job whose timing
    failed, those fields null plus ``error`` (and the ``exception``, for the caller). A contended
    timing gets a one-line warning on stderr (and in the run's log) naming the row and its share.
    """
    timers = [
        IntervalTimer(
            job.adapter,
            job.frames,
            job.config.interval,
            warmup=job.config.warmup,
            repeats=job.config.repeats,
            device=job.device,
            lead_in=job.lead,
            threads=job.config.threads,
        )
        for job in jobs
    ]
    start = time.perf_counter()
    results = time_interleaved(timers)
    seconds = time.perf_counter() - start
    for job in jobs:
        with contextlib.suppress(Exception):  # a failed timing keeps its own error; this only frees caches
            job.adapter.reset()
    names = [job.row for job in jobs]
    out = []
    for job, fps in zip(jobs, results):
        others = [name for name in names if name != job.row]
        log, opened = _job_log(job)
        try:
            if isinstance(fps, Exception):
                if log is not None:
                    log.info(
                        "FPS timing FAILED:\n"
                        + "".join(traceback.format_exception(type(fps), fps, fps.__traceback__))
                    )
                out.append(
                    {
                        "fps": None,
                        "fps_spread": None,
                        "fps_protocol": None,
                        "error": f"efficiency measurement failed: {type(fps).__name__}: {fps}",
                        "exception": fps,
                    }
                )
                continue
            protocol = _fps_protocol(job, fps, others)
            if log is not None:
                together = f", interleaved with {', '.join(others)}" if others else ""
                log.info(
                    f"FPS timing {seconds:.2f}s{together}: {fps['fps']:.3f} FPS, cpu_share "
                    f"{_fmt(fps.get('cpu_share'))}, other runnable tasks {_fmt(fps.get('others_runnable'))}"
                )
            if fps.get("contended"):
                _warn(
                    log,
                    f"{job.row}: FPS timed on a busy machine, cpu_share {_fmt(fps.get('cpu_share'))} "
                    f"({fps.get('contention')}); not comparable with FPS timed on an idle one",
                )
            out.append(
                {
                    "fps": fps["fps"],
                    "fps_spread": _fps_spread(fps, job.config.interval),
                    "fps_protocol": protocol,
                }
            )
        finally:
            if opened and log is not None:
                log.close()
    return out


def finish_fps(job: FpsJob, record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``record`` (made with the FPS pending) completed with the timed ``fields``; a run's
    ``record.json`` is rewritten. A failed timing keeps the accuracy and sets ``error``."""
    fields = {k: v for k, v in fields.items() if k != "exception"}
    done = to_jsonable({**record, **fields})
    if job.run_dir is not None:
        store = RunStore(job.run_dir.parent, job.config)
        if store.dir != job.run_dir:  # pragma: no cover - would be a harness bug
            raise RuntimeError(f"FPS job of {job.run_dir} resolves to {store.dir}")
        store.write_record(done)
    return done


def _job_log(job: FpsJob) -> tuple[RunLog | None, bool]:
    """(the log of the job's run, whether it was opened here): the run's own log while it is open,
    else a new handle on its log.txt; None for a profile."""
    if job.log is not None and job.log.attached:
        return job.log, False
    if job.log_path is not None:
        return RunLog(job.log_path), True
    return None, False


def _warn(log: RunLog | None, message: str) -> None:
    """A one-line warning on stderr (through the run's log, which also keeps it, when there is one)."""
    if log is not None:
        log.warning(message)
    else:
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _fps_spread(fps: dict[str, Any], interval: int) -> dict[str, float] | None:
    """``{"min", "median", "max", "relative"}`` of the per-repeat FPS (None without repeat times)."""
    rates = sorted(interval / t for t in fps.get("interval_times_s", []) if t > 0)
    if not rates:
        return None
    median = statistics.median(rates)
    return {"min": rates[0], "median": median, "max": rates[-1], "relative": (rates[-1] - rates[0]) / median}


def _base_protocol(job: FpsJob) -> dict[str, Any]:
    """The part of ``fps_protocol`` known before the timing: which frames, how often, the statistic."""
    config = job.config
    return {
        "frames": job.where,
        "interval": config.interval,
        "lead_in": job.lead,
        "warmup": config.warmup,
        "repeats": config.repeats,
        "repeats_rule": "given"
        if config.repeats is not None
        else "auto: enough intervals for ~10 s of timing, 3..30",
        "statistic": "interval frames / median interval time; warm-up excluded; device synchronized; "
        "data loading excluded",
        "scope": "rank 0 only" if job.distributed else "single process",
    }


#: How ``fps_protocol.load_before``/``load_after``/``others_runnable`` were read.
LOAD_MEASURE = (
    "tasks runnable on the machine besides this process's threads (/proc/stat procs_running minus our "
    f"threads in state R): load_before/load_after are means of {LOAD_SAMPLES} samples "
    f"{LOAD_SPACING_S * 1e3:.0f} ms apart before the first and after the last timed interval, "
    "others_runnable the mean of those and of a sample at every timed interval's start and end"
)
CONTENTION_RULE = (
    f"contended when cpu_share < {CONTENTION_SHARE} or other processes share the GPU; the load readings "
    "are recorded, not decisive (at an interval's edges they count our own threads going to sleep)"
)


#: What the timer reports that ``fps_protocol`` keeps as it is (null when the timer lacks it).
_TIMING_KEYS: tuple[str, ...] = (
    "interval_time_s",
    "interval_times_s",
    "timer",
    "cpu_share",
    "cpu_share_source",
    "cpu_utilization",
    "threads",
    "cores",
    "others_runnable",
    "load_before",
    "load_after",
    "load_covers_cores",
)


def _fps_protocol(job: FpsJob, fps: dict[str, Any], interleaved_with: list[str]) -> dict[str, Any]:
    """The record's ``fps_protocol``: which frames were timed, how often, what the FPS is, whether
    the machine was busy, and which rows were timed in turns with this one."""
    protocol = _base_protocol(job)
    protocol["repeats"] = fps.get("repeats", job.config.repeats)
    protocol.update({key: fps.get(key) for key in _TIMING_KEYS})
    protocol.update(
        load_measure=LOAD_MEASURE,
        contended=bool(fps.get("contended")),
        contention=fps.get("contention"),
        contention_rule=CONTENTION_RULE,
        interleaved=bool(interleaved_with),
        interleaved_with=list(interleaved_with),
    )
    if "gpu_other_processes" in fps:
        protocol["gpu_other_processes"] = fps["gpu_other_processes"]
    return protocol


__all__ = [
    "EFFICIENCY_LEVEL",
    "EFFICIENCY_MODES",
    "FpsJob",
    "check_efficiency_mode",
    "environment_fields",
    "finish_fps",
    "measure_efficiency",
    "run_efficiency",
    "time_fps_jobs",
]
