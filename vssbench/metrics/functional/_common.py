"""Input handling shared by the metric functions: numpy or torch label maps in, numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # torch is a dependency, but the pure metric functions should not need it to import
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]


def as_label_array(labels: Any, name: str) -> np.ndarray:
    """Return ``labels`` (numpy array, torch tensor or nested list) as an integer numpy array.

    Boolean maps become uint8 (two classes). Floating point maps are refused rather than
    truncated, because a float label map almost always means logits or an un-argmaxed
    probability map were passed by mistake.
    """
    if torch is not None and isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array


def check_num_classes(num_classes: int) -> int:
    """Validate a class count (a positive int) and return it as a Python int."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def check_clip(clip: int) -> int:
    """Validate a VC clip length: an int in 1..255 (the run counters are uint8)."""
    if isinstance(clip, bool) or int(clip) != clip or not 1 <= clip <= 255:
        raise ValueError(f"clip length must be an integer in 1..255, got {clip!r}")
    return int(clip)
