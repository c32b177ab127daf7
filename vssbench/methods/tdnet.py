"""TDNet (Hu et al., CVPR 2020) on MiT: the temporally distributed efficiency baseline of Table 1.

The TFC paper compares against "SegFormer + TDNet" (MiT-B0, type E, 5.8M parameters) and removes
TDNet's knowledge distillation for a fair comparison. No MiT version exists upstream; this module
maps the original TD4-PSP18 (github feinanshan/TDNet, ``Training/``: model
``ptsemseg/models/td4_psp/td4_psp.py``, loss ``ptsemseg/loss/loss.py``, clips
``ptsemseg/loader/cityscapes_loader.py``, loop ``train.py``) onto MiT and trains it as that code does.

The original (ResNet/PSP, Cityscapes)
    N sub-networks (paths); frame tau is processed by path ``tau mod N`` only. Each path encodes
    its feature into a query and key (1x1 conv C->64 + BN + leaky ReLU, 1x1 conv 64->64) and a
    value (1x1 conv C->C); the encodings of previous frames are spatially subsampled first. A FIFO
    holds the (q, k, v) of the last N-1 frames. The attention propagation module (APM) runs from
    the oldest cached frame to the current one::

        v' = Att(K_{t-3}, V_{t-3}, Q_{t-2})
        v' = Att(K_{t-2}, v' + V_{t-2}, Q_{t-1})
        out = Att(K_{t-1}, v' + V_{t-1}, Q_t)        # Q_t at full feature resolution

    with Att = softmax(Q K^T / sqrt(64)) V (dropout 0.1), then a 1x1 conv C->C and dropout 0.1,
    one Att module per (path, hop). Prediction = FCNHead_p(LayerNorm_p(out + V_t)); the "sub"
    prediction is FCNHead_p(LayerNorm_p(V_t)). Training loss on the target (last) frame, every
    term an OhemCELoss2D: OHEM(full) + 0.5 OHEM(sub) + 0.1 OHEM(aux_p(c3 of the target)) +
    distillation from a PSPNet-101 teacher.

This mapping (B0, 124 classes: 5,808,384 parameters = the TFC paper's 5.8M; 5,557,328 without
the auxiliary heads, ``aux_weight=0``)
    * Sub-network = one MiT encoder + the SegFormer MLP decoder up to its fused feature z
      (E = ``decoder_dim`` = 256), **shared by all paths**. What each path owns is its encoding
      (q/k/v), its N-1 Att modules, its norm, its FCN head and its auxiliary FCN head. Four
      independent MiT-B0s would cost ~17M, far from the paper's 5.8M, so the TFC reimplementation
      cannot have used them. Every frame therefore runs the whole MiT and decoder, plus its path's
      share, and TDNet costs more per frame than SegFormer, as in the paper's Table 1 (14.1 vs
      37.5 FPS).
    * Resolution: the MLP decoder is SegFormer's, unchanged (its own resizes keep SegFormer's
      align_corners=False), up to z at 1/4 (it follows the harness's ``--decoder
      folded|reference`` like every SegFormer head); z is then bilinearly resized to
      1/``feature_stride`` (default 8: TDNet's output stride, and where CFFM/MRCFA attend), where
      the APM and the head run. ``feature_stride=4`` runs them at 1/4 (the attention over 16x more
      query-key pairs).
    * Key/value subsampling of cached frames: stride ``kv_stride_train`` = 3 in training (the
      original training code's ``MaxPool2d(1, stride=3)``, also what its in-training validation
      used) and ``kv_stride`` = 4 at test time (the original testing code). Subsampling keeps
      every stride-th position in both directions, which is what MaxPool2d(kernel 1, stride s)
      computes.
    * Norm (``norm``): the original's ``Layer_Norm([97, 193])`` (``nn.LayerNorm`` over the last
      two dims, eps 1e-5) normalises each channel of each sample over its spatial map, with a
      97x193 elementwise affine shared by the channels. That fixed shape breaks every other
      resolution (TDNet#11, #55), and a position-specific (HxW) affine cannot be kept at any
      input size. ``"spatial"`` (default) keeps the normalisation itself (per sample and channel
      over HxW, biased variance, eps 1e-5: ``nn.GroupNorm(E, E)``) with a per-channel affine
      (2E parameters) instead of the per-position one. ``"channel"`` is the earlier choice, a
      LayerNorm over the channels at each position (also 2E parameters).
    * Head: FCNHead(E, classes, chn_down 4): 3x3 conv E->E/4 (no bias) + BN + ReLU +
      Dropout2d(``dropout``) + 1x1 conv; one per path. SegFormer's ``linear_pred`` is not built.
    * Auxiliary heads (``aux_weight``, default 0.1 as the original; 0 builds none): one FCNHead
      per path (the original's ``auxlayer1..4``, chn_down 4) on the target frame's MiT stage-3
      map x^3 (160 channels on B0, 1/16) where the original uses ResNet c3 (dilated, 1/8). They
      are used in training only: dead at inference, so the harness's dead-parameter search lists
      them (``params_inference`` excludes them; ``params`` is the 5.81M).
    * Initialisation: the convs TDNet adds (the encodings' convs, each Att's C->C map, the FCN
      and auxiliary heads' convs) are ``kaiming_normal_(a=1)`` with zero bias, BN weight 1 and bias
      0, the original's ``init_weight`` rule. The original then loads its backbones, PSP modules,
      path heads and auxiliary heads from a trained PSPNet-18 (``pretrained_init``); here the
      encoder starts from ImageNet MiT (``--init``) and the decoder and heads from that rule.
    * Attention = ``F.scaled_dot_product_attention`` (scale 1/sqrt(``key_dim``), attention
      dropout ``dropout`` in training); the per-hop 1x1 conv is a Linear on tokens (same weights).
    * Start of a video (``warmup``): the original predicts from V_t alone until the FIFO holds
      N-1 frames (``"current"``, the default). ``"partial"`` runs the APM over the frames cached so
      far instead, with the path's last ``len(FIFO)`` Att modules.
    * Logits (test: :meth:`TDNet.segment`; training: every loss term) and the resize of z are
      bilinear with align_corners=True, as the original's ``up_kwargs``; ``segment`` returns
      logits at the input size, so the base class's resize (align_corners=False) is a no-op.
    * Training (:meth:`TDNet.forward_train`): a clip of N frames, target last, whose consecutive
      frames are 1 or 2 apart, each gap drawn independently and uniformly as the original's
      loader does (``max_gap`` = 2; :class:`~vssbench.data.samplers.ConsecutiveClipSampler`).
      The original's target is a labelled Cityscapes frame (the 20th of a 30-frame snippet), so
      every gap draw fits; here the target is uniform over the frames where every draw fits, and a
      video shorter than (N-1) x ``max_gap`` + 1 frames (7) is skipped (never shortened gaps).
      The target's path is the training iteration's: ``(train_iteration + 1) mod N`` (the
      original's ``pos_id = cnt_iter % N`` with its 1-based ``cnt_iter``); the trainer sets
      :attr:`~vssbench.methods.base.VideoSegmenter.train_iteration` before every step, so a
      resumed run continues the rotation, and ``forward_train`` advances it by one afterwards, so
      a loop that does not set it still rotates. Earlier frames use paths p-1, p-2, ... as at test
      time. Only the target is supervised, as in the original. Loss (``loss``, default ``"ohem"``:
      :func:`~vssbench.models.losses.ohem_cross_entropy`, the original's OhemCELoss2D with
      threshold 0.7 and at least batch x crop area / 16 pixels; ``"ce"``: the mean CE over
      labelled pixels, the original's SegmentationLosses) on logits upsampled to the label size:
      L(full) + ``sub_loss_weight`` x L(sub) + ``aux_weight`` x L(aux). **No distillation** (the
      TFC paper removed it; there is no ``distill`` option).

What still differs from the original: the shared MiT + MLP decoder instead of four ResNet-18 +
half-PSP sub-networks; the norm's per-channel instead of per-position affine; the auxiliary
heads on MiT x^3 at 1/16 (ResNet c3 at 1/8); no initialisation from a trained PSPNet; no
distillation; the target of a clip drawn uniformly from a video's frames (VSPW labels every
frame) rather than Cityscapes' fixed labelled frame; ignore label 255 (the Cityscapes loader's
250); the MLP decoder's internal resizes keep SegFormer's align_corners=False; the optimizer,
schedule and augmentation are the trainer's recipes (``vssbench train``), not the original's.

Cost accounting. Every frame costs the same once the FIFO is full; the first N-1 frames of a
video are cheaper (no APM with ``warmup="current"``), so ``steady_state_after`` is N-1 and the
harness measures GMACs and FPS on the ``interval`` frames after them (``interval`` must be a
multiple of ``num_paths``, default one cycle, so that they cover whole cycles). For the same
reason a dead-parameter search over only the first cycle after ``reset()`` lists the Att modules
of paths that never had a full FIFO in it, the key conv of path N-1 (its cache is first read at
frame N) and the query conv of path 0 (frame 0 is only ever the oldest cached frame); all are
used within two cycles. The auxiliary heads are always listed (training only). The FIFO is not
detached, so the search sees the caching convs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vssbench.data.samplers import ConsecutiveClipSampler
from vssbench.methods.base import BaseOptions, MethodInfo, VideoSegmenter, register
from vssbench.models.decoder import SegFormerHead
from vssbench.models.losses import ohem_cross_entropy, segmentation_loss
from vssbench.models.mit import MixTransformer

#: A cached frame's encodings as token tensors: (query B x n x d or None, key B x n x d, value B x n x E).
Encoded = tuple[Tensor | None, Tensor, Tensor]

#: The original's OhemCELoss2D: keep pixels whose true-class probability is below 0.7, at least
#: 1/16 of the batch's pixels (``n_min`` = images per GPU x crop area // 16).
OHEM_THRESH = 0.7
OHEM_MIN_KEPT_DIVISOR = 16


@dataclass(frozen=True)
class TDNetOptions(BaseOptions):
    """Options of TDNet on MiT (every one settable with ``--set key=value``).

    ``num_paths``: number of sub-networks N (4 = TD4, 2 = TD2); frame t uses path ``t mod N``,
    the FIFO holds N-1 frames and each path has N-1 Att modules. ``interval``: the window over
    which the harness averages GMACs and FPS; must be a multiple of ``num_paths`` so that it
    covers whole cycles (default: one cycle). ``kv_stride``: spatial subsampling of cached
    frames' q/k/v at test time (4, the original testing code); ``kv_stride_train``: the same in
    :meth:`TDNet.forward_train` (3, the original training code). ``key_dim``: query/key width
    (64). ``feature_stride``: resolution of z, the APM and the head, 8 (1/8 of the input) or 4.
    ``warmup``: prediction while the FIFO is not yet full, ``"current"`` (V_t only, as the
    original) or ``"partial"`` (APM over the frames cached so far). ``decoder_dim``: width E of
    the MLP decoder's fused feature, the value and the head input (256). ``dropout``: rate of the
    attention weights, each Att output and the heads' Dropout2d (0.1 as the original).
    ``norm``: ``"spatial"`` (each channel over its HxW map, per-channel affine: the original's
    LayerNorm([H, W]) without its fixed shape) or ``"channel"`` (LayerNorm over the channels at
    each position). ``loss``: ``"ohem"`` (the original's OhemCELoss2D) or ``"ce"`` (mean CE over
    labelled pixels), for every term. ``sub_loss_weight``: weight of L(sub) (0.5).
    ``aux_weight``: weight of the auxiliary heads' L(aux) on x^3 (0.1; 0 builds no auxiliary
    head). ``max_gap``: training clip frames are 1..``max_gap`` apart, each gap uniform (2 as the
    original; 1 = consecutive frames). ``drop_path_rate``: stochastic depth of the MiT encoder
    (training only). There is no distillation option: the TFC paper's TDNet is trained without it.
    """

    num_paths: int = 4
    kv_stride: int = 4
    kv_stride_train: int = 3
    key_dim: int = 64
    feature_stride: Literal[4, 8] = 8
    warmup: Literal["current", "partial"] = "current"
    dropout: float = 0.1
    norm: Literal["spatial", "channel"] = "spatial"
    loss: Literal["ohem", "ce"] = "ohem"
    sub_loss_weight: float = 0.5
    aux_weight: float = 0.1
    max_gap: int = 2

    def __post_init__(self) -> None:
        if self.num_paths < 2:
            raise ValueError(
                f"num_paths must be >= 2 (one path has nothing to propagate), got {self.num_paths}"
            )
        if self.interval < 1 or self.interval % self.num_paths:
            raise ValueError(
                f"interval must be a positive multiple of num_paths ({self.num_paths}) so that GMACs and FPS "
                f"cover whole cycles, got {self.interval}; pass --interval {self.num_paths}"
            )
        if self.kv_stride < 1 or self.kv_stride_train < 1:
            raise ValueError(
                f"kv_stride and kv_stride_train must be >= 1, got {self.kv_stride}, {self.kv_stride_train}"
            )
        if self.key_dim < 1 or self.decoder_dim < 4:
            raise ValueError(
                f"key_dim must be >= 1 and decoder_dim >= 4, got {self.key_dim}, {self.decoder_dim}"
            )
        if self.feature_stride not in (4, 8):
            raise ValueError(f"feature_stride must be 4 or 8, got {self.feature_stride}")
        if self.warmup not in ("current", "partial"):
            raise ValueError(f"warmup must be 'current' or 'partial', got {self.warmup!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in ("spatial", "channel"):
            raise ValueError(f"norm must be 'spatial' or 'channel', got {self.norm!r}")
        if self.loss not in ("ohem", "ce"):
            raise ValueError(f"loss must be 'ohem' or 'ce', got {self.loss!r}")
        if self.sub_loss_weight < 0.0:
            raise ValueError(f"sub_loss_weight must be >= 0, got {self.sub_loss_weight}")
        if self.aux_weight < 0.0:
            raise ValueError(f"aux_weight must be >= 0 (0: no auxiliary heads), got {self.aux_weight}")
        if self.max_gap < 1:
            raise ValueError(f"max_gap must be >= 1 (1: consecutive frames), got {self.max_gap}")
        super().__post_init__()


def _tokens(x: Tensor) -> Tensor:
    """B x C x h x w -> B x (h*w) x C."""
    return x.flatten(2).transpose(1, 2)


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with align_corners=True (the original's ``up_kwargs``); ``x`` itself at ``size``."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _init_conv(layer: nn.Conv2d | nn.Linear) -> None:
    """The original's ``init_weight``: kaiming_normal_(a=1) weight, zero bias."""
    nn.init.kaiming_normal_(layer.weight, a=1)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class FeatureDecoder(SegFormerHead):
    """The SegFormer MLP decoder up to its fused feature z: a :class:`SegFormerHead` without classifier.

    Same module names (``linear_c{i}.proj``, ``linear_fuse.conv/bn``), so a SegFormer decoder's
    weights load into it (minus ``linear_pred``), and the same ``decoder_mode`` switch.
    """

    def __init__(self, in_channels: Sequence[int], embed_dim: int) -> None:
        super().__init__(in_channels, embed_dim, num_classes=1)
        # TDNet classifies with its per-path FCN heads: SegFormer's classifier would be dead weight.
        del self.linear_pred, self.dropout

    def classify(self, z: Tensor) -> Tensor:
        raise TypeError("FeatureDecoder has no classifier; TDNet's per-path heads classify z")

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """z at 1/4 resolution (B x E x h x w) from encoder maps [x^1..x^4], in the current decoder mode."""
        return self.fused(feats)


