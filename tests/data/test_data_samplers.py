"""Clip samplers (keyframe, CFFM references, consecutive / TDNet gaps) and the training clip dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vssbench.data import (
    ClipAugment,
    ConsecutiveClipSampler,
    KeyframeClipSampler,
    ReferenceClipSampler,
    VSPWClipDataset,
    VSPWDataset,
    synthesize,
)
from vssbench.errors import DataError


def _draws(sampler, num_frames: int, n: int = 300, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [sampler.sample(num_frames, rng) for _ in range(n)]


def test_keyframe_sampler() -> None:
    sampler = KeyframeClipSampler(interval=4)
    clips = _draws(sampler, 10)
    for clip in clips:
        assert clip == list(range(clip[0], clip[0] + 4))
    assert {clip[0] for clip in clips} == set(range(7))  # keyframes 0..T-interval, all reachable
    assert _draws(sampler, 4, n=5) == [[0, 1, 2, 3]] * 5
    with pytest.raises(ValueError, match="needs >= 4 frames, got 3"):
        sampler.sample(3, np.random.default_rng(0))


def test_reference_sampler_forward() -> None:
    sampler = ReferenceClipSampler(reverse_prob=0.0)
    clips = _draws(sampler, 14)
    for clip in clips:
        t = clip[-1]
        assert clip == [t - 9, t - 6, t - 3, t]
    assert {clip[-1] for clip in clips} == set(range(9, 14))  # target uniform in [9, T-1]
    assert _draws(sampler, 10, n=3) == [[0, 3, 6, 9]] * 3
    with pytest.raises(ValueError, match="needs >= 10 frames, got 9"):
        sampler.sample(9, np.random.default_rng(0))


def test_reference_sampler_reversed() -> None:
    sampler = ReferenceClipSampler(reverse_prob=1.0)
    clips = _draws(sampler, 14)
    for clip in clips:
        t = clip[-1]
        # The target is drawn on the reversed video: references lie *after* it in real time.
        assert clip == [t + 9, t + 6, t + 3, t]
    assert {clip[-1] for clip in clips} == set(range(0, 5))
    assert _draws(sampler, 10, n=2) == [[9, 6, 3, 0]] * 2


def test_reference_sampler_reverses_about_half() -> None:
    clips = _draws(ReferenceClipSampler(), 30, n=400)
    reversed_share = np.mean([clip[0] > clip[-1] for clip in clips])
    assert 0.4 < reversed_share < 0.6


def test_reference_test_clips_cffm() -> None:
    sampler = ReferenceClipSampler()
    expected_early = {
        3: [0, 1, 2, 3], 4: [0, 2, 3, 4], 5: [0, 2, 4, 5],
        6: [0, 2, 4, 6], 7: [0, 3, 5, 7], 8: [0, 3, 6, 8],
    }  # fmt: skip
    for t, clip in expected_early.items():
        assert sampler.test_clip(t, 50) == clip
    assert sampler.test_clip(0, 50) == [0]
    assert sampler.test_clip(1, 50) == [1]
    assert sampler.test_clip(2, 50) == [2]
    assert sampler.test_clip(9, 50) == [0, 3, 6, 9]
    assert sampler.test_clip(40, 50) == [31, 34, 37, 40]
    # Short videos: the hard-coded sets still apply to every frame that exists.
    assert [sampler.test_clip(t, 5) for t in range(5)] == [[0], [1], [2], [0, 1, 2, 3], [0, 2, 3, 4]]
    with pytest.raises(ValueError, match="outside"):
        sampler.test_clip(5, 5)


def test_reference_test_clips_other_dilations() -> None:
    sampler = ReferenceClipSampler(dilations=(-2, -1))
    assert sampler.test_clip(0, 10) == [0]
    assert sampler.test_clip(1, 10) == [0, 1]
    assert sampler.test_clip(5, 10) == [3, 4, 5]  # no hard-coded sets for non-default dilations
    assert sampler.min_frames == 3
    with pytest.raises(ValueError, match="negative"):
        ReferenceClipSampler(dilations=(-3, 2))


def test_consecutive_sampler() -> None:
    sampler = ConsecutiveClipSampler(length=4)
    clips = _draws(sampler, 8)
    for clip in clips:
        assert clip == list(range(clip[-1] - 3, clip[-1] + 1))
    assert {clip[-1] for clip in clips} == set(range(3, 8))
    with pytest.raises(ValueError, match="needs >= 4 frames, got 2"):
        sampler.sample(2, np.random.default_rng(0))


def test_consecutive_sampler_with_max_gap_one_draws_as_a_window() -> None:
    # max_gap=1 (the default) keeps the window draw: start uniform in [0, T-length], nothing else drawn.
    rng, reference = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(50):
        start = int(reference.integers(0, 8 - 4 + 1))
        assert ConsecutiveClipSampler(4).sample(8, rng) == list(range(start, start + 4))


def test_tdnet_gap_sampler() -> None:
    # TDNet's loader: going back from the target, each gap independently uniform in {1, 2}.
    sampler = ConsecutiveClipSampler(length=4, max_gap=2)
    assert sampler.min_frames == 7
    clips = _draws(sampler, 12, n=400, seed=3)
    gaps = np.array([np.diff(clip) for clip in clips])
    assert gaps.shape == (400, 3) and set(np.unique(gaps)) == {1, 2}  # only 1 and 2, both occur
    assert all(clip[-1] == max(clip) and clip[0] >= 0 for clip in clips)  # target last, in range
    # Each gap is 2 about half the time, independently of the others and of the target.
    assert np.all(np.abs((gaps == 2).mean(0) - 0.5) < 0.08)
    assert abs(np.corrcoef(gaps[:, 0], gaps[:, 1])[0, 1]) < 0.15
    # Targets: uniform over the frames where every gap draw fits, [(4-1)*2, T-1] = [6, 11].
    targets = [clip[-1] for clip in clips]
    assert set(targets) == set(range(6, 12))
    # Deterministic under the generator: the same seed draws the same clips.
    assert clips == _draws(sampler, 12, n=400, seed=3) and clips != _draws(sampler, 12, n=400, seed=4)
    # A video too short for the largest gaps is too short (no shortened gaps); at min_frames it fits.
    with pytest.raises(ValueError, match="a clip of 4 frames at most 2 apart needs >= 7 frames, got 6"):
        sampler.sample(6, np.random.default_rng(0))
    assert all(clip[-1] == 6 for clip in _draws(sampler, 7, n=20))
    with pytest.raises(ValueError, match="max_gap must be >= 1, got 0"):
        ConsecutiveClipSampler(4, max_gap=0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    # 4 videos -> val 2, test 1, train 1 (12 frames each so CFFM clips fit).
    return str(
        synthesize(tmp_path_factory.mktemp("clips") / "vspw", videos=4, frames=12, size=(32, 48), seed=3)
    )


def test_clip_dataset_without_augmentation(tree: str) -> None:
    ds = VSPWClipDataset(tree, split="val", sampler=KeyframeClipSampler(4), repeat=3, seed=0)
    reader = VSPWDataset(tree, "val")
    assert len(ds) == 6 and ds.videos == reader.videos
    for index in range(len(ds)):
        item = ds[index]
        assert item["video"] == reader.videos[index % 2]
        assert item["images"].shape == (4, 3, 32, 48) and item["images"].dtype == torch.float32
        assert item["labels"].shape == (4, 32, 48) and item["labels"].dtype == torch.int64
        k = item["indices"][0]
        assert item["indices"] == [k, k + 1, k + 2, k + 3]
        stems = reader.frame_stems(item["video"])
        for j, frame_index in enumerate(item["indices"]):
            expected = reader.read_label(item["video"], stems[frame_index])
            np.testing.assert_array_equal(item["labels"][j].numpy(), expected)
    # Seeded: the same item twice is the same clip; another epoch draws again.
    first = [ds[i]["indices"] for i in range(len(ds))]
    assert first == [ds[i]["indices"] for i in range(len(ds))]
    ds.set_epoch(1)
    assert first != [ds[i]["indices"] for i in range(len(ds))]


def test_clip_dataset_with_augmentation(tree: str) -> None:
    aug = ClipAugment(scale=(96, 64), crop=(40, 40))
    ds = VSPWClipDataset(tree, split="train", sampler=ReferenceClipSampler(), augment=aug, seed=1)
    item = ds[0]
    assert item["images"].shape == (4, 3, 40, 40) and item["labels"].shape == (4, 40, 40)
    values = set(torch.unique(item["labels"]).tolist())
    assert values <= set(range(124)) | {255} and len(values - {255}) >= 2
    clip = item["indices"]
    t = clip[-1]
    assert clip in ([t - 9, t - 6, t - 3, t], [t + 9, t + 6, t + 3, t])  # forward or reversed video


def test_clip_dataset_skips_or_rejects_short_videos(tree: str) -> None:
    with pytest.raises(DataError, match="no video with at least 20 frames"):
        VSPWClipDataset(tree, split="val", sampler=ConsecutiveClipSampler(20))
    # Gaps up to 4 between 4 frames need 13 frames: the 12-frame videos are too short for them.
    with pytest.raises(DataError, match="no video with at least 13 frames"):
        VSPWClipDataset(tree, split="val", sampler=ConsecutiveClipSampler(4, max_gap=4))
