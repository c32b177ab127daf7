"""Paired bootstrap over videos, and over seeds then videos: intervals for the difference of two
runs, or of two groups of runs trained with different seeds.

None of the papers reports uncertainty. The official VSPW numbers are pooled, not averaged:
mIoU comes from one confusion matrix summed over every frame, mVC_C from the window scores of
every video pooled. A resample therefore draws videos with replacement, *sums their additive
metric states* (``videos.jsonl``, :class:`~vssbench.metrics.evaluator.MetricState`) and computes
the metrics from the sum with :func:`~vssbench.metrics.evaluator.compute_metrics`, exactly as a
run does. The same draw is applied to both runs (paired), so a run against itself gives [0, 0].

Groups (:func:`grouped_bootstrap`, :func:`compare_groups`): the runs of one row trained with
different ``--seed`` (the record's ``train_seed``) are its replicates. A and B pair by
train_seed; a resample draws the paired seeds with replacement, then, for each drawn seed, the
videos (one draw for A and B), computes each seed's pooled metrics, averages them over the drawn
seeds and takes A - B. So the interval holds the variation between trainings as well as between
videos; with one seed it is :func:`paired_bootstrap`'s.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vssbench.errors import DataError, VssbenchError
from vssbench.metrics.evaluator import MetricState, compute_metrics
from vssbench.results.records import compare_records
from vssbench.results.store import find_run_dir, is_run_dir, read_videos_file

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


def _weighted_states(
    stack: Mapping[str, np.ndarray], weights: np.ndarray, template: MetricState, chunk: int = 256
) -> list[MetricState]:
    """:func:`_weighted_state` of every row of ``weights`` [m, n], with the same numbers: the
    integer fields in one matrix product (integer sums in float64 are exact, so each row equals
    its own product; the confusion matrices ``chunk`` rows at a time), the two float VC sums row
    by row as :func:`_weighted_state` sums them. The confusion matrices stay float64 (whole
    numbers): :func:`~vssbench.metrics.evaluator.compute_metrics` computes in float64 anyway,
    and two conversions of every draw would cost a third of the time."""
    k = template.num_classes
    clips = tuple(template.clips)
    flat = stack["confusion"].reshape(weights.shape[1], k * k)
    integer = [name for name in MetricState._ARRAYS if name not in MetricState._FLOAT_ARRAYS]
    summed = {name: np.rint(weights @ stack[name]).astype(np.int64) for name in integer}
    counts = {name: np.rint(weights @ stack[name]).astype(np.int64) for name in MetricState._COUNTS}
    states = []
    for start in range(0, len(weights), chunk):
        block = weights[start : start + chunk]
        confusions = (block @ flat).reshape(len(block), k, k)
        for i, (w, confusion) in enumerate(zip(block, confusions), start=start):
            fields: dict[str, Any] = {name: w @ stack[name] for name in MetricState._FLOAT_ARRAYS}
            fields.update({name: summed[name][i] for name in integer})
            fields.update({name: int(counts[name][i]) for name in MetricState._COUNTS})
            states.append(MetricState(confusion=confusion, clips=clips, **fields))
    return states


def _metric_values(state: MetricState, metrics: Sequence[str]) -> list[float]:
    computed = compute_metrics(state)
    return [float(computed[m]) for m in metrics]


def _check_settings(metrics: Sequence[str], samples: int, level: float) -> None:
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ComparisonError(f"unknown metric(s) {unknown}; available: {', '.join(BOOTSTRAP_METRICS)}")
    if samples < 1:
        raise ComparisonError(f"samples must be >= 1, got {samples}")
    if not 0.0 < level < 1.0:
        raise ComparisonError(f"level must be in (0, 1), got {level}")


def _intervals(
    diffs: np.ndarray, full_a: Sequence[float], full_b: Sequence[float], metrics: Sequence[str], level: float
) -> dict[str, Interval]:
    """Percentile intervals of the resampled differences ``diffs`` [samples, metrics] (NaN
    differences dropped) around the full-sample values."""
    tail = 100.0 * (1.0 - level) / 2.0
    out: dict[str, Interval] = {}
    for j, metric in enumerate(metrics):
        column = diffs[:, j][np.isfinite(diffs[:, j])]
        low, high = np.percentile(column, [tail, 100.0 - tail]) if column.size else (np.nan, np.nan)
        out[metric] = Interval(full_a[j] - full_b[j], float(low), float(high), full_a[j], full_b[j])
    return out


def _total(states: Sequence[MetricState]) -> MetricState:
    return sum(states, MetricState.zeros(states[0].num_classes, states[0].clips))


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
    _check_settings(metrics, samples, level)
    n = len(states_a)
    full_a = _metric_values(_total(states_a), metrics)
    full_b = _metric_values(_total(states_b), metrics)
    stack_a, stack_b = _stack(states_a), _stack(states_b)
    rng = np.random.default_rng(seed)
    diffs = np.empty((samples, len(metrics)))
    for s in range(samples):
        weights = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        va = _metric_values(_weighted_state(stack_a, weights, states_a[0]), metrics)
        vb = _metric_values(_weighted_state(stack_b, weights, states_b[0]), metrics)
        diffs[s] = np.subtract(va, vb)
    return _intervals(diffs, full_a, full_b, metrics, level)


#: A group of runs of one row: ``{train_seed: per-video states}`` (None: the run does not say).
SeedGroup = Mapping[int | None, Sequence[MetricState]]


def seeds_text(seeds: Sequence[int | None]) -> str:
    """``0, 1, 2`` (sorted; ``?`` for a run that does not record its train_seed)."""
    return ", ".join("?" if s is None else str(s) for s in sorted(seeds, key=_seed_order))


def _seed_order(seed: int | None) -> tuple[bool, int]:
    return (seed is None, seed if seed is not None else 0)


def pair_seeds(
    seeds_a: Sequence[int | None], seeds_b: Sequence[int | None]
) -> tuple[list[tuple[int | None, int | None]], list[int | None], list[int | None]]:
    """Which runs of groups A and B pair up, by their ``train_seed``: (pairs, only in A, only in B).

    Two single runs pair whatever their seeds (the comparison of two runs). Otherwise runs pair
    when they have the same train_seed; a run without one (None), or a seed that several runs
    of one group share, pairs with nothing, since nothing says which runs share a training.
    Pairs are sorted by seed. Raises :class:`ComparisonError` naming both groups' seeds when
    nothing pairs.
    """
    if len(seeds_a) == 1 and len(seeds_b) == 1:
        return [(seeds_a[0], seeds_b[0])], [], []
    count_a, count_b = Counter(seeds_a), Counter(seeds_b)
    common = sorted(
        (s for s in count_a if s is not None and count_a[s] == 1 and count_b.get(s) == 1), key=_seed_order
    )
    only_a = sorted((s for s in seeds_a if s not in common), key=_seed_order)
    only_b = sorted((s for s in seeds_b if s not in common), key=_seed_order)
    if not common:
        raise ComparisonError(
            "no train_seed in both groups, nothing to pair: "
            f"A has train_seed {seeds_text(seeds_a) or 'none'}, B has {seeds_text(seeds_b) or 'none'} "
            "(runs pair by train_seed; a run without one pairs only when each side is a single run)"
        )
    return [(s, s) for s in common], only_a, only_b


def grouped_bootstrap(
    groups_a: SeedGroup,
    groups_b: SeedGroup,
    metrics: Sequence[str] = ("mIoU", "mVC8", "mVC16"),
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Hierarchical paired bootstrap of A - B over seeds, then videos (fractions).

    ``groups_a[s][i]`` and ``groups_b[s][i]`` are video i of the runs trained with seed s
    (:func:`pair_seeds` decides which seeds pair; unpaired ones are left out). The point
    estimate is the mean over the paired seeds of A's pooled metrics on all videos minus B's
    (``Interval.a``/``.b`` the two means). Each of ``samples`` resamples
    (``numpy.random.default_rng(seed)``) draws k of the k paired seeds with replacement (no
    draw, and no randomness spent, when k = 1), then for each drawn seed its n videos with
    replacement, the same videos for A and B; each drawn seed's metrics come from the sum of
    its drawn states (:func:`~vssbench.metrics.evaluator.compute_metrics`, pooled as a run
    pools them) and are averaged over the k drawn seeds. The interval is the ``level``
    percentile interval of the differences (NaN ones dropped). With one seed every number
    equals :func:`paired_bootstrap`'s for the same ``seed``.
    """
    pairs, _, _ = pair_seeds(list(groups_a), list(groups_b))
    _check_settings(metrics, samples, level)
    runs_a = [list(groups_a[sa]) for sa, _ in pairs]
    runs_b = [list(groups_b[sb]) for _, sb in pairs]
    for (sa, _), va, vb in zip(pairs, runs_a, runs_b):
        if len(va) != len(vb) or not va:
            raise ComparisonError(
                f"train_seed {sa}: need the same, non-zero number of videos in A and B, "
                f"got {len(va)} and {len(vb)}"
            )
    k, m = len(pairs), len(metrics)
    full_a = np.mean([_metric_values(_total(v), metrics) for v in runs_a], axis=0)
    full_b = np.mean([_metric_values(_total(v), metrics) for v in runs_b], axis=0)
    rng = np.random.default_rng(seed)
    # Draw first (the order of random numbers: per resample, the seeds, then each seed's videos),
    # then evaluate every draw of a seed together.
    draws: list[list[np.ndarray]] = [[] for _ in range(k)]
    where = np.empty((samples, k, 2), dtype=np.int64)  # (seed, row of draws[seed]) per slot
    for s in range(samples):
        picked = [0] if k == 1 else rng.integers(0, k, size=k)
        for slot, j in enumerate(picked):
            n = len(runs_a[j])
            where[s, slot] = (j, len(draws[j]))
            draws[j].append(np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64))
    values_a = np.full((samples, k, m), np.nan)
    values_b = np.full((samples, k, m), np.nan)
    for j in range(k):
        if not draws[j]:
            continue
        weights = np.stack(draws[j])
        per_a = [
            _metric_values(st, metrics) for st in _weighted_states(_stack(runs_a[j]), weights, runs_a[j][0])
        ]
        per_b = [
            _metric_values(st, metrics) for st in _weighted_states(_stack(runs_b[j]), weights, runs_b[j][0])
        ]
        slots = where[:, :, 0] == j
        values_a[slots] = np.asarray(per_a)[where[:, :, 1][slots]]
        values_b[slots] = np.asarray(per_b)[where[:, :, 1][slots]]
    diffs = values_a.mean(axis=1) - values_b.mean(axis=1)
    return _intervals(diffs, [float(v) for v in full_a], [float(v) for v in full_b], metrics, level)


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
    videos = _common_videos(dir_a, dir_b, states_a, states_b)
    return paired_bootstrap(
        [states_a[v] for v in videos], [states_b[v] for v in videos], metrics, samples, seed, level
    )


