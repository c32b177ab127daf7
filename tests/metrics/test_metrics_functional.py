"""The pure metric functions against hand-worked cases and naive per-pixel/per-window loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vssbench.metrics.functional import confusion_matrix, iou_from_confusion, mean_vc, vc_window_scores


# ---------------------------------------------------------------- naive references (loops on purpose)
def naive_confusion(pred: np.ndarray, gt: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), np.int64)
    for p, g in zip(pred.ravel().tolist(), gt.ravel().tolist()):
        if 0 <= g < k:
            m[g, p] += 1
    return m


def naive_vc(gt: np.ndarray, pred: np.ndarray, clip: int, include_last: bool = False) -> list[float]:
    t_len, h, w = gt.shape
    if t_len <= clip:
        return []
    starts = range(t_len - clip + 1) if include_last else range(t_len - clip)
    scores = []
    for s in starts:
        area = inter = 0
        for i in range(h):
            for j in range(w):
                in_g = all(gt[s + d, i, j] == gt[s, i, j] for d in range(1, clip))
                in_p = all(pred[s + d, i, j] == pred[s, i, j] for d in range(1, clip))
                area += in_g
                inter += in_g and in_p
        scores.append(inter / area if area else math.nan)
    return scores


def random_video(rng: np.random.Generator, t_len: int, k: int, size: int = 6, change: float = 0.15):
    """GT with stable regions, 255s and per-pixel label changes; a noisy prediction that also
    uses class k-1, which the GT never holds (a predicted-only class)."""
    gt = np.empty((t_len, size, size), np.int64)
    labels = np.append(np.arange(k - 1), 255)
    gt[0] = rng.choice(labels, (size, size))
    for t in range(1, t_len):
        changed = rng.random((size, size)) < change
        gt[t] = np.where(changed, rng.choice(labels, (size, size)), gt[t - 1])
    noise = rng.random(gt.shape) < 0.2
    pred = np.where(noise | (gt == 255), rng.integers(0, k, gt.shape), gt)
    return gt, pred


# ---------------------------------------------------------------- confusion matrix and IoU
def test_confusion_and_iou_hand_worked() -> None:
    gt = np.array([0, 0, 0, 0, 1, 1, 255, 255])
    pred = np.array([0, 0, 0, 2, 1, 0, 2, 1])
    m = confusion_matrix(pred, gt, num_classes=3)
    assert m.dtype == np.int64
    np.testing.assert_array_equal(m, [[3, 0, 1], [1, 1, 0], [0, 0, 0]])
    r = iou_from_confusion(m)
    np.testing.assert_allclose(r["IoU"], [3 / 5, 1 / 2, 0.0])
    assert r["mIoU"] == pytest.approx((0.6 + 0.5) / 2)  # class 2 only predicted: not in the mean
    assert r["mIoU_mmseg"] == pytest.approx((0.6 + 0.5 + 0.0) / 3)  # ... but in mmseg's
    assert r["wIoU"] == pytest.approx(4 / 6 * 0.6 + 2 / 6 * 0.5)
    assert r["aAcc"] == pytest.approx(4 / 6)
    assert r["mAcc"] == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_iou_absent_class_is_nan_and_empty_matrix_conventions() -> None:
    r = iou_from_confusion(np.array([[2, 0, 0], [0, 0, 0], [0, 0, 1]]))
    assert math.isnan(r["IoU"][1])
    assert r["mIoU"] == pytest.approx(1.0) and r["mIoU_mmseg"] == pytest.approx(1.0)
    empty = iou_from_confusion(np.zeros((4, 4), np.int64))
    assert math.isnan(empty["mIoU"]) and math.isnan(empty["mIoU_mmseg"]) and math.isnan(empty["aAcc"])
    assert empty["wIoU"] == 0.0  # official FWIoU of nothing is 0, not NaN


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matches_naive_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 7
    gt = rng.integers(0, k + 3, (3, 9, 11))  # includes out-of-range labels, which are dropped
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, k, gt.shape).astype(np.uint8)
    np.testing.assert_array_equal(confusion_matrix(pred, gt, k), naive_confusion(pred, gt, k))
    # torch tensors give the same answer
    np.testing.assert_array_equal(
        confusion_matrix(torch.from_numpy(pred), torch.from_numpy(gt), k), naive_confusion(pred, gt, k)
    )


def test_confusion_negative_gt_and_in_range_ignore_index_are_dropped() -> None:
    gt = np.array([-1, 0, 1, 2])
    pred = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 3), [[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(
        confusion_matrix(pred, gt, 3, ignore_index=2), [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    )


def test_confusion_rejects_out_of_range_prediction_and_shape_mismatch() -> None:
    gt = np.array([[0, 1], [255, 2]])
    with pytest.raises(ValueError, match="prediction value 7"):
        confusion_matrix(np.array([[0, 7], [0, 0]]), gt, 3)
    with pytest.raises(ValueError, match="prediction value -2"):
        confusion_matrix(np.array([[0, -2], [0, 0]]), gt, 3)
    # an out-of-range prediction on an ignored pixel is not an error
    np.testing.assert_array_equal(
        confusion_matrix(np.array([[0, 1], [99, 2]]), gt, 3), np.eye(3, dtype=np.int64)
    )
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        confusion_matrix(np.zeros((2, 3), int), gt, 3)
    with pytest.raises(ValueError, match="float"):
        confusion_matrix(np.zeros((2, 2)), gt, 3)


# ---------------------------------------------------------------- VC windows
GT_2x2 = np.array(
    [
        [[1, 1], [2, 2]],
        [[1, 1], [2, 3]],
        [[1, 0], [2, 3]],
        [[1, 0], [2, 3]],
    ]
)
PRED_2x2 = np.array(
    [
        [[1, 1], [2, 2]],
        [[1, 2], [2, 2]],
        [[1, 2], [2, 3]],
        [[0, 2], [2, 3]],
    ]
)


def test_vc_hand_worked_2x2_video() -> None:
    # C=2: window 0 (frames 0-1): G={a,b,c}, P={a,c,d} -> 2/3; window 1: G={a,c,d}, P={a,b,c} -> 2/3;
    # the last window (frames 2-3: G=all, P={b,c,d} -> 3/4) is only used with include_last.
    np.testing.assert_allclose(vc_window_scores(GT_2x2, PRED_2x2, 2), [2 / 3, 2 / 3])
    np.testing.assert_allclose(
        vc_window_scores(GT_2x2, PRED_2x2, 2, include_last=True), [2 / 3, 2 / 3, 3 / 4]
    )
    # C=3: window 0: G={a,c}, P={a,c} -> 1; last window (frames 1-3): G={a,c,d}, P={b,c} -> 1/3
    np.testing.assert_allclose(vc_window_scores(GT_2x2, PRED_2x2, 3), [1.0])
    np.testing.assert_allclose(vc_window_scores(GT_2x2, PRED_2x2, 3, include_last=True), [1.0, 1 / 3])
    # T <= C: no window at all, include_last or not
    assert vc_window_scores(GT_2x2, PRED_2x2, 4).size == 0
    assert vc_window_scores(GT_2x2, PRED_2x2, 4, include_last=True).size == 0
    assert vc_window_scores(GT_2x2, PRED_2x2, 5).size == 0
    assert mean_vc([vc_window_scores(GT_2x2, PRED_2x2, 2)]) == pytest.approx(2 / 3)


def test_vc_nan_window_when_gt_changes_everywhere() -> None:
    gt = np.zeros((6, 3, 3), np.int64)
    gt[3:] = 1  # every pixel changes between frames 2 and 3
    pred = np.zeros_like(gt)
    scores = vc_window_scores(gt, pred, 2)  # windows 0..3; window 2 spans frames 2-3
    np.testing.assert_array_equal(np.isnan(scores), [False, False, True, False])
    np.testing.assert_allclose(scores[~np.isnan(scores)], 1.0)
    assert mean_vc([scores]) == pytest.approx(1.0)
    assert math.isnan(mean_vc([np.array([math.nan])]))
    assert math.isnan(mean_vc([]))


def test_vc_255_is_a_label_like_any_other() -> None:
    gt = np.full((4, 2, 2), 255)
    pred = np.zeros((4, 2, 2), np.int64)
    pred[1, 0, 0] = 5  # one pixel of the prediction flickers inside window 0 and 1
    np.testing.assert_allclose(vc_window_scores(gt, pred, 2), [3 / 4, 3 / 4])


@pytest.mark.parametrize("clip", [1, 2, 3, 5])
@pytest.mark.parametrize("include_last", [False, True])
def test_vc_matches_naive_on_random_videos(clip: int, include_last: bool) -> None:
    rng = np.random.default_rng(100 + clip)
    # T < C, T == C, T == C+1 and longer videos
    for t_len in sorted({max(1, clip - 1), clip, clip + 1, clip + 4, 12}):
        gt, pred = random_video(rng, t_len, k=5)
        got = vc_window_scores(gt, pred, clip, include_last)
        want = naive_vc(gt, pred, clip, include_last)
        assert got.dtype == np.float64 and got.shape == (len(want),)
        np.testing.assert_allclose(got, want, equal_nan=True)


def test_mean_vc_pools_windows_not_videos() -> None:
    a = np.array([1.0, 1.0, 1.0, math.nan])
    b = np.array([0.0])
    assert mean_vc([a, b]) == pytest.approx(3 / 4)  # a mean of video means would be 1/2


def test_vc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"pred \(4, 2, 3\) vs gt \(4, 2, 2\)"):
        vc_window_scores(GT_2x2, np.zeros((4, 2, 3), int), 2)
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        vc_window_scores(GT_2x2[0], PRED_2x2[0], 2)
    with pytest.raises(ValueError, match="clip length"):
        vc_window_scores(GT_2x2, PRED_2x2, 0)


def windowed_vc(gt: np.ndarray, pred: np.ndarray, clip: int) -> np.ndarray:
    """A second, vectorized reference: np.all over each window's frames."""
    scores = []
    for s in range(gt.shape[0] - clip):
        in_g = np.all(gt[s : s + clip] == gt[s], axis=0)
        in_p = np.all(pred[s : s + clip] == pred[s], axis=0)
        scores.append((in_g & in_p).sum() / in_g.sum() if in_g.any() else math.nan)
    return np.array(scores)


