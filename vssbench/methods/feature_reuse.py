"""Feature Reuse: the clockwork keyframe baseline of the TFC paper on a per-frame SegFormer.

Clockwork convnets (Shelhamer et al., ECCV 2016) rerun a network's deep stages only on some
frames and reuse their last output in between. In MiT terms: on a
keyframe (``t % interval == 0``) all four encoder stages run and x^3, x^4 are cached; on
any other frame only stages 1-2 run on the current frame and the decoder gets
``(x_t^1, x_t^2, x_k^3, x_k^4)``. The weights are a plain SegFormer's (no retraining), so training
is SegFormer's per-frame loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from vssbench.methods.base import MethodInfo, register
from vssbench.methods.segformer import SegFormer, SegFormerOptions


@dataclass(frozen=True)
class FeatureReuseOptions(SegFormerOptions):
    """Options of Feature Reuse.

    ``interval``: keyframe interval K (a keyframe every K frames, starting with each video's
    first frame); K = 1 is plain SegFormer. ``cache_fuse``: keep the keyframe levels' share of
    the decoder's fuse conv (:meth:`SegFormerHead.fuse_term`) instead of recomputing x̂_k^3, x̂_k^4
    and the full 4E -> E conv on every frame; identical in real arithmetic (float rounding
    differs, ~1e-6), and for B0 at 480x853 about 4.5 of a non-keyframe's ~10 GMACs cheaper
    (reference decoder; the folded decoder computes each level's term from x^l directly).
    ``decoder_dim`` and ``drop_path_rate`` as for SegFormer (the same weights load into both).
    """

    cache_fuse: bool = True


@register
class FeatureReuse(SegFormer):
    """SegFormer that recomputes the deep encoder stages (3, 4) only on keyframes."""

    info = MethodInfo(
        "feature_reuse",
        paper="Clockwork convnets (Shelhamer et al., ECCV 2016), as the TFC paper's baseline",
        type="E",
        default_interval=4,
        description="Keyframes run all MiT stages; "
        "other frames run stages 1-2 and reuse the keyframe's x^3, x^4.",
    )
    Options = FeatureReuseOptions
    options: FeatureReuseOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: FeatureReuseOptions | None = None
    ) -> None:
        super().__init__(backbone, num_classes, options)
        # Keyframe state: x_k^3, x_k^4, or with cache_fuse their fuse terms' sum at 1/4.
        self._key_feats: tuple[Tensor, ...] | None = None

    def reset_state(self) -> None:
        """Forget the keyframe features."""
        self._key_feats = None

    def state_tensors(self) -> list[Tensor]:
        """The cached keyframe features (or their fuse term)."""
        return list(self._key_feats or ())

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """1/4-resolution logits: full encoder on keyframes, stages 1-2 + cached x^3, x^4 otherwise."""
        head = self.decode_head
        if self.t % self.options.interval == 0 or self._key_feats is None:
            inputs = head.inputs(self.encode(image, 4))
            logits = head.classify(inputs.fused())
            # Detached: the cache is inference state, and must not keep an old frame's graph alive.
            if self.options.cache_fuse:
                self._key_feats = (inputs.partial((3, 4)).detach(),)
            else:
                self._key_feats = (inputs.maps[3].detach(), inputs.maps[4].detach())
            return logits, {"keyframe": True}
        x1, x2 = self.encode(image, 2)
        if not self.options.cache_fuse:
            return head([x1, x2, *self._key_feats]), {"keyframe": False}
        return head.classify(head.fuse_with(self._key_feats[0], head.inputs([x1, x2]))), {"keyframe": False}


__all__ = ["FeatureReuse", "FeatureReuseOptions"]
