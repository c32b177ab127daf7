"""Training: losses (and, as they land, the trainer and schedules)."""

from vssbench.training.losses import binary_mask_accuracy, focal_bce, label_consistency, segmentation_ce

__all__ = ["binary_mask_accuracy", "focal_bce", "label_consistency", "segmentation_ce"]
