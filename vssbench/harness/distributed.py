"""Distributed evaluation through torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

``torchrun --nproc-per-node N -m vssbench run ...`` (or a multi-node rendezvous) sets
``WORLD_SIZE > 1``; the harness then initializes the default process group once per process
(gloo on CPU, nccl on CUDA with LOCAL_RANK's device), shards the videos across ranks and gathers
the per-video metric states to every rank as Python objects. A single process needs none of it:
:class:`DistContext` then makes every collective a no-op.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from vssbench.errors import OptionError, VssbenchError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and the device it evaluates on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that measures FPS/GMACs, writes the record and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T], what: str, share: bool = False) -> T | None:
        """Run ``fn`` on rank 0 only (e.g. preparing a run folder); its result there, None elsewhere
        (with ``share``: rank 0's result on every rank).

        A :class:`VssbenchError` that ``fn`` raises is raised on rank 0 as it is and on every other
        rank as an :class:`OptionError` saying that rank 0 could not ``what``, so all ranks stop
        together instead of waiting for a collective that never comes.
        """
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except VssbenchError as exc:
                error = exc
        message = None if error is None else str(error)
        if share:
            result, message = self.broadcast((result, message))
        else:
            message = self.broadcast(message)
        if error is not None:
            raise error
        if message is not None:
            raise OptionError(f"rank 0 could not {what}: {message}")
        return result


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise OptionError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def resolve_device(device: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """Turn ``cpu``, ``cuda`` or ``cuda:N`` into a torch device (LOCAL_RANK's GPU when distributed)."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise OptionError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__})"
            )
        if distributed:
            return torch.device("cuda", local_rank)
        return torch.device(device if ":" in device else "cuda:0")
    raise OptionError(f"device must be cpu, cuda or cuda:N, got {device!r}")


def setup_distributed(device: str) -> DistContext:
    """Initialize the process group if WORLD_SIZE > 1 (once per process) and describe this rank.

    The group stays up for the rest of the process (a sweep runs several evaluations on it) and
    is destroyed at exit. A group the caller already initialized is used as it is.
    """
    world = env_world_size()
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistContext(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank, distributed=True)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        atexit.register(_destroy)
    return DistContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=torch_device
    )


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
