"""Per-video evaluation for the harness: one additive :class:`MetricState` per video.

The harness streams each video through a :class:`VideoEvaluator` and sums the returned
states (order does not matter); :func:`compute_metrics` turns a summed state into the
record's numbers. No metric logic lives in the harness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vssbench.errors import OptionError
from vssbench.metrics.functional._common import check_clip, check_num_classes
from vssbench.metrics.functional.iou import confusion_matrix, iou_from_confusion
from vssbench.metrics.functional.vc import RunLengthVC


@dataclass(frozen=True)
class Preset:
    """Which videos enter the metrics.

    ``drop_videos_up_to``: videos with ``num_frames <=`` this are dropped from *every* metric
    (mIoU included); 0 keeps every video. VC itself never has a window for T <= C.
    """

    name: str
    drop_videos_up_to: int
    description: str


PRESETS: dict[str, Preset] = {
    "vspw": Preset(
        "vspw",
        0,
        "official VSPW: mIoU/wIoU over every frame of every video; VC_C skips videos with T <= C",
    ),
    "cffm": Preset(
        "cffm",
        16,
        "CFFM/MRCFA scripts: videos with T <= 16 are dropped from every metric, mIoU included",
    ),
}


@dataclass(eq=False)
class MetricState:
    """Additive, fixed-size evaluation state of one or more videos.

    ``confusion`` [K, K] int64 (rows = GT); per clip length in ``clips``: ``vc_score_sum``
    (float64, sum of scored window scores), ``vc_windows`` (scored windows),
    ``vc_nan_windows`` (windows with an empty GT common area), and for the per-video average
    ``vc_video_mean_sum`` (float64, sum over videos of each video's NaN-mean) and
    ``vc_videos`` (videos with a scored window). ``videos``/``frames`` count
    what was evaluated; ``skipped_videos``/``skipped_frames`` what a preset dropped.
    """

    confusion: np.ndarray
    clips: tuple[int, ...]
    vc_score_sum: np.ndarray
    vc_windows: np.ndarray
    vc_nan_windows: np.ndarray
    vc_video_mean_sum: np.ndarray
    vc_videos: np.ndarray
    videos: int = 0
    frames: int = 0
    skipped_videos: int = 0
    skipped_frames: int = 0

    _ARRAYS: ClassVar[tuple[str, ...]] = (
        "vc_score_sum",
        "vc_windows",
        "vc_nan_windows",
        "vc_video_mean_sum",
        "vc_videos",
    )
    _FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ("vc_score_sum", "vc_video_mean_sum")
    _COUNTS: ClassVar[tuple[str, ...]] = ("videos", "frames", "skipped_videos", "skipped_frames")

    @classmethod
    def zeros(cls, num_classes: int = 124, clips: Sequence[int] = (8, 16)) -> MetricState:
        """The neutral element: nothing evaluated."""
        k = check_num_classes(num_classes)
        clips = tuple(check_clip(c) for c in clips)
        n = len(clips)
        return cls(
            confusion=np.zeros((k, k), np.int64),
            clips=clips,
            vc_score_sum=np.zeros(n, np.float64),
            vc_windows=np.zeros(n, np.int64),
            vc_nan_windows=np.zeros(n, np.int64),
            vc_video_mean_sum=np.zeros(n, np.float64),
            vc_videos=np.zeros(n, np.int64),
        )

    @property
    def num_classes(self) -> int:
        """K, the side of the confusion matrix."""
        return int(self.confusion.shape[0])

    def __add__(self, other: MetricState) -> MetricState:
        if not isinstance(other, MetricState):
            return NotImplemented
        if other.num_classes != self.num_classes or tuple(other.clips) != tuple(self.clips):
            raise ValueError(
                f"cannot add MetricState(num_classes={other.num_classes}, clips={tuple(other.clips)}) "
                f"to MetricState(num_classes={self.num_classes}, clips={tuple(self.clips)})"
            )
        return MetricState(
            confusion=self.confusion + other.confusion,
            clips=tuple(self.clips),
            **{name: getattr(self, name) + getattr(other, name) for name in self._ARRAYS + self._COUNTS},
        )

    def __eq__(self, other: object) -> bool:
        """Exact equality of every count and sum (float sums compared exactly)."""
        if not isinstance(other, MetricState):
            return NotImplemented
        return (
            tuple(self.clips) == tuple(other.clips)
            and np.array_equal(self.confusion, other.confusion)
            and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in self._ARRAYS + self._COUNTS)
        )

    def __radd__(self, other: Any) -> MetricState:
        # lets sum(states) start from the integer 0
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (lists, ints, floats)."""
        return {
            "num_classes": self.num_classes,
            "clips": list(self.clips),
            "confusion": self.confusion.tolist(),
            **{
                name: [float(x) if name in self._FLOAT_ARRAYS else int(x) for x in getattr(self, name)]
                for name in self._ARRAYS
            },
            **{name: int(getattr(self, name)) for name in self._COUNTS},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricState:
        """Inverse of :meth:`to_dict`; a missing key or a wrong shape raises ValueError naming it."""
        required = ("num_classes", "clips", "confusion", *cls._ARRAYS)
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"metric state is missing key(s) {missing}")
        state = cls.zeros(int(d["num_classes"]), d["clips"])
        k, n = state.num_classes, len(state.clips)
        conf = np.asarray(d["confusion"], dtype=np.int64)
        if conf.shape != (k, k):
            raise ValueError(f"metric state 'confusion' has shape {conf.shape}, expected {(k, k)}")
        state.confusion = conf
        for name in cls._ARRAYS:
            values = np.asarray(d[name], dtype=np.float64 if name in cls._FLOAT_ARRAYS else np.int64)
            if values.shape != (n,):
                raise ValueError(
                    f"metric state {name!r} has shape {values.shape}, expected {(n,)} (one per clip)"
                )
            setattr(state, name, values)
        for name in cls._COUNTS:
            setattr(state, name, int(d.get(name, 0)))
        return state


def compute_metrics(state: MetricState) -> dict[str, Any]:
    """The record's metric numbers from a (summed) state; fractions in [0, 1].

    Keys: ``mIoU``, ``wIoU``, ``mIoU_mmseg``, ``aAcc``, ``mAcc``, ``IoU`` (per-class list,
    NaN where undefined), ``mVC{C}`` per clip (the official pooled NaN-mean over windows; NaN
    without scored windows), ``windows`` and ``nan_windows`` (dicts keyed by ``mVC{C}``),
    ``vc_video_mean`` (dict keyed by ``mVC{C}``: the mean over videos of each video's NaN-mean,
    the "videos" average convention), ``videos``, ``frames``, ``skipped_videos``, ``skipped_frames``.
    """
    iou = iou_from_confusion(state.confusion)
    out: dict[str, Any] = {key: iou[key] for key in ("mIoU", "wIoU", "mIoU_mmseg", "aAcc", "mAcc")}
    out["IoU"] = [float(x) for x in iou["IoU"]]
    windows: dict[str, int] = {}
    nan_windows: dict[str, int] = {}
    video_mean: dict[str, float] = {}
    for i, clip in enumerate(state.clips):
        key = f"mVC{clip}"
        count, videos = int(state.vc_windows[i]), int(state.vc_videos[i])
        out[key] = float(state.vc_score_sum[i] / count) if count else float("nan")
        windows[key] = count
        nan_windows[key] = int(state.vc_nan_windows[i])
        video_mean[key] = float(state.vc_video_mean_sum[i] / videos) if videos else float("nan")
    out["windows"] = windows
    out["nan_windows"] = nan_windows
    out["vc_video_mean"] = video_mean
    for name in MetricState._COUNTS:
        out[name] = int(getattr(state, name))
    return out


class VideoEvaluator:
    """Evaluates one video at a time, streaming: ``begin_video``, ``update`` per frame, ``end_video``.

    Memory is fixed (a confusion matrix and the VC run-length counters of the current video).
    ``preset`` picks which videos count (:data:`PRESETS`); a dropped video is recognised from
    ``num_frames`` at ``begin_video`` and its frames are only counted, never buffered.
    ``include_last`` and ``vc_ignore_index`` are the VC window conventions of
    :class:`~vssbench.metrics.VCMetric` (official: False and None, nothing ignored).
    """

    def __init__(
        self,
        num_classes: int = 124,
        clips: Sequence[int] = (8, 16),
        preset: str = "vspw",
        include_last: bool = False,
        ignore_index: int = 255,
        vc_ignore_index: int | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise OptionError(f"unknown metric preset {preset!r}; available: {', '.join(PRESETS)}")
        self.num_classes = check_num_classes(num_classes)
        self.clips = tuple(check_clip(c) for c in clips)
        self.preset = PRESETS[preset]
        self.include_last = bool(include_last)
        self.ignore_index = int(ignore_index)
        self.vc_ignore_index = None if vc_ignore_index is None else int(vc_ignore_index)
        self._vc = RunLengthVC(self.clips, ignore_index=self.vc_ignore_index) if self.clips else None
        self._video: str | None = None

    def begin_video(self, video: str, num_frames: int) -> None:
        """Start ``video`` of ``num_frames`` frames (the previous one must have ended)."""
        if self._video is not None:
            raise ValueError(f"video {self._video!r} was not ended before video {video!r} began")
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"video {video!r}: num_frames must be a positive integer, got {num_frames!r}")
        self._video = video
        self._expected = int(num_frames)
        self._seen = 0
        self._dropped = self._expected <= self.preset.drop_videos_up_to
        self._confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        if self._vc is not None:
            self._vc.finish()  # discard anything left by an aborted video

    def update(self, pred: Any, gt: Any) -> None:
        """Add the next frame: prediction and GT label maps (H×W, same shape) of the current video."""
        if self._video is None:
            raise ValueError("update() called before begin_video()")
        self._seen += 1
        if self._seen > self._expected:
            raise ValueError(f"video {self._video!r}: more frames than the {self._expected} announced")
        if self._dropped:
            return
        self._confusion += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        if self._vc is not None:
            self._vc.push(gt, pred)

    def end_video(self) -> MetricState:
        """Finish the current video and return its state (checks the announced frame count)."""
        if self._video is None:
            raise ValueError("end_video() called before begin_video()")
        video, self._video = self._video, None
        if self._seen != self._expected:
            raise ValueError(
                f"video {video!r}: got {self._seen} frames, begin_video announced {self._expected}"
            )
        state = MetricState.zeros(self.num_classes, self.clips)
        if self._dropped:
            state.skipped_videos, state.skipped_frames = 1, self._seen
            return state
        state.confusion = self._confusion
        if self._vc is not None:
            totals = self._vc.finish(self.include_last)
            state.vc_score_sum, state.vc_windows, state.vc_nan_windows = (
                totals.score_sum,
                totals.windows,
                totals.nan_windows,
            )
            scored = totals.windows > 0
            state.vc_videos = scored.astype(np.int64)
            state.vc_video_mean_sum = np.divide(
                totals.score_sum, totals.windows, out=np.zeros(len(self.clips)), where=scored
            )
        state.videos, state.frames = 1, self._seen
        return state