@pytest.mark.parametrize("clip", [2, 16, 200])
def test_vc_long_static_videos_do_not_overflow_the_uint8_counters(clip: int) -> None:
    # 600 frames: far more than 255 unchanged transitions, then a change at frame 400
    t_len = 600
    gt = np.zeros((t_len, 2, 3), np.int64)
    gt[400:, 0, 0] = 1
    pred = np.zeros_like(gt)
    pred[450:, 1, :] = 2
    got = vc_window_scores(gt, pred, clip)
    np.testing.assert_allclose(got, windowed_vc(gt, pred, clip))
    assert got.shape == (t_len - clip,) and got[0] == 1.0 and got.min() < 1.0


def test_vc_accepts_mixed_label_dtypes_within_a_video() -> None:
    rng = np.random.default_rng(9)
    gt = rng.integers(0, 2, (7, 4, 4)) * 300  # labels 0 and 300 (need more than uint8)
    pred = rng.integers(0, 2, (7, 4, 4))
    want = naive_vc(gt, pred, 2)
    counter_input_gt = [gt[t].astype(np.uint16) if t % 2 else gt[t] for t in range(7)]
    from vssbench.metrics.functional import RunLengthVC

    counter = RunLengthVC((2,), keep_scores=True)
    for t in range(7):
        counter.push(counter_input_gt[t], pred[t].astype(np.uint8) if t < 3 else pred[t])
    scores = counter.finish().scores
    assert scores is not None
    np.testing.assert_allclose(scores[0], want, equal_nan=True)
