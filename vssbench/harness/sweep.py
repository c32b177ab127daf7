"""Sweeps: many configs in one call, where a failing one becomes an error row and the sweep goes on.

:func:`run_sweep` runs :func:`~vssbench.harness.runner.run_evaluation` per config and
:func:`profile_sweep` runs :func:`~vssbench.harness.profile.profile_method`; both check every
config before the first one runs. :func:`error_record` is the row of a failed config: every
record key present, metrics null, ``error`` set.

FPS timing (``fps_timing``): ``"interleaved"`` (default) keeps each row's model after its
accuracy, params and GMACs, and times the FPS of all rows in one phase at the end, their timed
intervals taking turns (:func:`~vssbench.harness.efficiency.time_fps_jobs`), so that a change of
load during the sweep falls on every row alike and the ratios between rows hold. Rows are timed in
groups that keep at most ``fps_group_bytes`` of model weights (:data:`FPS_GROUP_BYTES`) alive;
``fps_protocol.interleaved_with`` names the rows timed with each. ``"sequential"`` times each row
right after its own accuracy, as a single run does.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

import vssbench
from vssbench.config import RunConfig
from vssbench.errors import DataError, OptionError, VssbenchError
from vssbench.harness.configs import normalize_config, prepare_config, row_name
from vssbench.harness.efficiency import FpsJob, check_efficiency_mode, finish_fps, time_fps_jobs
from vssbench.harness.profile import profile_method
from vssbench.harness.runner import RunInterrupted, run_evaluation
from vssbench.results.records import empty_record, to_jsonable, utc_timestamp
from vssbench.results.store import RunLog, RunStore

#: Warnings already given in this process (each is given once).
_WARNED: set[str] = set()

#: How a sweep times its rows' FPS: in one phase whose intervals take turns, or row by row.
FPS_TIMINGS: tuple[str, ...] = ("interleaved", "sequential")
#: An interleaved FPS phase keeps at most about this many bytes of model weights alive (all 7 methods
#: at B5 fit; a sweep over every method and backbone is timed in groups): a group is timed as soon
#: as its rows' weights reach it, counting the row that reached it.
FPS_GROUP_BYTES = 4 * 2**30


def check_fps_timing(fps_timing: str) -> None:
    """Raise :class:`VssbenchError` unless ``fps_timing`` is one of :data:`FPS_TIMINGS`."""
    if fps_timing not in FPS_TIMINGS:
        raise OptionError(f"fps_timing must be one of {', '.join(FPS_TIMINGS)}, got {fps_timing!r}")


def warn_slow_dtype(configs: Sequence[RunConfig]) -> None:
    """Warn once (stderr) when float16 runs on the CPU, where it is about 10x slower than float32."""
    if "float16-cpu" in _WARNED:
        return
    if any(c.dtype == "float16" and c.device == "cpu" for c in configs):
        _WARNED.add("float16-cpu")
        print(
            "WARNING: --dtype float16 on the CPU is about 10x slower than float32 (few half-precision CPU "
            "kernels); its FPS says nothing about a GPU. Use float32 or bfloat16 on the CPU.",
            file=sys.stderr,
            flush=True,
        )


def run_sweep(
    configs: Sequence[RunConfig],
    out: str | Path = "runs",
    resume: bool = False,
    save_preds: str | Path | None = None,
    progress: bool = True,
    efficiency: str = "full",
    fps_timing: str = "interleaved",
    fps_group_bytes: int = FPS_GROUP_BYTES,
) -> list[dict[str, Any]]:
    """Run each config; a failing one becomes a record with an ``error`` field and the sweep goes on.

    Every config is checked before anything runs (options, run-wide flags, the checkpoint's
    digest, and with ``resume`` that each folder may be continued): bad input raises
    :class:`VssbenchError` and leaves nothing behind. Bad data (:class:`DataError`) stops the
    sweep (every method would hit it). A single config's input error raises too; in a sweep of
    several it becomes that row's error. The traceback of a failure is in the run folder's
    ``log.txt``; its record (all keys, metrics null) in ``record.json``.

    With several configs, ``save_preds`` gets one folder per row,
    ``<save_preds>/<method>-<backbone>[-<options tag>]/<video>/<stem>.png``; a single config
    writes ``<save_preds>/<video>/<stem>.png`` (the VSPW submission layout).

    ``fps_timing="interleaved"`` (several configs, efficiency measured, not distributed): each
    row's ``record.json`` is first written with its FPS pending, then rewritten once the row's
    group is timed (module docstring). A sweep stopped in between leaves those rows incomplete:
    ``resume`` measures their efficiency again (their videos are kept) and times them together.
    A row that a resume finds complete is not measured again: its FPS is from the phase that
    timed it, and a note on stderr says which rows those are.
    """
    check_efficiency_mode(efficiency)
    check_fps_timing(fps_timing)
    configs = [prepare_config(c) for c in configs]
    warn_slow_dtype(configs)
    if resume:
        for config in configs:
            RunStore(out, config).check_resume()
    several = len(configs) > 1
    interleave = several and fps_timing == "interleaved" and efficiency != "none"
    records: list[dict[str, Any]] = []
    phase = _FpsPhase(records, fps_group_bytes, lambda job: _interrupted_timing(job, records))
    for config in configs:
        preds = (
            None
            if save_preds is None
            else Path(save_preds) / row_name(config)
            if several
            else Path(save_preds)
        )
        jobs: list[FpsJob] | None = [] if interleave else None
        try:
            records.append(
                run_evaluation(
                    config,
                    out=out,
                    resume=resume,
                    save_preds=preds,
                    progress=progress,
                    efficiency=efficiency,
                    fps_jobs=jobs,
                )
            )
        except DataError:
            raise
        except VssbenchError as exc:
            if not several:
                raise
            records.append(error_record(config, exc, out))
            continue
        except Exception as exc:  # noqa: BLE001 - whatever a method raises becomes its error row
            # A single run keeps a folder only if it got as far as creating one (its log.txt).
            records.append(
                error_record(config, exc, out if several or RunStore(out, config).dir.exists() else None)
            )
            continue
        phase.add(len(records) - 1, jobs)
    phase.flush()
    if interleave:
        _note_earlier_timings(records, phase.timed)
    return records


def profile_sweep(
    configs: Sequence[RunConfig],
    frames: str = "video",
    fps_timing: str = "interleaved",
    fps_group_bytes: int = FPS_GROUP_BYTES,
) -> list[dict[str, Any]]:
    """:func:`profile_method` for each config; a failure becomes an error row and the sweep goes on.

    Every config is checked first (bad input raises :class:`VssbenchError`); a single config's
    input error (e.g. a checkpoint that does not fit) raises too. ``fps_timing`` as in
    :func:`run_sweep`: by default the rows' FPS are timed at the end, their intervals in turns.
    """
    check_fps_timing(fps_timing)
    configs = [prepare_config(c) for c in configs]
    warn_slow_dtype(configs)
    interleave = len(configs) > 1 and fps_timing == "interleaved"
    records: list[dict[str, Any]] = []
    phase = _FpsPhase(records, fps_group_bytes)
    for config in configs:
        jobs: list[FpsJob] | None = [] if interleave else None
        try:
            records.append(profile_method(config, frames=frames, fps_jobs=jobs))
        except VssbenchError as exc:
            if len(configs) == 1:
                raise
            records.append(error_record(config, exc, None, kind="profile"))
            continue
        except Exception as exc:  # noqa: BLE001 - whatever a method raises becomes its error row
            records.append(error_record(config, exc, None, kind="profile"))
            continue
        phase.add(len(records) - 1, jobs)
    phase.flush()
    return records


class _FpsPhase:
    """A sweep's pending FPS jobs (row index, job), timed in turns by group (:func:`time_fps_jobs`).

    :meth:`add` takes the job a row left (if any) and times the group once its weights reach
    ``group_bytes``; :meth:`flush` times what is left. Each timed row's record in ``records`` is
    replaced by its completed one (:func:`finish_fps`); ``timed`` lists the indices done so.
    ``on_interrupt(job)`` builds the exception raised for Ctrl-C during a timing (default: re-raise).
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        group_bytes: int,
        on_interrupt: Callable[[FpsJob], BaseException] | None = None,
    ) -> None:
        self.records = records
        self.group_bytes = group_bytes
        self.on_interrupt = on_interrupt
        self.pending: list[tuple[int, FpsJob]] = []
        self.timed: list[int] = []

    def add(self, index: int, jobs: list[FpsJob] | None) -> None:
        if not jobs:  # timed at once, not measured, or a saved record
            return
        self.pending.extend((index, job) for job in jobs)
        if sum(job.weight_bytes for _, job in self.pending) >= self.group_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        group, self.pending = self.pending, []
        try:
            results = time_fps_jobs([job for _, job in group])
        except KeyboardInterrupt:
            if self.on_interrupt is None:
                raise
            raise self.on_interrupt(group[0][1]) from None
        for (index, job), fields in zip(group, results):
            self.records[index] = finish_fps(job, self.records[index], fields)
            self.timed.append(index)


