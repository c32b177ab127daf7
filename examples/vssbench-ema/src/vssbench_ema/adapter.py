"""SegFormer with a temporal exponential moving average (EMA) of its per-frame class probabilities.

A classic stabiliser, not a method of the TFC paper: every frame is segmented by a plain
SegFormer, and the output is the log of an EMA of the softmax probabilities,

    p_t = softmax(logits_t),   q_0 = p_0,   q_t = alpha * p_t + (1 - alpha) * q_{t-1},

so a pixel changes its class only when the new evidence outweighs the running average. ``alpha``
= 1 is plain SegFormer (the same class probabilities); smaller values smooth more and react later.
The running average q_{t-1} is the method's only state: it is declared in :meth:`state_tensors`
(the GMAC counter counts the softmax and the blend that make it), forgotten in
:meth:`reset_state` (a new video starts from its own first frame) and kept per sample of the
batch (the videos of a batch never mix). It lives at the decoder's 1/4 resolution, where
SegFormer's logits are; ``step`` upsamples the result like any other method's logits.

Training is SegFormer's per-frame loss (the EMA has no parameters), so SegFormer checkpoints load
unchanged: ``vssbench run --method segformer_ema --checkpoint segformer_b0.pth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vssbench.methods import MethodInfo, register
from vssbench.methods.segformer import SegFormer, SegFormerOptions


@dataclass(frozen=True)
class SegFormerEMAOptions(SegFormerOptions):
    """Options of SegFormer + EMA.

    ``alpha``: the weight of the current frame's probabilities in (0, 1]; 1 is plain SegFormer.
    The SegFormer options (``decoder_dim``, ``dropout``, ``drop_path_rate``, ``interval`` as the
    GMACs/FPS window) mean what they mean there.
    """

    alpha: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")


@register
class SegFormerEMA(SegFormer):
    """Per-frame SegFormer whose output is log(q_t), q_t the EMA of the frames' probabilities."""

    info = MethodInfo(
        "segformer_ema",
        paper="temporal exponential moving average of per-frame probabilities "
        "(a classic stabiliser; not in the TFC paper)",
        type="S",
        default_interval=4,
        description="Per-frame SegFormer; output log q_t, q_t = alpha*softmax(logits_t) + (1-alpha)*q_{t-1}.",
    )
    Options = SegFormerEMAOptions
    options: SegFormerEMAOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: SegFormerEMAOptions | None = None
    ) -> None:
        super().__init__(backbone, num_classes, options)
        # q_{t-1}: N x num_classes x H/4 x W/4 probabilities of the previous frame's output.
        self._average: Tensor | None = None

    def reset_state(self) -> None:
        """Forget the running average (the next frame is a video's first: q_0 = p_0)."""
        self._average = None

    def state_tensors(self) -> list[Tensor]:
        """The running average q_{t-1}, once a frame has been segmented."""
        return [] if self._average is None else [self._average]

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """log q_t at 1/4 resolution (SegFormer's logits blended into the running average)."""
        logits, info = super().segment(image)
        probs = logits.softmax(dim=1)
        if self._average is not None:
            alpha = self.options.alpha
            probs = alpha * probs + (1.0 - alpha) * self._average
        # Detached: the average is inference state and must not keep an old frame's graph alive.
        self._average = probs.detach()
        # A probability that underflowed to 0 would give -inf; the smallest normal float keeps
        # the logits finite without changing any class that has a chance.
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), info


__all__ = ["SegFormerEMA", "SegFormerEMAOptions"]
