"""Model-only FPS over one keyframe interval, alone or with several adapters' intervals in turns.

FPS is the frames of one keyframe interval divided by the median model time of that interval, the
device synchronized around the timed region. Data loading is timed by the harness, never here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from vssbench.profiling.contention import (
    CpuMeter,
    assess_contention,
    cpu_cores,
    gpu_other_processes,
    load_reading,
)
from vssbench.profiling.interval import lead_and_interval


def _synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


#: ``measure_fps(repeats=None)``: time intervals until about this many seconds are timed ...
FPS_BUDGET_S = 10.0
#: ... but at least / at most this many repeats.
FPS_MIN_REPEATS, FPS_MAX_REPEATS = 3, 30


def auto_repeats(interval_time_s: float, budget_s: float = FPS_BUDGET_S) -> int:
    """Timed repeats for an interval that takes ``interval_time_s``: enough for ``budget_s`` seconds.

    Clamped to [FPS_MIN_REPEATS, FPS_MAX_REPEATS]: a fast model (B0, ~0.5 s per interval on a CPU)
    gets 20 repeats, whose min-max spread stays small; a slow one (B5, ~10 s) gets 3, each long
    enough to average its noise out, so that a B5 profile stays within minutes.
    """
    if not interval_time_s > 0:
        return FPS_MAX_REPEATS
    return int(min(FPS_MAX_REPEATS, max(FPS_MIN_REPEATS, math.ceil(budget_s / interval_time_s))))


def measure_fps(
    adapter: nn.Module,
    frames: Sequence[torch.Tensor],
    interval: int,
    warmup: int = 1,
    repeats: int | None = 3,
    device: str | torch.device = "cpu",
    lead_in: int = 0,
) -> dict[str, Any]:
    """Model-only FPS over one keyframe interval (fixed protocol, recorded with the result).

    ``frames`` holds at least ``lead_in + interval`` images already on ``device`` (or one image,
    reused). After every ``reset()`` the ``lead_in`` frames run untimed (a method's
    start-of-video fallback). ``warmup`` whole intervals are run untimed; then each of
    ``repeats`` runs calls ``reset()`` and times the ``interval`` steps with the device
    synchronized before and after, under ``torch.inference_mode()``: on CUDA with CUDA events
    recorded on the current stream around the interval (``timer: "cuda_event"``), elsewhere with
    ``time.perf_counter`` (``timer: "perf_counter"``). FPS = interval / median interval time
    (seconds). Data loading is not included: the harness times it apart. ``repeats=None`` picks
    the count from the last warm-up interval's time (:func:`auto_repeats`; with no warm-up, from
    the first timed interval); the count used is returned as ``repeats``.

    The result also says whether the timing was contended (:class:`CpuMeter`,
    :func:`assess_contention`): ``cpu_share``, ``others_runnable``, ``load_before``,
    ``load_after``, ``contended`` and ``contention``. :func:`time_interleaved` runs the same
    protocol for several adapters, their timed intervals taking turns.
    """
    result = time_interleaved([IntervalTimer(adapter, frames, interval, warmup, repeats, device, lead_in)])[0]
    if isinstance(result, BaseException):
        raise result
    return result


class IntervalTimer:
    """The protocol of :func:`measure_fps` for one adapter, one interval at a time.

    :meth:`warm` runs the warm-up intervals (and fixes an automatic repeat count), :meth:`time_one`
    times one interval, :meth:`result` gives :func:`measure_fps`' dict: several timers can take
    turns (:func:`time_interleaved`). ``threads`` (optional) is the intra-op thread count set
    around this timer's own work (outside the timed region).
    """

    def __init__(
        self,
        adapter: nn.Module,
        frames: Sequence[torch.Tensor] | torch.Tensor,
        interval: int,
        warmup: int = 1,
        repeats: int | None = 3,
        device: str | torch.device = "cpu",
        lead_in: int = 0,
        threads: int | None = None,
    ) -> None:
        self.auto = repeats is None
        if isinstance(repeats, bool) or (repeats is not None and (int(repeats) != repeats or repeats < 1)):
            raise ValueError(f"repeats must be a positive integer or None (auto), got {repeats!r}")
        if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
        self.adapter = adapter
        self.lead, self.clip = lead_and_interval(frames, interval, lead_in)  # one tensor: reused per step
        self.interval, self.warmup, self.lead_in = int(interval), int(warmup), int(lead_in)
        self.repeats = FPS_MIN_REPEATS if repeats is None else int(repeats)
        self.count_known = not self.auto
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.threads = threads
        self.times: list[float] = []
        self.meter = CpuMeter()

    @property
    def remaining(self) -> int:
        """Timed intervals still to run (with an automatic count not fixed yet: at least one)."""
        return max(0, self.repeats - len(self.times))

    def _restart(self) -> None:
        self.adapter.reset()
        for frame in self.lead:
            self.adapter.step(frame)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        if self.threads is None or self.threads == previous:
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def warm(self) -> None:
        """Run the untimed warm-up intervals; with ``repeats=None`` the last one fixes the count."""
        warm_time = 0.0
        with self._threads(), torch.inference_mode():
            for _ in range(self.warmup):
                self._restart()
                _synchronize(self.device)
                start = time.perf_counter()
                for frame in self.clip:
                    self.adapter.step(frame)
                _synchronize(self.device)
                warm_time = time.perf_counter() - start
        if self.auto and self.warmup:
            self.repeats = auto_repeats(warm_time)
            self.count_known = True

    def time_one(self, release: bool = False) -> float:
        """Time one interval (reset, lead-in untimed, then the interval's steps, device synchronized).

        ``release`` resets the adapter afterwards (untimed), dropping its caches while other
        timers take their turns.
        """
        with self._threads(), torch.inference_mode():
            self._restart()
            _synchronize(self.device)
            self.meter.start()
            if self.cuda:
                stream = torch.cuda.current_stream(self.device)
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record(stream)
            start = time.perf_counter()
            for frame in self.clip:
                self.adapter.step(frame)
            if self.cuda:
                end.record(stream)
            _synchronize(self.device)
            elapsed = begin.elapsed_time(end) / 1e3 if self.cuda else time.perf_counter() - start
            self.meter.stop()
            if release:
                self.adapter.reset()
        self.times.append(elapsed)
        if not self.count_known:  # automatic count without warm-up: the first interval decides
            self.repeats = auto_repeats(elapsed)
            self.count_known = True
        return elapsed

    def result(
        self, load_before: float | None = None, load_after: float | None = None, gpu_others: int | None = None
    ) -> dict[str, Any]:
        """:func:`measure_fps`' dict over the intervals timed so far, with the contention fields."""
        if not self.times:
            raise RuntimeError("no interval was timed")
        median = statistics.median(self.times)
        threads = self.threads or torch.get_num_threads()
        share, source, utilization = self.meter.share(threads)
        cores, covers = cpu_cores()
        readings = [v for v in (load_before, load_after) if v is not None]
        pooled = [*self.meter.samples, *readings]
        others = sum(pooled) / len(pooled) if pooled else None
        contended, why = assess_contention(share, gpu_others=gpu_others)
        result = {
            "fps": self.interval / median,
            "interval_time_s": median,
            "interval_times_s": list(self.times),
            "repeats": int(self.repeats),
            "warmup": self.warmup,
            "interval": self.interval,
            "lead_in": self.lead_in,
            "timer": "cuda_event" if self.cuda else "perf_counter",
            "cpu_share": share,
            "cpu_share_source": source,
            "cpu_utilization": utilization,
            "threads": threads,
            "cores": cores,
            "others_runnable": others,
            "load_before": load_before,
            "load_after": load_after,
            "load_covers_cores": covers,
            "contended": contended,
            "contention": why,
        }
        if self.cuda:
            result["gpu_other_processes"] = gpu_others
        return result


def interleaved_order(counts: Sequence[int]) -> list[int]:
    """The order in which timers with ``counts`` timed intervals each take turns (timer indices).

    Rounds of a round robin: with ``M = max(counts)`` rounds, timer ``i``'s ``j``-th interval
    goes in round ``floor((j + 1/2) * M / counts[i])``, so a timer with fewer repeats is spread
    evenly over the whole phase instead of finishing early; within round ``r`` the timers go in
    index order starting from ``r mod N`` (no timer always follows the same one). With equal
    counts this is a plain round robin, rotated each round.
    """
    if any(isinstance(c, bool) or int(c) != c or c < 0 for c in counts):
        raise ValueError(f"counts must be non-negative integers, got {list(counts)}")
    rounds = max(counts, default=0)
    slots: list[list[int]] = [[] for _ in range(rounds)]
    for i, count in enumerate(counts):
        for j in range(count):
            slots[int((j + 0.5) * rounds / count)].append(i)
    n = len(counts)
    order = []
    for r, members in enumerate(slots):
        order.extend(sorted(members, key=lambda i: (i - r) % n))
    return order


def time_interleaved(timers: Sequence[IntervalTimer]) -> list[dict[str, Any] | Exception]:
    """Run several timers' protocols with their timed intervals taking turns (:func:`interleaved_order`).

    Every timer warms up first; then the load is read (:func:`load_reading`), the intervals run
    in turns, and the load is read again, so a change of load during the phase falls on every
    timer alike and the ratios of their FPS hold. Returns each timer's :meth:`IntervalTimer.result`,
    or the exception it raised (it leaves the turns; the others go on).
    """
    failed: dict[int, Exception] = {}

    def attempt(i: int, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a failing timer leaves the rotation; the others go on
            failed[i] = exc

    for i, timer in enumerate(timers):
        attempt(i, timer.warm)
    before = load_reading()
    for i, timer in enumerate(timers):  # an automatic count without warm-up: the first interval fixes it
        if i not in failed and not timer.count_known:
            attempt(i, timer.time_one)
    release = len(timers) > 1
    for i in interleaved_order([0 if i in failed else t.remaining for i, t in enumerate(timers)]):
        if i not in failed:
            attempt(i, functools.partial(timers[i].time_one, release=release))
    after = load_reading()
    gpu: dict[torch.device, int | None] = {}
    for t in timers:
        if t.cuda and t.device not in gpu:
            gpu[t.device] = gpu_other_processes(t.device)
    results: list[dict[str, Any] | Exception] = []
    for i, timer in enumerate(timers):
        if i in failed:
            results.append(failed[i])
            continue
        try:
            results.append(timer.result(before, after, gpu.get(timer.device)))
        except Exception as exc:  # noqa: BLE001 - e.g. no interval timed
            results.append(exc)
    return results
