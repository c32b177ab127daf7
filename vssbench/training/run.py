"""``train()``: one training run from a :class:`TrainConfig` into a run folder
(what ``vssbench train`` calls).

The folder ``out`` receives ``config.json``, ``log.jsonl``, ``last.pth`` (full state: model,
optimizer, scheduler, grad scaler, iteration, every rank's RNG states, the data position, the
config, the best validation score), ``model.pth`` (weights in vssbench's checkpoint format, what
``vssbench run --checkpoint`` loads) and ``best.pth`` (the weights of the best validation mIoU).
SIGUSR1 or SIGTERM stops a training cleanly after the current iteration with ``last.pth`` saved
(:class:`~vssbench.training.hooks.TrainingStopped`; ``vssbench train`` exits 75).

Under torchrun (WORLD_SIZE > 1) the adapter is wrapped in DistributedDataParallel (with
``find_unused_parameters``, since a method may leave a module out of a step), BatchNorm becomes
synchronized BatchNorm, each rank reads its own clips of the global batch, and rank 0 alone
validates, logs and writes files. DDP averages the ranks' gradients, so each rank's pixel-mean loss
weighs alike (as in mmseg): equal to one process's loss over the global batch when every rank has as
many labelled pixels. With the method's training randomness off (drop path, dropout) 2 processes x
batch 1 give the weights of 1 process x batch 2 up to float rounding (tests/test_training_distributed.py).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vssbench.data import ClipAugment, TestTransform, VSPWClipDataset, VSPWDataset, default_dataset
from vssbench.errors import CheckpointError, OptionError
from vssbench.harness.distributed import DistContext, setup_distributed
from vssbench.harness.evaluate import evaluate_videos
from vssbench.methods.base import check_backbone, create, method_info, parse_options
from vssbench.models.checkpoint import load_checkpoint, save_checkpoint
from vssbench.training.data import clip_loader
from vssbench.training.hooks import (
    CheckpointHook,
    EvalHook,
    LogWriter,
    LRSchedulerHook,
    StopOnSignal,
    StopSignals,
    restore_rng,
)
from vssbench.training.parallel import TrainStep, convert_sync_batchnorm
from vssbench.training.recipes import TrainConfig, build_optimizer, build_scheduler, config_differences
from vssbench.training.trainer import Trainer

logger = logging.getLogger(__name__)

#: Version of the ``last.pth`` layout.
STATE_VERSION = 1


def normalize_train_config(config: TrainConfig) -> TrainConfig:
    """Validate method, backbone and options (coerced to their types) and make the data path absolute."""
    method_info(config.method)
    check_backbone(config.method, config.backbone)
    parsed = parse_options(config.method, config.options)
    options = {k: getattr(parsed, k) for k in config.options}
    if config.device != "cpu" and config.device != "cuda" and not config.device.startswith("cuda:"):
        raise OptionError(f"device must be cpu, cuda or cuda:N, got {config.device!r}")
    if config.amp and not config.device.startswith("cuda"):
        raise OptionError("--amp needs a CUDA device (--device cuda); on CPU training runs in float32")
    if config.init_format not in ("auto", "vssbench", "mmseg", "mit", "hf"):
        raise OptionError(f"init format must be auto, vssbench, mmseg, mit or hf, got {config.init_format!r}")
    data = None if config.data is None else str(Path(config.data).expanduser().resolve())
    init = None if config.init is None else str(Path(config.init).expanduser().resolve())
    return config.replace(options=options, data=data, init=init)


def load_init(adapter: torch.nn.Module, path: str, format: str = "auto") -> dict[str, Any]:
    """Initialize ``adapter`` from ``path`` before training: an ImageNet ``mit_bX.pth`` (encoder only),
    a SegFormer checkpoint (mmseg/hf/vssbench) into any method, or a vssbench checkpoint of the method.

    Keys the file lacks (the decoder of an encoder-only file, a method's own modules when the file
    is SegFormer's) keep their initial values and are reported as ``untouched``; a key the model
    does not have or a shape mismatch is an error naming them. Returns the report as plain data.
    """
    report = load_checkpoint(adapter, path, format=format, strict=False)
    if report.unexpected or report.mismatched:
        bad = report.unexpected[:10] + [
            f"{k} (model {list(a)} vs file {list(b)})" for k, a, b in report.mismatched[:10]
        ]
        raise CheckpointError(f"{path}: cannot initialize {type(adapter).__name__} from it: {', '.join(bad)}")
    untouched = sorted(
        set(report.untouched) | {k for k in report.missing if not k.endswith("num_batches_tracked")}
    )
    return {
        "path": report.path,
        "format": report.format,
        "loaded": report.loaded,
        "untouched": untouched,
        "dropped": report.dropped,
        "summary": f"loaded {report.loaded} tensors from {report.path} (format {report.format}); "
        f"{len(untouched)} untouched (kept their initialization)",
    }


def _check_out(out: Path, config: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """Prepare the run folder; return the resume state (or None). Raises OptionError on conflicts."""
    last = out / "last.pth"
    if resume:
        if not last.is_file():
            raise OptionError(f"--resume: {last} does not exist (nothing to resume)")
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state.get("version") != STATE_VERSION:
            raise CheckpointError(
                f"{last}: training state version {state.get('version')!r}, expected {STATE_VERSION}"
            )
        diffs = config_differences(state["config"], config.to_dict())
        if diffs:
            raise OptionError(f"--resume refused: the config differs from {last} in " + "; ".join(diffs))
        return state
    if last.exists() or (out / "log.jsonl").exists():
        raise OptionError(
            f"{out} already holds a training run; pass --resume to continue it or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    return None


@dataclass
class Optimization:
    """What steps the weights: the step module (DDP-wrapped when distributed), AdamW, the lr
    schedule, and mixed precision (``autocast_dtype``; ``scaler`` for float16 only)."""

    step_module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    autocast_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None


def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    on_start: Callable[[TrainConfig], None] | None = None,
) -> dict[str, Any]:
    """Train ``config.method`` as ``config`` says, writing the run folder ``out``; returns a summary.

    ``resume`` continues from ``out/last.pth`` (refused when the config differs, naming the
    fields); a training that had already finished is left as it is (summary
    ``already_complete``, read back from its log). ``stop_at`` ends this invocation after that
    many iterations in total (state saved; resume later). ``progress`` shows a tqdm bar with the
    loss and ETA on stderr; ``on_start(config)`` is called on every rank before the model is
    built (not for a finished training). Raises
    :class:`~vssbench.training.trainer.NonFiniteLossError` when a loss term stops being finite
    (the last good ``last.pth`` is kept), :class:`VssbenchError` for bad input.

    SIGUSR1 and SIGTERM (a batch scheduler's warning before its time limit, ``scancel``, a
    preemption) stop the training at the end of the current iteration, on every rank at the same
    one: ``last.pth`` is saved and :class:`~vssbench.training.hooks.TrainingStopped` raised
    (``resume`` then continues bit-exactly). The handlers are set in the main thread for the
    duration of the call and the previous ones restored afterwards.
    """
    with StopSignals() as signals:
        return _train(config, out, resume, stop_at, progress, on_start, signals)


def _train(
    config: TrainConfig,
    out: str | Path,
    resume: bool,
    stop_at: int | None,
    progress: bool,
    on_start: Callable[[TrainConfig], None] | None,
    signals: StopSignals,
) -> dict[str, Any]:
    """:func:`train` with its stop signals caught in ``signals``."""
    ctx = setup_distributed(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    config = normalize_train_config(config.replace(world_size=ctx.world_size))
    out = Path(out).expanduser().resolve()
    state = _open_run_folder(out, config, resume, ctx)
    if state is not None and int(state["iteration"]) >= config.iters:
        return _already_complete(config, out, ctx, state)
    if on_start is not None:
        on_start(config)
    adapter, init_report = build_train_model(config, ctx, load_init_weights=state is None)
    opt = build_optimization(adapter, config, ctx)
    start, best = 0, None
    if state is not None:
        start, best, init_report = _restore_state(state, adapter, opt)
    elif ctx.is_main:
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    root = Path(config.data) if config.data else default_dataset()
    loader = _clip_loader(config, root, adapter, start, ctx)
    _seed_training_rng(config.seed, ctx.rank, state)
    writer = LogWriter(out / "log.jsonl", config.log_every, enabled=ctx.is_main, progress=progress)
    evaluator = _eval_hook(config, root, adapter, out, writer, ctx, best)
    save_state = functools.partial(
        _training_state,
        adapter=adapter,
        opt=opt,
        config=config,
        world_size=ctx.world_size,
        evaluator=evaluator,
        best=best,
        init_report=init_report,
    )
    save_model = functools.partial(_save_model, adapter, out / "model.pth", ctx.is_main, seed=config.seed)
    hooks = [LRSchedulerHook(opt.scheduler), writer, *([evaluator] if evaluator is not None else [])]
    checkpoint = CheckpointHook(out / "last.pth", config.checkpoint_every, ctx, save_state, save_model)
    hooks += [checkpoint, StopOnSignal(signals, ctx, checkpoint)]
    trainer = Trainer(
        opt.step_module,
        opt.optimizer,
        iter(loader),
        device=ctx.device,
        max_iter=config.iters,
        start_iter=start,
        hooks=hooks,
        autocast_dtype=opt.autocast_dtype,
        scaler=opt.scaler,
        distributed=ctx.distributed,
    )
    began = time.perf_counter()
    trainer.train(stop_at=stop_at)
    return _summary(
        config, out, ctx, trainer.iter, start, time.perf_counter() - began, writer, evaluator, init_report
    )


def _open_run_folder(out: Path, config: TrainConfig, resume: bool, ctx: DistContext) -> dict[str, Any] | None:
    """Rank 0 prepares ``out`` (:func:`_check_out`); with ``resume`` every rank gets the saved state."""
    state = ctx.on_main(lambda: _check_out(out, config, resume), "use the run folder")
    if state is None and resume:
        state = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    return state


def _already_complete(
    config: TrainConfig, out: Path, ctx: DistContext, state: dict[str, Any]
) -> dict[str, Any]:
    """The summary of a resumed training that had already finished, which stays as it is.

    Nothing runs and no file is rewritten (no second validation line in the log). Only a missing
    ``model.pth`` is written, from ``last.pth``'s weights: a run stopped between its final
    ``last.pth`` and ``model.pth``. ``final`` and ``val`` are the log's last training and validation
    lines (rank 0).
    """
    iteration = int(state["iteration"])
    wrote = []
    if ctx.is_main and not (out / "model.pth").exists():
        adapter = create(
            config.method, backbone=config.backbone, num_classes=config.num_classes, **config.options
        )
        adapter.load_state_dict(state["model"])
        _save_model(adapter, out / "model.pth", True, iteration, seed=config.seed)
        wrote.append("model.pth")
    lines = _read_log(out / "log.jsonl") if ctx.is_main else []
    train_lines = [line for line in lines if "val_mIoU" not in line]
    val_lines = [line for line in lines if "val_mIoU" in line]
    return _finite(
        {
            "method": config.method,
            "backbone": config.backbone,
            "preset": config.preset,
            "out": str(out),
            "already_complete": True,
            "wrote": wrote,
            "start_iteration": iteration,
            "iterations": iteration,
            "max_iterations": config.iters,
            "time_s": 0.0,
            "iters_per_s": None,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "final": train_lines[-1] if train_lines else {},
            "val": val_lines[-1] if val_lines else {},
            "best_val_mIoU": state.get("best_val_mIoU"),
            "init": state.get("init"),
            "paths": _paths(out),
        }
    )


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` ([] when it cannot be read; a torn last line is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def build_train_model(
    config: TrainConfig, ctx: DistContext, load_init_weights: bool = True
) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """The adapter in training mode on its device, and the report of ``config.init`` (or None).

    The same seeded initialization on every rank and on every resume; ``config.init`` is loaded
    only when ``load_init_weights`` (a resume restores the trained weights instead). Under
    torchrun BatchNorm becomes synchronized BatchNorm.
    """
    torch.manual_seed(config.seed)
    adapter = create(
        config.method, backbone=config.backbone, num_classes=config.num_classes, **config.options
    )
    init_report = None
    if config.init is not None and load_init_weights:
        init_report = load_init(adapter, config.init, config.init_format)
        if ctx.is_main:
            logger.warning("init: %s", init_report["summary"])
    adapter.train()
    if ctx.distributed:
        adapter = convert_sync_batchnorm(adapter, ctx.device)
    adapter.to(ctx.device)
    return adapter, init_report


def build_optimization(adapter: torch.nn.Module, config: TrainConfig, ctx: DistContext) -> Optimization:
    """:class:`Optimization` of ``adapter``: DDP (``find_unused_parameters``: a method may leave a
    module out of a step) when distributed, AdamW and poly schedule of the recipe, and with
    ``config.amp`` bfloat16 autocast where the GPU has it, else float16 with a grad scaler."""
    device = ctx.device
    step_module: torch.nn.Module = TrainStep(adapter)
    if ctx.distributed:
        step_module = torch.nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    optimizer = build_optimizer(adapter, config)
    scheduler = build_scheduler(optimizer, config)
    autocast_dtype, scaler = None, None
    if config.amp:
        autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if autocast_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
    return Optimization(step_module, optimizer, scheduler, autocast_dtype, scaler)


def _restore_state(
    state: dict[str, Any], adapter: torch.nn.Module, opt: Optimization
) -> tuple[int, float | None, dict[str, Any] | None]:
    """Load a resume state into the model and optimization;
    returns (iteration, best val mIoU, init report)."""
    adapter.load_state_dict(state["model"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    if opt.scaler is not None and state.get("scaler"):
        opt.scaler.load_state_dict(state["scaler"])
    return int(state["iteration"]), state.get("best_val_mIoU"), state.get("init")


def _clip_loader(
    config: TrainConfig, root: Path, adapter: torch.nn.Module, start: int, ctx: DistContext
) -> torch.utils.data.DataLoader:
    """This method's clips of ``root`` with the recipe's augmentation, a stream that restarts
    at iteration ``start``."""
    augment = ClipAugment(
        scale=config.scale,
        ratio_range=config.ratio_range,
        crop=config.crop,
        cat_max_ratio=config.cat_max_ratio,
    )
    dataset = VSPWClipDataset(
        root, config.split, sampler=adapter.train_sampler(), augment=augment, seed=config.seed
    )
    return clip_loader(
        dataset,
        seed=config.seed,
        start=start,
        batch_size=config.batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        workers=config.workers,
        pin_memory=ctx.device.type == "cuda",
    )


def _seed_training_rng(seed: int, rank: int, state: dict[str, Any] | None) -> None:
    """Training randomness (drop path) per rank; a resume restores exactly what was saved."""
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)
    if state is not None:
        rngs = state["rng"]
        restore_rng(rngs[rank] if rank < len(rngs) else rngs[0])


def _eval_hook(
    config: TrainConfig,
    root: Path,
    adapter: torch.nn.Module,
    out: Path,
    writer: LogWriter,
    ctx: DistContext,
    best: float | None,
) -> EvalHook | None:
    """Periodic validation on the first ``val_videos`` of ``root``'s ``val_split`` (None when
    ``val_every`` is 0); the best weights go to ``out/best.pth``."""
    if not config.val_every:
        return None
    val_data = VSPWDataset(root, config.val_split)
    evaluate = functools.partial(_validate, adapter, val_data, config, ctx.device)
    on_best = functools.partial(_save_best, adapter, out / "best.pth", seed=config.seed)
    return EvalHook(config.val_every, evaluate, writer, ctx, on_best, best)


def _validate(
    adapter: torch.nn.Module, val_data: VSPWDataset, config: TrainConfig, device: torch.device
) -> dict[str, Any]:
    """Metrics of ``adapter`` on the validation videos, computed exactly as ``vssbench run`` computes them."""
    videos = val_data.videos if config.val_videos is None else val_data.videos[: config.val_videos]
    transform = TestTransform(
        config.val_size, keep_ratio=True, size_divisor=method_info(config.method).size_divisor
    )
    return evaluate_videos(
        adapter, val_data, videos, transform, device=device, num_classes=config.num_classes
    )


def _save_best(
    adapter: torch.nn.Module, path: Path, iteration: int, record: dict[str, Any], *, seed: int
) -> None:
    extra = {"iteration": iteration, "val_mIoU": record["val_mIoU"], "train_seed": seed}
    save_checkpoint(adapter, path, extra=extra)


def _save_model(adapter: torch.nn.Module, path: Path, is_main: bool, iteration: int, *, seed: int) -> None:
    # ``train_seed`` lets a run's record say which training seed made its weights (seed groups).
    if is_main:
        save_checkpoint(adapter, path, extra={"iteration": iteration, "train_seed": seed})


def _training_state(
    iteration: int,
    rngs: list[Any],
    *,
    adapter: torch.nn.Module,
    opt: Optimization,
    config: TrainConfig,
    world_size: int,
    evaluator: EvalHook | None,
    best: float | None,
    init_report: dict[str, Any] | None,
) -> dict[str, Any]:
    """The payload of ``last.pth`` after ``iteration`` iterations (``rngs``: every rank's RNG state)."""
    return {
        "version": STATE_VERSION,
        "iteration": iteration,
        "model": {k: v.detach().cpu() for k, v in adapter.state_dict().items()},
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict() if opt.scaler is not None else None,
        "rng": rngs,
        "data": {"seed": config.seed, "next_position": iteration * config.batch_size * world_size},
        "config": config.to_dict(),
        "best_val_mIoU": evaluator.best if evaluator is not None else best,
        "init": init_report,
    }


def _summary(
    config: TrainConfig,
    out: Path,
    ctx: DistContext,
    iteration: int,
    start: int,
    elapsed: float,
    writer: LogWriter,
    evaluator: EvalHook | None,
    init_report: dict[str, Any] | None,
) -> dict[str, Any]:
    """What :func:`train` returns: where the run stands, its speed, last log line and validation."""
    done = iteration - start
    return _finite(
        {
            "method": config.method,
            "backbone": config.backbone,
            "preset": config.preset,
            "out": str(out),
            "start_iteration": start,
            "iterations": iteration,
            "max_iterations": config.iters,
            "time_s": round(elapsed, 3),
            "iters_per_s": round(done / elapsed, 4) if elapsed > 0 and done else None,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "final": writer.last,
            "val": evaluator.last if evaluator is not None else {},
            "best_val_mIoU": evaluator.best if evaluator is not None else None,
            "init": init_report,
            "paths": _paths(out),
            "already_complete": False,
        }
    )


def _paths(out: Path) -> dict[str, str]:
    """The files of the run folder that exist, by name."""
    return {
        name: str(out / name)
        for name in ("config.json", "log.jsonl", "last.pth", "model.pth", "best.pth")
        if (out / name).exists()
    }


def _finite(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None (JSON without NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


__all__ = [
    "STATE_VERSION",
    "Optimization",
    "build_optimization",
    "build_train_model",
    "load_init",
    "normalize_train_config",
    "train",
]
