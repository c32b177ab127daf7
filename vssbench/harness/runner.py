"""The evaluation runner: ``run_evaluation`` (one method over a split), sweeps, and ``profile_method``.

One :class:`~vssbench.config.RunConfig` decides everything about a run and is saved in full
beside its record. Per video: ``adapter.reset()``, then every frame (decoded in the background by
the data layer) goes through ``adapter.step()``; the logits are resized to the mask
(``resize_logits``), argmaxed and fed to a streaming ``VideoEvaluator``; the video's additive
metric state is appended to ``videos.jsonl`` as soon as the video finishes. The final metrics are
the sum of the per-video states *in the dataset's video order*, so an interrupted-and-resumed run
and a distributed run give exactly the numbers of one uninterrupted single-process run.

The harness never special-cases a method: the keyframe interval goes in as the method's
``interval`` option (every method has one), and diagnostics are whatever numeric fields the
adapter reports in ``last_step_info``.

Efficiency is measured once per run, on rank 0, on one keyframe interval of real frames of the
first video (preloaded on the device, so data loading is excluded): parameters (grouped, dead),
GMACs (fvcore's convention, one multiply-add = one), per-interval FPS (warm-up excluded, device
synchronized, median of repeats). The evaluation loop's own data and model time per frame are
reported beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fnmatch
import itertools
import json
import shutil
import statistics
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import vssbench
from vssbench.config import RunConfig
from vssbench.errors import CheckpointError, DataError, OptionError, VssbenchError
from vssbench.harness.distributed import DistContext, resolve_device, setup_distributed
from vssbench.harness.evaluate import (
    DTYPES,
    METRIC_CLIPS,
    accumulate_diagnostics,
    combine_diagnostics,
    evaluate_video,
    frames_to_use,
)
from vssbench.results.records import empty_record, options_tag, to_jsonable
from vssbench.results.store import RunLog, RunStore
from vssbench.methods.base import BACKBONES, available, coerce, create, method_info, method_options, parse_options
from vssbench.models.decoder import set_decoder_mode

METRIC_PRESETS: tuple[str, ...] = ("vspw", "cffm")
#: ``dataset`` value of a record made on the embedded synthetic VSPW-mini (``--data`` omitted).
SYNTHETIC_DATASET = "synthetic-vspw-mini"
#: Input frames of ``vssbench profile``: a rendered synthetic video, or independent random images.
PROFILE_FRAMES: tuple[str, ...] = ("video", "random")
#: What a run measures besides accuracy: ``full`` (params incl. the dead-parameter search, GMACs,
#: FPS), ``fast`` (params, GMACs, FPS; no dead-parameter search), ``none`` (params only).
EFFICIENCY_MODES: tuple[str, ...] = ("full", "fast", "none")
_EFFICIENCY_LEVEL = {"none": 0, "fast": 1, "full": 2}


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the videos finished so far are saved and ``--resume`` continues from them."""

    def __init__(self, finished: int, total: int, run_dir: Path | None) -> None:
        self.finished = finished
        self.total = total
        self.run_dir = run_dir
        super().__init__(
            f"interrupted after {finished} of {total} videos; continue with the same command plus --resume"
        )


# ---------------------------------------------------------------------------------------------
# Slow-dtype warning (once per process)

_WARNED: set[str] = set()


def _warn_slow_dtype(configs: Sequence[RunConfig]) -> None:
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


# ---------------------------------------------------------------------------------------------
# Configs: expansion of sweeps and normalization


def expand_methods(spec: str | Sequence[str]) -> list[str]:
    """Method names from a name, a comma list or globs over ``available()`` (e.g. ``'tfc,seg*'``, ``'*'``).

    Order follows the spec (a glob's matches sorted), duplicates dropped; an unknown name or a
    glob matching nothing raises :class:`OptionError` listing the available methods.
    """
    return _expand(spec, available(), "method")


def expand_backbones(spec: str | Sequence[str]) -> list[str]:
    """Backbone names from a name, a comma list or globs over ``b0``..``b5``."""
    return _expand(spec, list(BACKBONES), "backbone")