def find_run_group(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """The run folders of a group: a run folder (or its ``record.json``), a folder holding one
    or several runs (every run below it), or several of these joined by commas
    (``runs/a/seed0,runs/a/seed1``) or given as a sequence. Sorted per folder, first mention
    kept; a path that names no run raises :class:`DataError` naming it
    (:func:`~vssbench.results.store.find_run_dir`)."""
    if isinstance(spec, (str, Path)):
        text = str(spec)
        parts: list[str | Path] = [text] if Path(text).exists() or "," not in text else text.split(",")
    else:
        parts = list(spec)
    found: list[Path] = []
    for part in parts:
        if not str(part).strip():
            continue
        path = Path(part)
        folder = path.parent if path.is_file() else path
        below = []
        if folder.is_dir() and not is_run_dir(folder):
            below = sorted(
                {f.parent for f in folder.rglob("record.json")}
                | {f.parent for f in folder.rglob("videos*.jsonl")}
            )
        found.extend(below if len(below) > 1 else [find_run_dir(path)])
    unique: list[Path] = []
    for f in found:
        if f.resolve() not in {u.resolve() for u in unique}:
            unique.append(f)
    return unique


@dataclass(frozen=True)
class GroupComparison:
    """What :func:`compare_groups` compared: the intervals (:func:`grouped_bootstrap`, or
    :func:`compare_runs` for two single runs), the runs of A and B that entered, in pairs
    (``runs_a[i]`` with ``runs_b[i]``), their train_seeds, and the runs left out for want of a
    partner (``"A <folder> (train_seed 3)"``)."""

    intervals: dict[str, Interval]
    runs_a: tuple[Path, ...]
    runs_b: tuple[Path, ...]
    seeds_a: tuple[int | None, ...]
    seeds_b: tuple[int | None, ...]
    left_out: tuple[str, ...] = field(default=())

    @property
    def single(self) -> bool:
        """True for two single runs (the plain paired bootstrap over videos)."""
        return len(self.runs_a) == 1 and len(self.runs_b) == 1 and not self.left_out


def train_seed(record: Mapping[str, Any] | None) -> int | None:
    """The record's ``train_seed`` (the ``--seed`` of the training that wrote its checkpoint),
    None when it does not say (records written before the field existed)."""
    seed = (record or {}).get("train_seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def same_checkpoint(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two records evaluated the same weights: the same ``checkpoint_sha256``, or
    the same ``checkpoint`` path (two randomly initialized runs, without one, count as the same)."""
    sha_a, sha_b = a.get("checkpoint_sha256"), b.get("checkpoint_sha256")
    if sha_a and sha_b and sha_a == sha_b:
        return True
    return a.get("checkpoint") == b.get("checkpoint")


def _check_group(label: str, runs: Sequence[Path], records: Sequence[Mapping[str, Any] | None]) -> None:
    """Refuse a group whose runs are not one row's replicates (one line naming the folder)."""
    if len(runs) < 2:
        return
    for run, rec in zip(runs, records):
        if rec is None:
            raise DataError(
                run, f"no record.json, so it cannot join the group {label} (which row, which seed)"
            )
    first, first_run = records[0], runs[0]
    assert first is not None
    for run, rec in zip(runs[1:], records[1:]):
        assert rec is not None
        differing = [
            f"{key} {rec.get(key)} (the first run's: {first.get(key)})"
            for key in ("method", "backbone", "options")
            if json.dumps(first.get(key), sort_keys=True, default=str)
            != json.dumps(rec.get(key), sort_keys=True, default=str)
        ]
        verdict = compare_records([first, rec], labels=[first_run.name, run.name])
        if not verdict["same"]:
            differing.append(verdict["note"])
        if differing:
            raise ComparisonError(
                f"{label}: {run} is not the same row as {first_run}: {'; '.join(differing)} "
                "(a group holds the runs of one row that differ only in checkpoint, e.g. seeds)"
            )
    for i, (run_i, rec_i) in enumerate(zip(runs, records)):
        for run_j, rec_j in zip(runs[i + 1 :], records[i + 1 :]):
            assert rec_i is not None and rec_j is not None
            if same_checkpoint(rec_i, rec_j):
                weights = (
                    rec_i.get("checkpoint_sha256") or rec_i.get("checkpoint") or "none: randomly initialized"
                )
                raise ComparisonError(
                    f"{label} holds {len(runs)} runs, but {run_i} and {run_j} have the same checkpoint "
                    f"({weights}): a group's runs must differ in checkpoint (one row's seeds); "
                    "name one of them"
                )


def _label(spec: str | Path | Sequence[str | Path]) -> str:
    return str(spec) if isinstance(spec, (str, Path)) else ",".join(str(s) for s in spec)


def compare_groups(
    group_a: str | Path | Sequence[str | Path],
    group_b: str | Path | Sequence[str | Path],
    metrics: Sequence[str] = ("mIoU", "mVC8", "mVC16"),
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> GroupComparison:
    """Group A - group B: each a run folder, a folder holding one or several runs, or several
    joined by commas (:func:`find_run_group`).

    Two single runs are :func:`compare_runs`. Otherwise the runs of a group must be one row's
    replicates: the same method, backbone, options and conditions, different checkpoints
    (else :class:`ComparisonError` naming the folder). Runs pair by ``train_seed``
    (:func:`pair_seeds`; a seed that several runs of one group share pairs with nothing), the
    pairs must have evaluated the same videos, and A and B the same conditions; then
    :func:`grouped_bootstrap` over the pairs.
    """
    runs_a, runs_b = find_run_group(group_a), find_run_group(group_b)
    if len(runs_a) == 1 and len(runs_b) == 1:
        intervals = compare_runs(runs_a[0], runs_b[0], metrics, samples, seed, level)
        seeds = train_seed(_read_record(runs_a[0])), train_seed(_read_record(runs_b[0]))
        return GroupComparison(intervals, (runs_a[0],), (runs_b[0],), (seeds[0],), (seeds[1],))
    records_a = [_read_record(r) for r in runs_a]
    records_b = [_read_record(r) for r in runs_b]
    _check_group(_label(group_a), runs_a, records_a)
    _check_group(_label(group_b), runs_b, records_b)
    rec_a, rec_b = records_a[0], records_b[0]
    if rec_a is not None and rec_b is not None:
        verdict = compare_records([rec_a, rec_b], labels=["A", "B"])
        if not verdict["same"]:
            raise ComparisonError(
                f"cannot compare A = {_label(group_a)} and B = {_label(group_b)}: {verdict['note']}"
            )
    seeds_a, seeds_b = [train_seed(r) for r in records_a], [train_seed(r) for r in records_b]
    pairs, _, _ = pair_seeds(seeds_a, seeds_b)
    paired_a = [runs_a[seeds_a.index(sa)] for sa, _ in pairs]
    paired_b = [runs_b[seeds_b.index(sb)] for _, sb in pairs]
    left_out = [
        f"{side} {run} (train_seed {'?' if s is None else s})"
        for side, runs, seeds, used in (("A", runs_a, seeds_a, paired_a), ("B", runs_b, seeds_b, paired_b))
        for run, s in zip(runs, seeds)
        if run not in used
    ]
    states_a: dict[int | None, list[MetricState]] = {}
    states_b: dict[int | None, list[MetricState]] = {}
    for (sa, sb), dir_a, dir_b in zip(pairs, paired_a, paired_b):
        va, vb = load_video_states(dir_a), load_video_states(dir_b)
        videos = _common_videos(dir_a, dir_b, va, vb)
        states_a[sa], states_b[sb] = [va[v] for v in videos], [vb[v] for v in videos]
    intervals = grouped_bootstrap(states_a, states_b, metrics, samples, seed, level)
    return GroupComparison(
        intervals,
        tuple(paired_a),
        tuple(paired_b),
        tuple(sa for sa, _ in pairs),
        tuple(sb for _, sb in pairs),
        tuple(left_out),
    )


def _common_videos(
    dir_a: Path, dir_b: Path, states_a: Mapping[str, Any], states_b: Mapping[str, Any]
) -> list[str]:
    """The videos of two runs, sorted; :class:`ComparisonError` when they differ."""
    if set(states_a) != set(states_b):
        only_a = sorted(set(states_a) - set(states_b))
        only_b = sorted(set(states_b) - set(states_a))
        raise ComparisonError(
            f"cannot compare {dir_a} and {dir_b}: their videos differ "
            f"(only in A: {_few(only_a)}; only in B: {_few(only_b)})"
        )
    return sorted(states_a)


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
    "GroupComparison",
    "Interval",
    "SeedGroup",
    "compare_groups",
    "compare_runs",
    "find_run_group",
    "grouped_bootstrap",
    "intervals_to_json",
    "load_video_states",
    "pair_seeds",
    "paired_bootstrap",
    "same_checkpoint",
    "seeds_text",
    "train_seed",
]
