"""Video consistency (VC_C, VSPW) from per-pixel run-length counters.

Official definition (VSPW ``VC_perclip.py``): for each window of C consecutive frames
starting at s = 0 .. T-C-1, G = pixels whose GT label is the same in all C frames, P = the
same for the prediction, and the window's score is |G ∧ P| / |G| (NaN when G is empty). The
last possible window (ending at frame T-1) is *not* used; a video with T <= C has no window.
mVC_C is the NaN-mean of all window scores of all videos pooled. Nothing is ignored: label
255 is compared like any other label.

Named conventions (official defaults): ``include_last`` (also use the window ending at the last
frame), ``ignore_index`` (None: nothing ignored; a label here leaves pixels whose stable GT is that
label out of G) and, in :func:`mean_vc` / the accumulators, ``average`` ("windows": pooled over
all windows of all videos; "videos": the mean over videos of each video's NaN-mean).

Instead of keeping the last C frames, :class:`RunLengthVC` keeps, per pixel, how many
consecutive frame-to-frame transitions the label has stayed unchanged (uint8, saturating
at C-1). The window of C frames ending at frame t has the pixel in G iff the GT counter
at t is >= C-1, so one O(H·W) update per frame gives every window, for several C at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vssbench.metrics.functional._common import as_label_array, check_clip


@dataclass
class VCTotals:
    """Per-clip window totals of one or more videos (arrays aligned with ``clips``).

    ``score_sum`` sums the scores of scored windows; ``windows`` counts scored windows
    (non-empty GT common area); ``nan_windows`` counts windows whose GT common area was empty.
    ``scores`` (only when requested) lists each window's score in order, NaN included.
    """

    clips: tuple[int, ...]
    score_sum: np.ndarray
    windows: np.ndarray
    nan_windows: np.ndarray
    scores: list[np.ndarray] | None = None


class RunLengthVC:
    """Streaming VC windows of one video at a time for one or more clip lengths.

    Call :meth:`push` with each frame's GT and prediction (same shape throughout a video),
    then :meth:`finish` to get that video's :class:`VCTotals` and start afresh. Memory is
    fixed: two copies of the previous frame, two uint8 counter maps and two boolean buffers,
    whatever the video length.

    The window ending at frame t only counts once frame t+1 exists (official bound), so its
    (|G ∧ P|, |G|) is held pending and committed when the next frame arrives, or at
    :meth:`finish` when ``include_last`` asks for the last window too.
    """

    def __init__(
        self, clips: Sequence[int], keep_scores: bool = False, ignore_index: int | None = None
    ) -> None:
        self.clips = tuple(check_clip(c) for c in clips)
        # A pixel in G has had one GT label for the whole window, the current frame's, so leaving
        # out an ignored label only needs the current frame.
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        if not self.clips:
            raise ValueError("at least one clip length is needed")
        self.keep_scores = keep_scores
        self._cap = max(self.clips) - 1  # counters never need to exceed the longest window
        # np.minimum on uint8 is slow, so counters run free and are clamped to the cap only
        # every (255 - cap) frames: by then they have grown to at most 255, never wrapped.
        self._saturate_every = 255 - self._cap
        self._start_video()

    def _start_video(self) -> None:
        n = len(self.clips)
        self.frames = 0
        self._sum = np.zeros(n, np.float64)
        self._windows = np.zeros(n, np.int64)
        self._nan = np.zeros(n, np.int64)
        # (|G∧P|, |G|) of the latest window per clip, None when there is none
        self._pending: list[tuple[int, int] | None] = [None] * n
        self._scores: list[list[float]] | None = [[] for _ in self.clips] if self.keep_scores else None

    def push(self, gt: Any, pred: Any) -> None:
        """Add the next frame (GT and prediction label maps of the same shape)."""
        g = as_label_array(gt, "gt")
        p = as_label_array(pred, "pred")
        if g.shape != p.shape:
            raise ValueError(f"pred and gt shapes differ: pred {p.shape} vs gt {g.shape}")
        if self.frames == 0:
            self._prev_gt = g.copy()
            self._prev_pred = p.copy()
            self._run_gt = np.zeros(g.shape, np.uint8)
            self._run_pred = np.zeros(g.shape, np.uint8)
            self._same = np.empty(g.shape, np.bool_)
            self._in_p = np.empty(g.shape, np.bool_)
            self._counted = np.empty(g.shape, np.bool_)
        else:
            if g.shape != self._prev_gt.shape:
                raise ValueError(
                    f"frame {self.frames} has shape {g.shape}, "
                    f"earlier frames of this video {self._prev_gt.shape}"
                )
            if g.dtype != self._prev_gt.dtype:
                self._prev_gt = self._prev_gt.astype(np.promote_types(g.dtype, self._prev_gt.dtype))
            if p.dtype != self._prev_pred.dtype:
                self._prev_pred = self._prev_pred.astype(np.promote_types(p.dtype, self._prev_pred.dtype))
            self._commit_pending()  # a next frame exists, so the previous window is official
            self._advance(self._run_gt, self._prev_gt, g)
            self._advance(self._run_pred, self._prev_pred, p)
            if self.frames % self._saturate_every == 0:
                np.minimum(self._run_gt, self._cap, out=self._run_gt)
                np.minimum(self._run_pred, self._cap, out=self._run_pred)
        self.frames += 1
        for i, clip in enumerate(self.clips):
            if self.frames >= clip:
                self._pending[i] = self._window_counts(clip)

    def _advance(self, run: np.ndarray, prev: np.ndarray, cur: np.ndarray) -> None:
        # run <- run + 1 if the label is unchanged, else 0 (uint8 * uint8 view: no mixed-type loop)
        np.equal(cur, prev, out=self._same)
        np.add(run, 1, out=run)
        np.multiply(run, self._same.view(np.uint8), out=run)
        np.copyto(prev, cur, casting="safe")  # prev was promoted in push if the dtypes differ

    def _window_counts(self, clip: int) -> tuple[int, int]:
        in_g = self._same  # reused as scratch: the equality map is no longer needed
        np.greater_equal(self._run_gt, clip - 1, out=in_g)
        if self.ignore_index is not None:
            np.not_equal(self._prev_gt, self.ignore_index, out=self._counted)  # prev_gt is now frame t
            np.logical_and(in_g, self._counted, out=in_g)
        area = np.count_nonzero(in_g)
        np.greater_equal(self._run_pred, clip - 1, out=self._in_p)
        np.logical_and(in_g, self._in_p, out=in_g)
        return np.count_nonzero(in_g), area

    def _commit_pending(self, only: list[bool] | None = None) -> None:
        for i, window in enumerate(self._pending):
            if window is None or (only is not None and not only[i]):
                continue
            inter, area = window
            if area == 0:
                self._nan[i] += 1
                score = float("nan")
            else:
                score = inter / area
                self._sum[i] += score
                self._windows[i] += 1
            if self._scores is not None:
                self._scores[i].append(score)
            self._pending[i] = None

    def finish(self, include_last: bool = False) -> VCTotals:
        """End the current video and return its totals; the counter is then ready for a new video.

        ``include_last`` also counts the window ending at the last frame, but only for a
        video longer than the clip (T <= C never has a window).
        """
        if include_last:
            self._commit_pending(only=[self.frames > c for c in self.clips])
        totals = VCTotals(
            clips=self.clips,
            score_sum=self._sum,
            windows=self._windows,
            nan_windows=self._nan,
            scores=[np.array(s, np.float64) for s in self._scores] if self._scores is not None else None,
        )
        self._start_video()
        return totals

    def state_dict(self) -> dict[str, Any]:
        """A copy of the in-progress video's state (fixed size: two frames and two counter maps)."""
        state: dict[str, Any] = {
            "clips": list(self.clips),
            "frames": self.frames,
            "score_sum": self._sum.copy(),
            "windows": self._windows.copy(),
            "nan_windows": self._nan.copy(),
            "pending": np.array([w if w is not None else (-1, -1) for w in self._pending], np.int64),
        }
        if self.frames:
            state.update(
                prev_gt=self._prev_gt.copy(),
                prev_pred=self._prev_pred.copy(),
                run_gt=self._run_gt.copy(),
                run_pred=self._run_pred.copy(),
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (the clip lengths must match)."""
        if tuple(state["clips"]) != self.clips:
            raise ValueError(
                f"state 'clips' {tuple(state['clips'])} does not match this counter's {self.clips}"
            )
        self._start_video()
        self.frames = int(state["frames"])
        self._sum = np.array(state["score_sum"], np.float64)
        self._windows = np.array(state["windows"], np.int64)
        self._nan = np.array(state["nan_windows"], np.int64)
        pending = np.array(state["pending"], np.int64).reshape(len(self.clips), 2)
        self._pending = [(int(i), int(a)) if a >= 0 else None for i, a in pending]
        if self.frames:
            self._prev_gt = np.array(state["prev_gt"])
            self._prev_pred = np.array(state["prev_pred"])
            self._run_gt = np.array(state["run_gt"], np.uint8)
            self._run_pred = np.array(state["run_pred"], np.uint8)
            if not self._prev_gt.shape == self._prev_pred.shape == self._run_gt.shape == self._run_pred.shape:
                raise ValueError("state 'prev_gt', 'prev_pred', 'run_gt' and 'run_pred' must have one shape")
            self._same = np.empty(self._prev_gt.shape, np.bool_)
            self._in_p = np.empty(self._prev_gt.shape, np.bool_)
            self._counted = np.empty(self._prev_gt.shape, np.bool_)


def vc_window_scores(
    gt: Any, pred: Any, clip: int, include_last: bool = False, ignore_index: int | None = None
) -> np.ndarray:
    """VC score of every window of one video, in window order (float64, NaN for an empty GT area).

    ``gt`` and ``pred`` are [T, H, W] integer label maps (numpy or torch). Windows start at
    0 .. T-clip-1 (official VSPW bound: the window ending at the last frame is not used;
    ``include_last=True`` adds it). T <= clip gives an empty array, with ``include_last`` too.
    Nothing is ignored (255 is a label like any other) unless ``ignore_index`` names a label:
    then pixels whose GT stays at that label are left out of the GT common area.
    """
    g = as_label_array(gt, "gt")
    p = as_label_array(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"pred and gt shapes differ: pred {p.shape} vs gt {g.shape}")
    if g.ndim != 3:
        raise ValueError(f"gt and pred must be [T, H, W], got shape {g.shape}")
    counter = RunLengthVC((clip,), keep_scores=True, ignore_index=ignore_index)
    for t in range(g.shape[0]):
        counter.push(g[t], p[t])
    scores = counter.finish(include_last).scores
    assert scores is not None
    return scores[0]


def mean_vc(scores: Iterable[np.ndarray], average: str = "windows") -> float:
    """mVC from per-video window scores.

    ``average="windows"`` (official): the NaN-mean of the window scores of all videos pooled, so
    longer videos weigh more. ``average="videos"``: the mean over videos of each video's NaN-mean
    (videos without a scored window left out). NaN if no video has a scored window.
    """
    if average == "videos":
        means = [mean_vc([s]) for s in scores]
        means = [m for m in means if not np.isnan(m)]
        return float(np.mean(means)) if means else float("nan")
    if average != "windows":
        raise ValueError(f"average must be 'windows' or 'videos', got {average!r}")
    pooled = [np.asarray(s, np.float64).ravel() for s in scores]
    values = np.concatenate(pooled) if pooled else np.zeros(0)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
