"""Feature Reuse: keyframe schedule, which stages run, exact reuse of the keyframe's x^3 and x^4."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from vssbench.methods.feature_reuse import FeatureReuse, FeatureReuseOptions
from vssbench.methods.segformer import SegFormer
from vssbench.models.decoder import resize_logits


def _frames(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, 64, 64, generator=g) for _ in range(n)]


def _pair(interval: int, cache_fuse: bool = True) -> tuple[SegFormer, FeatureReuse]:
    torch.manual_seed(0)
    base = SegFormer("b0", num_classes=6).eval()
    options = FeatureReuseOptions(interval=interval, cache_fuse=cache_fuse)
    reuse = FeatureReuse("b0", num_classes=6, options=options).eval()
    reuse.load_state_dict(base.state_dict())
    return base, reuse


def _run(model: SegFormer, frames: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[bool]]:
    model.reset()
    outs, keys = [], []
    with torch.no_grad():
        for f in frames:
            outs.append(model.step(f))
            keys.append(model.last_step_info["keyframe"])
    return outs, keys


def test_interval_one_is_segformer_exactly() -> None:
    base, reuse = _pair(1)
    frames = _frames(3)
    ours, keys = _run(reuse, frames)
    theirs, _ = _run(base, frames)
    assert keys == [True, True, True]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("cache_fuse", [False, True])
def test_non_keyframes_decode_current_shallow_and_keyframe_deep_features(cache_fuse: bool) -> None:
    # cache_fuse=False is Eq. 2 literally (bit-exact); True splits the fuse conv by level and
    # keeps the keyframe levels' term: the same in real arithmetic, so equal to float rounding.
    base, reuse = _pair(3, cache_fuse)
    frames = _frames(7)
    outs, keys = _run(reuse, frames)
    assert keys == [True, False, False, True, False, False, True]
    with torch.no_grad():
        for t, frame in enumerate(frames):
            key = frames[t - t % 3]
            shallow = base.encode(frame, 2)
            deep = base.encode(key)[2:]
            expected = resize_logits(base.decode_head([*shallow, *deep]), (64, 64))
            if cache_fuse and t % 3:
                torch.testing.assert_close(outs[t], expected, rtol=1e-5, atol=1e-5)
            else:
                assert torch.equal(outs[t], expected), t
    assert not torch.equal(outs[1], _run(base, frames[1:2])[0][0])  # reuse really changes the output


def test_non_keyframes_run_only_stages_one_and_two() -> None:
    _, reuse = _pair(4)
    calls: Counter[str] = Counter()
    watched = {
        "patch_embed1": reuse.backbone.patch_embed1,
        "block2": reuse.backbone.block2[0],
        "patch_embed3": reuse.backbone.patch_embed3,
        "block3": reuse.backbone.block3[0],
        "norm3": reuse.backbone.norm3,
        "patch_embed4": reuse.backbone.patch_embed4,
        "block4": reuse.backbone.block4[1],
        "norm4": reuse.backbone.norm4,
    }
    handles = [m.register_forward_hook(lambda *_, n=name: calls.update([n])) for name, m in watched.items()]
    reuse.reset()
    per_frame = []
    with torch.no_grad():
        for frame in _frames(5):
            calls.clear()
            reuse.step(frame)
            per_frame.append(dict(calls))
    for h in handles:
        h.remove()
    full = {name: 1 for name in watched}
    shallow = {"patch_embed1": 1, "block2": 1}
    assert per_frame == [full, shallow, shallow, shallow, full]


def test_step_is_causal_and_reset_starts_a_new_video() -> None:
    _, reuse = _pair(2)
    frames = _frames(5)
    outs, _ = _run(reuse, frames)
    changed = frames[:3] + [torch.randn(1, 3, 64, 64)] + frames[4:]
    again, _ = _run(reuse, changed)
    assert all(torch.equal(a, b) for a, b in zip(outs[:3], again[:3]))
    assert not torch.equal(outs[3], again[3])
    # Changing the keyframe changes the frames that reuse it.
    changed_key = [torch.randn(1, 3, 64, 64)] + frames[1:]
    reused, _ = _run(reuse, changed_key)
    assert not torch.equal(outs[1], reused[1]) and torch.equal(outs[2], reused[2])


def test_frame_size_change_within_a_video_is_an_error() -> None:
    _, reuse = _pair(4)
    reuse.reset()
    with torch.no_grad():
        reuse.step(torch.randn(1, 3, 64, 64))
        with pytest.raises(ValueError, match="reset"):
            reuse.step(torch.randn(1, 3, 64, 96))
        reuse.reset()
        assert reuse.step(torch.randn(1, 3, 64, 96)).shape == (1, 6, 64, 96)


def test_training_is_segformers_per_frame_loss() -> None:
    base, reuse = _pair(4)
    images = torch.randn(1, 2, 3, 64, 64)
    labels = torch.randint(0, 6, (1, 2, 64, 64))
    assert torch.equal(
        reuse.forward_train(images, labels)["loss"], base.forward_train(images, labels)["loss"]
    )
    assert FeatureReuse.info.type == "E" and FeatureReuse.info.name == "feature_reuse"


def test_cached_fuse_term_makes_non_keyframes_cheaper() -> None:
    from vssbench.profiling import count_gmacs

    frames = _frames(2)
    full = count_gmacs(_pair(2, cache_fuse=False)[1], frames, interval=2)
    cached = count_gmacs(_pair(2, cache_fuse=True)[1], frames, interval=2)
    segformer = count_gmacs(_pair(2)[0], frames, interval=2)
    # Non-keyframe: the 4E -> E fuse conv at 1/4 becomes E -> E at 1/4 (level 1) plus E -> E at
    # 1/8 (level 2): 1024 -> 256 + 64 input channels per 1/4 point, about 3/4 of it saved.
    e, points = 256, 16 * 16
    saved = (4 * e - e - e // 4) * e * points - 4 * e * points  # minus level 2's resize (4 MACs/elem)
    assert full["gmacs_nonkeyframe"] < segformer["gmacs_keyframe"]
    assert full["gmacs_nonkeyframe"] - cached["gmacs_nonkeyframe"] == pytest.approx(saved / 1e9, rel=0.05)
    # The keyframe pays a little for the cached term (levels 3-4 at 1/16 and 1/32, then resized).
    assert 0 < cached["gmacs_keyframe"] - full["gmacs_keyframe"] < 0.05 * full["gmacs_keyframe"]