def _expand(spec: str | Sequence[str], names: Sequence[str], what: str) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if any(c in item for c in "*?["):
            matched = sorted(fnmatch.filter(names, item))
            if not matched:
                raise OptionError(f"{what} pattern {item!r} matches nothing; available: {', '.join(names)}")
        elif item in names:
            matched = [item]
        else:
            raise OptionError(f"unknown {what} {item!r}; available: {', '.join(names)}")
        out.extend(m for m in matched if m not in out)
    if not out:
        raise OptionError(f"no {what} given; available: {', '.join(names)}")
    return out


def build_configs(methods: str | Sequence[str], backbones: str | Sequence[str] = "b0", **fields: Any) -> list[RunConfig]:
    """One :class:`RunConfig` per method x backbone (methods outer), the other fields shared.

    ``options`` may hold scoped keys (``"tfc.threshold"``) next to plain ones; see
    :func:`scope_options` for how they are given to each method.
    """
    names = expand_methods(methods)
    backbone_names = expand_backbones(backbones)
    per_method = scope_options(fields.pop("options", None) or {}, names)
    return [RunConfig(method=m, backbone=b, options=per_method[m], **fields) for m in names for b in backbone_names]


def scope_options(options: dict[str, Any], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each method's own options from ``--set`` keys, plain (``threshold``) or scoped (``tfc.threshold``).

    A scoped key goes to its method only (and wins over a plain key of the same option); a plain
    key goes to every method of the sweep that has that option (``interval`` to all). A plain key
    that no method has, a scoped key whose method is not in the sweep, or a scoped option the
    method lacks raise :class:`OptionError` naming the methods and their options.
    """
    per: dict[str, dict[str, Any]] = {m: {} for m in methods}
    fields = {m: {f.name for f in dataclasses.fields(method_options(m))} | {"interval"} for m in methods}
    scoped = {k: v for k, v in options.items() if "." in k}
    for key, value in options.items():
        if key in scoped:
            continue
        holders = [m for m in methods if key in fields[m]]
        if not holders:
            listing = "; ".join(f"{m}: {', '.join(sorted(fields[m]))}" for m in methods)
            raise OptionError(f"--set {key}: no method of this run has option {key!r} ({listing})")
        for m in holders:
            per[m][key] = value
    for key, value in scoped.items():
        method, _, option = key.partition(".")
        if method not in per:
            raise OptionError(f"--set {key}: method {method!r} is not in this run ({', '.join(methods)})")
        if option not in fields[method]:
            raise OptionError(
                f"--set {key}: {method} has no option {option!r}; its options: {', '.join(sorted(fields[method]))}"
            )
        per[method][option] = value
    return per


def normalize_config(config: RunConfig) -> RunConfig:
    """Validate a config and make equal conditions hash equally.

    Method options are coerced to their declared types (``"0.5"`` from ``--set`` and ``0.5``
    from Python become the same value); the keyframe interval lives in ``config.interval`` only
    (``--set interval=N`` is moved there; a conflicting ``--interval`` is an error) and ``None``
    becomes the method's default; an unset ``size_divisor`` becomes the method's declared one
    (``MethodInfo.size_divisor``, e.g. 32 for CFFM/MRCFA); data and checkpoint paths become absolute.
    """
    method_info(config.method)  # unknown method -> OptionError listing the available ones
    if config.backbone not in BACKBONES:
        raise OptionError(f"unknown backbone {config.backbone!r}; available: {', '.join(BACKBONES)}")
    if config.metric_preset not in METRIC_PRESETS:
        raise OptionError(f"metric preset must be one of {', '.join(METRIC_PRESETS)}, got {config.metric_preset!r}")
    if config.device != "cpu" and config.device != "cuda" and not config.device.startswith("cuda:"):
        raise OptionError(f"device must be cpu, cuda or cuda:N, got {config.device!r}")
    for name in ("max_videos", "max_frames", "threads", "size_divisor"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise OptionError(f"{name} must be >= 1, got {value}")
    from vssbench.models.checkpoint import FORMATS

    if config.checkpoint_format not in ("auto", *FORMATS):
        raise OptionError(
            f"checkpoint format must be one of auto, {', '.join(FORMATS)}, got {config.checkpoint_format!r}"
        )
    if config.non_strict and config.checkpoint is None:
        raise OptionError("--non-strict needs a --checkpoint to load")
    if config.warmup < 0 or (config.repeats is not None and config.repeats < 1):
        raise OptionError(f"warmup must be >= 0 and repeats >= 1, got warmup={config.warmup}, repeats={config.repeats}")
    options = dict(config.options)
    interval = config.interval
    if "interval" in options:
        given = coerce(options.pop("interval"), int, f"{config.method}.interval")
        if interval is not None and given != interval:
            raise OptionError(f"interval given twice with different values: --interval {interval} and --set interval={given}")
        interval = given
    if interval is None:
        interval = method_info(config.method).default_interval
    if interval < 1:
        raise OptionError(f"interval must be >= 1, got {interval}")
    parsed = parse_options(config.method, {**options, "interval": interval})
    coerced = {k: getattr(parsed, k) for k in options}
    size_divisor = config.size_divisor
    if size_divisor is None:
        size_divisor = method_info(config.method).size_divisor
    return config.replace(
        options=coerced,
        interval=interval,
        size_divisor=size_divisor,
        data=_absolute(config.data),
        checkpoint=_absolute(config.checkpoint),
    )


def prepare_config(config: RunConfig) -> RunConfig:
    """:func:`normalize_config` plus the checkpoint's content digest (sha256 and size, streamed once).

    A config that already carries a digest (e.g. read back from a run's ``config.json``) must
    match the file: a changed checkpoint raises :class:`CheckpointError` naming the file and both
    digests. A missing or unreadable checkpoint raises before anything is written.
    """
    config = normalize_config(config)
    if config.checkpoint is None:
        return config
    sha, size = _digest(config.checkpoint)
    if config.checkpoint_sha256 is not None and config.checkpoint_sha256 != sha:
        raise CheckpointError(
            f"{config.checkpoint}: checkpoint content changed (sha256 {config.checkpoint_sha256} in the config, "
            f"{sha} in the file)"
        )
    return config.replace(checkpoint_sha256=sha, checkpoint_size=size)


#: (path, size, mtime_ns) -> (sha256, size): a sweep hashes its shared checkpoint once.
_DIGESTS: dict[tuple[str, int, int], tuple[str, int]] = {}


def _digest(path: str) -> tuple[str, int]:
    from vssbench.models.checkpoint import file_digest

    try:
        stat = Path(path).stat()
    except OSError:
        return file_digest(path)  # raises CheckpointError naming the file
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


def effective_options(config: RunConfig) -> dict[str, Any]:
    """Every option of the method as it runs (defaults filled in, interval included)."""
    parsed = parse_options(config.method, {**config.options, "interval": config.interval})
    return dataclasses.asdict(parsed)


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _build_adapter(config: RunConfig, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """Create the method (seeded, so a random init is the same on every rank and every resume).

    Returns the adapter and the checkpoint's :class:`LoadReport` (``None`` without a checkpoint);
    ``config.non_strict`` loads only the keys that fit.
    """
    from vssbench.models.checkpoint import load_checkpoint

    torch.manual_seed(config.seed)
    adapter = create(
        config.method,
        backbone=config.backbone,
        num_classes=config.num_classes,
        **{**config.options, "interval": config.interval},
    )
    report = None
    if config.checkpoint is not None:
        report = load_checkpoint(adapter, config.checkpoint, format=config.checkpoint_format, strict=not config.non_strict)
        adapter.eval()
    # Every method alike: each decoder head in the model takes the run's mode (none: nothing to fold).
    set_decoder_mode(adapter, config.decoder)
    return adapter.to(device=device, dtype=DTYPES[config.dtype]).eval(), report


def _load_summary(report: Any) -> dict[str, Any] | None:
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


# ---------------------------------------------------------------------------------------------
# Evaluation


def run_evaluation(
    config: RunConfig,
    out: str | Path = "runs",
    resume: bool = False,
    save_preds: str | Path | None = None,
    progress: bool = True,
    efficiency: str = "full",
) -> dict[str, Any]:
    """Evaluate one method over a split and write its record to the results store; returns the record.

    ``out`` is the store root (the run folder is ``<out>/<method>-<backbone>[-<options tag>]-<config_hash>``);
    ``resume`` continues that folder, skipping videos already in its ``videos*.jsonl`` (without
    it an existing folder is replaced, with a warning on stderr when it held finished videos); a
    resume with nothing left returns the saved record and writes nothing. ``save_preds`` writes
    every prediction as ``<save_preds>/<video>/<stem>.png`` (class ids 0..123, evaluation space);
    ``progress`` shows tqdm bars on stderr; ``efficiency`` is one of :data:`EFFICIENCY_MODES`.
    Under torchrun (WORLD_SIZE > 1) videos are sharded across ranks and every rank returns rank
    0's record.

    Nothing is written before the data, the options and the checkpoint have been checked and the
    model built: a run that fails before that leaves no folder. Raises :class:`VssbenchError` for
    bad input (data, options, checkpoint) and whatever the method raises (the traceback also goes
    to the run's ``log.txt``); Ctrl-C raises :class:`RunInterrupted` after the finished videos are
    saved.
    """
    if efficiency not in EFFICIENCY_MODES:
        raise OptionError(f"efficiency must be one of {', '.join(EFFICIENCY_MODES)}, got {efficiency!r}")
    config = prepare_config(config)
    ctx = setup_distributed(config.device)
    store = RunStore(out, config, ctx.rank, ctx.world_size)
    log = RunLog.deferred(echo=ctx.is_main)  # lines wait in memory until the run folder exists
    with _torch_threads(config.threads):
        try:
            return _run(config, ctx, store, log, resume, save_preds, progress, efficiency)
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
) -> dict[str, Any]:
    from vssbench.data import TestTransform, VSPWDataset, default_dataset
    from vssbench.metrics import VideoEvaluator

    root = Path(config.data) if config.data is not None else default_dataset()
    dataset = VSPWDataset(root, split=config.split)
    videos = list(dataset.videos)
    if config.max_videos is not None:
        videos = videos[: config.max_videos]
    if not videos:
        raise DataError(root / f"{config.split}.txt", "lists no videos")
    frame_counts = {v: frames_to_use(dataset, v, config.max_frames) for v in videos}
    transform = TestTransform(resolution=config.resolution, keep_ratio=True, size_divisor=config.size_divisor)

    if resume:
        # Nothing left to do: the saved record stands, nothing is measured or written again.
        saved, check_exc = None, None
        if ctx.is_main:
            try:
                saved = store.finished_record(frame_counts, _EFFICIENCY_LEVEL[efficiency], _EFFICIENCY_LEVEL)
            except VssbenchError as exc:
                check_exc = exc
        saved, check_error = ctx.broadcast((saved, None if check_exc is None else str(check_exc)))
        if check_exc is not None:
            raise check_exc
        if check_error is not None:
            raise OptionError(f"rank 0 could not check the run folder: {check_error}")
        if saved is not None:
            if ctx.is_main:
                print(f"nothing left to evaluate in {store.dir}: its record stands unchanged", file=sys.stderr, flush=True)
            return saved

    adapter, load_report = _build_adapter(config, ctx.device)
    if config.checkpoint is None:
        log.warning(
            f"no --checkpoint: {config.method}-{config.backbone} is randomly initialized; "
            "its accuracy (mIoU, wIoU, mVC) means nothing"
        )
    elif load_report is not None and not load_report.ok:
        log.warning(f"--non-strict: partial load, {load_report.summary()}")

    action = ctx.on_main(lambda: store.prepare(resume), "prepare the run folder") or "joined"
    log.attach(store.log_path)
    if action == "replaced" and store.replaced_videos:
        log.warning(
            f"replacing {store.dir}: its {store.replaced_videos} finished videos are evaluated again "
            "(add --resume to keep them)"
        )
    log.info(f"vssbench {vssbench.__version__}: {action} {store.dir} (rank {ctx.rank} of {ctx.world_size}, {ctx.device})")
    log.info("config: " + json.dumps(config.to_dict(), sort_keys=True))
    if load_report is not None:
        log.info(f"checkpoint: {load_report.summary()} (sha256 {config.checkpoint_sha256}, {config.checkpoint_size} bytes)")

    # Completed videos from every rank's file (all ranks must agree on what remains).
    done: dict[str, dict[str, Any]] = {}
    local_done = store.read_completed() if resume else {}
    for part in ctx.all_gather(local_done):
        for video, entry in part.items():
            done.setdefault(video, entry)
    stale = sorted(set(done) - set(videos))
    if stale:
        log.info(f"ignoring results of {len(stale)} videos outside this run's video list: {stale[:5]}")
    done = {v: e for v, e in done.items() if v in frame_counts}
    for video, entry in done.items():
        if entry.get("num_frames") != frame_counts[video]:
            raise DataError(
                store.dir / "videos.jsonl",
                f"video {video} was evaluated on {entry.get('num_frames')} frames but has {frame_counts[video]} "
                "now: the dataset changed; run without --resume",
            )
    store.open_videos(resume)
    remaining = [v for v in videos if v not in done]
    mine = remaining[ctx.rank :: ctx.world_size]
    if resume:
        log.info(f"resume: {len(done)} of {len(videos)} videos complete; {len(remaining)} remain")
        if save_preds is not None and done and ctx.is_main:
            log.warning(f"--save-preds: the {len(done)} videos completed before this resume are not written again")
    log.info(f"this rank evaluates {len(mine)} videos")

    evaluator = VideoEvaluator(num_classes=config.num_classes, clips=METRIC_CLIPS, preset=config.metric_preset)
    new: dict[str, dict[str, Any]] = {}
    local_exc: BaseException | None = None
    local_error: tuple[str, str, bool] | None = None
    show = progress and ctx.is_main
    try:
        with torch.no_grad(), tqdm(
            total=len(mine), desc=f"{config.method}-{config.backbone}", unit="video", file=sys.stderr, disable=not show
        ) as bar:
            for video in mine:
                entry = _evaluate_video(
                    adapter, dataset, video, frame_counts[video], transform, evaluator, ctx, config, save_preds, show
                )
                entry["index"] = videos.index(video)
                with _sigint_deferred():  # Ctrl-C lands after the line is on disk, never inside it
                    store.append_video(entry)
                    new[video] = entry
                log.info(
                    f"video {video}: {entry['num_frames']} frames, model {entry['model_time_s']:.3f}s, "
                    f"data {entry['data_time_s']:.3f}s"
                )
                bar.update(1)
    except KeyboardInterrupt:
        finished = len(done) + len(new)
        log.info(f"INTERRUPTED (Ctrl-C) after {finished} of {len(videos)} videos; --resume continues")
        if finished == 0 and not ctx.distributed and action != "resumed":
            store.close()
            log.close()
            shutil.rmtree(store.dir, ignore_errors=True)  # nothing finished: leave no empty folder behind
        raise RunInterrupted(finished, len(videos), store.dir) from None
    except Exception as exc:
        if not ctx.distributed:
            raise
        # Keep the collectives in step: every rank reaches the gather below, then all fail.
        local_exc = exc
        local_error = (f"{type(exc).__name__}: {exc}", traceback.format_exc(), isinstance(exc, VssbenchError))
        log.info(f"FAILED on this rank:\n{local_error[1]}")

    gathered = ctx.all_gather((new, local_error))
    if local_exc is not None:
        raise local_exc
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

    record, final_exc, final_error = None, None, None
    if ctx.is_main:
        try:
            record = _finalize(
                config, ctx, store, log, dataset, root, videos, entries, adapter, transform, len(done), efficiency,
                load_report,
            )
        except KeyboardInterrupt:
            log.info("INTERRUPTED (Ctrl-C) while measuring efficiency; every video is saved, --resume finishes")
            raise RunInterrupted(len(videos), len(videos), store.dir) from None
        except Exception as exc:
            final_exc, final_error = exc, f"{type(exc).__name__}: {exc}"
    record, final_error = ctx.broadcast((record, final_error))
    if final_exc is not None:
        raise final_exc
    if final_error is not None:
        raise RuntimeError(f"rank 0 failed: {final_error}")
    return record


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
        from vssbench.data import write_predictions_dir

        def write(video: str, stem: str, pred: np.ndarray) -> None:
            write_predictions_dir(save_preds, video, stem, pred)

        sink = write

    entry = evaluate_video(
        adapter, dataset, video, num_frames, transform, evaluator, device=ctx.device,
        dtype=DTYPES[config.dtype], num_classes=config.num_classes, on_prediction=sink, show=show,
    )
    entry.update(rank=ctx.rank, finished=_now())
    return entry


def _finalize(
    config: RunConfig,
    ctx: DistContext,
    store: RunStore,
    log: RunLog,
    dataset: Any,
    root: Path,
    videos: list[str],
    entries: dict[str, dict[str, Any]],
    adapter: torch.nn.Module,
    transform: Any,
    resumed: int,
    efficiency: str = "full",
    load_report: Any = None,
) -> dict[str, Any]:
    """Rank 0: sum the per-video states in dataset order, measure efficiency, write the record."""
    from vssbench.data import CLASS_NAMES
    from vssbench.metrics import MetricState, compute_metrics
    from vssbench.profiling import count_parameters, environment

    ordered = [entries[v] for v in videos]
    total = MetricState.zeros(config.num_classes, METRIC_CLIPS)
    for entry in ordered:  # the order fixes the float sums: identical for resumed/distributed runs
        total = total + MetricState.from_dict(entry["state"])
    metrics = compute_metrics(total)
    num_frames = sum(e["num_frames"] for e in ordered)

    record = empty_record(config)
    record.update(
        kind="run",
        options=effective_options(config),
        dataset=SYNTHETIC_DATASET if config.data is None else Path(config.data).name,
        data_root=str(root),
        num_videos=len(videos),
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
        checkpoint_load=_load_summary(load_report) if config.non_strict else None,
    )
    record.update(_environment_fields(environment(str(ctx.device))))
    try:
        lead_in = _lead_in(adapter)
        frames = _interval_frames(dataset, videos[0], transform, lead_in + config.interval, config.max_frames)
        record["input_size"] = list(frames[0].shape[-2:])
        if efficiency == "none":
            params = count_parameters(adapter)
            record.update(params=params["total"], params_groups={**params["groups"], "other": params["other"]})
        else:
            where = f"frames {lead_in}..{lead_in + config.interval - 1} of video {videos[0]}"
            record.update(_efficiency(adapter, frames, config, ctx, where, log, dead_search=efficiency == "full"))
    except Exception as exc:
        # The accuracy is complete and saved; the row still says that its efficiency is missing.
        record["error"] = f"efficiency measurement failed: {type(exc).__name__}: {exc}"
        log.info(f"efficiency measurement FAILED:\n{traceback.format_exc()}")
    record["created"] = _now()
    record = to_jsonable(record)
    store.write_record(record)
    store.write_per_class(to_jsonable(list(metrics["IoU"])), CLASS_NAMES)
    log.info(
        "done: " + ", ".join(f"{k}={record[k]}" for k in ("mIoU", "wIoU", "mVC8", "mVC16", "params", "gmacs_per_frame", "fps"))
    )
    return record


def _vc_windows(metrics: dict[str, Any]) -> dict[str, Any] | None:
    windows = metrics.get("windows")
    if isinstance(windows, dict):
        return {str(k): v for k, v in windows.items()}
    found = {str(c): metrics[f"windows{c}"] for c in METRIC_CLIPS if f"windows{c}" in metrics}
    return found or None


def _environment_fields(env: dict[str, Any]) -> dict[str, Any]:
    return {k: env.get(k) for k in ("device", "torch", "threads", "python", "platform", "cuda")}


def _lead_in(adapter: torch.nn.Module) -> int:
    """Frames run before the measured interval: the adapter's ``steady_state_after`` (0 by default)."""
    return int(getattr(adapter, "steady_state_after", 0) or 0)


def _interval_frames(dataset: Any, video: str, transform: Any, interval: int, max_frames: int | None) -> list[torch.Tensor]:
    """The first ``interval`` frames of ``video`` (cycled when the video is shorter), on the CPU."""
    available_frames = min(interval, frames_to_use(dataset, video, max_frames))
    frames_iter = dataset.iter_video(video, transform)
    try:
        images = [frame.image for frame in itertools.islice(frames_iter, available_frames)]
    finally:
        frames_iter.close()
    return [images[i % len(images)] for i in range(interval)]


def _efficiency(
    adapter: torch.nn.Module,
    frames: Sequence[torch.Tensor],
    config: RunConfig,
    ctx: DistContext,
    where: str,
    log: RunLog | None,
    dead_search: bool = True,
) -> dict[str, Any]:
    """Params (grouped, dead), GMACs and per-interval FPS of ``adapter`` on ``frames`` (one interval).

    ``dead_search=False`` skips :func:`find_dead_parameters` (``params_dead``/``params_inference``
    stay null). The FPS spread over the timed repeats goes into ``fps_spread``.
    """
    from vssbench.profiling import count_gmacs, count_parameters, find_dead_parameters, measure_fps

    device = ctx.device
    on_device = [f.to(device=device, dtype=DTYPES[config.dtype]) for f in frames]
    # Order matters: autograd first (no inference-mode caches yet), timing last.
    start = time.perf_counter()
    lead_in = len(on_device) - config.interval  # the adapter's steady_state_after (see _lead_in)
    dead = find_dead_parameters(adapter, on_device) if dead_search else []
    params = count_parameters(adapter, dead)
    after_params = time.perf_counter()
    gmacs = count_gmacs(adapter, list(on_device), config.interval, lead_in=lead_in)
    after_gmacs = time.perf_counter()
    fps = measure_fps(
        adapter, on_device, config.interval, warmup=config.warmup, repeats=config.repeats, device=str(device),
        lead_in=lead_in,
    )
    adapter.reset()
    if log is not None:
        log.info(
            f"efficiency: dead-parameter search {after_params - start:.2f}s, GMAC count "
            f"{after_gmacs - after_params:.2f}s, FPS timing {time.perf_counter() - after_gmacs:.2f}s"
        )
        if dead:
            log.info(f"dead parameters (never influence an output): {dead[:20]}{' ...' if len(dead) > 20 else ''}")
    h, w = on_device[0].shape[-2:]
    rates = sorted(config.interval / t for t in fps.get("interval_times_s", []) if t > 0)
    spread = None
    if rates:
        median = statistics.median(rates)
        spread = {"min": rates[0], "median": median, "max": rates[-1], "relative": (rates[-1] - rates[0]) / median}
    protocol = {
        "frames": f"{where} at {h}x{w}, preloaded on {device}",
        "interval": config.interval,
        "lead_in": lead_in,
        "warmup": config.warmup,
        "repeats": fps.get("repeats", config.repeats),
        "repeats_rule": "given" if config.repeats is not None else "auto: enough intervals for ~10 s of timing, 3..30",
        "interval_time_s": fps.get("interval_time_s"),
        "interval_times_s": fps.get("interval_times_s"),
        "timer": fps.get("timer"),
        "statistic": "interval frames / median interval time; warm-up excluded; device synchronized; data loading excluded",
        "scope": "rank 0 only" if ctx.distributed else "single process",
    }
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
        "fps_spread": spread,
        "fps_protocol": protocol,
    }


# ---------------------------------------------------------------------------------------------
# Sweeps and error rows


def run_sweep(
    configs: Sequence[RunConfig],
    out: str | Path = "runs",
    resume: bool = False,
    save_preds: str | Path | None = None,
    progress: bool = True,
    efficiency: str = "full",
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
    """
    if efficiency not in EFFICIENCY_MODES:
        raise OptionError(f"efficiency must be one of {', '.join(EFFICIENCY_MODES)}, got {efficiency!r}")
    configs = [prepare_config(c) for c in configs]
    _warn_slow_dtype(configs)
    if resume:
        for config in configs:
            RunStore(out, config).check_resume()
    several = len(configs) > 1
    records = []
    for config in configs:
        preds = None if save_preds is None else Path(save_preds) / row_name(config) if several else Path(save_preds)
        try:
            records.append(
                run_evaluation(config, out=out, resume=resume, save_preds=preds, progress=progress, efficiency=efficiency)
            )
        except DataError:
            raise
        except VssbenchError as exc:
            if not several:
                raise
            records.append(_error_record(config, exc, out))
        except Exception as exc:
            # A single run keeps a folder only if it got as far as creating one (its log.txt).
            records.append(_error_record(config, exc, out if several or RunStore(out, config).dir.exists() else None))
    return records


def row_name(config: RunConfig) -> str:
    """``<method>-<backbone>[-<options tag>]``: a row's readable name (its --save-preds folder in a sweep)."""
    tag = options_tag(config)
    return f"{config.method}-{config.backbone}" + (f"-{tag}" if tag else "")


def _error_record(
    config: RunConfig, exc: BaseException, out: str | Path | None, kind: str = "run"
) -> dict[str, Any]:
    """A record for a failed run (metrics null, ``error`` set); written to the store when ``out`` is given."""
    import torch.distributed as dist

    try:
        config = normalize_config(config)
    except VssbenchError:
        pass
    record = empty_record(config)
    is_main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    record.update(
        kind=kind,
        error=f"{type(exc).__name__}: {exc}",
        created=_now(),
        vssbench_version=vssbench.__version__,
        world_size=dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1,
    )
    where = ""
    if out is not None and is_main:
        store = RunStore(out, config)
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
        where = f" (traceback in {store.log_path})"
    if is_main:
        print(f"error: {config.method}-{config.backbone}: {type(exc).__name__}: {exc}{where}", file=sys.stderr, flush=True)
    return to_jsonable(record)


# ---------------------------------------------------------------------------------------------
# Profile (no data)


def profile_method(config: RunConfig, frames: str = "video") -> dict[str, Any]:
    """Params, GMACs and per-interval FPS of a method without data.

    ``config.resolution`` is the input size itself (rounded up to ``size_divisor`` if set).
    ``frames`` picks the ``interval`` input frames (seeded): ``"video"`` (default) renders a
    synthetic video in memory (:func:`vssbench.data.render_video`: moving objects, camera pan),
    so content-dependent methods (TFC's sparse update) cost what they cost on a real-looking
    video; ``"random"`` uses independent standard-normal images, a scene that changes completely
    every frame: their costly end. ``diagnostics`` shows how much was updated. Returns a record
    with the same keys as :func:`run_evaluation`'s, accuracy keys null.
    """
    if frames not in PROFILE_FRAMES:
        raise OptionError(f"profile frames must be one of {', '.join(PROFILE_FRAMES)}, got {frames!r}")
    config = prepare_config(config)
    ctx = DistContext(device=resolve_device(config.device))
    from vssbench.profiling import environment

    with _torch_threads(config.threads):
        adapter, load_report = _build_adapter(config, ctx.device)
        h, w = config.resolution
        if config.size_divisor:
            d = config.size_divisor
            h, w = -(-h // d) * d, -(-w // d) * d
        images = _profile_frames(frames, _lead_in(adapter) + config.interval, (h, w), config.seed)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        with torch.no_grad():
            adapter.reset()
            for frame in images:
                adapter.step(frame.to(device=ctx.device, dtype=DTYPES[config.dtype]))
                accumulate_diagnostics(sums, counts, adapter.last_step_info)
        record = empty_record(config)
        record.update(
            kind="profile",
            options=effective_options(config),
            split=None,
            num_videos=0,
            num_frames=0,
            input_size=[h, w],
            diagnostics={k: sums[k] / counts[k] for k in sorted(sums)},
            world_size=1,
            vssbench_version=vssbench.__version__,
            efficiency="full",
            checkpoint_load=_load_summary(load_report) if config.non_strict else None,
        )
        record.update(_environment_fields(environment(str(ctx.device))))
        lead = _lead_in(adapter)
        where = (f"{config.interval} {'frames of a synthetic video' if frames == 'video' else 'random frames'}"
                 + (f" after {lead} lead-in frames" if lead else ""))
        record.update(_efficiency(adapter, images, config, ctx, where, None))
        record["profile_frames"] = frames
    record["created"] = _now()
    return to_jsonable(record)


def _profile_frames(kind: str, count: int, size: tuple[int, int], seed: int) -> list[torch.Tensor]:
    """``count`` normalized 1 x 3 x H x W frames: a rendered synthetic video, or random images."""
    if kind == "random":
        generator = torch.Generator().manual_seed(seed)
        return [torch.randn(1, 3, *size, generator=generator) for _ in range(count)]
    from PIL import Image

    from vssbench.data import TestTransform, render_video

    transform = TestTransform(resolution=size, keep_ratio=False)
    return [transform(Image.fromarray(rgb)) for rgb, _ in render_video(count, size, seed=seed)]


def profile_sweep(configs: Sequence[RunConfig], frames: str = "video") -> list[dict[str, Any]]:
    """:func:`profile_method` for each config; a failure becomes an error row and the sweep goes on.

    Every config is checked first (bad input raises :class:`VssbenchError`); a single config's
    input error (e.g. a checkpoint that does not fit) raises too.
    """
    configs = [prepare_config(c) for c in configs]
    _warn_slow_dtype(configs)
    records = []
    for config in configs:
        try:
            records.append(profile_method(config, frames=frames))
        except VssbenchError as exc:
            if len(configs) == 1:
                raise
            records.append(_error_record(config, exc, None, kind="profile"))
        except Exception as exc:
            records.append(_error_record(config, exc, None, kind="profile"))
    return records
