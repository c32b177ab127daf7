"""Focal BCE, mask accuracy, segmentation CE, OHEM CE and the label-consistency target, worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vssbench.models.losses import (
    binary_mask_accuracy,
    focal_bce,
    label_consistency,
    ohem_cross_entropy,
    segmentation_loss,
)


def test_focal_bce_hand_worked() -> None:
    # p=0.8, y=1, gamma=1: -(0.2) ln 0.8;  p=0.3, y=0: -(0.3) ln 0.7.
    a = -0.2 * math.log(0.8)
    b = -0.3 * math.log(0.7)
    assert focal_bce(torch.tensor([0.8]), torch.tensor([1.0])).item() == pytest.approx(a, rel=1e-6)
    assert focal_bce(torch.tensor([0.3]), torch.tensor([0.0])).item() == pytest.approx(b, rel=1e-6)
    both = focal_bce(torch.tensor([0.8, 0.3]), torch.tensor([1.0, 0.0]))
    assert both.item() == pytest.approx((a + b) / 2, rel=1e-6)


def test_focal_bce_gamma_two_and_zero() -> None:
    p, y = torch.tensor([0.6, 0.1]), torch.tensor([1.0, 0.0])
    want2 = (-(0.4**2) * math.log(0.6) - (0.1**2) * math.log(0.9)) / 2
    assert focal_bce(p, y, gamma=2.0).item() == pytest.approx(want2, rel=1e-6)
    # gamma = 0 is the plain binary cross entropy.
    assert focal_bce(p, y, gamma=0.0).item() == pytest.approx(F.binary_cross_entropy(p, y).item(), rel=1e-6)


def test_focal_bce_valid_mask_and_extremes() -> None:
    p = torch.tensor([0.8, 0.0, 1.0, 0.5])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    valid = torch.tensor([True, False, False, True])
    want = (-0.2 * math.log(0.8) - 0.5 * math.log(0.5)) / 2
    assert focal_bce(p, y, valid=valid).item() == pytest.approx(want, rel=1e-6)
    # Certain and wrong: finite thanks to the clamp in the log, large.
    worst = focal_bce(torch.tensor([0.0]), torch.tensor([1.0]))
    assert math.isfinite(worst.item()) and worst.item() == pytest.approx(-math.log(1e-6), rel=1e-4)
    nothing = focal_bce(p, y, valid=torch.zeros(4, dtype=torch.bool))
    assert nothing.item() == 0.0


def test_focal_bce_gradient_sign() -> None:
    p = torch.tensor([0.5, 0.5], requires_grad=True)
    focal_bce(p, torch.tensor([1.0, 0.0])).backward()
    assert p.grad[0] < 0 < p.grad[1]  # pushes p up where y=1, down where y=0


def test_binary_mask_accuracy() -> None:
    p = torch.tensor([0.9, 0.8, 0.79, 0.1, 0.95])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    valid = torch.tensor([True, True, True, True, False])
    # Predictions (p >= 0.8): 1, 1, 0, 0 vs 1, 0, 0, 1 -> 2 of 4 right.
    assert binary_mask_accuracy(p, y, 0.8, valid).item() == pytest.approx(0.5)
    assert binary_mask_accuracy(p, y, 0.8).item() == pytest.approx(3 / 5)
    assert math.isnan(binary_mask_accuracy(p, y, 0.8, torch.zeros(5, dtype=torch.bool)).item())


def test_segmentation_loss_ignores_255_and_upsamples() -> None:
    logits = torch.zeros(1, 3, 1, 1)
    logits[0, :, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([[[0, 1], [255, 255]]])
    # Upsampled 1x1 -> 2x2 is constant; two labelled pixels with classes 0 and 1.
    lse = math.log(math.exp(2) + 2)
    want = ((lse - 2) + lse) / 2
    assert segmentation_loss(logits, labels, "valid").item() == pytest.approx(want, rel=1e-6)
    assert segmentation_loss(logits, torch.full((1, 2, 2), 255), "valid").item() == 0.0


def test_label_consistency_nearest_and_ignore() -> None:
    key = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 255, 255], [3, 3, 255, 255]]])
    cur = torch.tensor([[[1, 1, 5, 5], [1, 1, 5, 5], [255, 255, 4, 4], [255, 255, 4, 4]]])
    target, valid = label_consistency(key, cur, (2, 2))
    assert torch.equal(target, torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]))
    assert torch.equal(valid, torch.tensor([[[True, True], [False, False]]]))
    # Nearest downsampling by 2 takes the top-left pixel of each 2x2 block.
    key2 = torch.tensor([[[7, 0], [0, 0]]])
    target2, _ = label_consistency(key2, torch.tensor([[[7, 9], [9, 9]]]), (1, 1))
    assert target2.item() == 1.0


def test_segmentation_loss_mmseg_reduction_counts_ignored_pixels_as_zero() -> None:
    logits = torch.zeros(1, 3, 1, 1)
    logits[0, :, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([[[0, 1], [255, 255]]])
    lse = math.log(math.exp(2) + 2)
    # mmseg 0.x: the sum over the two labelled pixels divided by all four pixels.
    assert segmentation_loss(logits, labels).item() == pytest.approx(((lse - 2) + lse) / 4, rel=1e-6)
    assert segmentation_loss(logits, labels, "mmseg").item() == segmentation_loss(logits, labels).item()
    assert segmentation_loss(logits, torch.full((1, 2, 2), 255), "mmseg").item() == 0.0
    with pytest.raises(ValueError, match="loss_reduction must be one of mmseg, valid"):
        segmentation_loss(logits, labels, "sum")


def _logits_with_probabilities(p: list[float], shape: tuple[int, int]) -> torch.Tensor:
    """1 x 2 x h x w logits whose class-0 probability at pixel i (row-major) is p[i]."""
    p_t = torch.tensor(p, dtype=torch.float64)
    return torch.stack([p_t.log(), (1 - p_t).log()]).reshape(1, 2, *shape).float()


# True-class probabilities of 8 pixels (target class 0); the last one is ignored (255).
OHEM_P = [0.9, 0.8, 0.6, 0.5, 0.2, 0.75, 0.65, 0.99]
OHEM_TARGET = torch.tensor([[[0, 0, 0, 0], [0, 0, 0, 255]]])


@pytest.mark.parametrize(
    "min_kept, kept",
    [
        # (a) threshold rule: 4 pixels have p < 0.7 (loss > -ln 0.7): 0.6, 0.5, 0.2, 0.65. With
        # n = 2 or 3, more than n are hard, so exactly those 4 are averaged.
        (2, [0.6, 0.5, 0.2, 0.65]),
        (3, [0.6, 0.5, 0.2, 0.65]),
        # n = 4: not more than n hard pixels -> the 4 largest losses, the same 4 pixels.
        (4, [0.6, 0.5, 0.2, 0.65]),
        # (b) minimum-kept rule: n = 6 adds the next two largest losses, p = 0.75 and 0.8.
        (6, [0.6, 0.5, 0.2, 0.65, 0.75, 0.8]),
    ],
)
def test_ohem_hand_worked_threshold_and_minimum_kept(min_kept: int, kept: list[float]) -> None:
    logits = _logits_with_probabilities(OHEM_P, (2, 4))
    want = sum(-math.log(p) for p in kept) / len(kept)
    got = ohem_cross_entropy(logits, OHEM_TARGET, thresh=0.7, min_kept=min_kept)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_ohem_fewer_labelled_pixels_than_min_kept_divides_by_min_kept() -> None:
    logits = _logits_with_probabilities(OHEM_P, (2, 4))
    want = sum(-math.log(p) for p in OHEM_P[:7]) / 8
    # n = 8: the 7 labelled pixels and the ignored one (loss 0) are the 8 largest -> sum / 8.
    assert ohem_cross_entropy(logits, OHEM_TARGET, min_kept=8).item() == pytest.approx(want, rel=1e-5)
    # n beyond the pixel count keeps every pixel (the original would index out of range).
    assert ohem_cross_entropy(logits, OHEM_TARGET, min_kept=100).item() == pytest.approx(want, rel=1e-5)
    none = ohem_cross_entropy(logits.requires_grad_(), torch.full((1, 2, 4), 255), min_kept=3)
    assert none.item() == 0.0 and none.requires_grad


def test_ohem_default_min_kept_is_a_sixteenth_of_the_pixels() -> None:
    # 32 pixels -> n = 2. One hard pixel (p = 0.1): not more than 2 -> it and the largest easy one (0.8).
    p = [0.95] * 32
    p[5], p[17] = 0.1, 0.8
    target = torch.zeros(1, 4, 8, dtype=torch.int64)
    logits = _logits_with_probabilities(p, (4, 8))
    want = (-math.log(0.1) - math.log(0.8)) / 2
    assert ohem_cross_entropy(logits, target).item() == pytest.approx(want, rel=1e-5)
    # Three hard pixels (more than n = 2): only they count, the 0.8 pixel no longer does.
    p[20], p[30] = 0.3, 0.5
    logits = _logits_with_probabilities(p, (4, 8))
    want = (-math.log(0.1) - math.log(0.3) - math.log(0.5)) / 3
    assert ohem_cross_entropy(logits, target).item() == pytest.approx(want, rel=1e-5)


def test_ohem_gradient_only_on_kept_pixels() -> None:
    logits = _logits_with_probabilities(OHEM_P, (2, 4)).requires_grad_()
    ohem_cross_entropy(logits, OHEM_TARGET, min_kept=2).backward()
    moved = logits.grad.abs().sum(1).flatten() > 0
    assert moved.tolist() == [p < 0.7 for p in OHEM_P[:7]] + [False]


def _original_ohem(logits: torch.Tensor, target: torch.Tensor, thresh: float, n_min: int) -> torch.Tensor:
    """The original OhemCELoss2D as written: sort descending, test the (n_min+1)-th largest."""
    loss = F.cross_entropy(logits, target, ignore_index=255, reduction="none").view(-1)
    loss, _ = torch.sort(loss, descending=True)
    if loss[n_min] > -math.log(thresh):
        loss = loss[loss > -math.log(thresh)]
    else:
        loss = loss[:n_min]
    return loss.mean()


@pytest.mark.parametrize("thresh", [0.3, 0.7, 0.95])
def test_ohem_matches_the_original_sort_rule(thresh: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = 2.0 * torch.randn(2, 5, 6, 7, generator=g)
    target = torch.randint(0, 5, (2, 6, 7), generator=g)
    target[torch.rand(2, 6, 7, generator=g) < 0.2] = 255
    for n in (1, 5, 21, 40, 83):
        want = _original_ohem(logits, target, thresh, n)
        assert ohem_cross_entropy(logits, target, thresh=thresh, min_kept=n).item() == pytest.approx(
            want.item(), rel=1e-6
        ), n


def test_ohem_rejects_bad_arguments() -> None:
    logits = torch.zeros(1, 2, 2, 4)
    with pytest.raises(ValueError, match="same size"):
        ohem_cross_entropy(logits, torch.zeros(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"thresh is a probability in \(0, 1\], got 0.0"):
        ohem_cross_entropy(logits, OHEM_TARGET, thresh=0.0)
    with pytest.raises(ValueError, match="min_kept must be >= 1, got 0"):
        ohem_cross_entropy(logits, OHEM_TARGET, min_kept=0)
