"""MRCFA (Sun et al., ECCV 2022): SegFormer plus multi-resolution cross-frame affinity over references.

Rebuilt from the released code's head
``SegFormerHead_clips2_resize_1_8_hypercorrelation2_topk_ensemble4``. For a target frame t and
references at t-9, t-6, t-3 (target last):

1. the SegFormer MLP decoder gives each frame's fused feature z (E channels at 1/4) and its
   per-frame logits;
2. affinities per level (no 1/sqrt(d) scaling): target queries ``q3(x^4)``, ``q2(x^3)``,
   ``q1(x^2)`` at their native 1/32, 1/16, 1/8 grids against reference keys brought to 1/32:
   ``k3(x^4)``, ``k2(sr3(x^3))``, ``k1(sr2(x^2))``;
3. selective token masking: each reference token scores the sum of its top-5 affinities over the
   target's 1/32 grid; the top ``floor(ratio * N_ref)`` tokens are kept (ratio 0.8 on B0, 0.5
   otherwise) for every level and for the values;
4. each kept token's affinity map over the target grid is refined by small convs + GroupNorm(1)
   + ReLU per level, and the levels are merged coarse to fine (bilinear, align_corners=True) into
   one map at 1/8 (``hypercorre_module.hpn``); softmax over the kept tokens;
5. values are ``sr1_feat(z at 1/8)`` tokens at 1/32; each reference's aggregate goes through
   its own classifier ``deco{r}`` and ``deco4`` classifies mean(aggregates) + z_t at 1/8. The
   prediction is ``deco4``'s; frames whose clip has fewer than 4 frames (0, 1, 2) fall back to
   the per-frame SegFormer logits.

Streaming: everything that a reference contributes (its keys at 1/32 and value tokens) is a
function of that frame alone, so with ``cache=True`` each frame runs the backbone once and its
keys/values enter a ring buffer of the last 9 frames; ``cache=False`` keeps the last 9 *images*
and reruns the backbone and decoder on all frames of the clip for every target, as the released
code does. Both give the same logits. Test clips follow
:meth:`vssbench.data.samplers.ReferenceClipSampler.test_clip` (hard-coded clips for targets 3..8).

Module names follow the official head, so an official mmseg checkpoint (``backbone.*``,
``decode_head.*``) loads strictly with the SegFormer loader (the dead ``conv_seg`` is dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vssbench.data.samplers import ReferenceClipSampler
from vssbench.methods.base import BaseOptions, MethodInfo, VideoSegmenter, register
from vssbench.models.decoder import SegFormerHead, resize_logits
from vssbench.models.losses import check_loss_reduction, segmentation_loss
from vssbench.models.mit import MixTransformer

#: Number of reference frames (the official ``num_clips`` is 4 with the target).
NUM_REFERENCES = 3
#: Reference tokens are scored by the sum of their top-k affinities over target positions.
TOP_K = 5
#: Token-masking ratio of the official configs: 0.8 on B0, 0.5 on every other backbone.
MASK_RATIOS: dict[str, float] = {"b0": 0.8}
DEFAULT_MASK_RATIO = 0.5
#: How many past frames a target can reach back to (offset -9).
HISTORY = 9


@dataclass(frozen=True)
class MRCFAOptions(BaseOptions):
    """Options of MRCFA.

    ``cache``: keep each past frame's reference keys/values (one backbone run per frame) instead
    of recomputing the backbone on every clip frame per target (the released code); same logits.
    ``mask_ratio``: share of reference tokens kept by selective token masking; ``None`` is the
    official value of the backbone (0.8 for B0, 0.5 otherwise). ``interval``: only the window
    over which GMACs and FPS are averaged (every frame is a full step). ``decoder_dim``: width E
    of the MLP decoder and the value tokens (256 in every official config). ``drop_path_rate``:
    stochastic depth of the encoder (training only). ``loss_reduction``: how every cross-entropy
    term is averaged, ``mmseg`` (the released code: over all pixels, ignored ones counting as 0) or
    ``valid`` (over the labelled pixels only).
    """

    cache: bool = True
    mask_ratio: float | None = None
    loss_reduction: Literal["mmseg", "valid"] = "mmseg"

    def __post_init__(self) -> None:
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")
        check_loss_reduction(self.loss_reduction)
        super().__post_init__()


class PlaneConv(nn.Module):
    """A 2-D conv over the target grid of affinity maps (the official ``CenterPivotConv4d_half``,
    whose only live part is ``conv2``); 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        """(B·R·s) x C_in x h x w -> (B·R·s) x C_out x h x w."""
        return self.conv2(x)


