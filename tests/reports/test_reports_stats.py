"""Paired bootstrap over videos: a run against itself, against a shifted copy, against a naive loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.metrics.evaluator import MetricState, compute_metrics
from vssbench.reports.stats import ComparisonError, compare_runs, load_video_states, paired_bootstrap

K = 5


def video_state(rng: np.random.Generator, accuracy: float, vc: float) -> MetricState:
    """A video's state: a confusion matrix with ``accuracy`` on its diagonal and VC windows
    scoring ~``vc``."""
    s = MetricState.zeros(K, (8, 16))
    gt = rng.integers(50, 200, size=K)
    correct = np.rint(gt * accuracy).astype(np.int64)
    s.confusion = np.diag(correct)
    s.confusion[np.arange(K), (np.arange(K) + 1) % K] += gt - correct
    windows = np.array([6, 2])
    s.vc_windows = windows
    s.vc_score_sum = windows * np.clip(vc + rng.normal(0, 0.03, 2), 0, 1)
    s.vc_videos = np.array([1, 1])
    s.vc_video_mean_sum = s.vc_score_sum / windows
    s.videos, s.frames = 1, 24
    return s


def shifted(s: MetricState, delta: float) -> MetricState:
    """The same video with every VC window score raised by ``delta`` (so mVC rises by exactly delta)."""
    out = MetricState.from_dict(s.to_dict())
    out.vc_score_sum = s.vc_score_sum + delta * s.vc_windows
    out.vc_video_mean_sum = s.vc_video_mean_sum + delta
    return out


def states(seed: int, n: int = 8) -> list[MetricState]:
    rng = np.random.default_rng(seed)
    return [video_state(rng, rng.uniform(0.4, 0.9), rng.uniform(0.6, 0.9)) for _ in range(n)]


def write_run(
    folder: Path, videos: list[MetricState], names: list[str] | None = None, **record: object
) -> Path:
    folder.mkdir(parents=True)
    names = names or [f"v{i}" for i in range(len(videos))]
    with open(folder / "videos.jsonl", "w") as f:
        for name, s in zip(names, videos):
            f.write(json.dumps({"video": name, "num_frames": 24, "state": s.to_dict()}) + "\n")
    rec = {
        "method": "m",
        "backbone": "b0",
        "conditions_hash": "c1",
        "config": {"resolution": [32, 32]},
        "device": "cpu",
    }
    rec.update(record)
    (folder / "record.json").write_text(json.dumps(rec))
    return folder


def test_run_against_itself_is_exactly_zero() -> None:
    a = states(0)
    result = paired_bootstrap(a, a, ("mIoU", "wIoU", "mVC8", "mVC16"), samples=300, seed=1)
    for iv in result.values():
        assert (iv.diff, iv.low, iv.high) == (0.0, 0.0, 0.0)


def test_shifted_copy_interval_contains_the_shift() -> None:
    a = states(1)
    b = [shifted(s, -0.05) for s in a]  # B is 5 points less stable on every window: A - B = +0.05
    result = paired_bootstrap(a, b, ("mVC8", "mVC16", "mIoU"), samples=400, seed=0)
    for metric in ("mVC8", "mVC16"):
        iv = result[metric]
        assert iv.diff == pytest.approx(0.05)
        assert iv.low <= 0.05 + 1e-12 and iv.high >= 0.05 - 1e-12
    assert result["mIoU"].diff == 0.0 and result["mIoU"].low == result["mIoU"].high == 0.0


def test_noisy_difference_interval_contains_the_full_sample_difference_and_is_pooled() -> None:
    a, b = states(2, 12), states(3, 12)
    result = paired_bootstrap(a, b, ("mIoU", "mVC8"), samples=500, seed=0)
    total_a, total_b = sum(a), sum(b)
    for metric in ("mIoU", "mVC8"):
        iv = result[metric]
        # the point estimate is the official pooled metric of all videos, not a mean of per-video values
        assert iv.a == pytest.approx(compute_metrics(total_a)[metric])
        assert iv.b == pytest.approx(compute_metrics(total_b)[metric])
        assert iv.low < iv.diff < iv.high


def test_vectorized_resampling_equals_a_naive_loop() -> None:
    a, b = states(4, 6), states(5, 6)
    samples, seed = 50, 7
    fast = paired_bootstrap(a, b, ("mIoU", "mVC16"), samples=samples, seed=seed, level=0.9)
    rng = np.random.default_rng(seed)
    diffs = {"mIoU": [], "mVC16": []}
    for _ in range(samples):
        idx = rng.integers(0, len(a), size=len(a))
        ma = compute_metrics(sum(a[i] for i in idx))
        mb = compute_metrics(sum(b[i] for i in idx))
        for m in diffs:
            diffs[m].append(ma[m] - mb[m])
    for m, values in diffs.items():
        low, high = np.percentile(values, [5, 95])
        assert fast[m].low == pytest.approx(low, abs=1e-12)
        assert fast[m].high == pytest.approx(high, abs=1e-12)


def test_compare_runs_refuses_different_videos_or_conditions(tmp_path: Path) -> None:
    a = states(6, 4)
    run_a = write_run(tmp_path / "a", a)
    run_b = write_run(tmp_path / "b", a[:3] + [a[0]], names=["v0", "v1", "v2", "other"])
    with pytest.raises(ComparisonError, match=r"videos differ \(only in A: v3; only in B: other\)"):
        compare_runs(run_a, run_b)
    run_c = write_run(tmp_path / "c", a, conditions_hash="c2", config={"resolution": [64, 64]})
    with pytest.raises(ComparisonError, match=r"conditions differ: resolution"):
        compare_runs(run_a, run_c)
    assert set(load_video_states(run_a)) == {"v0", "v1", "v2", "v3"}


def test_compare_cli_json_and_text(tmp_path: Path) -> None:
    a = states(8, 5)
    run_a = write_run(tmp_path / "a", a)
    run_b = write_run(tmp_path / "b", [shifted(s, -0.02) for s in a])
    runner = CliRunner()
    result = runner.invoke(
        main, ["compare", str(run_a), str(run_b), "--metric", "mVC8", "--samples", "100", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["mVC8"]) == {"diff", "low", "high", "a", "b"}
    assert data["mVC8"]["diff"] == pytest.approx(0.02)
    result = runner.invoke(main, ["compare", str(run_a), str(run_b), "--samples", "50"])
    assert result.exit_code == 0 and "mVC8    +2.0 [+2.0, +2.0]" in result.output
    result = runner.invoke(main, ["compare", str(run_a), str(tmp_path / "missing")])
    assert result.exit_code == 2 and "missing: no such run folder" in result.output
