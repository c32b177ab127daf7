"""Confusion matrix and the IoU family derived from it (VSPW's official conventions by default)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vssbench.metrics.functional._common import as_label_array, check_num_classes


def confusion_matrix(pred: Any, gt: Any, num_classes: int = 124, ignore_index: int = 255) -> np.ndarray:
    """Count (ground truth, prediction) pairs over the counted pixels of one or more frames.

    ``pred`` and ``gt`` are integer label maps of the same shape (any shape, e.g. H×W or
    T×H×W; numpy or torch). A pixel counts iff ``0 <= gt < num_classes`` and
    ``gt != ignore_index``, as VSPW's official Evaluator (so 255 and any out-of-range GT
    label are dropped). Returns int64 ``[num_classes, num_classes]`` with rows = ground truth.

    A prediction outside ``0..num_classes-1`` on a counted pixel raises ValueError: the
    official code would silently file it in a wrong cell.
    """
    p = as_label_array(pred, "pred")
    g = as_label_array(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: pred {p.shape} vs gt {g.shape}")
    k = check_num_classes(num_classes)
    counted = g < k
    if g.dtype.kind == "i":
        counted &= g >= 0
    if 0 <= ignore_index < k:
        counted &= g != ignore_index
    g = g[counted]
    p = p[counted]
    if p.size:
        low, high = p.min(), p.max()
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise ValueError(
                f"prediction value {int(bad)} is outside 0..{k - 1} (num_classes={k}) on a counted pixel"
            )
    index = g.astype(np.int64)
    index *= k
    index += p
    return np.bincount(index, minlength=k * k).reshape(k, k)


def iou_from_confusion(conf: Any) -> dict[str, Any]:
    """Accuracy and IoU summaries of a confusion matrix (rows = ground truth).

    Keys (fractions in [0, 1]):

    * ``IoU``: per-class float64 array, ``TP / (TP + FP + FN)``; NaN where the class is in
      neither ground truth nor prediction (0/0); 0.0 for a predicted-only class.
    * ``mIoU``: official VSPW mIoU, the mean of ``IoU`` over classes present in the ground
      truth (row sum > 0). Predicted-only classes are left out of the mean. NaN if no GT pixel.
    * ``wIoU``: VSPW's "FWIoU": sum over GT-present classes of (GT frequency × IoU); 0.0 for
      an empty matrix, as in the official code.
    * ``mIoU_mmseg``: mmsegmentation's mIoU (the CFFM/MRCFA tables), the NaN-mean of ``IoU``,
      i.e. over classes present in GT *or* prediction (predicted-only classes count as 0).
    * ``aAcc``: pixel accuracy, trace / total (NaN for an empty matrix).
    * ``mAcc``: mean over GT-present classes of per-class recall (NaN if no GT pixel).
    """
    m = np.asarray(conf)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K], got shape {m.shape}")
    if m.dtype.kind not in "iuf":
        raise ValueError(f"confusion matrix must be numeric, got dtype {m.dtype}")
    m = m.astype(np.float64, copy=False)
    tp = np.diag(m)
    gt_count = m.sum(axis=1)
    pred_count = m.sum(axis=0)
    total = gt_count.sum()
    present = gt_count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (gt_count + pred_count - tp)
        recall = tp / gt_count
    n_present = int(present.sum())
    if n_present:
        miou = float(iou[present].mean())
        wiou = float((gt_count[present] / total * iou[present]).sum())
        macc = float(recall[present].mean())
    else:
        miou, wiou, macc = float("nan"), 0.0, float("nan")
    defined = ~np.isnan(iou)
    return {
        "mIoU": miou,
        "wIoU": wiou,
        "mIoU_mmseg": float(iou[defined].mean()) if defined.any() else float("nan"),
        "aAcc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mAcc": macc,
        "IoU": iou,
    }
