"""Focal BCE, mask accuracy, segmentation CE and the label-consistency target, worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vssbench.models.losses import binary_mask_accuracy, focal_bce, label_consistency, segmentation_loss


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