def _interrupted_timing(job: FpsJob, records: list[dict[str, Any]]) -> RunInterrupted:
    """Ctrl-C in a run sweep's FPS phase: every video is saved; a resume measures the pending rows."""
    print(
        "\ninterrupted while timing FPS: the rows whose record says fps_protocol.pending are "
        "measured again by --resume",
        file=sys.stderr,
        flush=True,
    )
    videos = next((r.get("num_videos") for r in records if r.get("num_videos")), 0) or 0
    return RunInterrupted(videos, videos, job.run_dir)


def _note_earlier_timings(records: list[dict[str, Any]], timed: list[int]) -> None:
    """Say on stderr which rows' FPS a resumed sweep kept from an earlier timing phase, when others
    were timed in this one (their ratios are not protected against a change of load in between)."""
    earlier = [
        r.get("run_dir") or f"{r.get('method')}-{r.get('backbone')}"
        for i, r in enumerate(records)
        if i not in timed and r.get("fps") is not None and not r.get("error")
    ]
    if earlier and timed:
        names = ", ".join(Path(str(name)).name for name in earlier)
        print(
            f"note: the FPS of {names} come from an earlier timing (complete before this resume), "
            "not from the interleaved phase of this sweep's other rows",
            file=sys.stderr,
            flush=True,
        )


