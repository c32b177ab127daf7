"""The frames of one measured keyframe interval, after an untimed, uncounted lead-in."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def lead_and_interval(
    image: torch.Tensor | Sequence[torch.Tensor], interval: int, lead_in: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The ``lead_in`` frames run before the measured interval, and the ``interval`` measured ones."""
    if isinstance(lead_in, bool) or int(lead_in) != lead_in or lead_in < 0:
        raise ValueError(f"lead_in must be a non-negative integer, got {lead_in!r}")
    if isinstance(interval, bool) or int(interval) != interval or interval < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    frames = _frames_for_interval(image, lead_in + interval)
    return frames[:lead_in], frames[lead_in:]


def _frames_for_interval(image: torch.Tensor | Sequence[torch.Tensor], interval: int) -> list[torch.Tensor]:
    if isinstance(interval, bool) or int(interval) != interval or interval < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    if isinstance(image, torch.Tensor):
        return [image] * interval
    frames = list(image)
    if len(frames) < interval:
        raise ValueError(f"need {interval} frames for one interval, got {len(frames)}")
    return frames[:interval]
