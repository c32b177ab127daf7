"""Metric core: accuracy (mIoU, wIoU), stability (mVC_C) and efficiency (params, GMACs, FPS).

``functional`` holds the pure definitions; ``stream`` the frame-by-frame accumulators;
``evaluator`` the per-video evaluator the harness uses; ``efficiency`` (imported on demand,
it pulls in fvcore) the complexity and timing measurements.
"""

from __future__ import annotations

from vssbench.metrics.evaluator import PRESETS, MetricState, Preset, VideoEvaluator, compute_metrics
from vssbench.metrics.functional import confusion_matrix, iou_from_confusion, mean_vc, vc_window_scores
from vssbench.metrics.stream import IoUMetric, VCMetric

__all__ = [
    "PRESETS",
    "IoUMetric",
    "MetricState",
    "Preset",
    "VCMetric",
    "VideoEvaluator",
    "compute_metrics",
    "confusion_matrix",
    "iou_from_confusion",
    "mean_vc",
    "vc_window_scores",
]
