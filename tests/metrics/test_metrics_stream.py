"""Streaming accumulators and the per-video evaluator: streaming == one pass == split-and-merged
== summed MetricStates, fixed-size state, presets and window-bound options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vssbench.errors import OptionError
from vssbench.metrics import (
    IoUMetric,
    MetricState,
    VCMetric,
    VideoEvaluator,
    compute_metrics,
    confusion_matrix,
    iou_from_confusion,
    mean_vc,
    vc_window_scores,
)

K = 6


def make_videos(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded label videos (GT with 255s and stable regions, noisy predictions) of varied
    lengths: shorter than, equal to and one longer than a clip of 8, and a NaN window."""
    rng = np.random.default_rng(seed)
    videos = {}
    for i, t_len in enumerate([5, 8, 9, 13, 20]):
        gt = np.empty((t_len, 8, 10), np.int64)
        gt[0] = rng.choice([0, 1, 2, 3, 255], (8, 10))
        for t in range(1, t_len):
            gt[t] = np.where(rng.random((8, 10)) < 0.05, rng.choice([0, 1, 2, 3, 255], (8, 10)), gt[t - 1])
        pred = np.where(rng.random(gt.shape) < 0.1, rng.integers(0, K, gt.shape), gt)
        pred[gt == 255] = rng.integers(0, K, int((gt == 255).sum()))
        videos[f"v{i}"] = (gt, pred.astype(np.uint8))
    gt = np.zeros((12, 8, 10), np.int64)
    gt[6:] = 1  # every GT pixel changes at frame 6: the windows spanning it are NaN
    videos["nan"] = (gt, np.zeros_like(gt))
    return videos


def test_iou_metric_streaming_equals_one_pass_and_split_merge() -> None:
    videos = make_videos()
    all_gt = np.concatenate([g.reshape(-1) for g, _ in videos.values()])
    all_pred = np.concatenate([p.reshape(-1) for _, p in videos.values()])
    one_pass = confusion_matrix(all_pred, all_gt, K)

    stream, part_a, part_b = IoUMetric(K), IoUMetric(K), IoUMetric(K)
    for i, (name, (gt, pred)) in enumerate(videos.items()):
        for t in range(gt.shape[0]):
            stream.update(torch.from_numpy(pred[t]), torch.from_numpy(gt[t]), video=name)
            (part_a if i % 2 else part_b).update(pred[t], gt[t])
    np.testing.assert_array_equal(stream.confusion, one_pass)
    part_a.merge(part_b)
    np.testing.assert_array_equal(part_a.confusion, one_pass)
    assert stream.compute()["mIoU"] == pytest.approx(iou_from_confusion(one_pass)["mIoU"])

    restored = IoUMetric(K)
    restored.load_state_dict(stream.state_dict())
    np.testing.assert_array_equal(restored.confusion, one_pass)
    stream.reset()
    assert stream.confusion.sum() == 0
    with pytest.raises(ValueError, match="num_classes"):
        IoUMetric(K).merge(IoUMetric(K + 1))


@pytest.mark.parametrize("clip", [2, 8])
def test_vc_metric_streaming_equals_one_pass_and_split_merge(clip: int) -> None:
    videos = make_videos(seed=clip)
    per_video = [vc_window_scores(gt, pred, clip) for gt, pred in videos.values()]
    pooled = np.concatenate(per_video)
    expected = mean_vc(per_video)
    assert np.isnan(pooled).any()  # the NaN video contributes NaN windows

    stream, part_a, part_b = VCMetric(clip), VCMetric(clip), VCMetric(clip)
    for i, (name, (gt, pred)) in enumerate(videos.items()):
        part = part_a if i % 2 else part_b
        for t in range(gt.shape[0]):
            stream.update(pred[t], gt[t], name)
            part.update(torch.from_numpy(pred[t]), torch.from_numpy(gt[t]), name)
    result = stream.compute()
    assert result["mVC"] == pytest.approx(expected, rel=1e-12)
    assert result["windows"] == int((~np.isnan(pooled)).sum())
    assert result["nan_windows"] == int(np.isnan(pooled).sum())
    part_b.finish()
    part_a.merge(part_b)
    assert part_a.compute() == pytest.approx(result, rel=1e-12)


