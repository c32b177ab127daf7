"""Feature Reuse: the clockwork keyframe baseline of the TFC paper on a per-frame SegFormer.

Clockwork convnets (Shelhamer et al., ECCV 2016) rerun a network's deep stages only on some
frames and reuse their last output in between. In MiT terms (``reference/methods.md`` section 4):
on a keyframe (``t % interval == 0``) all four encoder stages run and x^3, x^4 are cached; on
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
from vssbench.models.decoder import resize_logits


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


class FeatureReuse(SegFormer):
    """SegFormer that recomputes the deep encoder stages (3, 4) only on keyframes."""

    info = MethodInfo(
        "feature_reuse",
        paper="Clockwork convnets (Shelhamer et al., ECCV 2016), as the TFC paper's baseline",
        type="E",
        default_interval=4,
        description="Keyframes run all MiT stages; other frames run stages 1-2 and reuse the keyframe's x^3, x^4.",
    )

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: FeatureReuseOptions | None = None
    ) -> None:
        super().__init__(backbone, num_classes, options if options is not None else FeatureReuseOptions())
        # Keyframe state: (x_k^3, x_k^4), or with cache_fuse their fuse terms' sum at 1/4.
        self._key_feats: tuple[Tensor, ...] | None = None
        self._key_shape: tuple[int, ...] | None = None
        self._key_folded = False

    def reset(self) -> None:
        """Start a new video: forget the keyframe features."""
        super().reset()
        self._key_feats = None
        self._key_shape = None

    def state_tensors(self) -> list[Tensor]:
        """The cached keyframe features (or their fuse term)."""
        return list(self._key_feats or ())

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """1/4-resolution logits: full encoder on keyframes, stages 1-2 + cached x^3, x^4 otherwise."""
        head = self.decode_head
        keyframe = self.t % self.options.interval == 0 or self._key_feats is None
        # A cached fuse term made in the other decoder mode is the same function but is not
        # reused across a mode switch, so that each mode's cost is its own.
        keyframe = keyframe or (self.options.cache_fuse and self._key_folded != head.folded)
        if keyframe:
            feats = self.encode(image, 4)
            size = tuple(feats[0].shape[-2:])
            # Detached: the cache is inference state, and must not keep an old frame's graph alive.
            self._key_shape = tuple(image.shape)
            self._key_folded = head.folded
            if not self.options.cache_fuse:
                self._key_feats = (feats[2].detach(), feats[3].detach())
                return head(feats), {"keyframe": True}
            if head.folded:
                # The same ops as head(feats); levels 3-4's folded terms are the cached fuse term.
                terms = head.folded_terms(feats, size)
                self._key_feats = ((terms[2] + terms[3]).detach(),)
                return head.classify(head.fuse_terms(terms)), {"keyframe": True}
            # The same ops as head(feats), keeping the native projections for the fuse terms.
            native = [getattr(head, f"linear_c{level}")(x) for level, x in enumerate(feats, start=1)]
            logits = head.classify(head.fuse([resize_logits(x, size) for x in native]))
            self._key_feats = ((head.fuse_term(3, native[2], size) + head.fuse_term(4, native[3], size)).detach(),)
            return logits, {"keyframe": True}
        if tuple(image.shape) != self._key_shape:
            raise ValueError(
                f"frame {self.t} has shape {tuple(image.shape)} but its keyframe had {self._key_shape}; "
                "call reset() between videos"
            )
        x1, x2 = self.encode(image, 2)
        if not self.options.cache_fuse:
            return head([x1, x2, *self._key_feats]), {"keyframe": False}
        size = tuple(x1.shape[-2:])
        if head.folded:
            low = [head.folded_term(1, x1, size), head.folded_term(2, x2, size)]
        else:
            low = [head.fuse_term(1, head.linear_c1(x1), size), head.fuse_term(2, head.linear_c2(x2), size)]
        return head.classify(head.fuse_terms([self._key_feats[0], *low])), {"keyframe": False}


@register(FeatureReuse.info, FeatureReuseOptions)
def build_feature_reuse(
    backbone: str = "b0", num_classes: int = 124, options: FeatureReuseOptions | None = None
) -> FeatureReuse:
    """Registry factory of :class:`FeatureReuse`."""
    return FeatureReuse(backbone=backbone, num_classes=num_classes, options=options)


__all__ = ["FeatureReuse", "FeatureReuseOptions", "build_feature_reuse"]