class Encoding(nn.Module):
    """One path's query, key (C -> d: conv + BN + leaky ReLU, conv d -> d) and value (conv C -> C)."""

    def __init__(self, channels: int, key_dim: int) -> None:
        super().__init__()

        def qk() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, key_dim, 1),
                nn.BatchNorm2d(key_dim),
                nn.LeakyReLU(),
                nn.Conv2d(key_dim, key_dim, 1),
            )

        self.query = qk()
        self.key = qk()
        self.value = nn.Conv2d(channels, channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _init_conv(m)

    def current(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The current frame's query tokens B x hw x d and value map B x C x h x w (full resolution)."""
        return _tokens(self.query(z)), self.value(z)

    def cached(self, z: Tensor, stride: int, with_query: bool = True) -> Encoded:
        """(q, k, v) tokens of ``z`` subsampled by ``stride`` (every stride-th row and column).

        ``with_query=False`` skips the query (the oldest frame of a clip never asks).
        """
        z = z[:, :, ::stride, ::stride]
        query = _tokens(self.query(z)) if with_query else None
        return query, _tokens(self.key(z)), _tokens(self.value(z))


class PropagationHop(nn.Module):
    """One Att of the APM: softmax(Q K^T / sqrt(d)) V with attention dropout, then a C -> C linear
    and dropout."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.attn_dropout = dropout
        self.fc = nn.Linear(channels, channels)
        self.dropout = nn.Dropout(dropout)
        _init_conv(self.fc)

    def forward(self, key: Tensor, value: Tensor, query: Tensor) -> Tensor:
        """Tokens B x Nq x C for queries B x Nq x d over keys B x Nk x d and values B x Nk x C."""
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=p)
        return self.dropout(self.fc(out))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each position of a B x C x H x W map (any H, W): ``norm="channel"``."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def spatial_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """Each channel of each sample normalised over its H x W map, then a per-channel affine
    (``norm="spatial"``): the original's ``LayerNorm([H, W])`` (eps 1e-5) at any size, except
    that its per-position affine becomes per-channel (2C parameters)."""
    return nn.GroupNorm(channels, channels, eps=eps)


class FCNHead(nn.Module):
    """3x3 conv C -> C/4 (no bias) + BN + ReLU + Dropout2d + 1x1 conv to classes (the original's FCNHead).

    Convs initialised as the original (kaiming_normal_ with a=1, zero bias).
    """

    def __init__(self, channels: int, num_classes: int, dropout: float, channel_down: int = 4) -> None:
        super().__init__()
        inner = channels // channel_down
        self.conv = nn.Conv2d(channels, inner, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(inner)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(inner, num_classes, 1)
        _init_conv(self.conv)
        _init_conv(self.classifier)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.act(self.bn(self.conv(x)))))


@register
class TDNet(VideoSegmenter):
    """TDNet on MiT ``backbone``: a shared MiT + MLP decoder, N paths of encodings, APM and heads.

    ``step`` runs frame t through path ``t mod N``, the APM over the FIFO of the last N-1 frames'
    encodings and the path's head; see the module docstring for every design choice.
    """

    info = MethodInfo(
        "tdnet",
        paper="TDNet (Hu et al., CVPR 2020), reimplemented on MiT without distillation as in the TFC paper",
        type="E",
        default_interval=4,
        description="Frame t uses path t mod 4; attention propagation over the last 3 frames' cached q/k/v.",
    )

    Options = TDNetOptions
    options: TDNetOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: TDNetOptions | None = None
    ) -> None:
        super().__init__(options)
        o = self.options
        self.num_classes = num_classes
        self.num_paths = o.num_paths
        self.backbone = MixTransformer(backbone, drop_path_rate=o.drop_path_rate)
        self.decode_head = FeatureDecoder(self.backbone.embed_dims, o.decoder_dim)
        self.encodings = nn.ModuleList(Encoding(o.decoder_dim, o.key_dim) for _ in range(o.num_paths))
        # propagation[p][j]: path p's hop j (j = 0 leaves the oldest cached frame, N-2 reaches frame t).
        self.propagation = nn.ModuleList(
            nn.ModuleList(PropagationHop(o.decoder_dim, o.dropout) for _ in range(o.num_paths - 1))
            for _ in range(o.num_paths)
        )
        norm = spatial_norm if o.norm == "spatial" else ChannelLayerNorm
        self.norms = nn.ModuleList(norm(o.decoder_dim) for _ in range(o.num_paths))
        self.heads = nn.ModuleList(FCNHead(o.decoder_dim, num_classes, o.dropout) for _ in range(o.num_paths))
        # Training only (on the target frame's x^3); empty without an auxiliary loss.
        aux_channels = self.backbone.embed_dims[2]
        self.aux_heads = nn.ModuleList(
            FCNHead(aux_channels, num_classes, o.dropout) for _ in range(o.num_paths if o.aux_weight else 0)
        )
        self._fifo: list[Encoded] = []

    # ------------------------------------------------------------------ shared pieces

    def _fused(self, feats: Sequence[Tensor]) -> Tensor:
        """z at 1/``feature_stride`` from encoder maps [x^1..x^4]: the MLP decoder's 1/4 map resized
        (bilinear, align_corners=True) to the size of MiT's 1/``feature_stride`` map."""
        level = 0 if self.options.feature_stride == 4 else 1
        return _resize(self.decode_head(feats), feats[level].shape[-2:])

    def features(self, images: Tensor) -> Tensor:
        """z: the fused E-channel feature at 1/``feature_stride`` of images B x 3 x H x W (ceil sizes)."""
        return self._fused(self.backbone(images))

    def propagate(self, path: int, cache: Sequence[Encoded], query: Tensor) -> Tensor:
        """The APM of ``path``: hops from the oldest of ``cache`` (oldest first) to ``query`` (frame t).

        Uses the path's last ``len(cache)`` Att modules; returns tokens B x hw x E at the query's
        positions. The value passed on from hop to hop is v' + V of the frame it reached.
        """
        hops = self.propagation[path][len(self.propagation[path]) - len(cache) :]
        carried: Tensor | None = None
        for j, (hop, (_, key, value)) in enumerate(zip(hops, cache)):
            target = cache[j + 1][0] if j + 1 < len(cache) else query
            carried = hop(key, value if carried is None else carried + value, target)
        if carried is None:
            raise ValueError("propagate needs at least one cached frame")
        return carried

    def predict(self, path: int, z: Tensor, cache: Sequence[Encoded]) -> tuple[Tensor | None, Tensor]:
        """(full, sub) logits at z's resolution for the current frame's feature ``z`` on ``path``.

        full = head(norm(APM(cache -> q_t) + V_t)), None when ``cache`` is empty; sub = head(norm(V_t)).
        """
        query, value = self.encodings[path].current(z)
        norm, head = self.norms[path], self.heads[path]
        sub = head(norm(value))
        if not cache:
            return None, sub
        b, c, h, w = value.shape
        out = self.propagate(path, cache, query).transpose(1, 2).reshape(b, c, h, w)
        return head(norm(out + value)), sub

    # ------------------------------------------------------------------ online protocol

    def reset_state(self) -> None:
        """Empty the FIFO."""
        self._fifo = []

    @property
    def steady_state_after(self) -> int:
        """From frame ``num_paths - 1`` on the FIFO is full: GMACs and FPS are measured there."""
        return self.options.num_paths - 1

    def state_tensors(self) -> list[Tensor]:
        """The FIFO's cached (q, k, v) tokens, oldest frame first."""
        return [x for entry in self._fifo for x in entry if x is not None]

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Logits at the input size (align_corners=True) of frame ``self.t`` (path ``t mod N``) and
        its diagnostics."""
        path = self.t % self.num_paths
        z = self.features(image)
        full = len(self._fifo) == self.num_paths - 1
        cache = self._fifo if full or self.options.warmup == "partial" else []
        logits, sub = self.predict(path, z, cache)
        if logits is None:
            logits = sub
        # Not detached: an entry's graph (if grad is on) reaches back to its own frame only, so
        # memory stays bounded by the FIFO, and autograd-based tools (the dead-parameter search)
        # see the caching convs as used.
        entry = self.encodings[path].cached(z, self.options.kv_stride)
        self._fifo = [*self._fifo, entry][-(self.num_paths - 1) :]
        return _resize(logits, image.shape[-2:]), {"path": path, "hops": len(cache)}

    # ------------------------------------------------------------------ training

    def train_path(self) -> int:
        """The path trained at ``train_iteration``: ``(train_iteration + 1) mod N``, the original's
        ``cnt_iter % N`` with its 1-based iteration counter."""
        return (self.train_iteration + 1) % self.num_paths

    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The chosen loss of logits at z's (or x^3's) resolution, upsampled (align_corners=True)
        to the B x H x W ``target``."""
        logits = _resize(logits, target.shape[-2:])
        if self.options.loss == "ce":
            return segmentation_loss(logits, target, "valid")
        min_kept = max(1, target.numel() // OHEM_MIN_KEPT_DIVISOR)
        return ohem_cross_entropy(logits, target, thresh=OHEM_THRESH, min_kept=min_kept)

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """L(full) + ``sub_loss_weight`` x L(sub) + ``aux_weight`` x L(aux) on the last frame of a clip.

        images B x N x 3 x H x W (oldest first), labels B x N x H' x W' (only the last frame's are
        used). The target's path is :meth:`train_path`; frame N-1-i before it uses path p-i.
        Cached frames are subsampled by ``kv_stride_train``. Afterwards ``train_iteration`` is
        advanced by one (the trainer sets it anew before every step).
        """
        b, n = images.shape[:2]
        if n != self.num_paths:
            raise ValueError(f"forward_train expects clips of num_paths={self.num_paths} frames, got {n}")
        path = self.train_path()
        feats = self.backbone(images.flatten(0, 1))
        z = self._fused(feats)
        z = z.reshape(b, n, *z.shape[1:])
        stride = self.options.kv_stride_train
        cache = [
            self.encodings[(path - (n - 1 - i)) % self.num_paths].cached(z[:, i], stride, with_query=i > 0)
            for i in range(n - 1)
        ]
        full, sub = self.predict(path, z[:, -1], cache)
        assert full is not None  # n >= 2, so the cache is never empty
        target = labels[:, -1].long()
        loss_full = self._loss(full, target)
        loss_sub = self._loss(sub, target)
        loss = loss_full + self.options.sub_loss_weight * loss_sub
        out = {"loss_full": loss_full.detach(), "loss_sub": loss_sub.detach()}
        if self.aux_heads:
            x3 = feats[2].reshape(b, n, *feats[2].shape[1:])[:, -1]
            loss_aux = self._loss(self.aux_heads[path](x3), target)
            loss = loss + self.options.aux_weight * loss_aux
            out["loss_aux"] = loss_aux.detach()
        self.train_iteration += 1
        return {"loss": loss, **out}

    def parameter_groups(self) -> dict[str, nn.Module]:
        """encoder (MiT, base lr), decoder (MLP decoder to z), apm (encodings + Att),
        head (norms + FCN heads + auxiliary heads)."""
        return {
            "encoder": self.backbone,
            "decoder": self.decode_head,
            "apm": nn.ModuleList([self.encodings, self.propagation]),
            "head": nn.ModuleList([self.norms, self.heads, self.aux_heads]),
        }

    def train_sampler(self) -> ConsecutiveClipSampler:
        """``num_paths`` frames ending at the target, neighbours 1..``max_gap`` apart (what
        :meth:`forward_train` consumes)."""
        return ConsecutiveClipSampler(self.num_paths, max_gap=self.options.max_gap)


__all__ = ["TDNet", "TDNetOptions"]
