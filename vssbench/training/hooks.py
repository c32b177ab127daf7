"""Hooks of the training loop: lr schedule, log writer with progress, validation, checkpoints,
and a clean stop on a signal.

Order matters and is the one :func:`vssbench.training.run.train` registers: the scheduler steps
first (so a checkpoint holds the state after the step), then the log line, then validation,
then checkpoints (so ``last.pth`` knows the best validation score so far), then the stop on a
signal (:class:`StopOnSignal`: SIGUSR1 or SIGTERM saves ``last.pth`` at the end of the iteration
and raises :class:`TrainingStopped`; a batch scheduler's warning before a time limit or a
preemption costs at most one iteration).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from vssbench.training.trainer import HookBase

#: Validation metrics copied into log.jsonl (as ``val_<key>``).
VAL_KEYS: tuple[str, ...] = ("mIoU", "wIoU", "mVC8", "mVC16")
#: The signals that stop a training cleanly: Slurm's warning before a time limit (``sbatch
#: --signal=USR1@N``) and the polite kill of ``scancel``, a preemption or ``kill``.
STOP_SIGNALS: tuple[str, ...] = ("SIGUSR1", "SIGTERM")
#: Exit status of ``vssbench train`` stopped by a signal with ``last.pth`` saved (sysexits'
#: EX_TEMPFAIL: run it again with ``--resume``); a Slurm job requeues itself on it.
STOPPED_EXIT_STATUS = 75


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def capture_rng() -> dict[str, Any]:
    """Every RNG state of this process (python, numpy, torch, CUDA) as checkpoint-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(payload: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename (an interrupted save leaves the old file)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


class LRSchedulerHook(HookBase):
    """Steps the lr scheduler once per iteration."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler

    def after_step(self) -> None:
        self.scheduler.step()


class LogWriter(HookBase):
    """Appends one JSON line per ``every`` iterations to ``log.jsonl`` and drives a tqdm bar (rank 0).

    A line holds ``iter`` (iterations done), ``time`` (seconds since this invocation started),
    ``lr`` (the base lr of the last step) and the mean of every other scalar over the iterations
    since the previous line (NaN values left out; ``null`` when all were NaN).
    """

    def __init__(self, path: Path, every: int, enabled: bool, progress: bool) -> None:
        self.path, self.every, self.enabled, self.progress = path, every, enabled, progress
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._file: Any = None
        self._bar: Any = None
        self.last: dict[str, Any] = {}

    def before_train(self) -> None:
        self._start = time.perf_counter()
        if not self.enabled:
            return
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole training; close()
        t = self.trainer
        self._bar = tqdm(
            total=t.max_iter,
            initial=t.start_iter,
            desc="train",
            unit="it",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
        )

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (rank 0 only; NaN/inf become null)."""
        if self._file is not None:
            clean = {k: _finite_or_none(v) for k, v in record.items()}
            self._file.write(json.dumps(clean, allow_nan=False) + "\n")
            self._file.flush()

    def after_step(self) -> None:
        t = self.trainer
        for key, value in t.scalars.items():
            if key != "lr" and math.isfinite(value):
                self._sums[key] = self._sums.get(key, 0.0) + value
                self._counts[key] = self._counts.get(key, 0) + 1
            self._counts.setdefault(key, self._counts.get(key, 0))
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{t.scalars.get('loss', float('nan')):.4f}", refresh=False)
        if t.iter % self.every == 0 or t.iter == t.max_iter:
            record: dict[str, Any] = {
                "iter": t.iter,
                "time": round(time.perf_counter() - self._start, 3),
                "lr": t.scalars.get("lr"),
            }
            for key in sorted(t.scalars):
                if key == "lr":
                    continue
                count = self._counts.get(key, 0)
                record[key] = self._sums[key] / count if count else float("nan")
            self.last = record
            self.write(record)
            self._sums.clear()
            self._counts.clear()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
            self._file = None


class EvalHook(HookBase):
    """Validation every ``every`` iterations and at the end, through the shared evaluation loop.

    ``evaluate()`` returns the metrics of :func:`vssbench.harness.evaluate.evaluate_videos` (rank 0
    calls it; other ranks wait). The line ``{"iter", "val_mIoU", "val_wIoU", "val_mVC8",
    "val_mVC16", ...}`` goes to the log, and ``on_best(iter, metrics)`` is called when val mIoU
    improves. RNG states are restored after validation so that it never changes the training.
    """

    def __init__(
        self,
        every: int,
        evaluate: Callable[[], dict[str, Any]],
        writer: LogWriter,
        ctx: Any,
        on_best: Callable[[int, dict[str, Any]], None],
        best: float | None = None,
    ) -> None:
        self.every, self.evaluate, self.writer, self.ctx, self.on_best = every, evaluate, writer, ctx, on_best
        self.best = best
        self.last: dict[str, Any] = {}
        self._done_at = -1

    def _run(self) -> None:
        t = self.trainer
        if self._done_at == t.iter:
            return
        self._done_at = t.iter
        rng = capture_rng()
        record = None
        if self.ctx.is_main:
            start = time.perf_counter()
            metrics = self.evaluate()
            record = {
                "iter": t.iter,
                **{f"val_{k}": float(metrics[k]) for k in VAL_KEYS},
                "val_aAcc": float(metrics.get("aAcc", float("nan"))),
                "val_videos": metrics["num_videos"],
                "val_frames": metrics["num_frames"],
                "val_time": round(time.perf_counter() - start, 3),
            }
            self.writer.write(record)
            self.last = record
            score = record["val_mIoU"]
            if math.isfinite(score) and (self.best is None or score > self.best):
                self.best = score
                self.on_best(t.iter, record)
        self.ctx.barrier()
        restore_rng(rng)

    def after_step(self) -> None:
        if self.every and self.trainer.iter % self.every == 0:
            self._run()

    def after_train(self) -> None:
        if self.every and self.trainer.iter == self.trainer.max_iter:
            self._run()


class CheckpointHook(HookBase):
    """Writes ``last.pth`` (full state, atomically) every ``every`` iterations and at the end.

    ``state(iteration, rngs)`` builds the payload after ``iteration`` iterations; ``rngs`` holds
    every rank's RNG state (rank ``r`` restores entry ``r`` on resume). ``at_end(iteration)`` runs
    after the last save (``model.pth``).
    """

    def __init__(
        self,
        path: Path,
        every: int,
        ctx: Any,
        state: Callable[[int, list[Any]], dict[str, Any]],
        at_end: Callable[[int], None],
    ) -> None:
        self.path, self.every, self.ctx, self.state, self.at_end = path, every, ctx, state, at_end
        self._saved_at = -1

    def save(self) -> None:
        """Gather RNG states and write ``last.pth`` on rank 0."""
        t = self.trainer
        if self._saved_at == t.iter:
            return
        rngs = self.ctx.all_gather(capture_rng())
        if self.ctx.is_main:
            atomic_save(self.state(t.iter, rngs), self.path)
        self._saved_at = t.iter
        self.ctx.barrier()

    def after_step(self) -> None:
        if self.trainer.iter % self.every == 0:
            self.save()

    def after_train(self) -> None:
        self.save()
        self.at_end(self.trainer.iter)


class TrainingStopped(Exception):
    """The training stopped on ``signal_name`` after ``iteration`` iterations, ``path`` (``last.pth``)
    holding that state: ``--resume`` continues it exactly.

    Not a :class:`~vssbench.errors.VssbenchError` (nothing was wrong with the input): ``vssbench
    train`` exits with :data:`STOPPED_EXIT_STATUS` instead of 2.
    """

    def __init__(self, signal_name: str, iteration: int, path: Path) -> None:
        self.signal_name, self.iteration, self.path = signal_name, iteration, Path(path)
        saved = f"{self.path.name} saved; continue with --resume"
        super().__init__(f"stopped by {signal_name} at iteration {iteration}; {saved}")


class StopSignals:
    """While in use (``with StopSignals() as signals:``), :data:`STOP_SIGNALS` only set ``received``
    (the signal number) instead of ending the process; the previous handlers come back at exit.

    Handlers can only be set in the main thread; elsewhere nothing is caught. A signal that arrived
    but did not stop the training (``consumed`` still False: it came after the last iteration) is
    raised again at exit, under the previous handler, so that it is delayed but never lost.
    """

    def __init__(self, names: tuple[str, ...] = STOP_SIGNALS) -> None:
        self.signals = [getattr(signal, n) for n in names if hasattr(signal, n)]  # no SIGUSR1 on Windows
        self.received: int | None = None
        self.consumed = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self.received is not None and not self.consumed:
            signal.raise_signal(self.received)


class StopOnSignal(HookBase):
    """Stops the training at the end of the iteration in which a stop signal arrived.

    The flag is reduced over the ranks (maximum) after every iteration, so every rank stops at the
    same one even when the signal reached only some of them; ``last.pth`` is then written through
    the :class:`CheckpointHook` (every rank takes part, as in its periodic saves) and
    :class:`TrainingStopped` is raised.
    """

    def __init__(self, signals: StopSignals, ctx: Any, checkpoint: CheckpointHook) -> None:
        self.signals, self.ctx, self.checkpoint = signals, ctx, checkpoint

    def after_step(self) -> None:
        signum = self.signals.received or 0
        if self.ctx.distributed:
            flag = torch.tensor([signum], dtype=torch.int64, device=self.ctx.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        if signum:
            self.checkpoint.save()
            self.signals.consumed = True
            raise TrainingStopped(signal.Signals(signum).name, self.trainer.iter, self.checkpoint.path)


__all__ = [
    "STOPPED_EXIT_STATUS",
    "STOP_SIGNALS",
    "VAL_KEYS",
    "CheckpointHook",
    "EvalHook",
    "LRSchedulerHook",
    "LogWriter",
    "StopOnSignal",
    "StopSignals",
    "TrainingStopped",
    "atomic_save",
    "capture_rng",
    "restore_rng",
]