def test_vc_metric_include_last_and_finish_semantics() -> None:
    gt = np.array([[[1, 1], [2, 2]], [[1, 1], [2, 3]], [[1, 0], [2, 3]], [[1, 0], [2, 3]]])
    pred = np.array([[[1, 1], [2, 2]], [[1, 2], [2, 2]], [[1, 2], [2, 3]], [[0, 2], [2, 3]]])
    for include_last, want in [(False, [2 / 3, 2 / 3]), (True, [2 / 3, 2 / 3, 3 / 4])]:
        metric = VCMetric(2, include_last=include_last)
        for t in range(4):
            metric.update(pred[t], gt[t], "a")
        mean = pytest.approx(np.mean(want))
        assert metric.compute() == {
            "mVC": mean,
            "mVC_windows": mean,
            "mVC_videos": mean,
            "windows": len(want),
            "nan_windows": 0,
            "videos": 1,
        }
    # a new video name finishes the previous video; its window never spans both videos
    metric = VCMetric(2)
    for name in ("a", "b"):
        for t in range(4):
            metric.update(pred[t], gt[t], name)
    assert metric.compute()["windows"] == 4
    with pytest.raises(ValueError, match="'b' was already finished"):
        metric.update(pred[0], gt[0], "b")
    with pytest.raises(ValueError, match="video name"):
        metric.update(pred[0], gt[0], None)  # type: ignore[arg-type]
    assert math.isnan(VCMetric(8).compute()["mVC"])


def _nbytes(state: object) -> int:
    if isinstance(state, dict):
        return sum(_nbytes(v) for v in state.values())
    if isinstance(state, np.ndarray):
        return state.nbytes
    return 8


def test_vc_metric_state_size_does_not_depend_on_video_length() -> None:
    rng = np.random.default_rng(3)
    sizes = {}
    for t_len in (3, 20, 60):
        metric = VCMetric(16)
        for _t in range(t_len):
            metric.update(rng.integers(0, 3, (16, 16)), rng.integers(0, 3, (16, 16)), "v")
        sizes[t_len] = _nbytes(metric.state_dict())
    assert len(set(sizes.values())) == 1, sizes


def test_vc_metric_state_dict_round_trip_mid_video() -> None:
    gt, pred = make_videos(seed=5)["v4"]
    full = VCMetric(3)
    for t in range(gt.shape[0]):
        full.update(pred[t], gt[t], "v")
    resumed_first = VCMetric(3)
    for t in range(7):
        resumed_first.update(pred[t], gt[t], "v")
    resumed = VCMetric(3)
    resumed.load_state_dict(resumed_first.state_dict())
    for t in range(7, gt.shape[0]):
        resumed.update(pred[t], gt[t], "v")
    assert resumed.compute() == pytest.approx(full.compute(), rel=1e-12)


def test_video_evaluator_equals_functional_and_streaming() -> None:
    videos = make_videos(seed=11)
    evaluator = VideoEvaluator(num_classes=K, clips=(2, 8))
    states = []
    for name, (gt, pred) in videos.items():
        evaluator.begin_video(name, gt.shape[0])
        for t in range(gt.shape[0]):
            evaluator.update(pred[t], gt[t])
        states.append(evaluator.end_video())
    total = sum(states[1:], states[0])
    assert sum(states) == total  # sum() starting from 0 works too
    result = compute_metrics(total)

    all_gt = np.concatenate([g.reshape(-1) for g, _ in videos.values()])
    all_pred = np.concatenate([p.reshape(-1) for _, p in videos.values()])
    iou = iou_from_confusion(confusion_matrix(all_pred, all_gt, K))
    for key in ("mIoU", "wIoU", "mIoU_mmseg", "aAcc", "mAcc"):
        assert result[key] == pytest.approx(iou[key])
    for clip in (2, 8):
        scores = [vc_window_scores(g, p, clip) for g, p in videos.values()]
        assert result[f"mVC{clip}"] == pytest.approx(mean_vc(scores), rel=1e-12)
        pooled = np.concatenate(scores)
        assert result["windows"][f"mVC{clip}"] == int((~np.isnan(pooled)).sum())
        assert result["nan_windows"][f"mVC{clip}"] == int(np.isnan(pooled).sum())
    assert result["videos"] == len(videos)
    assert result["frames"] == sum(g.shape[0] for g, _ in videos.values())

    # the JSON form round-trips exactly and merges in any order
    again = MetricState.from_dict(json.loads(json.dumps(total.to_dict())))
    assert again == total
    reverse = sum(reversed(states))
    assert compute_metrics(reverse)["mVC8"] == pytest.approx(result["mVC8"], rel=1e-12)
    np.testing.assert_array_equal(reverse.vc_windows, total.vc_windows)


