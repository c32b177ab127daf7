"""SegFormer (Xie et al., NeurIPS 2021) as a per-frame video segmenter: MiT encoder + MLP decoder.

Every frame is processed alike (all four encoder stages, then the decoder); nothing is cached
between frames. The pieces are exposed so that keyframe methods (Feature Reuse, TFC) subclass
this adapter and recombine them: :meth:`SegFormer.encode` runs the first ``num_stages`` encoder
stages, ``decode_head.project/fuse/classify`` are the decoder steps, and :meth:`SegFormer.segment`
is the one method a subclass overrides to change what a step computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from vssbench.data.samplers import KeyframeClipSampler
from vssbench.methods.base import BaseOptions, MethodInfo, VideoSegmenter, register
from vssbench.models.decoder import SegFormerHead
from vssbench.models.losses import check_loss_reduction, segmentation_loss
from vssbench.models.mit import MixTransformer


@dataclass(frozen=True)
class SegFormerOptions(BaseOptions):
    """Options of the per-frame SegFormer.

    ``interval``: for an image method only the window over which GMACs and FPS are averaged
    (every frame is processed alike, so it changes no prediction). ``decoder_dim`` and
    ``drop_path_rate`` as in :class:`~vssbench.methods.base.BaseOptions`. ``dropout``: the
    decoder's Dropout2d rate before the classifier (0.1 in every SegFormer config; training
    only; 0 makes a training step deterministic, e.g. to compare distributed and single-process
    training). ``loss_reduction``: how every cross-entropy term of training is averaged, ``mmseg``
    (the released mmseg 0.x code: over all pixels, an ignored one counting as 0) or ``valid``
    (over the labelled pixels only; :func:`vssbench.models.losses.segmentation_loss`).
    """

    dropout: float = 0.1
    loss_reduction: Literal["mmseg", "valid"] = "mmseg"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_loss_reduction(self.loss_reduction)


@register
class SegFormer(VideoSegmenter):
    """Per-frame SegFormer on MiT ``backbone`` with ``num_classes`` outputs.

    ``step`` returns N x num_classes x H x W logits at the input size (bilinear upsampling of the
    1/4-resolution decoder output, as mmseg's ``encode_decode`` does).
    """

    info = MethodInfo(
        "segformer",
        paper="SegFormer (Xie et al., NeurIPS 2021)",
        type="Image",
        default_interval=4,
        description="Per-frame MiT encoder + all-MLP decoder; every frame processed alike.",
    )
    Options = SegFormerOptions
    options: SegFormerOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: SegFormerOptions | None = None
    ) -> None:
        super().__init__(options)
        self.num_classes = num_classes
        self.backbone = MixTransformer(backbone, drop_path_rate=self.options.drop_path_rate)
        self.decode_head = SegFormerHead(
            self.backbone.embed_dims, self.options.decoder_dim, num_classes, dropout=self.options.dropout
        )

    def encode(self, image: Tensor, num_stages: int = 4) -> list[Tensor]:
        """Encoder maps [x^1..x^num_stages] of images N x 3 x H x W."""
        return self.backbone(image, num_stages)

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Logits at 1/4 resolution for the current frame, and this step's diagnostics.

        The per-frame model: all four stages, then the decoder. Keyframe subclasses override
        this (they read ``self.t``, the index of the frame within the video).
        """
        return self.decode_head(self.encode(image)), {"keyframe": True}

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Per-frame cross-entropy over a clip: images N x T x 3 x H x W, labels N x T x H' x W'.

        Every frame is segmented independently; the 1/4-resolution logits are upsampled to the
        label size and the CE is averaged over the pixels of all frames as ``loss_reduction`` says.
        """
        logits = self.decode_head(self.encode(images.flatten(0, 1)))
        loss = segmentation_loss(logits, labels.flatten(0, 1), self.options.loss_reduction)
        return {"loss": loss, "loss_seg": loss}

    def parameter_groups(self) -> dict[str, nn.Module]:
        """Encoder (MiT) and decoder (MLP head) for grouped parameter counts."""
        return {"encoder": self.backbone, "decoder": self.decode_head}

    def train_sampler(self) -> KeyframeClipSampler:
        """``interval`` consecutive frames (one keyframe interval), each with its own CE.

        The same frames per clip as the keyframe methods, so every method of a comparison sees the
        same number of labelled frames per iteration.
        """
        return KeyframeClipSampler(self.options.interval)


__all__ = ["SegFormer", "SegFormerOptions"]
