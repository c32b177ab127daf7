"""segformer_ema: vssbench's contract checks, then what is particular to the method.

Run after installing the package (``pip install ./examples/vssbench-ema`` from vssbench's root):
vssbench finds the method through the package's entry point.
"""

from __future__ import annotations

import math

import pytest
import torch

from vssbench.errors import OptionError
from vssbench.methods import available, create
from vssbench.methods.segformer import SegFormer
from vssbench.testing import CHECKS, check_method

NUM_CLASSES = 5


def test_the_entry_point_registers_the_method() -> None:
    assert "segformer_ema" in available(), "install this package so that vssbench finds it"


@pytest.mark.parametrize("rule", sorted(CHECKS))
def test_segformer_ema_keeps_the_contract(rule: str) -> None:
    check_method("segformer_ema", checks=[rule])


def frames(count: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` different 2 x 3 x 64 x 64 frames (two videos in a batch)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 64, 64, generator=g) for _ in range(count)]


def test_alpha_one_is_segformer() -> None:
    """alpha = 1 keeps only the current frame: SegFormer's class probabilities on every frame.

    Compared after log-softmax: the EMA's output is log-probabilities resized by ``step``, which
    SegFormer's logits are not; a per-pixel constant is all that may differ.
    """
    torch.manual_seed(0)
    segformer = create("segformer", "b0", num_classes=NUM_CLASSES)
    torch.manual_seed(0)
    ema = create("segformer_ema", "b0", num_classes=NUM_CLASSES, alpha=1.0)
    segformer.reset()
    ema.reset()
    with torch.inference_mode():
        for t, frame in enumerate(frames(3)):
            expected = segformer.step(frame).log_softmax(dim=1)
            actual = ema.step(frame).log_softmax(dim=1)
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5, msg=f"frame {t}")


@pytest.fixture
def toy_segformer(monkeypatch: pytest.MonkeyPatch) -> None:
    """SegFormer's per-frame logits replaced by the first two channels of the image (a 1 x 1 toy)."""

    def logits_from_image(self: SegFormer, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return image[:, :2], {"keyframe": True}

    monkeypatch.setattr(SegFormer, "segment", logits_from_image)


def toy_frame(*logits: float) -> torch.Tensor:
    return torch.tensor([*logits, 0.0]).view(1, 3, 1, 1)


@pytest.mark.usefixtures("toy_segformer")
def test_a_two_frame_video_worked_by_hand() -> None:
    # Frame 0: logits (0, 0)     -> p_0 = (1/2, 1/2) = q_0.
    # Frame 1: logits (log 3, 0) -> p_1 = (3/4, 1/4); with alpha = 1/2,
    #          q_1 = 1/2 * (3/4, 1/4) + 1/2 * (1/2, 1/2) = (5/8, 3/8).
    model = create("segformer_ema", "b0", num_classes=2, alpha=0.5)
    model.reset()
    with torch.inference_mode():
        first = model.step(toy_frame(0.0, 0.0))
        second = model.step(toy_frame(math.log(3.0), 0.0))
        (state,) = model.state_tensors()
    torch.testing.assert_close(first.flatten(), torch.tensor([math.log(0.5), math.log(0.5)]))
    torch.testing.assert_close(second.flatten(), torch.tensor([math.log(5 / 8), math.log(3 / 8)]))
    torch.testing.assert_close(state.flatten(), torch.tensor([5 / 8, 3 / 8]))
    # A new video starts from its own first frame: q_0 = p_0 = (3/4, 1/4), no trace of (5/8, 3/8).
    model.reset()
    assert model.state_tensors() == []
    with torch.inference_mode():
        again = model.step(toy_frame(math.log(3.0), 0.0))
    torch.testing.assert_close(again.flatten(), torch.tensor([math.log(3 / 4), math.log(1 / 4)]))


@pytest.mark.usefixtures("toy_segformer")
def test_the_videos_of_a_batch_keep_their_own_average() -> None:
    # Video 0 sees (0, 0) then (log 3, 0): q_1 = (5/8, 3/8) as above. Video 1 sees (log 3, 0) twice:
    # q_1 = p = (3/4, 1/4), whatever video 0 did.
    model = create("segformer_ema", "b0", num_classes=2, alpha=0.5)
    model.reset()
    with torch.inference_mode():
        model.step(torch.cat([toy_frame(0.0, 0.0), toy_frame(math.log(3.0), 0.0)]))
        second = model.step(torch.cat([toy_frame(math.log(3.0), 0.0), toy_frame(math.log(3.0), 0.0)]))
    torch.testing.assert_close(second[0].flatten(), torch.tensor([math.log(5 / 8), math.log(3 / 8)]))
    torch.testing.assert_close(second[1].flatten(), torch.tensor([math.log(3 / 4), math.log(1 / 4)]))


def test_a_probability_that_underflows_gives_finite_logits(toy_segformer: None) -> None:
    model = create("segformer_ema", "b0", num_classes=2)
    model.reset()
    with torch.inference_mode():
        logits = model.step(toy_frame(0.0, -1e4))  # p = (1, 0) in float32
    assert torch.isfinite(logits).all()
    assert logits.argmax(dim=1).item() == 0


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.5])
def test_alpha_outside_0_1_is_refused(alpha: float) -> None:
    with pytest.raises(OptionError, match="alpha"):
        create("segformer_ema", "b0", num_classes=NUM_CLASSES, alpha=alpha)
