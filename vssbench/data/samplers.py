"""Which frames of a video form a training clip, per method family, and the clip dataset.

* :class:`KeyframeClipSampler` (TFC, feature reuse): a keyframe and the ``interval - 1`` frames
  that follow it, i.e. one keyframe interval as seen at test time.
* :class:`ReferenceClipSampler` (CFFM, MRCFA): target ``t`` with references at fixed negative
  offsets (-9, -6, -3), on a video reversed with probability 0.5; the target is last.
* :class:`ConsecutiveClipSampler` (TDNet): ``length`` frames ending at the target, neighbours
  1..``max_gap`` frames apart (1: consecutive frames).

Every sampler returns frame indices in the order the model consumes them (target last).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np
import torch

from vssbench.data.transforms import ClipAugment, normalize, to_rgb_array
from vssbench.data.vspw import VSPWDataset
from vssbench.errors import DataError


class ClipSampler(Protocol):
    """Picks the frame indices of one training clip from a video of ``num_frames`` frames."""

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[int]:
        """Frame indices of one clip, target last; ValueError when the video is too short."""
        ...


def _window(num_frames: int, length: int, rng: np.random.Generator, what: str) -> list[int]:
    """``length`` consecutive indices whose start is uniform in [0, T - length]; ValueError naming
    ``what`` when the video is shorter than ``length``."""
    if num_frames < length:
        raise ValueError(f"{what} needs >= {length} frames, got {num_frames}")
    start = int(rng.integers(0, num_frames - length + 1))
    return list(range(start, start + length))


class KeyframeClipSampler:
    """A keyframe ``k`` drawn uniformly from [0, T - interval] and the ``interval - 1`` frames after it."""

    def __init__(self, interval: int = 4) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval

    @property
    def min_frames(self) -> int:
        """Shortest video this sampler accepts."""
        return self.interval

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[int]:
        """Indices [k, k+1, ..., k+interval-1]; ValueError for a video shorter than the interval."""
        return _window(num_frames, self.interval, rng, f"a keyframe clip of interval {self.interval}")

    def __repr__(self) -> str:
        return f"KeyframeClipSampler(interval={self.interval})"


#: CFFM/MRCFA test clips for targets 3..8 with the default dilations (``prepare_test_img2``).
CFFM_EARLY_TEST_CLIPS: dict[int, list[int]] = {
    3: [0, 1, 2, 3],
    4: [0, 2, 3, 4],
    5: [0, 2, 4, 5],
    6: [0, 2, 4, 6],
    7: [0, 3, 5, 7],
    8: [0, 3, 6, 8],
}


class ReferenceClipSampler:
    """CFFM/MRCFA clips: references at ``t + d`` for each dilation ``d``, then the target ``t``.

    Training (``sample``): with probability ``reverse_prob`` the video is reversed first; then
    ``t`` is uniform in [max|d|, T-1] and the clip is [t-9, t-6, t-3, t] for the defaults, given
    as indices of the original (unreversed) video. Test (``test_clip``): references that fall
    before frame 0 are dropped, so targets 0..2 get none, except that targets 3..8 use CFFM's
    hard-coded clips when the dilations are the default (-9, -6, -3).
    """

    DEFAULT_DILATIONS = (-9, -6, -3)

    def __init__(self, dilations: tuple[int, ...] = DEFAULT_DILATIONS, reverse_prob: float = 0.5) -> None:
        dilations = tuple(int(d) for d in dilations)
        if not dilations or any(d >= 0 for d in dilations):
            raise ValueError(
                f"dilations must be negative offsets (references precede the target), got {dilations}"
            )
        if not 0.0 <= reverse_prob <= 1.0:
            raise ValueError(f"reverse_prob must be in [0, 1], got {reverse_prob}")
        self.dilations = dilations
        self.reverse_prob = reverse_prob

    @property
    def min_frames(self) -> int:
        """Shortest video this sampler accepts in training (10 for the defaults)."""
        return -min(self.dilations) + 1

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[int]:
        """Training clip indices, target last; ValueError for a video shorter than ``min_frames``."""
        if num_frames < self.min_frames:
            raise ValueError(
                f"a reference clip with dilations {self.dilations} needs >= {self.min_frames} frames, "
                f"got {num_frames}"
            )
        reverse = bool(rng.random() < self.reverse_prob)
        span = -min(self.dilations)
        t = int(rng.integers(span, num_frames))
        clip = [t + d for d in self.dilations] + [t]
        if reverse:
            clip = [num_frames - 1 - i for i in clip]
        return clip

    def test_clip(self, t: int, num_frames: int) -> list[int]:
        """Indices of the clip whose target is frame ``t`` at test time (target last)."""
        if not 0 <= t < num_frames:
            raise ValueError(f"target frame {t} is outside a video of {num_frames} frames")
        if self.dilations == self.DEFAULT_DILATIONS and t in CFFM_EARLY_TEST_CLIPS:
            return list(CFFM_EARLY_TEST_CLIPS[t])
        return [t + d for d in self.dilations if t + d >= 0] + [t]

    def __repr__(self) -> str:
        return f"ReferenceClipSampler(dilations={self.dilations}, reverse_prob={self.reverse_prob})"


class ConsecutiveClipSampler:
    """``length`` frames ending at a target ``t``, each 1..``max_gap`` frames after the previous (TDNet).

    ``max_gap=1``: consecutive frames [t-length+1, ..., t] with t uniform in [length-1, T-1].
    ``max_gap>1`` is TDNet's training rule (``Training/ptsemseg/loader/cityscapes_loader.py``:
    ``f3 = f4 - randint(1, 2)``, then ``f2`` from ``f3``, ``f1`` from ``f2``): going back from the
    target, each gap is drawn independently and uniformly from {1, ..., max_gap}. The original's
    target is a labelled Cityscapes frame (the 20th of a 30-frame snippet), so every draw fits;
    here t is uniform in [(length-1) x max_gap, T-1], the frames where every draw fits, and a
    video shorter than ``min_frames`` = (length-1) x max_gap + 1 is too short (ValueError;
    :class:`VSPWClipDataset` skips it): gaps are never shortened to fit. Draw order from ``rng``:
    t, then the gaps from the target back (none with ``max_gap=1``).
    """

    def __init__(self, length: int = 4, max_gap: int = 1) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if max_gap < 1:
            raise ValueError(f"max_gap must be >= 1, got {max_gap}")
        self.length = length
        self.max_gap = max_gap

    @property
    def min_frames(self) -> int:
        """Shortest video this sampler accepts: room for the largest gaps."""
        return (self.length - 1) * self.max_gap + 1

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[int]:
        """Indices [t - g_1 - ... - g_{length-1}, ..., t - g_1, t]; ValueError for a video shorter
        than ``min_frames``."""
        if num_frames < self.min_frames:
            what = (
                f"{self.length} frames at most {self.max_gap} apart"
                if self.max_gap > 1
                else f"{self.length} consecutive frames"
            )
            raise ValueError(f"a clip of {what} needs >= {self.min_frames} frames, got {num_frames}")
        t = int(rng.integers(self.min_frames - 1, num_frames))
        if self.max_gap == 1:
            return list(range(t - self.length + 1, t + 1))
        back = np.cumsum(rng.integers(1, self.max_gap + 1, size=self.length - 1))  # t - frame, nearest first
        return [t - int(d) for d in back[::-1]] + [t]

    def __repr__(self) -> str:
        return f"ConsecutiveClipSampler(length={self.length}, max_gap={self.max_gap})"


class VSPWClipDataset(torch.utils.data.Dataset):
    """Training clips: item ``i`` is one clip of video ``i % num_videos`` (``repeat`` passes over the list).

    Each item reads only the clip's frames and returns ``dict(images=float32 [T, 3, h, w],
    labels=int64 [T, h, w] (255 ignored), video=str, indices=list[int])``. Without
    ``augment`` the frames are only normalized (original size).

    Randomness: with ``seed`` set, item ``i`` in epoch ``e`` (see :meth:`set_epoch`) draws from
    ``default_rng([seed, e, i])``, so runs are reproducible whatever the worker layout; without
    it, each item seeds from torch's global generator, which DataLoader seeds per worker and
    per epoch, so workers never repeat each other's draws.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        sampler: ClipSampler | None = None,
        augment: ClipAugment | None = None,
        repeat: int = 1,
        seed: int | None = None,
        skip_short: bool = True,
    ) -> None:
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.dataset = VSPWDataset(root, split)
        self.sampler: ClipSampler = sampler if sampler is not None else KeyframeClipSampler()
        self.augment = augment
        self.repeat = repeat
        self.seed = seed
        self.epoch = 0
        min_frames = int(getattr(self.sampler, "min_frames", 1))
        videos = self.dataset.videos
        if skip_short:
            # Listing every video once up front also surfaces missing folders before training starts.
            videos = [v for v in videos if self.dataset.num_frames(v) >= min_frames]
        if not videos:
            raise DataError(
                self.dataset.split_file,
                f"no video with at least {min_frames} frames for {self.sampler!r}",
            )
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos) * self.repeat

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of a seeded dataset from one epoch to the next."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([self.seed, self.epoch, index])
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One augmented clip (see the class docstring for the keys and shapes)."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} items")
        video = self.videos[index % len(self.videos)]
        rng = self._rng(index)
        stems = self.dataset.frame_stems(video)
        indices = self.sampler.sample(len(stems), rng)
        frames = [self.dataset.read_frame(video, stems[i]) for i in indices]
        images = [image for image, _ in frames]
        labels = [label for _, label in frames]
        if self.augment is not None:
            image_t, label_t = self.augment(images, labels, rng=rng)
        else:
            image_t = normalize(np.stack([to_rgb_array(im) for im in images]))
            label_t = torch.from_numpy(np.stack(labels)).to(torch.int64)
        return {"images": image_t, "labels": label_t, "video": video, "indices": list(indices)}


__all__ = [
    "CFFM_EARLY_TEST_CLIPS",
    "ClipSampler",
    "ConsecutiveClipSampler",
    "KeyframeClipSampler",
    "ReferenceClipSampler",
    "VSPWClipDataset",
]
