"""The evaluation runner: ``run_evaluation`` evaluates one method over a split into the results store.

One :class:`~vssbench.config.RunConfig` decides everything about a run and is saved in full
beside its record. Per video: ``adapter.reset()``, then every frame (decoded in the background by
the data layer) goes through ``adapter.step()``; the logits are resized to the mask
(``resize_logits``), argmaxed and fed to a streaming ``VideoEvaluator``; the video's additive
metric state is appended to ``videos.jsonl`` as soon as the video finishes. The final metrics are
the sum of the per-video states *in the dataset's video order*, so an interrupted-and-resumed run
and a distributed run give exactly the numbers of one uninterrupted single-process run.

The harness never special-cases a method: the keyframe interval goes in as the method's
``interval`` option (every method has one), and diagnostics are whatever numeric fields the
adapter reports in ``last_step_info``. Efficiency is measured once per run, on rank 0
(:mod:`vssbench.harness.efficiency`); the evaluation loop's own data and model time per frame are
reported beside it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import vssbench
from vssbench.config import RunConfig
from vssbench.data import CLASS_NAMES, TestTransform, VSPWDataset, default_dataset, write_predictions_dir
from vssbench.errors import DataError, VssbenchError
from vssbench.harness.adapters import build_adapter, load_summary, torch_threads
from vssbench.harness.configs import effective_options, prepare_config
from vssbench.harness.distributed import DistContext, setup_distributed
from vssbench.harness.efficiency import (
    EFFICIENCY_LEVEL,
    FpsJob,
    check_efficiency_mode,
    environment_fields,
    run_efficiency,
)
from vssbench.harness.evaluate import DTYPES, METRIC_CLIPS, combine_diagnostics, evaluate_video, frames_to_use
from vssbench.metrics import MetricState, VideoEvaluator, compute_metrics
from vssbench.models.checkpoint import LoadReport
from vssbench.results.records import empty_record, to_jsonable, utc_timestamp
from vssbench.results.store import RunLog, RunStore

#: ``dataset`` value of a record made on the embedded synthetic VSPW-mini (``--data`` omitted).
SYNTHETIC_DATASET = "synthetic-vspw-mini"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the videos finished so far are saved and ``--resume`` continues from them."""

    def __init__(self, finished: int, total: int, run_dir: Path | None) -> None:
        self.finished = finished
        self.total = total
        self.run_dir = run_dir
        super().__init__(
            f"interrupted after {finished} of {total} videos; continue with the same command plus --resume"
        )


@dataclass
class _RunData:
    """What a run evaluates: the dataset and its root, the videos in order, frames used per video."""

    dataset: VSPWDataset
    root: Path
    videos: list[str]
    frame_counts: dict[str, int]
    transform: TestTransform


