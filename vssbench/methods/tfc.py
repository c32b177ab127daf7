"""TFC: Temporal Feature Correlation (Lin et al., AAAI 2024) on SegFormer.

Keyframes (``t % interval == 0``) are exactly SegFormer. A non-keyframe t with keyframe k runs
only MiT stages 1-2 and builds the pyramid x_t = (x_t^1, x_t^2, x_k^3, x_k^4) (paper Eq. 4):

1. w_t = cosine similarity of the projected-and-resized x̂_k^l and x̂_t^l per 1/4-resolution
   point (Eq. 5-6; l = ``similarity_level``, 2 by default), always against the keyframe;
2. z_t = fuse(x̂_t^1, x̂_t^2, x̂_k^3, x̂_k^4) (Eq. 2);
3. sparse MSDA (Eq. 11) updates z_t at the points with clamp(w_t, 0, 1) < ``threshold`` (every
   point when ``threshold`` >= 1, none when it is 0);
4. z'_t = ŵ ⊙ z_k + (1 − ŵ) ⊙ z_t with ŵ = clamp(w_t, 0, 1) (Eq. 7), then the class head.

The MSDA pyramid (a choice the paper leaves open; documented here): the four levels of x_t
through the decoder's own per-level projections ``linear_c{l}`` at each level's *native*
resolution (1/4, 1/8, 1/16, 1/32), so every level has E = ``decoder_dim`` = 256 channels for every
backbone, and one deformable layer at d = 256 (8 heads, 4 levels, 4 points, FFN 1024) is the
+0.7M of Table 1 on B0, B1 and B5 alike. Queries are z_t at the selected points plus a
parameter-free sine encoding of the point's position; each point's reference is its own pixel
centre. The value projection of levels 3-4 is computed once per keyframe and cached.

Ablations (Table 2) are options: ``interp`` soft / hard (ŵ = 1 where w >= threshold, else 0) /
fixed (ŵ ≡ ``fixed_weight``, 0.9 by default) / none (z'_t = z_t); ``update`` msda / none / flow
(instead of MSDA, x̂_k^3 and x̂_k^4 are warped with the flow that
:class:`vssbench.models.flow.CorrelationFlow` estimates
between the keyframe's and the current frame's ``linear_c2`` maps at 1/8, upsampled to 1/4;
the estimator is built only for this variant and is trained by the same losses); ``similarity_level``
2 / 1; ``focal`` on/off; and ``keyframe="adaptive"``, where a frame becomes a keyframe when the
share of points with ŵ < threshold exceeds ``budget`` (at most ``interval`` frames apart; the
frame's stages 1-2 are reused and only stages 3-4 are added).

The fixed interpolation weight. The paper: "approximately 10% of the feature points change
between two frames, we set the weight to be 0.1". ŵ is the weight of z_k in Eq. 7, so the
literal reading ŵ = 0.1 would keep 90% of the *current* frame, nearly plain feature reuse; but
Table 2's fixed row is more stable than soft interpolation (mVC8 85.9 vs 85.0) and less accurate
(31.0), which only a keyframe-heavy blend gives. So 0.1 is read as the weight of the current
frame (the share of points that change): ŵ = ``fixed_weight`` = 0.9 on z_k by default, an option.

Decoder modes (:mod:`vssbench.models.decoder`). The decoder head owns them: TFC asks it for a
frame's :class:`~vssbench.models.decoder.DecoderInputs` and takes z, the levels' fuse terms, x̂^s
and the MSDA values (value_proj after ``linear_c{l}``) from it. In ``"folded"`` mode (the harness
default) every linear map that consumes a ``linear_c{l}`` output is composed with it and applied
at the level's own resolution: the fuse conv's share of each level, and the MSDA value projection
of levels 1-2 at non-keyframes and of levels 3-4 at keyframes (C_l x d MACs per position instead
of a dense d x d). Only the similarity level's (and, for the flow variant, level 2's)
``linear_c`` map is still computed, for w_t. The logits equal the ``"reference"`` mode's (the
literal architecture) in real arithmetic.

Open choices (the paper leaves them open; decided here, with the alternative as an option
where it is cheap):

* Updated points leave the deformable layer through its post-norm (LayerNorm) while the other
  points of z_t are post-ReLU BN outputs, so the two kinds of points are on different scales
  until training aligns them. ``msda_output="residual"`` is the alternative: the layer's
  residual branches without the two LayerNorms (z + MSDA, then + FFN), which keeps the query's
  own scale; the default, ``"norm"``, is Deformable DETR's layer as it is.
* MSDA attention weights are a softmax over levels x points *per head*, as in Deformable DETR
  (the paper's Eq. 10 writes one sum over heads, levels and points).
* The focal BCE has no alpha (class-balance) term: the paper gives only gamma = 1.
* The label-consistency mask compares labels downsampled to 1/4 with nearest sampling.
* Sampling locations, reference points and offset normalization are float32 whatever the
  autocast dtype (bfloat16 would misplace 1/4-level samples by up to ~1.4 px).

Training (:meth:`TFC.forward_train`): L = L_seg + L_bce, with L_seg the cross entropy averaged
over the keyframe and the non-keyframes of a clip and L_bce the focal binary cross entropy
(gamma = ``gamma``) between ŵ and the label-consistency mask (keyframe label == frame label at
1/4, nearest downsampling, pixels with 255 in either ignored), averaged over the non-keyframes.
``focal=False`` reads the paper's "Without Focal Loss" row as Fig. 4 describes it ("without the
binary cross entropy loss based on the focal loss"): the similarity is not supervised at all,
L = L_seg and ``loss_bce`` is 0. (Plain, non-focal BCE is ``gamma=0``.) Each frame's CE is
averaged as ``loss_reduction`` says (``mmseg`` by default: over all pixels, ignored ones counting
as 0, as the mmseg-based SegFormer code TFC builds on); the focal BCE keeps its own definition
whatever ``loss_reduction`` is: a mean over the valid points only (ignored pairs carry no target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vssbench.methods.base import MethodInfo, register
from vssbench.methods.segformer import SegFormer, SegFormerOptions
from vssbench.models.decoder import DecoderInputs
from vssbench.models.flow import CorrelationFlow, resize_flow, warp
from vssbench.models.losses import binary_mask_accuracy, focal_bce, label_consistency, segmentation_loss
from vssbench.models.msda import DeformableEncoderLayer, sparse_msda_update

Interp = Literal["soft", "hard", "fixed", "none"]
Update = Literal["msda", "none", "flow"]
MSDAOutput = Literal["norm", "residual"]
KeyframePolicy = Literal["fixed", "adaptive"]

#: ŵ (the weight of z_k) of the "fixed" interpolation ablation: about 10% of the points change
#: between frames, so the current frame gets 0.1 and the keyframe 0.9 (module docstring).
FIXED_WEIGHT = 0.9
#: The deformable layer of Table 1's +0.7M: Deformable DETR's encoder defaults.
MSDA_HEADS, MSDA_LEVELS, MSDA_POINTS, MSDA_FFN, MSDA_DROPOUT = 8, 4, 4, 1024, 0.1
#: Displacement radius of the flow ablation's cost volume, in 1/8-resolution pixels (±32 image px).
FLOW_RADIUS = 4


@dataclass(frozen=True)
class TFCOptions(SegFormerOptions):
    """Options of TFC (all settable with ``--set key=value``).

    ``interval``: keyframe interval (the longest gap with ``keyframe="adaptive"``).
    ``threshold``: sparse MSDA updates points with clamp(w, 0, 1) < threshold (1.0 = every
    point, 0.0 = none); also the binarization threshold of ``interp="hard"`` and of the mask
    accuracy. ``interp``: soft | hard | fixed | none. ``update``: msda | none | flow.
    ``similarity_level``: encoder level (1 or 2) whose projection gives the similarity.
    ``keyframe``: fixed (t % interval == 0) | adaptive. ``budget``: adaptive keyframing's share
    of low-similarity points (over the whole batch) above which a frame becomes a keyframe.
    ``focal``: supervise ŵ with the focal BCE. ``gamma``: its focusing parameter.
    ``cache_fuse``: keep the keyframe levels'
    share of the fuse conv (W_3·x̂_k^3 + W_4·x̂_k^4, :meth:`SegFormerHead.fuse_term`) instead of
    recomputing the full 4E -> E conv at every non-keyframe; identical in real arithmetic (float
    rounding differs), and with ``update="flow"`` the cached term is warped (warping commutes
    with the 1x1 conv). ``fixed_weight``: ŵ of ``interp="fixed"``, the weight of z_k (0.9: the
    current frame gets the 10% of points that change). ``msda_output``: norm (updated points are
    the deformable layer's post-norm output) | residual (its residual branches without the
    LayerNorms). ``decoder_dim``, ``drop_path_rate``: as SegFormer.
    """

    threshold: float = 0.8
    interp: Interp = "soft"
    update: Update = "msda"
    similarity_level: int = 2
    keyframe: KeyframePolicy = "fixed"
    budget: float = 0.2
    focal: bool = True
    gamma: float = 1.0
    cache_fuse: bool = True
    fixed_weight: float = FIXED_WEIGHT
    msda_output: MSDAOutput = "norm"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            ("threshold", 0.0 <= self.threshold <= 1.0, "a number in [0, 1]"),
            ("interp", self.interp in ("soft", "hard", "fixed", "none"), "one of soft, hard, fixed, none"),
            ("update", self.update in ("msda", "none", "flow"), "one of msda, none, flow"),
            ("similarity_level", self.similarity_level in (1, 2), "1 or 2"),
            ("keyframe", self.keyframe in ("fixed", "adaptive"), "one of fixed, adaptive"),
            ("budget", 0.0 <= self.budget <= 1.0, "a number in [0, 1]"),
            ("gamma", self.gamma >= 0.0 and math.isfinite(self.gamma), "a finite number >= 0"),
            ("fixed_weight", 0.0 <= self.fixed_weight <= 1.0, "a number in [0, 1]"),
            ("msda_output", self.msda_output in ("norm", "residual"), "one of norm, residual"),
            ("decoder_dim", self.decoder_dim % 8 == 0, "a multiple of 8 (8 MSDA heads, 2-D sine encoding)"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ValueError(f"tfc option {key} must be {want}, got {getattr(self, key)!r}")


def cosine_similarity_map(a: Tensor, b: Tensor) -> Tensor:
    """Per-point cosine similarity of two N x C x h x w maps over channels -> N x h x w (Eq. 6)."""
    return F.cosine_similarity(a, b, dim=1, eps=1e-8)


def select_points(similarity: Tensor, threshold: float) -> Tensor:
    """Points that sparse MSDA updates: clamp(w, 0, 1) < threshold; every point when threshold >= 1.

    Clamping makes threshold 0 select nothing (negative similarities included), and the >= 1
    rule makes the paper's "threshold 1.0" the dense MSDA even where w rounds to exactly 1.
    """
    if threshold >= 1.0:
        return torch.ones_like(similarity, dtype=torch.bool)
    return similarity.clamp(0.0, 1.0) < threshold


def interpolation_weight(
    similarity: Tensor, mode: Interp, threshold: float, fixed_weight: float = FIXED_WEIGHT
) -> Tensor | None:
    """ŵ (N x h x w, the weight of z_k) of Eq. 7 for an interpolation mode; None for ``"none"``.

    ``fixed_weight`` is ŵ everywhere for ``mode="fixed"``.
    """
    if mode == "soft":
        return similarity.clamp(0.0, 1.0)
    if mode == "hard":
        return (similarity >= threshold).to(similarity.dtype)
    if mode == "fixed":
        return torch.full_like(similarity, fixed_weight)
    if mode == "none":
        return None
    raise ValueError(f"unknown interpolation mode {mode!r}; modes: soft, hard, fixed, none")


def interpolate_features(
    z_key: Tensor,
    z_cur: Tensor,
    similarity: Tensor,
    mode: Interp,
    threshold: float,
    fixed_weight: float = FIXED_WEIGHT,
) -> Tensor:
    """z'_t = ŵ ⊙ z_k + (1 − ŵ) ⊙ z_t (Eq. 7) with ŵ from :func:`interpolation_weight`.

    z_key, z_cur: N x C x h x w; similarity: N x h x w. ``mode="none"`` returns z_cur itself.
    """
    weight = interpolation_weight(similarity, mode, threshold, fixed_weight)
    if weight is None:
        return z_cur
    weight = weight[:, None]
    return weight * z_key + (1.0 - weight) * z_cur


@dataclass
class _KeyframeState:
    """What a keyframe leaves for the frames that follow it."""

    z: Tensor  # z_k, N x E x h x w (1/4)
    similarity_ref: Tensor  # x̂_k^s (s = similarity_level), N x E x h x w
    flow_ref: Tensor | None  # linear_c2(x_k^2) at 1/8 (update="flow")
    fuse34: Tensor | None  # W_3·x̂_k^3 + W_4·x̂_k^4, the reused levels' fuse term (cache_fuse)
    maps34: list[Tensor]  # x_k^3, x_k^4 (without cache_fuse, their terms are recomputed per frame)
    projected34: dict[int, Tensor]  # x̂_k^3, x̂_k^4 where the keyframe's decoder computed them
    value34: Tensor | None  # MSDA value of levels 3-4, N x S_34 x M x Dh (update="msda")
    shapes34: list[tuple[int, int]]  # (H, W) of levels 3 and 4

    def detached(self) -> _KeyframeState:
        def det(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.detach()

        return _KeyframeState(
            z=self.z.detach(),
            similarity_ref=self.similarity_ref.detach(),
            flow_ref=det(self.flow_ref),
            fuse34=det(self.fuse34),
            maps34=[x.detach() for x in self.maps34] if self.fuse34 is None else [],
            projected34={k: v.detach() for k, v in self.projected34.items()} if self.fuse34 is None else {},
            value34=det(self.value34),
            shapes34=list(self.shapes34),
        )


@dataclass
class _FrameResult:
    logits: Tensor  # N x K x h x w (1/4)
    similarity: Tensor  # w_t, N x h x w
    selected: Tensor | None  # points updated by MSDA (None when update != "msda")


@register
class TFC(SegFormer):
    """SegFormer + TFC: cosine-similarity interpolation and sparse MSDA at non-keyframes.

    Diagnostics after each ``step``: ``last_step_info`` = {"keyframe" (its mean over frames is
    the keyframe share), "updated_fraction" (share of 1/4 points updated by MSDA), "mean_similarity",
    "low_similarity_fraction" (share with ŵ < threshold), "promoted" (an adaptive keyframe
    chosen by the budget)}. The three per-point values describe non-keyframes only: they are
    NaN on keyframes, which the harness's averages skip, so a record's ``updated_fraction`` and
    ``low_similarity_fraction`` are both means over non-keyframes. ``last_similarity`` is the
    w_t map N x h x w (None on keyframes), e.g. for the paper's Fig. 3.
    """

    info = MethodInfo(
        "tfc",
        paper="TFC (Lin et al., AAAI 2024)",
        type="E&S",
        default_interval=4,
        description=(
            "Keyframes run SegFormer; other frames run MiT stages 1-2, reuse x_k^3, x_k^4, update "
            "low-similarity points with sparse MSDA and interpolate with the keyframe by cosine similarity."
        ),
    )
    Options = TFCOptions
    options: TFCOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: TFCOptions | None = None
    ) -> None:
        super().__init__(backbone, num_classes, options)
        dim = self.options.decoder_dim
        self.msda = DeformableEncoderLayer(dim, MSDA_FFN, MSDA_LEVELS, MSDA_HEADS, MSDA_POINTS, MSDA_DROPOUT)
        self.flow = CorrelationFlow(dim, radius=FLOW_RADIUS) if self.options.update == "flow" else None
        self.last_similarity: Tensor | None = None
        self._key: _KeyframeState | None = None
        self._key_t = 0

    def reset_state(self) -> None:
        """Forget the keyframe state."""
        self._key = None
        self._key_t = 0
        self.last_similarity = None

    def state_tensors(self) -> list[Tensor]:
        """The keyframe state later frames use (z_k, x̂_k^s, cached terms and projections)."""
        key = self._key
        if key is None:
            return []
        extra = [t for t in (key.flow_ref, key.fuse34, key.value34) if t is not None]
        return [key.z, key.similarity_ref, *extra, *key.maps34, *key.projected34.values()]

    def parameter_groups(self) -> dict[str, nn.Module]:
        """Encoder (MiT), decoder (MLP head) and tfc (the deformable layer, + the flow estimator)."""
        tfc: nn.Module = self.msda if self.flow is None else nn.ModuleList([self.msda, self.flow])
        return {"encoder": self.backbone, "decoder": self.decode_head, "tfc": tfc}

    # ----------------------------------------------------------------------------- the two paths

    def _value(self, inputs: DecoderInputs, levels: Sequence[int]) -> Tensor:
        """MSDA value of ``levels``: value_proj after each level's ``linear_c`` -> [N, S, M, Dh]."""
        attn = self.msda.self_attn
        return inputs.through(levels, attn.value_proj).unflatten(
            -1, (attn.n_heads, attn.d_model // attn.n_heads)
        )

    def _keyframe(self, inputs: DecoderInputs) -> tuple[Tensor, _KeyframeState]:
        """SegFormer's decoder on a keyframe's four levels, and the state later frames need.

        ``inputs`` may already hold ``linear_c`` maps of levels 1-2 (an adaptive keyframe reuses
        its own non-keyframe projections).
        """
        opts = self.options
        z = inputs.fused()
        state = _KeyframeState(
            z=z,
            similarity_ref=inputs.projected(opts.similarity_level),
            flow_ref=inputs.native(2) if opts.update == "flow" else None,
            fuse34=inputs.partial((3, 4)) if opts.cache_fuse else None,
            maps34=[inputs.maps[3], inputs.maps[4]],
            projected34=inputs.cached_projected((3, 4)),
            value34=self._value(inputs, (3, 4)) if opts.update == "msda" else None,
            shapes34=[tuple(inputs.maps[level].shape[-2:]) for level in (3, 4)],
        )
        return self.decode_head.classify(z), state

    def _similarity(self, key: _KeyframeState, current: DecoderInputs) -> Tensor:
        """w_t: cosine similarity of x̂_k^s and x̂_t^s at 1/4 resolution (N x h x w)."""
        return cosine_similarity_map(key.similarity_ref, current.projected(self.options.similarity_level))

    def _non_keyframe(self, key: _KeyframeState, current: DecoderInputs, similarity: Tensor) -> _FrameResult:
        """1/4-resolution logits of a non-keyframe from its levels 1-2 (``current``) and w_t."""
        opts = self.options
        head = self.decode_head
        warp_to_current = None
        if opts.update == "flow":
            assert self.flow is not None and key.flow_ref is not None
            flow = resize_flow(self.flow(key.flow_ref, current.native(2)), current.size)
            warp_to_current = partial(warp, flow=flow)  # linear: it commutes with the 1x1 maps
        if key.fuse34 is not None:
            reused = key.fuse34 if warp_to_current is None else warp_to_current(key.fuse34)
            z = head.fuse_with(reused, current)
        else:
            maps = {**current.maps, 3: key.maps34[0], 4: key.maps34[1]}
            mixed = head.inputs(maps, current.size, native=current.cached_native(), projected=key.projected34)
            z = mixed.fused(reused=(3, 4), transform=warp_to_current)
        selected = None
        if opts.update == "msda":
            selected = select_points(similarity.detach(), opts.threshold)
        if selected is not None and bool(selected.any()):
            # The values are only needed when some point is updated (no work at threshold 0).
            assert key.value34 is not None
            value = torch.cat([self._value(current, (1, 2)), key.value34], dim=1)
            x1, x2 = current.maps[1], current.maps[2]
            shapes = torch.tensor(
                [tuple(x1.shape[-2:]), tuple(x2.shape[-2:]), *key.shapes34], device=z.device
            )
            post_norm = opts.msda_output == "norm"
            z = sparse_msda_update(
                self.msda, z, None, selected, value=value, spatial_shapes=shapes, post_norm=post_norm
            )
        z = interpolate_features(key.z, z, similarity, opts.interp, opts.threshold, opts.fixed_weight)
        return _FrameResult(head.classify(z), similarity, selected)

    # ----------------------------------------------------------------------------- inference

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """1/4-resolution logits of the current frame and its diagnostics (see the class docstring)."""
        opts = self.options
        head = self.decode_head
        if self._key is None:
            due = True
        elif opts.keyframe == "fixed":
            due = self.t % opts.interval == 0
        else:
            due = self.t - self._key_t >= opts.interval
        self.last_similarity = None
        keyframe_info = {
            "keyframe": True,
            "updated_fraction": math.nan,
            "mean_similarity": math.nan,
            "low_similarity_fraction": math.nan,
            "promoted": False,
        }
        if due:
            logits, key = self._keyframe(head.inputs(self.encode(image, 4)))
            self._key, self._key_t = key.detached(), self.t
            return logits, keyframe_info

        key = self._key
        assert key is not None
        current = head.inputs(self.encode(image, 2))
        similarity = self._similarity(key, current)
        low = float((similarity.clamp(0.0, 1.0) < opts.threshold).float().mean())
        if opts.keyframe == "adaptive" and low > opts.budget:
            # Too much changed: promote this frame to a keyframe, reusing its stages 1-2 and projections.
            x1, x2 = current.maps[1], current.maps[2]
            x3 = self.backbone.forward_stage(2, x2)
            x4 = self.backbone.forward_stage(3, x3)
            logits, key = self._keyframe(head.inputs([x1, x2, x3, x4], native=current.cached_native()))
            self._key, self._key_t = key.detached(), self.t
            return logits, {**keyframe_info, "promoted": True}

        result = self._non_keyframe(key, current, similarity)
        self.last_similarity = similarity.detach()
        updated = 0.0 if result.selected is None else float(result.selected.float().mean())
        info = {
            "keyframe": False,
            "updated_fraction": updated,
            "mean_similarity": float(similarity.detach().mean()),
            "low_similarity_fraction": low,
            "promoted": False,
        }
        return result.logits, info

    # ----------------------------------------------------------------------------- training

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Losses of a clip whose frame 0 is the keyframe: images N x T x 3 x H x W, labels N x T x H' x W'.

        Returns ``loss`` = ``loss_seg`` + ``loss_bce``, and ``mask_acc``: the accuracy of
        (ŵ >= threshold) against the label-consistency mask over the valid points of all
        non-keyframes (the paper's Fig. 4; NaN without any). Every frame after the first is a
        non-keyframe of that keyframe (the adaptive schedule is an inference-time policy).
        """
        opts = self.options
        head = self.decode_head
        frames = images.shape[1]
        key_logits, key = self._keyframe(head.inputs(self.encode(images[:, 0], 4)))
        reduction = opts.loss_reduction
        seg_losses = [segmentation_loss(key_logits, labels[:, 0], reduction)]
        bce_losses: list[Tensor] = []
        similarities, targets, valids = [], [], []
        for t in range(1, frames):
            current = head.inputs(self.encode(images[:, t], 2))
            similarity = self._similarity(key, current)
            result = self._non_keyframe(key, current, similarity)
            seg_losses.append(segmentation_loss(result.logits, labels[:, t], reduction))
            target, valid = label_consistency(labels[:, 0], labels[:, t], tuple(similarity.shape[-2:]))
            w_hat = similarity.clamp(0.0, 1.0)
            bce_losses.append(focal_bce(w_hat, target, gamma=opts.gamma, valid=valid))
            similarities.append(w_hat.detach())
            targets.append(target)
            valids.append(valid)
        loss_seg = torch.stack(seg_losses).mean()
        if opts.focal and bce_losses:
            loss_bce = torch.stack(bce_losses).mean()
        else:
            loss_bce = loss_seg.new_zeros(())
        if similarities:
            mask_acc = binary_mask_accuracy(
                torch.cat(similarities), torch.cat(targets), opts.threshold, torch.cat(valids)
            )
        else:
            mask_acc = loss_seg.new_tensor(math.nan)
        return {"loss": loss_seg + loss_bce, "loss_seg": loss_seg, "loss_bce": loss_bce, "mask_acc": mask_acc}


__all__ = [
    "TFC",
    "TFCOptions",
    "cosine_similarity_map",
    "interpolate_features",
    "interpolation_weight",
    "select_points",
]
