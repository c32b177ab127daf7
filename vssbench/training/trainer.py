"""A small training loop with hooks (detectron2 ``SimpleTrainer`` style).

The loop only steps: read a batch, ``forward_train`` (through DDP when distributed), check the
losses are finite, back-propagate ``loss``, step the optimizer. Everything else (lr schedule,
logging, validation, checkpoints) is a :class:`HookBase` called around it. The trainer never
names a method: it calls what the adapter contract provides and logs every scalar it returns.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vssbench.errors import OptionError, VssbenchError


class NonFiniteLossError(VssbenchError):
    """A loss term became NaN or infinite; the message names the iteration and every term."""


class HookBase:
    """A callback of :class:`Trainer`; ``self.trainer`` is set when it is registered."""

    trainer: Trainer

    def before_train(self) -> None:
        """Called once before the first iteration of this invocation."""

    def after_step(self) -> None:
        """Called after every iteration (``trainer.iter`` iterations are then done)."""

    def after_train(self) -> None:
        """Called once after the last iteration, only when training ended normally."""

    def close(self) -> None:
        """Called always at the end (also after an error): release files and progress bars."""


class Trainer:
    """Steps ``step_module`` (a :class:`~vssbench.training.parallel.TrainStep`, maybe DDP-wrapped).

    ``data`` yields batches ``{"images", "labels"}`` (or ``{"error": message}``). ``iter`` counts
    finished iterations; ``scalars`` holds the last step's named values as floats, averaged over
    ranks (so every rank takes the same decision on a non-finite loss), plus ``lr`` (the base lr
    used by the step). ``autocast_dtype`` turns on CUDA autocast; ``scaler`` is a GradScaler (fp16).
    The step module is called as ``step_module(images, labels, iter)`` (0-based iteration:
    :class:`~vssbench.training.parallel.TrainStep` hands it to the adapter's ``train_iteration``).
    """

    def __init__(
        self,
        step_module: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: Iterator[dict[str, Any]],
        *,
        device: torch.device,
        max_iter: int,
        start_iter: int = 0,
        hooks: Sequence[HookBase] = (),
        autocast_dtype: torch.dtype | None = None,
        scaler: Any = None,
        distributed: bool = False,
    ) -> None:
        self.step_module = step_module
        self.optimizer = optimizer
        self.data = data
        self.device = device
        self.max_iter = max_iter
        self.start_iter = start_iter
        self.iter = start_iter
        self.autocast_dtype = autocast_dtype
        self.scaler = scaler
        self.distributed = distributed
        self.scalars: dict[str, float] = {}
        self.hooks: list[HookBase] = []
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def train(self, stop_at: int | None = None) -> None:
        """Run iterations ``start_iter`` .. ``max_iter`` (or up to ``stop_at``), calling the hooks."""
        end = self.max_iter if stop_at is None else min(stop_at, self.max_iter)
        try:
            for hook in self.hooks:
                hook.before_train()
            while self.iter < end:
                self.run_step()
                self.iter += 1
                for hook in self.hooks:
                    hook.after_step()
            for hook in self.hooks:
                hook.after_train()
        finally:
            for hook in self.hooks:
                hook.close()

    def base_lr(self) -> float:
        """The lr of the base (encoder) rate in the current step: a group's lr over its multiplier."""
        group = self.optimizer.param_groups[0]
        return float(group["lr"]) / float(group.get("lr_mult", 1.0))

    def run_step(self) -> None:
        """One iteration: batch -> forward_train -> finite check -> backward -> optimizer step."""
        batch = next(self.data)
        if "error" in batch:
            raise VssbenchError(f"training data: {batch['error']}")
        non_blocking = self.device.type == "cuda"
        images = batch["images"].to(self.device, non_blocking=non_blocking)
        labels = batch["labels"].to(self.device, non_blocking=non_blocking)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        try:
            with autocast:
                outputs = self.step_module(images, labels, self.iter)
        except ValueError as exc:
            if "more than 1 value per channel" not in str(exc):
                raise
            raise OptionError(
                f"iteration {self.iter + 1}: a BatchNorm of the method saw one value per channel on clips "
                f"{list(images.shape)} (batch x frames x 3 x H x W); use a larger --crop or --batch-size"
            ) from exc
        if "loss" not in outputs:
            raise VssbenchError(f"forward_train returned no 'loss' (keys: {', '.join(sorted(outputs))})")
        names = sorted(outputs)
        values = torch.stack([outputs[k].detach().float().reshape(()) for k in names]).cpu()
        if self.distributed:
            values = values.to(self.device)
            dist.all_reduce(values)
            values = (values / dist.get_world_size()).cpu()
        scalars = dict(zip(names, values.tolist()))
        bad = [k for k in names if (k == "loss" or k.startswith("loss_")) and not math.isfinite(scalars[k])]
        if bad:
            terms = ", ".join(f"{k}={scalars[k]:.6g}" for k in names)
            raise NonFiniteLossError(f"iteration {self.iter + 1}: non-finite loss ({terms})")
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.base_lr()
        if self.scaler is not None:
            self.scaler.scale(outputs["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            outputs["loss"].backward()
            self.optimizer.step()
        self.scalars = {**scalars, "lr": lr}


__all__ = ["HookBase", "NonFiniteLossError", "Trainer"]