def run_evaluation(
    config: RunConfig,
    out: str | Path = "runs",
    resume: bool = False,
    save_preds: str | Path | None = None,
    progress: bool = True,
    efficiency: str = "full",
    fps_jobs: list[FpsJob] | None = None,
) -> dict[str, Any]:
    """Evaluate one method over a split and write its record to the results store; returns the record.

    ``out`` is the store root (the run folder is ``<out>/<method>-<backbone>[-<options tag>]-<config_hash>``);
    ``resume`` continues that folder, skipping videos already in its ``videos*.jsonl`` (without
    it an existing folder is replaced, with a warning on stderr when it held finished videos); a
    resume with nothing left returns the saved record and writes nothing. ``save_preds`` writes
    every prediction as ``<save_preds>/<video>/<stem>.png`` (class ids 0..123, evaluation space);
    ``progress`` shows tqdm bars on stderr; ``efficiency`` is one of
    :data:`~vssbench.harness.efficiency.EFFICIENCY_MODES`. Under torchrun (WORLD_SIZE > 1) videos
    are sharded across ranks and every rank returns rank 0's record.

    ``fps_jobs`` (a list; a sweep's, see :func:`~vssbench.harness.sweep.run_sweep`) leaves the FPS
    timing to the caller: the run appends its :class:`~vssbench.harness.efficiency.FpsJob` and
    writes its record with ``fps`` null and ``fps_protocol.pending`` true (such a record is not
    complete: a resume measures its efficiency again); ``finish_fps`` completes it. Ignored in a
    distributed run, which times at once.

    Nothing is written before the data, the options and the checkpoint have been checked and the
    model built: a run that fails before that leaves no folder. Raises :class:`VssbenchError` for
    bad input (data, options, checkpoint) and whatever the method raises (the traceback also goes
    to the run's ``log.txt``); Ctrl-C raises :class:`RunInterrupted` after the finished videos are
    saved.
    """
    check_efficiency_mode(efficiency)
    config = prepare_config(config)
    ctx = setup_distributed(config.device)
    store = RunStore(out, config, ctx.rank, ctx.world_size)
    log = RunLog.deferred(echo=ctx.is_main)  # lines wait in memory until the run folder exists
    with torch_threads(config.threads):
        try:
            return _run(config, ctx, store, log, resume, save_preds, progress, efficiency, fps_jobs)
        except BaseException as exc:
            if log.attached and not isinstance(exc, RunInterrupted):
                log.info(f"FAILED: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                exc.vssbench_logged = True  # type: ignore[attr-defined]
            raise
        finally:
            store.close()
            log.close()


def _run(
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    log: RunLog,
    resume: bool,
    save_preds: str | Path | None,
    progress: bool,
    efficiency: str,
    fps_jobs: list[FpsJob] | None = None,
) -> dict[str, Any]:
    """The steps of :func:`run_evaluation` once its store and log exist."""
    data = _open_data(config)
    if resume:
        saved = _finished_record(store, ctx, data.frame_counts, efficiency)
        if saved is not None:
            if ctx.is_main:
                print(
                    f"nothing left to evaluate in {store.dir}: its record stands unchanged",
                    file=sys.stderr,
                    flush=True,
                )
            return saved
    adapter, load_report = _build_model(config, ctx, log)
    action = _open_run_folder(config, ctx, store, log, resume, load_report)
    done = _completed_videos(store, ctx, log, resume, data)
    store.open_videos(resume)
    mine = _videos_of_this_rank(ctx, log, resume, save_preds, data.videos, done)
    new, failure = _evaluate_videos(
        adapter, data, mine, config, ctx, store, log, save_preds, progress, done, action
    )
    entries = _gather_entries(ctx, data.videos, done, new, failure)
    return _finalize_on_main(
        config, ctx, store, log, data, entries, adapter, len(done), efficiency, load_report, fps_jobs
    )


def _open_data(config: RunConfig) -> _RunData:
    """The run's dataset, its videos (``max_videos`` first ones) and frames per video (``max_frames``)."""
    root = Path(config.data) if config.data is not None else default_dataset()
    dataset = VSPWDataset(root, split=config.split)
    videos = list(dataset.videos)
    if config.max_videos is not None:
        videos = videos[: config.max_videos]
    if not videos:
        raise DataError(root / f"{config.split}.txt", "lists no videos")
    frame_counts = {v: frames_to_use(dataset, v, config.max_frames) for v in videos}
    transform = TestTransform(resolution=config.resolution, keep_ratio=True, size_divisor=config.size_divisor)
    return _RunData(dataset, root, videos, frame_counts, transform)


def _finished_record(
    store: RunStore, ctx: DistContext, frame_counts: dict[str, int], efficiency: str
) -> dict[str, Any] | None:
    """With resume: the saved record when nothing is left to do (rank 0 checks, every rank gets it).

    A record whose FPS was left to a sweep's timing phase that never finished
    (``fps_protocol.pending``) is not complete when FPS is asked for: the run measures again.
    """
    level = EFFICIENCY_LEVEL[efficiency]

    def finished() -> dict[str, Any] | None:
        record = store.finished_record(frame_counts, level, EFFICIENCY_LEVEL)
        protocol = (record or {}).get("fps_protocol")
        if level > EFFICIENCY_LEVEL["none"] and isinstance(protocol, dict) and protocol.get("pending"):
            return None
        return record

    return ctx.on_main(finished, "check the run folder", share=True)


def _build_model(
    config: RunConfig, ctx: DistContext, log: RunLog
) -> tuple[torch.nn.Module, LoadReport | None]:
    """The run's adapter on its device, with a warning when its weights are random or partial."""
    adapter, load_report = build_adapter(config, ctx.device)
    if config.checkpoint is None:
        log.warning(
            f"no --checkpoint: {config.method}-{config.backbone} is randomly initialized; "
            "its accuracy (mIoU, wIoU, mVC) means nothing"
        )
    elif load_report is not None and not load_report.ok:
        log.warning(f"--non-strict: partial load, {load_report.summary()}")
    return adapter, load_report


def _open_run_folder(
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    log: RunLog,
    resume: bool,
    load_report: LoadReport | None,
) -> str:
    """Create, replace or resume the run folder (rank 0), attach the log to it; returns what was done."""
    action = ctx.on_main(lambda: store.prepare(resume), "prepare the run folder") or "joined"
    log.attach(store.log_path)
    if action == "replaced" and store.replaced_videos:
        log.warning(
            f"replacing {store.dir}: its {store.replaced_videos} finished videos are evaluated again "
            "(add --resume to keep them)"
        )
    log.info(
        f"vssbench {vssbench.__version__}: {action} {store.dir} "
        f"(rank {ctx.rank} of {ctx.world_size}, {ctx.device})"
    )
    log.info("config: " + json.dumps(config.to_dict(), sort_keys=True))
    if load_report is not None:
        log.info(
            f"checkpoint: {load_report.summary()} "
            f"(sha256 {config.checkpoint_sha256}, {config.checkpoint_size} bytes)"
        )
    return action


def _completed_videos(
    store: RunStore, ctx: DistContext, log: RunLog, resume: bool, data: _RunData
) -> dict[str, dict[str, Any]]:
    """Videos already finished, from every rank's file (all ranks must agree on what remains)."""
    done: dict[str, dict[str, Any]] = {}
    local_done = store.read_completed() if resume else {}
    for part in ctx.all_gather(local_done):
        for video, entry in part.items():
            done.setdefault(video, entry)
    stale = sorted(set(done) - set(data.videos))
    if stale:
        log.info(f"ignoring results of {len(stale)} videos outside this run's video list: {stale[:5]}")
    done = {v: e for v, e in done.items() if v in data.frame_counts}
    for video, entry in done.items():
        if entry.get("num_frames") != data.frame_counts[video]:
            raise DataError(
                store.dir / "videos.jsonl",
                f"video {video} was evaluated on {entry.get('num_frames')} frames "
                f"but has {data.frame_counts[video]} now: the dataset changed; run without --resume",
            )
    return done


def _videos_of_this_rank(
    ctx: DistContext,
    log: RunLog,
    resume: bool,
    save_preds: str | Path | None,
    videos: list[str],
    done: dict[str, dict[str, Any]],
) -> list[str]:
    """The unfinished videos this rank evaluates (every ``world_size``-th, from its rank on)."""
    remaining = [v for v in videos if v not in done]
    mine = remaining[ctx.rank :: ctx.world_size]
    if resume:
        log.info(f"resume: {len(done)} of {len(videos)} videos complete; {len(remaining)} remain")
        if save_preds is not None and done and ctx.is_main:
            log.warning(
                f"--save-preds: the {len(done)} videos completed before this resume are not written again"
            )
    log.info(f"this rank evaluates {len(mine)} videos")
    return mine


#: A rank's failure in the evaluation loop: (the exception, (message, traceback, is a VssbenchError)).
_Failure = tuple[BaseException, tuple[str, str, bool]] | None


def _evaluate_videos(
    adapter: torch.nn.Module,
    data: _RunData,
    mine: list[str],
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    log: RunLog,
    save_preds: str | Path | None,
    progress: bool,
    done: dict[str, dict[str, Any]],
    action: str,
) -> tuple[dict[str, dict[str, Any]], _Failure]:
    """Evaluate this rank's videos, appending each to the store as it finishes.

    Returns the new entries and, in a distributed run, this rank's failure (the other ranks must
    still reach the gather). Ctrl-C raises :class:`RunInterrupted`.
    """
    evaluator = VideoEvaluator(
        num_classes=config.num_classes, clips=METRIC_CLIPS, preset=config.metric_preset
    )
    new: dict[str, dict[str, Any]] = {}
    show = progress and ctx.is_main
    try:
        with (
            torch.no_grad(),
            tqdm(
                total=len(mine),
                desc=f"{config.method}-{config.backbone}",
                unit="video",
                file=sys.stderr,
                disable=not show,
            ) as bar,
        ):
            for video in mine:
                entry = _evaluate_video(
                    adapter,
                    data.dataset,
                    video,
                    data.frame_counts[video],
                    data.transform,
                    evaluator,
                    ctx,
                    config,
                    save_preds,
                    show,
                )
                entry["index"] = data.videos.index(video)
                with _sigint_deferred():  # Ctrl-C lands after the line is on disk, never inside it
                    store.append_video(entry)
                    new[video] = entry
                log.info(
                    f"video {video}: {entry['num_frames']} frames, model {entry['model_time_s']:.3f}s, "
                    f"data {entry['data_time_s']:.3f}s"
                )
                bar.update(1)
    except KeyboardInterrupt:
        raise _interrupted(ctx, store, log, len(done) + len(new), len(data.videos), action) from None
    except Exception as exc:
        if not ctx.distributed:
            raise
        # Keep the collectives in step: every rank reaches the gather below, then all fail.
        error = (f"{type(exc).__name__}: {exc}", traceback.format_exc(), isinstance(exc, VssbenchError))
        log.info(f"FAILED on this rank:\n{error[1]}")
        return new, (exc, error)
    return new, None


def _interrupted(
    ctx: DistContext, store: RunStore, log: RunLog, finished: int, total: int, action: str
) -> RunInterrupted:
    """Log a Ctrl-C in the evaluation loop; a fresh folder with nothing finished is removed."""
    log.info(f"INTERRUPTED (Ctrl-C) after {finished} of {total} videos; --resume continues")
    if finished == 0 and not ctx.distributed and action != "resumed":
        store.close()
        log.close()
        shutil.rmtree(store.dir, ignore_errors=True)  # nothing finished: leave no empty folder behind
    return RunInterrupted(finished, total, store.dir)


def _evaluate_video(
    adapter: torch.nn.Module,
    dataset: Any,
    video: str,
    num_frames: int,
    transform: Any,
    evaluator: Any,
    ctx: DistContext,
    config: RunConfig,
    save_preds: str | Path | None,
    show: bool,
) -> dict[str, Any]:
    """One video of a run through the shared loop (:func:`evaluate_video`); its videos.jsonl entry."""
    sink: Callable[[str, str, np.ndarray], None] | None = None
    if save_preds is not None:

        def write(video: str, stem: str, pred: np.ndarray) -> None:
            write_predictions_dir(save_preds, video, stem, pred)

        sink = write

    entry = evaluate_video(
        adapter,
        dataset,
        video,
        num_frames,
        transform,
        evaluator,
        device=ctx.device,
        dtype=DTYPES[config.dtype],
        num_classes=config.num_classes,
        on_prediction=sink,
        show=show,
    )
    entry.update(rank=ctx.rank, finished=utc_timestamp())
    return entry


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back until the block is done (a results line is never cut off by it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt now
        elif received and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)  # the process ends as the signal would have ended it


def _gather_entries(
    ctx: DistContext,
    videos: list[str],
    done: dict[str, dict[str, Any]],
    new: dict[str, dict[str, Any]],
    failure: _Failure,
) -> dict[str, dict[str, Any]]:
    """Every video's entry (finished before, and new from every rank); any rank's failure raises here."""
    gathered = ctx.all_gather((new, None if failure is None else failure[1]))
    if failure is not None:
        raise failure[0]
    for rank, (_, error) in enumerate(gathered):
        if error is not None:
            cls = VssbenchError if error[2] else RuntimeError
            raise cls(f"rank {rank} failed: {error[0]}")
    entries = dict(done)
    for part, _ in gathered:
        entries.update(part)
    missing = [v for v in videos if v not in entries]
    if missing:  # pragma: no cover - would be a harness bug
        raise RuntimeError(f"videos without results after evaluation: {missing}")
    return entries


def _finalize_on_main(
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    log: RunLog,
    data: _RunData,
    entries: dict[str, dict[str, Any]],
    adapter: torch.nn.Module,
    resumed: int,
    efficiency: str,
    load_report: LoadReport | None,
    fps_jobs: list[FpsJob] | None = None,
) -> dict[str, Any]:
    """Rank 0 finalizes (:func:`_finalize`); every rank returns its record or raises its failure."""
    record, final_exc, final_error = None, None, None
    if ctx.is_main:
        try:
            record = _finalize(
                config, ctx, store, log, data, entries, adapter, resumed, efficiency, load_report, fps_jobs
            )
        except KeyboardInterrupt:
            log.info(
                "INTERRUPTED (Ctrl-C) while measuring efficiency; every video is saved, --resume finishes"
            )
            raise RunInterrupted(len(data.videos), len(data.videos), store.dir) from None
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks learn of it
            final_exc, final_error = exc, f"{type(exc).__name__}: {exc}"
    record, final_error = ctx.broadcast((record, final_error))
    if final_exc is not None:
        raise final_exc
    if final_error is not None:
        raise RuntimeError(f"rank 0 failed: {final_error}")
    return record


def _finalize(
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    log: RunLog,
    data: _RunData,
    entries: dict[str, dict[str, Any]],
    adapter: torch.nn.Module,
    resumed: int,
    efficiency: str = "full",
    load_report: LoadReport | None = None,
    fps_jobs: list[FpsJob] | None = None,
) -> dict[str, Any]:
    """Rank 0: sum the per-video states in dataset order, measure efficiency, write the record."""
    ordered = [entries[v] for v in data.videos]
    total = MetricState.zeros(config.num_classes, METRIC_CLIPS)
    for entry in ordered:  # the order fixes the float sums: identical for resumed/distributed runs
        total = total + MetricState.from_dict(entry["state"])
    metrics = compute_metrics(total)
    record = _run_record(config, ctx, store, data, ordered, metrics, resumed, efficiency, load_report)
    record.update(environment_fields(ctx.device))
    record.update(
        run_efficiency(
            adapter, data.dataset, data.videos[0], data.transform, config, ctx, log, efficiency, fps_jobs
        )
    )
    record["created"] = utc_timestamp()
    record = to_jsonable(record)
    store.write_record(record)
    store.write_per_class(to_jsonable(list(metrics["IoU"])), CLASS_NAMES)
    log.info(
        "done: "
        + ", ".join(
            f"{k}={record[k]}" for k in ("mIoU", "wIoU", "mVC8", "mVC16", "params", "gmacs_per_frame", "fps")
        )
    )
    return record


def _run_record(
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    data: _RunData,
    ordered: list[dict[str, Any]],
    metrics: dict[str, Any],
    resumed: int,
    efficiency: str,
    load_report: LoadReport | None,
) -> dict[str, Any]:
    """The record of a run before its environment and efficiency fields: accuracy, timing, provenance."""
    num_frames = sum(e["num_frames"] for e in ordered)
    record = empty_record(config)
    record.update(
        kind="run",
        options=effective_options(config),
        dataset=SYNTHETIC_DATASET if config.data is None else Path(config.data).name,
        data_root=str(data.root),
        num_videos=len(data.videos),
        num_frames=num_frames,
        mIoU=metrics["mIoU"],
        wIoU=metrics["wIoU"],
        mIoU_mmseg=metrics["mIoU_mmseg"],
        mVC8=metrics["mVC8"],
        mVC16=metrics["mVC16"],
        aAcc=metrics.get("aAcc"),
        mAcc=metrics.get("mAcc"),
        vc_windows=_vc_windows(metrics),
        mVC_video_mean=metrics.get("vc_video_mean"),
        skipped_videos=metrics.get("skipped_videos"),
        data_time_per_frame=sum(e["data_time_s"] for e in ordered) / num_frames,
        model_time_per_frame=sum(e["model_time_s"] for e in ordered) / num_frames,
        diagnostics=combine_diagnostics(ordered),
        world_size=ctx.world_size,
        resumed_videos=resumed,
        vssbench_version=vssbench.__version__,
        run_dir=str(store.dir),
        efficiency=efficiency,
        checkpoint_load=load_summary(load_report) if config.non_strict else None,
        train_seed=None if load_report is None else load_report.train_seed,
    )
    return record


def _vc_windows(metrics: dict[str, Any]) -> dict[str, Any] | None:
    windows = metrics.get("windows")
    if isinstance(windows, dict):
        return {str(k): v for k, v in windows.items()}
    found = {str(c): metrics[f"windows{c}"] for c in METRIC_CLIPS if f"windows{c}" in metrics}
    return found or None


__all__ = ["SYNTHETIC_DATASET", "RunInterrupted", "run_evaluation"]
