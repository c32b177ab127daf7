"""The training data stream: a deterministic order of clips that any iteration can restart from.

Position ``p`` of the stream is clip ``perm_e[p % L]`` of epoch ``e = p // L`` of a
:class:`~vssbench.data.samplers.VSPWClipDataset` of ``L`` items, where ``perm_e`` is a
permutation drawn from ``default_rng([seed, e])``; the clip itself (frames, augmentation) draws
from ``default_rng([seed, e, index])`` inside the dataset. Iteration ``i`` of a run with
``world_size`` processes of ``batch_size`` clips reads positions ``[i*B*W + r*B, i*B*W + (r+1)*B)``
on rank ``r``: the data depend only on (seed, iteration, rank layout), never on which process or
DataLoader worker reads them, so a resumed run reads exactly what an uninterrupted one would,
and 2 processes x batch 1 read the clips of 1 process x batch 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vssbench.errors import VssbenchError


class ClipStream(torch.utils.data.Dataset):
    """Stream position -> clip of ``dataset`` (a seeded VSPWClipDataset); see the module docstring.

    A read error inside a DataLoader worker cannot cross the process boundary as a
    :class:`~vssbench.errors.DataError`, so it comes back as an item ``{"error": message}`` and
    the trainer raises it in the main process with the file named.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:  # the stream is infinite; a large length keeps DataLoader happy
        return 2**62

    def position(self, p: int) -> tuple[int, int]:
        """(epoch, dataset index) of stream position ``p``."""
        n = len(self.dataset)
        epoch, offset = divmod(int(p), n)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._perm_epoch = epoch
        assert self._perm is not None
        return epoch, int(self._perm[offset])

    def __getitem__(self, p: int) -> dict[str, Any]:
        epoch, index = self.position(p)
        self.dataset.set_epoch(epoch)
        try:
            return self.dataset[index]
        except VssbenchError as exc:
            return {"error": str(exc), "error_type": type(exc).__name__}


class StreamSampler(torch.utils.data.Sampler):
    """Infinite sampler of this rank's stream positions from iteration ``start`` on."""

    def __init__(self, start: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.start, self.batch_size, self.rank, self.world_size = start, batch_size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        per_iter = self.batch_size * self.world_size
        for i in itertools.count(self.start):
            base = i * per_iter + self.rank * self.batch_size
            yield from range(base, base + self.batch_size)


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into ``images`` N x T x 3 x H x W and ``labels`` N x T x H x W; pass errors on."""
    for item in items:
        if "error" in item:
            return item
    return {
        "images": torch.stack([item["images"] for item in items]),
        "labels": torch.stack([item["labels"] for item in items]),
        "videos": [item["video"] for item in items],
        "indices": [item["indices"] for item in items],
    }


def clip_loader(
    dataset: Any,
    *,
    seed: int,
    start: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """The DataLoader of this rank's clips from iteration ``start`` (iterate it once: it never ends).

    It gets its own seeded generator so creating it never draws from torch's global RNG (a
    resumed run would otherwise be one draw off); workers need no seeding since every clip
    draws from its own (seed, epoch, index) generator.
    """
    return torch.utils.data.DataLoader(
        ClipStream(dataset, seed),
        batch_size=batch_size,
        sampler=StreamSampler(start, batch_size, rank, world_size),
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


__all__ = ["ClipStream", "StreamSampler", "clip_loader", "collate_clips"]
