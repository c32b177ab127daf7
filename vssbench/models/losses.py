"""Training losses shared by the method adapters.

* :func:`segmentation_loss`: pixel cross entropy with the VSPW ignore label (255), averaged as
  mmseg 0.x does (over all pixels) or over the labelled pixels (the per-frame loss of every method).
* :func:`ohem_cross_entropy`: pixel cross entropy averaged over the hardest pixels only (online
  hard example mining, TDNet's OhemCELoss2D).
* :func:`focal_bce`: binary cross entropy in focal form on probabilities (TFC supervises its
  clamped cosine similarity with it, gamma = 1, paper Sec. 3.3).
* :func:`binary_mask_accuracy`: accuracy of a thresholded probability map (the paper's Fig. 4).
* :func:`label_consistency`: the binary target of TFC's similarity, keyframe label == frame label.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from vssbench.data.labels import IGNORE_INDEX
from vssbench.models.decoder import resize_logits

__all__ = [
    "LOSS_REDUCTIONS",
    "binary_mask_accuracy",
    "check_loss_reduction",
    "focal_bce",
    "label_consistency",
    "ohem_cross_entropy",
    "segmentation_loss",
]


def _valid_mask(target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return torch.ones_like(target, dtype=torch.bool)
    if valid.shape != target.shape:
        raise ValueError(f"valid mask {tuple(valid.shape)} must match target {tuple(target.shape)}")
    return valid.bool()


def focal_bce(
    p: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 1.0,
    valid: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Focal binary cross entropy of probabilities ``p`` against 0/1 ``target``, mean over ``valid``.

    Per point: -(1-p)^gamma * log(p) where the target is 1, and -p^gamma * log(1-p) where it is
    0 (Lin et al., focal loss, without the alpha balance); gamma = 0 is plain BCE. ``p`` is
    clamped to [eps, 1-eps] inside the logs only, so p = 0 or 1 gives a finite loss; the focal
    factor uses the unclamped p. Any shape; ``valid`` (bool, same shape) drops points. Returns a
    scalar; 0 (still attached to the graph) when no point is valid.
    """
    if p.shape != target.shape:
        raise ValueError(f"p {tuple(p.shape)} and target {tuple(target.shape)} must have the same shape")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    keep = _valid_mask(target, valid)
    y = target.to(p.dtype)
    pc = p.clamp(eps, 1.0 - eps)
    positive = (1.0 - p).clamp(min=0.0).pow(gamma) * torch.log(pc)
    negative = p.clamp(min=0.0).pow(gamma) * torch.log1p(-pc)
    loss = -(y * positive + (1.0 - y) * negative)
    loss = torch.where(keep, loss, torch.zeros_like(loss))
    return loss.sum() / keep.sum().clamp(min=1)


@torch.no_grad()
def binary_mask_accuracy(
    p: torch.Tensor, target: torch.Tensor, threshold: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of ``valid`` points where (p >= threshold) equals the 0/1 ``target``; NaN if none is valid."""
    if p.shape != target.shape:
        raise ValueError(f"p {tuple(p.shape)} and target {tuple(target.shape)} must have the same shape")
    keep = _valid_mask(target, valid)
    correct = ((p >= threshold) == target.bool()) & keep
    count = keep.sum()
    if count == 0:
        return torch.tensor(float("nan"), device=p.device)
    return correct.sum().float() / count


#: How the pixel CE is averaged: ``"mmseg"`` (mmseg 0.x's CrossEntropyLoss as the released SegFormer,
#: CFFM and MRCFA configs use it: the mean over *all* pixels, an ignored pixel counting as 0) or
#: ``"valid"`` (the mean over the labelled pixels only).
LOSS_REDUCTIONS: tuple[str, ...] = ("mmseg", "valid")
LossReduction = Literal["mmseg", "valid"]


def check_loss_reduction(reduction: str) -> str:
    """``reduction`` itself if it is one of :data:`LOSS_REDUCTIONS`, else ``ValueError``."""
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {', '.join(LOSS_REDUCTIONS)}, got {reduction!r}")
    return reduction


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, reduction: LossReduction = "mmseg"
) -> torch.Tensor:
    """Pixel-wise CE of B x K x h x w logits upsampled to B x H x W int64 labels (255 ignored).

    The logits are upsampled bilinearly (align_corners=False) to the label size. ``reduction``:
    ``"mmseg"`` averages over every pixel, ignored ones counting as zero (mmseg 0.x's default,
    ``avg_non_ignore=False``: with half the pixels ignored it is half of ``"valid"``);
    ``"valid"`` averages over the non-ignored pixels, and a batch with none gives a zero that
    still carries the graph (instead of NaN).
    """
    check_loss_reduction(reduction)
    labels = labels.long()
    logits = resize_logits(logits, labels.shape[-2:])
    if reduction == "mmseg":
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none").mean()
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    thresh: float = 0.7,
    min_kept: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Online hard example mining CE of B x K x H x W logits against B x H x W int64 ``target``.

    The rule of TDNet's ``OhemCELoss2D`` (``Training/ptsemseg/loss/loss.py``). Every pixel's CE
    loss l enters the pool, an ``ignore_index`` pixel with l = 0. With tau = -ln(``thresh``) (the
    loss of a pixel whose true class has probability ``thresh``) and n = ``min_kept``:

    * if more than n pixels have l > tau, the loss is the mean of those (all the hard pixels);
    * else it is the mean of the n largest l (at least n pixels are kept). When fewer than n
      pixels are labelled, ignored pixels fill the n with zeros, so the sum of the labelled
      losses is divided by n, as in the original; all ignored gives 0 (with the graph).

    (The original sorts the losses descending and tests ``sorted[n] > tau``, which holds exactly
    when more than n pixels exceed tau.) ``min_kept`` defaults to B*H*W // 16 (at least 1): the
    original's ``n_min`` = images per GPU x crop area // 16, for logits upsampled to the crop.
    A ``min_kept`` of B*H*W or more keeps every pixel (the original's index would overflow).
    The logits must already be at the target's size (resize them with the caller's convention).
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"ohem_cross_entropy expects logits B x K x H x W and target B x H x W of the same size, "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if not 0.0 < thresh <= 1.0:
        raise ValueError(f"thresh is a probability in (0, 1], got {thresh}")
    loss = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none").flatten()
    if min_kept is None:
        min_kept = max(1, loss.numel() // 16)
    if min_kept < 1:
        raise ValueError(f"min_kept must be >= 1, got {min_kept}")
    hard = loss > -math.log(thresh)
    if int(hard.sum()) > min_kept:
        return loss[hard].mean()
    return loss.topk(min(min_kept, loss.numel())).values.mean()


def label_consistency(
    key_labels: torch.Tensor, labels: torch.Tensor, size: tuple[int, int], ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and valid mask of TFC's similarity: key label == frame label at ``size`` (h, w).

    Labels N x H x W are brought to ``size`` by nearest-neighbour downsampling; a point is valid
    when neither label is ``ignore_index``. Returns (target float N x h x w, valid bool N x h x w).
    """
    if key_labels.shape != labels.shape:
        raise ValueError(f"label maps differ in shape: {tuple(key_labels.shape)} vs {tuple(labels.shape)}")
    both = torch.stack([key_labels, labels], dim=1).float()
    small = F.interpolate(both, size=size, mode="nearest").long()
    key_small, small_t = small[:, 0], small[:, 1]
    valid = (key_small != ignore_index) & (small_t != ignore_index)
    return (key_small == small_t).float(), valid
