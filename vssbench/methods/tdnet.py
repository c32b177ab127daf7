"""TDNet (Hu et al., CVPR 2020) on MiT: the temporally distributed efficiency baseline of Table 1.

The TFC paper compares against "SegFormer + TDNet" (MiT-B0, type E, 5.8M parameters) and removes
TDNet's knowledge distillation for a fair comparison. No MiT version exists upstream; this module
maps the original TD4-PSP18 onto MiT.

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
    prediction is FCNHead_p(LayerNorm_p(V_t)). Training loss: CE(full) + 0.5 CE(sub) + 0.1 CE(aux)
    + distillation from a PSPNet-101 teacher.

This mapping (B0, 124 classes: 5.56M parameters; the TFC paper's 5.8M, within 0.3M)
    * Sub-network = one MiT encoder + the SegFormer MLP decoder up to its fused feature z
      (E = ``decoder_dim`` = 256), **shared by all paths**. What each path owns is its encoding
      (q/k/v), its N-1 Att modules, its channel norm and its FCN head. Four independent MiT-B0s
      would cost ~17M, far from the paper's 5.8M, so the TFC reimplementation cannot have used
      them. Every frame therefore runs the whole MiT and decoder, plus its path's share, and
      TDNet costs more per frame than SegFormer, as in the paper's Table 1 (14.1 vs 37.5 FPS).
    * Resolution: the MLP decoder is SegFormer's, unchanged, up to z at 1/4 (it follows the
      harness's ``--decoder folded|reference`` like every SegFormer head); z is then bilinearly
      resized to 1/``feature_stride`` (default 8: TDNet's output stride, and where CFFM/MRCFA
      attend), where the APM and the head run. ``feature_stride=4`` runs them at 1/4 (the
      attention over 16x more query-key pairs).
    * Key/value subsampling of cached frames: stride ``kv_stride`` = 4 (the original testing
      code; its training code uses 3). Subsampling keeps every ``kv_stride``-th position in both
      directions, which is what the original's MaxPool2d(kernel 1, stride s) computes.
    * The fixed-shape LayerNorm([97, 193]) (breaks other resolutions, TDNet#11, #55) is replaced
      by a LayerNorm over the channels of each position (2C parameters), so any input size works.
    * Head: FCNHead(E, classes, chn_down 4): 3x3 conv E->E/4 (no bias) + BN + ReLU +
      Dropout2d(``dropout``) + 1x1 conv; one per path. SegFormer's ``linear_pred`` is not built.
    * Attention = ``F.scaled_dot_product_attention`` (scale 1/sqrt(``key_dim``), attention
      dropout ``dropout`` in training); the per-hop 1x1 conv is a Linear on tokens (same weights).
    * Start of a video (``warmup``): the original predicts from V_t alone until the FIFO holds
      N-1 frames (``"current"``, the default). ``"partial"`` runs the APM over the frames cached so
      far instead, with the path's last ``len(FIFO)`` Att modules.
    * Training (:meth:`TDNet.forward_train`): a clip of N consecutive frames (target last, the
      :class:`~vssbench.data.samplers.ConsecutiveClipSampler`; the original draws gaps of 1-2).
      The target's path p is drawn uniformly per call from torch's global generator (the
      original rotates ``iter % N``; a random draw gives the same frequencies and resumes exactly
      with the trainer's RNG state); earlier frames use paths p-1, p-2, ... as at test time. Only
      the target is supervised, as in the original. Loss = CE(full) + ``sub_loss_weight`` x
      CE(sub). **No distillation** (the TFC paper removed it; there is no ``distill`` option) and
      no auxiliary head on x^3 (the original's 0.1 x CE(aux) needs an extra head that SegFormer
      does not have).
    * Logits are resized to the input with bilinear, align_corners=False (vssbench's convention;
      the original uses True).

Cost accounting. Every frame costs the same once the FIFO is full; the first N-1 frames of a
video are cheaper (no APM with ``warmup="current"``). The harness averages GMACs and FPS over
the first ``interval`` frames after ``reset()`` (``interval`` must be a multiple of ``num_paths``,
default one cycle), so its per-frame numbers include that start; the steady-state cost is the
last step of ``gmacs_per_step`` (``benchmarks/results/tdnet_cpu.csv`` records both). For the
same reason the dead-parameter search over one cycle lists the Att modules of paths that never
had a full FIFO in it, the key conv of path N-1 (its cache is first read at frame N) and the
query conv of path 0 (frame 0 is only ever the oldest cached frame); all are used within two
cycles. The FIFO is not detached, so the search sees the caching convs.
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
from vssbench.models.decoder import SegFormerHead, resize_logits
from vssbench.models.losses import segmentation_loss
from vssbench.models.mit import MixTransformer

#: A cached frame's encodings as token tensors: (query B x n x d or None, key B x n x d, value B x n x E).
Encoded = tuple[Tensor | None, Tensor, Tensor]


@dataclass(frozen=True)
class TDNetOptions(BaseOptions):
    """Options of TDNet on MiT (every one settable with ``--set key=value``).

        ``num_paths``: number of sub-networks N (4 = TD4, 2 = TD2); frame t uses path ``t mod N``,
        the FIFO holds N-1 frames and each path has N-1 Att modules. ``interval``: the window over
        which the harness averages GMACs and FPS; must be a multiple of ``num_paths`` so that it covers
        whole cycles (default: one cycle). ``kv_stride``: spatial subsampling of cached frames'
        q/k/v (4 as in the original testing code; its training code used 3). ``key_dim``: query/key
        width (64). ``feature_stride``: resolution of z, the APM and the head, 8 (1/8 of the input)
    or 4.
        ``warmup``: prediction while the FIFO is not yet full, ``"current"`` (V_t only, as the
        original) or ``"partial"`` (APM over the frames cached so far). ``decoder_dim``: width E of
        the MLP decoder's fused feature, the value and the head input (256). ``dropout``: rate of the
        attention weights, each Att output and the head's Dropout2d (0.1 as the original).
        ``sub_loss_weight``: weight of CE(sub) in training (0.5). ``drop_path_rate``: stochastic
        depth of the MiT encoder (training only). There is no distillation option: the TFC paper's
        TDNet is trained without it.
    """

    num_paths: int = 4
    kv_stride: int = 4
    key_dim: int = 64
    feature_stride: Literal[4, 8] = 8
    warmup: Literal["current", "partial"] = "current"
    dropout: float = 0.1
    sub_loss_weight: float = 0.5

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
        if self.kv_stride < 1:
            raise ValueError(f"kv_stride must be >= 1, got {self.kv_stride}")
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
        if self.sub_loss_weight < 0.0:
            raise ValueError(f"sub_loss_weight must be >= 0, got {self.sub_loss_weight}")
        super().__post_init__()


def _tokens(x: Tensor) -> Tensor:
    """B x C x h x w -> B x (h*w) x C."""
    return x.flatten(2).transpose(1, 2)


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

    def forward(self, key: Tensor, value: Tensor, query: Tensor) -> Tensor:
        """Tokens B x Nq x C for queries B x Nq x d over keys B x Nk x d and values B x Nk x C."""
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=p)
        return self.dropout(self.fc(out))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each position of a B x C x H x W map (any H, W)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class FCNHead(nn.Module):
    """3x3 conv C -> C/4 (no bias) + BN + ReLU + Dropout2d + 1x1 conv to classes (the original's FCNHead)."""

    def __init__(self, channels: int, num_classes: int, dropout: float, channel_down: int = 4) -> None:
        super().__init__()
        inner = channels // channel_down
        self.conv = nn.Conv2d(channels, inner, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(inner)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(inner, num_classes, 1)

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
        self.norms = nn.ModuleList(ChannelLayerNorm(o.decoder_dim) for _ in range(o.num_paths))
        self.heads = nn.ModuleList(FCNHead(o.decoder_dim, num_classes, o.dropout) for _ in range(o.num_paths))
        self._fifo: list[Encoded] = []

    # ------------------------------------------------------------------ shared pieces

    def features(self, images: Tensor) -> Tensor:
        """z: the fused E-channel feature at 1/``feature_stride`` of images B x 3 x H x W.

        The MLP decoder gives z at the 1/4 map's size; it is resized (bilinear) to the size of
        MiT's 1/``feature_stride`` map (ceil-division sizes).
        """
        feats = self.backbone(images)
        return resize_logits(
            self.decode_head(feats), feats[0 if self.options.feature_stride == 4 else 1].shape[-2:]
        )

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
        """Logits at 1/``feature_stride`` of frame ``self.t`` (path ``t mod N``) and its diagnostics."""
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
        return logits, {"path": path, "hops": len(cache)}

    # ------------------------------------------------------------------ training

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """CE(full) + ``sub_loss_weight`` x CE(sub) on the last frame of N consecutive frames.

        images B x N x 3 x H x W (oldest first), labels B x N x H' x W' (only the last frame's are
        used). The target's path p is drawn uniformly; frame N-1-i before it uses path p-i.
        """
        b, n = images.shape[:2]
        if n != self.num_paths:
            raise ValueError(f"forward_train expects clips of num_paths={self.num_paths} frames, got {n}")
        path = int(torch.randint(self.num_paths, ()))
        z = self.features(images.flatten(0, 1))
        z = z.reshape(b, n, *z.shape[1:])
        stride = self.options.kv_stride
        cache = [
            self.encodings[(path - (n - 1 - i)) % self.num_paths].cached(z[:, i], stride, with_query=i > 0)
            for i in range(n - 1)
        ]
        full, sub = self.predict(path, z[:, -1], cache)
        assert full is not None  # n >= 2, so the cache is never empty
        target = labels[:, -1]
        # The mean over labelled pixels (TDNet's own code is not mmseg-based).
        loss_full = segmentation_loss(full, target, "valid")
        loss_sub = segmentation_loss(sub, target, "valid")
        loss = loss_full + self.options.sub_loss_weight * loss_sub
        return {"loss": loss, "loss_full": loss_full.detach(), "loss_sub": loss_sub.detach()}

    def parameter_groups(self) -> dict[str, nn.Module]:
        """encoder (MiT, base lr), decoder (MLP decoder to z), apm (encodings + Att),
        head (norms + FCN heads)."""
        return {
            "encoder": self.backbone,
            "decoder": self.decode_head,
            "apm": nn.ModuleList([self.encodings, self.propagation]),
            "head": nn.ModuleList([self.norms, self.heads]),
        }

    def train_sampler(self) -> ConsecutiveClipSampler:
        """``num_paths`` consecutive frames ending at the target (what :meth:`forward_train` consumes)."""
        return ConsecutiveClipSampler(self.num_paths)


__all__ = ["TDNet", "TDNetOptions"]
