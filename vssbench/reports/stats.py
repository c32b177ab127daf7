"""Paired bootstrap over videos: confidence intervals for the difference of two runs.

None of the papers reports uncertainty. The official VSPW numbers are pooled, not averaged:
mIoU comes from one confusion matrix summed over every frame, mVC_C from the window scores of
every video pooled. A resample therefore draws videos with replacement, *sums their additive
metric states* (``videos.jsonl``, :class:`~vssbench.metrics.evaluator.MetricState`) and computes
the metrics from the sum with :func:`~vssbench.metrics.evaluator.compute_metrics`, exactly as a
run does. The same draw is applied to both runs (paired), so a run against itself gives [0, 0].
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vssbench.errors import DataError, VssbenchError
from vssbench.metrics.evaluator import MetricState, compute_metrics
from vssbench.results.records import compare_records
from vssbench.results.store import find_run_dir, read_videos_file

#: Metrics a bootstrap can resample (keys of :func:`compute_metrics`).
BOOTSTRAP_METRICS: tuple[str, ...] = ("mIoU", "wIoU", "mIoU_mmseg", "aAcc", "mAcc", "mVC8", "mVC16")


class ComparisonError(VssbenchError):
    """Two runs that cannot be compared (different videos or conditions)."""


@dataclass(frozen=True)
class Interval:
    """A paired-bootstrap result for one metric, fractions: ``diff`` = A - B on all videos,
    ``low``/``high`` the percentile interval of the resampled differences, ``a``/``b`` the two
    runs' values on all videos."""

    diff: float
    low: float
    high: float
    a: float
    b: float

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``+2.6 [+1.9, +3.3]`` (percentage points by default)."""

        def f(v: float) -> str:
            return "nan" if not np.isfinite(v) else f"{round(scale * v, digits) + 0.0:+.{digits}f}"

        return f"{f(self.diff)} [{f(self.low)}, {f(self.high)}]"


def load_video_states(run: str | Path) -> dict[str, MetricState]:
    """Per-video metric states of a run folder (its ``record.json``, or a folder holding one run:
    :func:`~vssbench.results.store.find_run_dir`), from every ``videos*.jsonl``.

    Raises :class:`DataError` naming the folder when it holds no videos file, and the file and
    video when a state is malformed.
    """
    folder = find_run_dir(run)
    files = sorted(folder.glob("videos*.jsonl"))
    if not files:
        raise DataError(folder, "no videos.jsonl (per-video metric states) in this run folder")
    states: dict[str, MetricState] = {}
    for path in files:
        for entry in read_videos_file(path):
            try:
                states.setdefault(str(entry["video"]), MetricState.from_dict(entry["state"]))
            except (ValueError, TypeError) as exc:
                raise DataError(path, f"video {entry['video']!r}: {exc}") from None
    return states


def _read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / "record.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read the record ({exc})") from None


def _stack(states: Sequence[MetricState]) -> dict[str, np.ndarray]:
    """Per-video arrays [n, ...] of every additive field."""
    out = {"confusion": np.stack([s.confusion for s in states]).astype(np.float64)}
    for name in MetricState._ARRAYS + MetricState._COUNTS:
        out[name] = np.stack([np.asarray(getattr(s, name), dtype=np.float64) for s in states])
    return out


def _weighted_state(
    stack: Mapping[str, np.ndarray], weights: np.ndarray, template: MetricState
) -> MetricState:
    """The sum of the videos' states, video i counted ``weights[i]`` times
    (exact: integer sums in float64)."""
    state = MetricState.zeros(template.num_classes, template.clips)
    k = template.num_classes
    state.confusion = (
        np.rint(weights @ stack["confusion"].reshape(len(weights), k * k)).astype(np.int64).reshape(k, k)
    )
    for name in MetricState._ARRAYS:
        summed = weights @ stack[name]
        setattr(
            state, name, summed if name in MetricState._FLOAT_ARRAYS else np.rint(summed).astype(np.int64)
        )
    for name in MetricState._COUNTS:
        setattr(state, name, round(float(weights @ stack[name])))
    return state


def _metric_values(state: MetricState, metrics: Sequence[str]) -> list[float]:
    computed = compute_metrics(state)
    return [float(computed[m]) for m in metrics]


def paired_bootstrap(
    states_a: Sequence[MetricState],
    states_b: Sequence[MetricState],
    metrics: Sequence[str] = ("mIoU", "mVC8", "mVC16"),
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Paired bootstrap over videos of A - B for each metric (fractions).

    ``states_a[i]`` and ``states_b[i]`` are the same video. Each of ``samples`` resamples draws
    n videos with replacement (``numpy.random.default_rng(seed)``), sums both runs' states over
    the draw and computes the metrics from the sums; the interval is the ``level`` percentile
    interval of the differences (NaN differences, e.g. no VC window in a draw, are dropped).
    """
    if len(states_a) != len(states_b) or not states_a:
        raise ComparisonError(
            f"need the same, non-zero number of videos, got {len(states_a)} and {len(states_b)}"
        )
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ComparisonError(f"unknown metric(s) {unknown}; available: {', '.join(BOOTSTRAP_METRICS)}")
    if samples < 1:
        raise ComparisonError(f"samples must be >= 1, got {samples}")
    if not 0.0 < level < 1.0:
        raise ComparisonError(f"level must be in (0, 1), got {level}")
    n = len(states_a)
    full_a = _metric_values(
        sum(states_a, MetricState.zeros(states_a[0].num_classes, states_a[0].clips)), metrics
    )
    full_b = _metric_values(
        sum(states_b, MetricState.zeros(states_b[0].num_classes, states_b[0].clips)), metrics
    )
    stack_a, stack_b = _stack(states_a), _stack(states_b)
    rng = np.random.default_rng(seed)
    diffs = np.empty((samples, len(metrics)))
    for s in range(samples):
        weights = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        va = _metric_values(_weighted_state(stack_a, weights, states_a[0]), metrics)
        vb = _metric_values(_weighted_state(stack_b, weights, states_b[0]), metrics)
        diffs[s] = np.subtract(va, vb)
    tail = 100.0 * (1.0 - level) / 2.0
    out: dict[str, Interval] = {}
    for j, metric in enumerate(metrics):
        column = diffs[:, j][np.isfinite(diffs[:, j])]
        low, high = np.percentile(column, [tail, 100.0 - tail]) if column.size else (np.nan, np.nan)
        out[metric] = Interval(full_a[j] - full_b[j], float(low), float(high), full_a[j], full_b[j])
    return out


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    metrics: Sequence[str] = ("mIoU", "mVC8", "mVC16"),
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Paired bootstrap of run A - run B from their folders' ``videos.jsonl``.

    ``run_a``/``run_b`` are run folders, their ``record.json``, or folders holding exactly one
    run (:func:`~vssbench.results.store.find_run_dir`).

    Refused (:class:`ComparisonError`, one line) when the runs evaluated different videos or
    under different conditions (``conditions_hash`` and environment, as
    :func:`~vssbench.results.records.compare_records` decides).
    """
    dir_a, dir_b = find_run_dir(run_a), find_run_dir(run_b)
    rec_a, rec_b = _read_record(dir_a), _read_record(dir_b)
    if rec_a is not None and rec_b is not None:
        verdict = compare_records([rec_a, rec_b], labels=["A", "B"])
        if not verdict["same"]:
            raise ComparisonError(f"cannot compare A = {dir_a} and B = {dir_b}: {verdict['note']}")
    states_a, states_b = load_video_states(dir_a), load_video_states(dir_b)
    if set(states_a) != set(states_b):
        only_a = sorted(set(states_a) - set(states_b))
        only_b = sorted(set(states_b) - set(states_a))
        raise ComparisonError(
            f"cannot compare {dir_a} and {dir_b}: their videos differ "
            f"(only in A: {_few(only_a)}; only in B: {_few(only_b)})"
        )
    videos = sorted(states_a)
    return paired_bootstrap(
        [states_a[v] for v in videos], [states_b[v] for v in videos], metrics, samples, seed, level
    )


def _few(items: Sequence[str], limit: int = 3) -> str:
    if not items:
        return "none"
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def intervals_to_json(intervals: Mapping[str, Interval]) -> dict[str, dict[str, float]]:
    """``{metric: {"diff", "low", "high", "a", "b"}}`` (fractions, like records)."""
    return {m: asdict(iv) for m, iv in intervals.items()}


__all__ = [
    "BOOTSTRAP_METRICS",
    "ComparisonError",
    "Interval",
    "compare_runs",
    "intervals_to_json",
    "load_video_states",
    "paired_bootstrap",
]
