"""Streaming accumulators: fixed-size additive states updated one frame at a time.

``IoUMetric`` keeps one int64 confusion matrix; ``VCMetric`` keeps the pooled window totals
(score sum, scored windows, NaN windows) plus the in-progress video's run-length counters.
Merging is addition, so distributed or split runs combine exactly (up to float summation
order of the VC score sums).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vssbench.metrics.functional._common import check_clip, check_num_classes
from vssbench.metrics.functional.iou import confusion_matrix, iou_from_confusion
from vssbench.metrics.functional.vc import RunLengthVC


class IoUMetric:
    """Accumulates one confusion matrix over frames; ``compute()`` gives mIoU, wIoU and friends.

    Conventions are those of :func:`vssbench.metrics.functional.confusion_matrix` (a pixel
    counts iff ``0 <= gt < num_classes`` and ``gt != ignore_index``) and of
    :func:`vssbench.metrics.functional.iou_from_confusion` (``mIoU`` = official VSPW mean over
    GT-present classes).
    """

    def __init__(self, num_classes: int = 124, ignore_index: int = 255) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: Any, gt: Any, video: str | None = None) -> None:
        """Add one frame (or a batch) of prediction and GT label maps of the same shape.

        ``video`` is accepted for a uniform interface with :class:`VCMetric`; mIoU pools all
        pixels of all videos, so it is not needed here.
        """
        self.confusion += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        """mIoU, wIoU, mIoU_mmseg, aAcc, mAcc and per-class IoU of everything so far."""
        return iou_from_confusion(self.confusion)

    def merge(self, other: IoUMetric) -> None:
        """Add another accumulator's state into this one (same class count and ignore label)."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge IoUMetric(num_classes={other.num_classes}, ignore_index={other.ignore_index}) "
                f"into IoUMetric(num_classes={self.num_classes}, ignore_index={self.ignore_index})"
            )
        self.confusion += other.confusion

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: ``num_classes``, ``ignore_index`` and the confusion matrix."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "confusion": self.confusion.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (settings must match)."""
        for key in ("num_classes", "ignore_index"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(f"state {key!r} is {state[key]}, this metric has {getattr(self, key)}")
        conf = np.asarray(state["confusion"])
        if conf.shape != (self.num_classes, self.num_classes):
            raise ValueError(
                f"state 'confusion' has shape {conf.shape}, expected {(self.num_classes, self.num_classes)}"
            )
        self.confusion = conf.astype(np.int64, copy=True)


class VCMetric:
    """mVC_C accumulated over videos streamed one frame at a time.

    ``update(pred, gt, video)`` adds one frame; a new ``video`` name finishes the previous
    video, and :meth:`finish` (or :meth:`compute`) finishes the current one. The state never
    grows with the number of frames: per video only the previous frame and two uint8
    run-length maps are kept. Windows follow the official VSPW bounds (see
    :mod:`vssbench.metrics.functional.vc`). Named conventions, official by default:
    ``include_last`` also uses the final window; ``ignore_index`` (None: nothing ignored) leaves
    pixels whose stable GT is that label out of the GT common area; ``average`` is "windows"
    (pooled NaN-mean over all windows of all videos) or "videos" (mean of per-video NaN-means).
    The state keeps both averages' sums, so ``compute`` reports both.
    """

    def __init__(
        self, clip: int, include_last: bool = False, ignore_index: int | None = None, average: str = "windows"
    ) -> None:
        if average not in ("windows", "videos"):
            raise ValueError(f"average must be 'windows' or 'videos', got {average!r}")
        self.clip = check_clip(clip)
        self.include_last = bool(include_last)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.average = average
        self._counter = RunLengthVC((self.clip,), ignore_index=self.ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget everything, the in-progress video included."""
        self._counter.finish()
        self.score_sum = 0.0
        self.windows = 0
        self.nan_windows = 0
        self.video_mean_sum = 0.0  # sum over videos of each video's NaN-mean
        self.scored_videos = 0  # videos with at least one scored window
        self._video: str | None = None
        self._last_finished: str | None = None

    def update(self, pred: Any, gt: Any, video: str) -> None:
        """Add the next frame of ``video`` (prediction and GT label maps of the same shape)."""
        if video is None:
            raise ValueError("VCMetric.update needs the video name: windows never span two videos")
        if video != self._video:
            self.finish()
            if video == self._last_finished:
                raise ValueError(
                    f"video {video!r} was already finished; its frames must arrive consecutively"
                )
            self._video = video
        self._counter.push(gt, pred)

    def finish(self) -> None:
        """Finish the current video (if any): its windows join the pooled totals."""
        if self._video is None:
            return
        totals = self._counter.finish(self.include_last)
        self.score_sum += float(totals.score_sum[0])
        self.windows += int(totals.windows[0])
        self.nan_windows += int(totals.nan_windows[0])
        if totals.windows[0]:
            self.video_mean_sum += float(totals.score_sum[0]) / int(totals.windows[0])
            self.scored_videos += 1
        self._last_finished, self._video = self._video, None

    def compute(self) -> dict[str, Any]:
        """Finish the current video and return ``mVC`` (by ``average``; NaN without any scored
        window), ``mVC_windows`` and ``mVC_videos`` (both averages), ``windows`` (scored windows),
        ``nan_windows`` (windows with an empty GT common area) and ``videos`` (scored videos)."""
        self.finish()
        pooled = self.score_sum / self.windows if self.windows else float("nan")
        per_video = self.video_mean_sum / self.scored_videos if self.scored_videos else float("nan")
        return {
            "mVC": pooled if self.average == "windows" else per_video,
            "mVC_windows": pooled,
            "mVC_videos": per_video,
            "windows": self.windows,
            "nan_windows": self.nan_windows,
            "videos": self.scored_videos,
        }

    def merge(self, other: VCMetric) -> None:
        """Add another accumulator's finished totals (same clip and window bounds)."""
        if other._conventions() != self._conventions():
            raise ValueError(
                f"cannot merge VCMetric{other._conventions()} into VCMetric{self._conventions()}"
            )
        if other._video is not None:
            raise ValueError(f"the other VCMetric is still in video {other._video!r}; call finish() first")
        self.score_sum += other.score_sum
        self.windows += other.windows
        self.nan_windows += other.nan_windows
        self.video_mean_sum += other.video_mean_sum
        self.scored_videos += other.scored_videos

    def _conventions(self) -> tuple[Any, ...]:
        return (self.clip, self.include_last, self.ignore_index, self.average)

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state, the in-progress video's counters included (fixed size)."""
        return {
            "clip": self.clip,
            "include_last": self.include_last,
            "ignore_index": self.ignore_index,
            "average": self.average,
            "score_sum": self.score_sum,
            "windows": self.windows,
            "nan_windows": self.nan_windows,
            "video_mean_sum": self.video_mean_sum,
            "scored_videos": self.scored_videos,
            "video": self._video,
            "last_finished": self._last_finished,
            "counter": self._counter.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (clip and bounds must match)."""
        theirs = (
            int(state["clip"]),
            bool(state["include_last"]),
            state.get("ignore_index"),
            state.get("average", "windows"),
        )
        if theirs != self._conventions():
            raise ValueError(
                f"state has (clip, include_last, ignore_index, average) = {theirs}; "
                f"this metric has {self._conventions()}"
            )
        self.score_sum = float(state["score_sum"])
        self.windows = int(state["windows"])
        self.nan_windows = int(state["nan_windows"])
        self.video_mean_sum = float(state.get("video_mean_sum", 0.0))
        self.scored_videos = int(state.get("scored_videos", 0))
        self._video = state["video"]
        self._last_finished = state["last_finished"]
        self._counter.load_state_dict(state["counter"])