def test_metric_state_round_trip_and_validation() -> None:
    state = MetricState.zeros(3, (8, 16))
    state.confusion[0, 1] = 4
    state.vc_score_sum[:] = [1.5, 0.25]
    state.vc_windows[:] = [2, 1]
    state.videos, state.frames = 1, 30
    d = json.loads(json.dumps(state.to_dict()))
    back = MetricState.from_dict(d)
    assert back.to_dict() == state.to_dict()
    r = compute_metrics(back + back)
    assert r["mVC8"] == pytest.approx(0.75) and r["mVC16"] == pytest.approx(0.25)
    assert r["videos"] == 2 and r["frames"] == 60
    with pytest.raises(ValueError, match="clips"):
        state + MetricState.zeros(3, (8,))
    bad = dict(d, confusion=[[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="'confusion'"):
        MetricState.from_dict(bad)
    with pytest.raises(ValueError, match="vc_windows"):
        MetricState.from_dict({k: v for k, v in d.items() if k != "vc_windows"})


def test_cffm_preset_drops_short_videos_from_every_metric() -> None:
    rng = np.random.default_rng(7)
    long_gt = np.repeat(rng.integers(0, 3, (1, 6, 6)), 20, axis=0)
    long_gt[10:, :3] = rng.integers(0, 3, (10, 3, 6))  # half the frame changes in the second half
    long_pred = np.where(rng.random(long_gt.shape) < 0.3, rng.integers(0, K, long_gt.shape), long_gt)
    short_gt = np.full((16, 6, 6), 4)  # 16 frames: CFFM drops it, VSPW keeps it for mIoU and VC8
    short_pred = np.full((16, 6, 6), 5)  # all wrong, so it visibly changes mIoU

    def run(preset: str) -> dict:
        evaluator = VideoEvaluator(num_classes=K, clips=(8, 16), preset=preset)
        total = MetricState.zeros(K, (8, 16))
        for name, (gt, pred) in {"long": (long_gt, long_pred), "short": (short_gt, short_pred)}.items():
            evaluator.begin_video(name, gt.shape[0])
            for t in range(gt.shape[0]):
                evaluator.update(pred[t], gt[t])
            total = total + evaluator.end_video()
        return compute_metrics(total)

    vspw, cffm = run("vspw"), run("cffm")
    long_only = iou_from_confusion(confusion_matrix(long_pred, long_gt, K))
    both = iou_from_confusion(
        confusion_matrix(np.concatenate([long_pred, short_pred]), np.concatenate([long_gt, short_gt]), K)
    )
    assert cffm["mIoU"] == pytest.approx(long_only["mIoU"])
    assert vspw["mIoU"] == pytest.approx(both["mIoU"])
    assert vspw["mIoU"] < cffm["mIoU"]
    assert cffm["mVC8"] == pytest.approx(mean_vc([vc_window_scores(long_gt, long_pred, 8)]))
    assert vspw["mVC8"] == pytest.approx(
        mean_vc([vc_window_scores(long_gt, long_pred, 8), vc_window_scores(short_gt, short_pred, 8)])
    )
    assert (
        vspw["windows"]["mVC16"] == cffm["windows"]["mVC16"] == 20 - 16
    )  # T <= 16: no VC16 window either way
    assert (cffm["videos"], cffm["skipped_videos"], cffm["skipped_frames"]) == (1, 1, 16)
    assert (vspw["videos"], vspw["skipped_videos"]) == (2, 0)


def test_video_evaluator_include_last_and_protocol_errors() -> None:
    gt = np.array([[[1, 1], [2, 2]], [[1, 1], [2, 3]], [[1, 0], [2, 3]], [[1, 0], [2, 3]]])
    pred = np.array([[[1, 1], [2, 2]], [[1, 2], [2, 2]], [[1, 2], [2, 3]], [[0, 2], [2, 3]]])
    evaluator = VideoEvaluator(num_classes=4, clips=(2, 3), include_last=True)
    evaluator.begin_video("a", 4)
    for t in range(4):
        evaluator.update(pred[t], gt[t])
    r = compute_metrics(evaluator.end_video())
    assert r["mVC2"] == pytest.approx((2 / 3 + 2 / 3 + 3 / 4) / 3)
    assert r["mVC3"] == pytest.approx((1 + 1 / 3) / 2)

    evaluator.begin_video("b", 3)
    with pytest.raises(ValueError, match="'b' was not ended"):
        evaluator.begin_video("c", 3)
    evaluator.update(pred[0], gt[0])
    with pytest.raises(ValueError, match="'b': got 1 frames, begin_video announced 3"):
        evaluator.end_video()
    with pytest.raises(OptionError, match="vspw"):
        VideoEvaluator(preset="mmseg")


def _naive_vc_scores(gt: np.ndarray, pred: np.ndarray, clip: int, ignore: int | None) -> list[float]:
    """Loops over windows and pixels (official bounds), optionally leaving an ignored GT label out."""
    t_len, h, w = gt.shape
    scores = []
    for s in range(t_len - clip):
        area = inter = 0
        for i in range(h):
            for j in range(w):
                g = gt[s : s + clip, i, j]
                p = pred[s : s + clip, i, j]
                if (g == g[0]).all() and (ignore is None or g[0] != ignore):
                    area += 1
                    inter += int((p == p[0]).all())
        scores.append(inter / area if area else float("nan"))
    return scores


def test_vc_conventions_ignore_index_and_video_average_against_naive() -> None:
    rng = np.random.default_rng(7)
    videos = {}
    for name, frames in (("long", 14), ("short", 7), ("tiny", 3)):
        gt = rng.integers(0, 3, size=(1, 5, 6)).repeat(frames, 0)
        gt[:, :2] = 255  # a void band that stays void: in G unless 255 is ignored
        flips = rng.random(gt.shape) < 0.08
        gt[flips] = rng.integers(0, 3, size=int(flips.sum()))
        pred = np.where(rng.random(gt.shape) < 0.1, rng.integers(0, 3, size=gt.shape), gt % 255)
        videos[name] = (gt.astype(np.uint8), pred.astype(np.uint8))
    for ignore in (None, 255):
        per_video = {n: _naive_vc_scores(g, p, 4, ignore) for n, (g, p) in videos.items()}
        pooled = np.array([x for scores in per_video.values() for x in scores])
        means = [np.nanmean(v) for v in per_video.values() if v and not np.all(np.isnan(v))]
        for average, want in (("windows", np.nanmean(pooled)), ("videos", np.mean(means))):
            metric = VCMetric(4, ignore_index=ignore, average=average)
            for name, (g, p) in videos.items():
                for t in range(len(g)):
                    metric.update(p[t], g[t], name)
                np.testing.assert_allclose(
                    vc_window_scores(g, p, 4, ignore_index=ignore), per_video[name], rtol=1e-12
                )
            result = metric.compute()
            assert result["mVC"] == pytest.approx(want, rel=1e-12)
            assert result["videos"] == len(means)
            assert mean_vc(per_video.values(), average=average) == pytest.approx(want, rel=1e-12)
    # ignoring the void band changes the score: the band is a stable GT area in the official VC
    official = VCMetric(4)
    void_aware = VCMetric(4, ignore_index=255)
    g, p = videos["long"]
    for t in range(len(g)):
        official.update(p[t], g[t], "long")
        void_aware.update(p[t], g[t], "long")
    assert official.compute()["mVC"] != void_aware.compute()["mVC"]
    with pytest.raises(ValueError, match="cannot merge"):
        official.merge(void_aware)