def _building_block(in_channels: int, out_channels: Sequence[int], kernels: Sequence[int]) -> nn.Sequential:
    """[PlaneConv, GroupNorm(1), ReLU] per entry (indices 3j, 3j+1, 3j+2 as in the official head)."""
    layers: list[nn.Module] = []
    for j, (out, kernel) in enumerate(zip(out_channels, kernels)):
        layers += [
            PlaneConv(in_channels if j == 0 else out_channels[j - 1], out, kernel),
            nn.GroupNorm(1, out),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


class AffinityRefiner(nn.Module):
    """Single-scale refinement per level and coarse-to-fine aggregation of affinity maps.

    B1 uses two convs per level (1 -> 1 -> 2 channels) and two-conv mixing blocks ending in one
    channel; every other backbone one 1 -> 1 conv each (as released).
    """

    def __init__(self, backbone: str) -> None:
        super().__init__()
        if backbone == "b1":
            self.encoder_layer4 = _building_block(1, [1, 2], [3, 3])
            self.encoder_layer3 = _building_block(1, [1, 2], [3, 3])
            self.encoder_layer2 = _building_block(1, [1, 2], [5, 3])
            self.encoder_layer4to3 = _building_block(2, [2, 2], [3, 3])
            self.encoder_layer3to2 = _building_block(2, [2, 1], [3, 3])
        else:
            self.encoder_layer4 = _building_block(1, [1], [3])
            self.encoder_layer3 = _building_block(1, [1], [5])
            self.encoder_layer2 = _building_block(1, [1], [5])
            self.encoder_layer4to3 = _building_block(1, [1], [3])
            self.encoder_layer3to2 = _building_block(1, [1], [3])

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        """Affinity maps [at 1/32, 1/16, 1/8 of the target], each (B·R·s) x 1 x h x w -> one map at 1/8."""
        a4 = self.encoder_layer4(maps[0])
        a3 = self.encoder_layer3(maps[1])
        a2 = self.encoder_layer2(maps[2])
        a43 = self.encoder_layer4to3(
            F.interpolate(a4, a3.shape[-2:], mode="bilinear", align_corners=True) + a3
        )
        return self.encoder_layer3to2(
            F.interpolate(a43, a2.shape[-2:], mode="bilinear", align_corners=True) + a2
        )


class CrossFrameAffinity(nn.Module):
    """Query/key projections per level and the affinity refiner (the official ``hypercorre_module``).

    ``q1/k1`` act on x^2, ``q2/k2`` on x^3, ``q3/k3`` on x^4 (Linear C_l -> C_l with bias).
    """

    def __init__(self, in_channels: Sequence[int], backbone: str) -> None:
        super().__init__()
        for index, channels in enumerate(in_channels[1:], start=1):
            setattr(self, f"q{index}", nn.Linear(channels, channels))
            setattr(self, f"k{index}", nn.Linear(channels, channels))
        self.hpn = AffinityRefiner(backbone)


class ClassDecoder(nn.Module):
    """Dropout2d then a 1x1 conv to classes (the official ``small_decoder2``: ``smalldecoder.1``)."""

    def __init__(self, embed_dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.smalldecoder = nn.Sequential(
            nn.Dropout2d(dropout), nn.Conv2d(embed_dim, num_classes, kernel_size=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.smalldecoder(x)


def _tokens(x: Tensor) -> Tensor:
    """B x C x h x w -> B x (h·w) x C."""
    return x.flatten(2).transpose(1, 2)


def _strided(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A stride-s conv with kernel s, zero-padding bottom/right to a multiple of s first.

    At the official sizes (multiples of 32) nothing is padded; otherwise the output grid is
    ceil(h/s) x ceil(w/s), the size of MiT's 1/32 map, so reference levels always line up.
    """
    stride = conv.stride[0]
    pad_h, pad_w = (-x.shape[-2]) % stride, (-x.shape[-1]) % stride
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return conv(x)


class MRCFAHead(SegFormerHead):
    """The SegFormer MLP decoder plus MRCFA's temporal modules (official names and shapes).

    ``in_channels`` are the MiT widths C_1..C_4, ``backbone`` picks the refiner layout and
    ``mask_ratio`` the share of reference tokens kept.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        backbone: str,
        embed_dim: int = 256,
        num_classes: int = 124,
        mask_ratio: float = DEFAULT_MASK_RATIO,
    ) -> None:
        super().__init__(in_channels, embed_dim, num_classes)
        c2, c3 = self.in_channels[1], self.in_channels[2]
        self.mask_ratio = mask_ratio
        for r in range(1, NUM_REFERENCES + 2):
            setattr(self, f"deco{r}", ClassDecoder(embed_dim, num_classes))
        self.hypercorre_module = CrossFrameAffinity(self.in_channels, backbone)
        self.sr2 = nn.Conv2d(c2, c2, kernel_size=4, stride=4)
        self.sr3 = nn.Conv2d(c3, c3, kernel_size=2, stride=2)
        self.sr1_feat = nn.Conv2d(embed_dim, embed_dim, kernel_size=4, stride=4)

    def fused(self, feats: Sequence[Tensor]) -> Tensor:
        """z: the fused E-channel feature at 1/4 of frames with encoder maps ``feats``."""
        return self.fuse(self.project(feats))

    def reference_tokens(self, feats: Sequence[Tensor], z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """What a frame contributes as a reference: keys and values at 1/32, each B x n x C.

        Returns (k1(sr2(x^2)), k2(sr3(x^3)), k3(x^4), sr1_feat(z at 1/8)) with n = h_32·w_32.
        """
        m = self.hypercorre_module
        k1 = m.k1(_tokens(_strided(self.sr2, feats[1])))
        k2 = m.k2(_tokens(_strided(self.sr3, feats[2])))
        k3 = m.k3(_tokens(feats[3]))
        v = _tokens(_strided(self.sr1_feat, resize_logits(z, feats[1].shape[-2:])))
        return k1, k2, k3, v

    def kept_tokens(self, num_target: int, num_reference: int) -> tuple[int, int]:
        """(k, s): top-k over ``num_target`` positions, s of ``num_reference`` tokens kept.

        Both clamp to what small maps hold: k <= num_target, 1 <= s (official: k=5, s=floor(ratio·n)).
        """
        return min(TOP_K, num_target), max(1, int(num_reference * self.mask_ratio))

    def temporal(
        self, feats: Sequence[Tensor], z: Tensor, refs: Sequence[Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        """The four outputs (o1, o2, o3, o4) at 1/4 for a target, and the kept token indices.

        ``feats`` are the target's encoder maps (B x C_l x h_l x w_l), ``z`` its fused feature,
        ``refs`` = (K1, K2, K3, V), each B x R x n x C (:meth:`reference_tokens` of the R=3
        references stacked, oldest first). The indices are B x R x s, ascending.
        """
        m = self.hypercorre_module
        k1, k2, k3, v = refs
        b, r, n, _ = k3.shape
        if r != NUM_REFERENCES:
            raise ValueError(f"MRCFA needs {NUM_REFERENCES} reference frames, got {r}")
        x2, x3, x4 = feats[1], feats[2], feats[3]
        q3 = m.q3(_tokens(x4)).unsqueeze(1)  # B x 1 x HW_32 x C4
        affinity4 = torch.matmul(q3, k3.transpose(2, 3))  # B x R x HW_32 x n
        k, s = self.kept_tokens(affinity4.shape[2], n)
        score = affinity4.topk(k, dim=2).values.sum(dim=2)  # B x R x n
        # Kept tokens in ascending index order (the official boolean-mask selection keeps that order).
        keep = score.topk(s, dim=2).indices.sort(dim=2).values  # B x R x s
        affinity4 = torch.take_along_dim(affinity4, keep.unsqueeze(2), dim=3)
        k2_kept = torch.take_along_dim(k2, keep.unsqueeze(3), dim=2)
        k1_kept = torch.take_along_dim(k1, keep.unsqueeze(3), dim=2)
        affinity3 = torch.matmul(m.q2(_tokens(x3)).unsqueeze(1), k2_kept.transpose(2, 3))  # B x R x HW_16 x s
        affinity2 = torch.matmul(m.q1(_tokens(x2)).unsqueeze(1), k1_kept.transpose(2, 3))  # B x R x HW_8 x s
        maps = [
            a.transpose(2, 3).reshape(b * r * s, 1, *x.shape[-2:])
            for a, x in ((affinity4, x4), (affinity3, x3), (affinity2, x2))
        ]
        h8, w8 = x2.shape[-2:]
        attn = m.hpn(maps).reshape(b, r, s, h8 * w8).transpose(2, 3).softmax(dim=-1)  # B x R x HW_8 x s
        values = torch.take_along_dim(v, keep.unsqueeze(3), dim=2)  # B x R x s x E
        aggregated = torch.matmul(attn, values).transpose(2, 3).reshape(b, r, -1, h8, w8)
        z8 = resize_logits(z, (h8, w8))
        size = z.shape[-2:]
        outs = [resize_logits(getattr(self, f"deco{i + 1}")(aggregated[:, i]), size) for i in range(r)]
        outs.append(resize_logits(self.deco4(aggregated.mean(dim=1) + z8), size))
        return outs, keep


@register
class MRCFA(VideoSegmenter):
    """MRCFA on MiT ``backbone`` with ``num_classes`` outputs (see the module docstring).

    ``step`` returns N x num_classes x H x W logits at the input size; ``last_step_info`` holds
    the frame index, its clip (``clip``, target last), ``fallback`` (per-frame prediction) and
    ``kept_tokens`` (s per reference, 0 on fallback frames).
    """

    info = MethodInfo(
        "mrcfa",
        paper="MRCFA (Sun et al., ECCV 2022)",
        type="S",
        default_interval=4,
        size_divisor=32,
        description=(
            "SegFormer + multi-resolution cross-frame affinity to references t-9, t-6, t-3 with "
            "selective token masking; cache=true keeps reference keys/values, false recomputes the clip."
        ),
    )

    Options = MRCFAOptions
    options: MRCFAOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: MRCFAOptions | None = None
    ) -> None:
        super().__init__(options)
        self.num_classes = num_classes
        ratio = self.options.mask_ratio
        if ratio is None:
            ratio = MASK_RATIOS.get(backbone, DEFAULT_MASK_RATIO)
        self.backbone = MixTransformer(backbone, drop_path_rate=self.options.drop_path_rate)
        self.decode_head = MRCFAHead(
            self.backbone.embed_dims, backbone, self.options.decoder_dim, num_classes, mask_ratio=ratio
        )
        self.clips = ReferenceClipSampler()
        # frame index -> (k1, k2, k3, v) with cache, or -> the image without it
        self._history: dict[int, Any] = {}

    def reset_state(self) -> None:
        """Forget every cached frame."""
        self._history = {}

    def encode(self, images: Tensor) -> list[Tensor]:
        """Encoder maps [x^1..x^4] of images B x 3 x H x W."""
        return self.backbone(images)

    @property
    def steady_state_after(self) -> int:
        """From frame 9 on every reference (t-9, t-6, t-3) exists: GMACs and FPS are measured there."""
        return -min(self.clips.dilations)

    def state_tensors(self) -> list[Tensor]:
        """Cached reference keys/values (cache=true) or the past images (cache=false)."""
        out: list[Tensor] = []
        for entry in self._history.values():
            out.extend(entry if isinstance(entry, tuple) else (entry,))
        return out

    def _clip_forward(self, images: Tensor) -> tuple[list[Tensor], Tensor, tuple[Tensor, ...], Tensor]:
        """Backbone and decoder on every frame of clips N x T x 3 x H x W (the released computation).

        Returns the target's encoder maps and fused feature, the references' (K1, K2, K3, V)
        stacked N x (T-1) x n x C, and all frames' fused features (N·T x E x h x w).
        """
        n, t = images.shape[:2]
        feats = self.encode(images.flatten(0, 1))
        z = self.decode_head.fused(feats)
        per_clip = [f.unflatten(0, (n, t)) for f in feats]
        z_clip = z.unflatten(0, (n, t))
        tokens = self.decode_head.reference_tokens(
            [f[:, :-1].flatten(0, 1) for f in per_clip], z_clip[:, :-1].flatten(0, 1)
        )
        refs = tuple(x.unflatten(0, (n, t - 1)) for x in tokens)
        return [f[:, -1] for f in per_clip], z_clip[:, -1], refs, z

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """1/4-resolution logits of the current frame ``self.t`` and this step's diagnostics."""
        logits, info = self._predict(image)
        # Ring buffer: forget what no later target can reach (target t reaches back to t - HISTORY).
        for old in [i for i in self._history if i <= self.t - HISTORY]:
            del self._history[old]
        return logits, info

    def _predict(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        head = self.decode_head
        t = self.t
        clip = self.clips.test_clip(t, t + 1)
        temporal = len(clip) == NUM_REFERENCES + 1
        info: dict[str, Any] = {
            "keyframe": True,
            "frame": t,
            "clip": clip,
            "fallback": not temporal,
            "kept_tokens": 0,
        }
        if self.options.cache:
            feats = self.encode(image)
            z = head.fused(feats)
            # Not detached: with autograd on (the dead-parameter search) gradients reach the key and
            # value projections through the cache; at inference there is no graph to keep alive, and
            # the ring buffer bounds what is kept either way.
            self._history[t] = head.reference_tokens(feats, z)
            if not temporal:
                return head.classify(z), info
            refs = tuple(torch.stack([self._history[i][j] for i in clip[:-1]], dim=1) for j in range(4))
        else:
            self._history[t] = image
            if not temporal:
                return head.classify(head.fused(self.encode(image))), info
            frames = torch.stack([self._history[i] for i in clip], dim=1)
            feats, z, refs, _ = self._clip_forward(frames)
        outs, keep = head.temporal(feats, z, refs)
        info["kept_tokens"] = int(keep.shape[-1])
        return outs[-1], info

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Released MRCFA losses on clips [t-9, t-6, t-3, t]: images N x 4 x 3 x H x W,
        labels N x 4 x H' x W'.

        ``loss = 0.5 * loss_frame + loss_temporal``: ``loss_frame`` is the CE of the per-frame
        predictions of all 4 frames against their own labels; ``loss_temporal`` the CE of the
        four outputs o1..o4 stacked, each against the *target's* label (so the mean of
        ``loss_o1``..``loss_o4``). Every CE is averaged as ``loss_reduction`` says (``mmseg``, the
        released one, by default). ``loss_seg`` equals ``loss`` (the released name).
        """
        n, t = images.shape[:2]
        if t != NUM_REFERENCES + 1:
            raise ValueError(
                f"MRCFA trains on clips of {NUM_REFERENCES + 1} frames (t-9, t-6, t-3, t), got {t}"
            )
        feats, z_target, refs, z = self._clip_forward(images)
        frame_logits = self.decode_head.classify(z)
        reduction = self.options.loss_reduction
        loss_frame = segmentation_loss(frame_logits, labels.flatten(0, 1), reduction)
        outs, _ = self.decode_head.temporal(feats, z_target, refs)
        target = labels[:, -1]
        loss_temporal = segmentation_loss(torch.cat(outs, dim=0), target.repeat(len(outs), 1, 1), reduction)
        loss = 0.5 * loss_frame + loss_temporal
        result = {"loss": loss, "loss_seg": loss, "loss_frame": loss_frame, "loss_temporal": loss_temporal}
        for i, out in enumerate(outs, start=1):
            result[f"loss_o{i}"] = segmentation_loss(out, target, reduction).detach()
        return result

    def parameter_groups(self) -> dict[str, nn.Module]:
        """Encoder (MiT) and decoder (MLP decoder + MRCFA head) for counts and the head lr."""
        return {"encoder": self.backbone, "decoder": self.decode_head}

    def train_sampler(self) -> ReferenceClipSampler:
        """Clips [t-9, t-6, t-3, t] on a video reversed with probability 0.5 (the released sampler)."""
        return ReferenceClipSampler()


__all__ = ["MRCFA", "MRCFAHead", "MRCFAOptions"]