def error_record(
    config: RunConfig, exc: BaseException, out: str | Path | None, kind: str = "run"
) -> dict[str, Any]:
    """A record for a failed run (metrics null, ``error`` set); written to the store when ``out`` is given.

    Rank 0 alone writes it and prints the one-line error on stderr.
    """
    try:
        config = normalize_config(config)
    except VssbenchError:
        pass
    record = empty_record(config)
    initialized = dist.is_available() and dist.is_initialized()
    is_main = not initialized or dist.get_rank() == 0
    record.update(
        kind=kind,
        error=f"{type(exc).__name__}: {exc}",
        created=utc_timestamp(),
        vssbench_version=vssbench.__version__,
        world_size=dist.get_world_size() if initialized else 1,
    )
    where = ""
    if out is not None and is_main:
        store = _write_error_row(RunStore(out, config), config, exc, record)
        where = f" (traceback in {store.log_path})"
    if is_main:
        print(
            f"error: {config.method}-{config.backbone}: {type(exc).__name__}: {exc}{where}",
            file=sys.stderr,
            flush=True,
        )
    return to_jsonable(record)


def _write_error_row(
    store: RunStore, config: RunConfig, exc: BaseException, record: dict[str, Any]
) -> RunStore:
    """The failed run's folder: its config (if not there yet), the traceback in ``log.txt``,
    ``record.json``."""
    store.dir.mkdir(parents=True, exist_ok=True)
    if not store.config_path.exists():
        store.config_path.write_text(config.to_json() + "\n", encoding="utf-8")
    record["run_dir"] = str(store.dir)
    log = RunLog(store.log_path, echo=False)
    if not getattr(exc, "vssbench_logged", False):
        log.info(f"FAILED: {type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}")
    log.info("error row written to record.json; the sweep goes on")
    log.close()
    store.write_record(to_jsonable(record))
    return store


__all__ = [
    "FPS_GROUP_BYTES",
    "FPS_TIMINGS",
    "check_fps_timing",
    "error_record",
    "profile_sweep",
    "run_sweep",
    "warn_slow_dtype",
]
