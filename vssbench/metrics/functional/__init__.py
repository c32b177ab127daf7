"""Pure metric functions (numpy in/out; torch tensors accepted): the definitions the streaming
accumulators and the harness build on, each tested alone against naive references."""

from __future__ import annotations

from vssbench.metrics.functional.iou import confusion_matrix, iou_from_confusion
from vssbench.metrics.functional.vc import RunLengthVC, VCTotals, mean_vc, vc_window_scores

__all__ = [
    "RunLengthVC",
    "VCTotals",
    "confusion_matrix",
    "iou_from_confusion",
    "mean_vc",
    "vc_window_scores",
]
