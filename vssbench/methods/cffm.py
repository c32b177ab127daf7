"""CFFM (Sun et al., CVPR 2022): SegFormer + Cross-frame Feature Mining over reference frames.

Head ``CFFMHead_clips_resize1_8`` of the released code: the SegFormer MLP decoder runs per frame
and gives the fused feature F (E channels, 1/4 resolution) and per-frame logits;
F is resized to 1/8 and a focal-window transformer (``decoder_focal``) lets the *target* frame's
7x7 windows attend to a coarse-to-fine assembly of keys: its own window and the ring around it
(fine), its pooled neighbouring windows (coarse), and pooled neighbourhoods of the references
t-9 (7x7 pooling, 7x7 neighbours), t-6 (3x3 pooling after a resize to 6/7, 5x5 neighbours at
stride 2) and t-3 (2x2 pooling, 3x3 neighbours at stride 3): 49+132+25+49+25+9 = 289 keys per
window. The output ``linear_pred2(concat[F8_t, CFM(F8_t)])`` is upsampled to 1/4, then to the
input.

Streaming: frame t's clip is ``ReferenceClipSampler().test_clip(t)`` -- references t-9, t-6,
t-3 from frame 9 on, the released code's hard-coded clips for frames 3..8, and no reference for
frames 0..2, which fall back to the per-frame SegFormer logits (as the released head does when
a clip has fewer than 4 frames). Everything a reference contributes is a function of its own
1/8 feature F8 (its ``norm1``, resizing, pooling and key/value projections are per frame), so:

* ``cache=True`` keeps F8 of the last 9 frames in a ring buffer: every frame runs the backbone
  and the MLP decoder once (the cost the paper's FPS assumed);
* ``cache=False`` keeps the last 9 *images* and re-encodes every frame of the clip for each
  target, batched as B·T like the released ``EncoderDecoder_clips`` (4 backbone passes per frame).

Both give the same logits up to float rounding. The module names equal the official
``decode_head.*`` keys (including the constant index buffers), so an official checkpoint loads
strictly through the mmseg loader, which drops only the dead ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vssbench.data.samplers import ReferenceClipSampler
from vssbench.methods.base import MethodInfo, register
from vssbench.methods.segformer import SegFormer, SegFormerOptions
from vssbench.models.decoder import SegFormerHead, resize_logits
from vssbench.models.losses import segmentation_loss

#: Transformer depth of the CFFM head per backbone (``decoder_params.depths`` of the released
#: configs: B0 1, B1 2, B2 2, B5 4). No B3/B4 configs were released; they get B5's 4.
DEPTHS: dict[str, int] = {"b0": 1, "b1": 2, "b2": 2, "b3": 4, "b4": 4, "b5": 4}
#: Window, focal and reference-pooling constants of ``CFFMHead_clips_resize1_8``.
WINDOW = 7
EXPAND = 3
FOCAL_WINDOW = 5
NUM_HEADS = 8
MLP_RATIO = 4
#: Per reference slot (t-9, t-6, t-3): ``focal_l_clips`` and the neighbourhood kernel.
REF_LEVELS = (1, 2, 3)
REF_KERNELS = (7, 5, 3)
#: Frames a streaming clip can reach back (t-9), i.e. the ring buffer length.
HISTORY = 9
#: Additive logit of a zero-padded neighbourhood position (the released value).
MASK_VALUE = -100.0


@dataclass(frozen=True)
class CFFMOptions(SegFormerOptions):
    """Options of CFFM.

    ``cache``: keep each past frame's 1/8 fused feature (true; one backbone pass per frame) or
    re-encode every frame of the clip for each target as released (false; four passes); same
    logits. ``depth``: blocks of the CFFM transformer, ``None`` for the released value of the
    backbone (:data:`DEPTHS`). ``interval``: only the window over which GMACs and FPS are
    averaged (CFFM has no keyframes). ``decoder_dim`` (E, 256 in every VSPW config),
    ``drop_path_rate`` (encoder stochastic depth) and ``dropout`` (the head's Dropout2d) as for
    SegFormer.
    """

    cache: bool = True
    depth: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"depth must be >= 1 (or None for the backbone's default), got {self.depth}")
        if self.decoder_dim % NUM_HEADS:
            raise ValueError(
                f"decoder_dim must be a multiple of {NUM_HEADS} (attention heads), got {self.decoder_dim}"
            )


# ----------------------------------------------------------------------------- constants


def relative_position_index(query: int, key: int) -> Tensor:
    """Index into a (query+key-1)^2 bias table for each (query token, key token) pair.

    Queries are a ``query`` x ``query`` window, keys a ``key`` x ``key`` grid, both row-major;
    the index of a pair is (dy + key - 1) * (query + key - 1) + (dx + key - 1) with (dy, dx) the
    query's minus the key's coordinates -> int64 [query^2, key^2].
    """
    cpu = torch.device("cpu")  # constants: also when a model is built under another default device
    qy, qx = torch.meshgrid(torch.arange(query, device=cpu), torch.arange(query, device=cpu), indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(key, device=cpu), torch.arange(key, device=cpu), indexing="ij")
    dy = qy.reshape(-1, 1) - ky.reshape(1, -1) + key - 1
    dx = qx.reshape(-1, 1) - kx.reshape(1, -1) + key - 1
    return dy * (query + key - 1) + dx


def rolled_ring_index(window: int, expand: int) -> Tensor:
    """Positions of the ring tokens among the 4 x window^2 tokens of the four rolled copies.

    The copies are the map rolled by (-e,-e), (-e,+e), (+e,-e), (+e,+e) (top-left, top-right,
    bottom-left, bottom-right); of each, the tokens that fall inside the query window itself are
    dropped -> int64 [4 * (window^2 - (window - expand)^2)] (132 for 7 and 3).
    """
    masks = []
    for rows, cols in (
        (slice(None, -expand), slice(None, -expand)),
        (slice(None, -expand), slice(expand, None)),
        (slice(expand, None), slice(None, -expand)),
        (slice(expand, None), slice(expand, None)),
    ):
        mask = torch.ones(window, window, device="cpu")
        mask[rows, cols] = 0
        masks.append(mask)
    return torch.stack(masks).flatten().nonzero().view(-1)


def _neighbourhood_mask(rows: int, cols: int, kernel: int, stride: int) -> np.ndarray:
    """1 where a kernel x kernel neighbourhood (stride, zero padding kernel // 2) of an output
    window lies inside a rows x cols map, else 0 -> [out_rows * out_cols, kernel^2] (unfold order)."""
    pad = kernel // 2
    out_r = (rows + 2 * pad - kernel) // stride + 1
    out_c = (cols + 2 * pad - kernel) // stride + 1
    r = np.arange(out_r)[:, None] * stride - pad + np.arange(kernel)[None, :]  # out_r x kernel
    c = np.arange(out_c)[:, None] * stride - pad + np.arange(kernel)[None, :]
    valid_r = (r >= 0) & (r < rows)
    valid_c = (c >= 0) & (c < cols)
    valid = valid_r[:, None, :, None] & valid_c[None, :, None, :]  # out_r, out_c, kernel, kernel
    return valid.reshape(out_r * out_c, kernel * kernel)


def _windows(x: Tensor, size: int) -> Tensor:
    """B x H x W x C (H, W multiples of ``size``) -> (B·nWh·nWw) x size^2 x C, windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size * size, c)


def _unwindows(windows: Tensor, size: int, b: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`_windows` -> B x H x W x C."""
    x = windows.view(b, h // size, w // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


# ----------------------------------------------------------------------------- the CFFM transformer


class CFFMAttention(nn.Module):
    """Window attention of the target's 7x7 windows over the coarse-to-fine key assembly.

    Keys and values share one projection ``qkv`` (only its k, v rows are applied to the pooled
    maps). Biases: ``relative_position_bias_table`` inside the window, a free
    ``relative_position_bias_table_to_neighbors`` for the 132 ring tokens, and relative-position
    tables to the pooled target (``..._to_windows.0``) and to each reference
    (``..._to_windows_clips.{0,1,2}``); zero-padded neighbourhood positions get -100.
    """

    def __init__(self, dim: int, num_heads: int = NUM_HEADS) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        area = WINDOW * WINDOW
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * WINDOW - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(WINDOW, WINDOW))
        ring = rolled_ring_index(WINDOW, EXPAND)
        self.relative_position_bias_table_to_neighbors = nn.Parameter(
            torch.zeros(1, num_heads, area, ring.numel())
        )
        nn.init.trunc_normal_(self.relative_position_bias_table_to_neighbors, std=0.02)
        self.register_buffer("valid_ind_rolled", ring)
        # Coarse target level: 5x5 neighbourhood of pooled windows (focal level 2, focal window 5).
        self.relative_position_bias_table_to_windows = nn.ParameterList(
            [
                nn.Parameter(
                    nn.init.trunc_normal_(torch.zeros(num_heads, (WINDOW + FOCAL_WINDOW - 1) ** 2), std=0.02)
                )
            ]
        )
        self.register_buffer("relative_position_index_0", relative_position_index(WINDOW, FOCAL_WINDOW))
        self.relative_position_bias_table_to_windows_clips = nn.ParameterList(
            [
                nn.Parameter(nn.init.trunc_normal_(torch.zeros(num_heads, (WINDOW + k - 1) ** 2), std=0.02))
                for k in REF_KERNELS
            ]
        )
        for i, k in enumerate(REF_KERNELS):
            self.register_buffer(f"relative_position_index_clips_{i}", relative_position_index(WINDOW, k))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self._masks: dict[tuple[Any, ...], Tensor] = {}

    def _bias(self) -> Tensor:
        """heads x 49 x 289 additive bias over [window, ring, pooled target, t-9, t-6, t-3]."""
        area = WINDOW * WINDOW
        parts = [
            self.relative_position_bias_table[self.relative_position_index.view(-1)]
            .view(area, area, -1)
            .permute(2, 0, 1),
            self.relative_position_bias_table_to_neighbors[0],
            self.relative_position_bias_table_to_windows[0][:, self.relative_position_index_0.view(-1)].view(
                self.num_heads, area, -1
            ),
        ]
        for i, table in enumerate(self.relative_position_bias_table_to_windows_clips):
            index = getattr(self, f"relative_position_index_clips_{i}")
            parts.append(table[:, index.view(-1)].view(self.num_heads, area, -1))
        return torch.cat(parts, dim=-1)

    def _mask(self, n_rows: int, n_cols: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """nW x 289 additive mask: 0 for real tokens, -100 for zero-padded neighbourhood positions.

        Built once per window grid with numpy (a constant: no work on the traced path).
        """
        key = (n_rows, n_cols, device, dtype)
        if key not in self._masks:
            ring = WINDOW * WINDOW + self.valid_ind_rolled.numel()
            parts = [
                np.ones((n_rows * n_cols, ring), dtype=bool),
                _neighbourhood_mask(n_rows, n_cols, FOCAL_WINDOW, 1),
            ]
            for level, kernel in zip(REF_LEVELS, REF_KERNELS):
                parts.append(_neighbourhood_mask(n_rows * level, n_cols * level, kernel, level))
            valid = np.concatenate(parts, axis=1)
            mask = np.where(valid, 0.0, MASK_VALUE).astype(np.float32)
            self._masks[key] = torch.from_numpy(mask).to(device=device, dtype=dtype)
        return self._masks[key]

    def _pooled_kv(self, pooled: Tensor, kernel: int, stride: int) -> Tensor:
        """k and v of every kernel x kernel neighbourhood (stride, zero padding) of a pooled map.

        ``pooled`` is B x h x w x C; the projections are applied before unfolding, so padded
        positions hold zero keys and values as in the released code -> (B·L) x kernel^2 x 2C.
        """
        b = pooled.shape[0]
        kv = F.linear(pooled, self.qkv.weight[self.dim :], self.qkv.bias[self.dim :])  # B h w 2C
        cols = F.unfold(kv.permute(0, 3, 1, 2), kernel, padding=kernel // 2, stride=stride)  # B, 2C·K², L
        cols = cols.view(b, 2 * self.dim, kernel * kernel, -1).permute(0, 3, 2, 1)
        return cols.reshape(-1, kernel * kernel, 2 * self.dim)

    def forward(self, x: Tensor, pooled_target: Tensor, pooled_refs: Sequence[Tensor]) -> Tensor:
        """Attend from the target's windows; returns B x H x W x C (before the output residual).

        ``x``: normalized, zero-padded target B x H x W x C (H, W multiples of 7);
        ``pooled_target``: its windows pooled, B x H/7 x W/7 x C; ``pooled_refs``: the references
        t-9, t-6, t-3 pooled to B x (l·H/7) x (l·W/7) x C for l = 1, 2, 3.
        """
        b, h, w, c = x.shape
        heads, hd = self.num_heads, c // self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        kv = torch.cat([k, v], dim=-1)
        keys = [_windows(kv, WINDOW)]
        rolled = [
            _windows(torch.roll(kv, shifts=(dy * EXPAND, dx * EXPAND), dims=(1, 2)), WINDOW)
            for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1))
        ]
        keys.append(torch.cat(rolled, dim=1)[:, self.valid_ind_rolled])
        keys.append(self._pooled_kv(pooled_target, FOCAL_WINDOW, 1))
        for ref, level, kernel in zip(pooled_refs, REF_LEVELS, REF_KERNELS):
            keys.append(self._pooled_kv(ref, kernel, level))
        kv_all = torch.cat(keys, dim=1)  # Bn x 289 x 2C
        n = kv_all.shape[1]
        k_all, v_all = kv_all.view(-1, n, 2, heads, hd).permute(2, 0, 3, 1, 4)  # each Bn x heads x N x hd
        q_win = _windows(q, WINDOW).view(-1, WINDOW * WINDOW, heads, hd).transpose(1, 2) * self.scale
        attn = q_win @ k_all.transpose(-2, -1)  # Bn x heads x 49 x N
        n_rows, n_cols = int(h) // WINDOW, int(w) // WINDOW  # plain ints also under tracing
        mask = self._mask(n_rows, n_cols, x.device, x.dtype)  # nW x N
        attn = attn.view(b, n_rows * n_cols, heads, WINDOW * WINDOW, n)
        attn = attn + self._bias()[None, None] + mask[None, :, None, None, :]
        attn = attn.view(-1, heads, WINDOW * WINDOW, n).softmax(dim=-1)
        out = (attn @ v_all).transpose(1, 2).reshape(-1, WINDOW * WINDOW, c)
        return _unwindows(self.proj(out), WINDOW, b, h, w)


class CFFMMlp(nn.Module):
    """fc1 (E -> 4E), GELU, fc2 (4E -> E)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _pool_windows(x: Tensor, size: int, layer: nn.Linear) -> Tensor:
    """Pool each size x size window of B x H x W x C with a learnt Linear(size^2 -> 1)
    -> B x H/size x W/size x C."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 5, 2, 4)
    return layer(x.reshape(b, h // size, w // size, c, size * size)).squeeze(-1)


class CFFMBlock(nn.Module):
    """One ``CffmTransformerBlock3d3``: only the target is updated; references are keys/values.

    ``pool_layers.0`` pools the target's 7x7 windows; ``pool_layers_clips.{0,1,2}`` pool the
    references t-9 (7x7), t-6 (3x3) and t-3 (2x2); each starts as a mean.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CFFMAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = CFFMMlp(dim, MLP_RATIO * dim)
        self.pool_layers = nn.ModuleList([nn.Linear(WINDOW * WINDOW, 1)])
        self.pool_layers_clips = nn.ModuleList([nn.Linear((WINDOW // level) ** 2, 1) for level in REF_LEVELS])
        for layer in [*self.pool_layers, *self.pool_layers_clips]:
            nn.init.constant_(layer.weight, 1.0 / layer.in_features)
            nn.init.zeros_(layer.bias)

    def _normalized(self, x: Tensor) -> Tensor:
        """norm1, then zero padding at the bottom/right to multiples of the window."""
        _, h, w, _ = x.shape
        pad_b, pad_r = (-h) % WINDOW, (-w) % WINDOW
        x = self.norm1(x)
        return F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) if pad_b or pad_r else x

    def pooled_reference(self, ref: Tensor, slot: int) -> Tensor:
        """Reference ``ref`` (B x h x w x C, un-normalized) pooled for clip slot ``slot`` (0 = t-9).

        Slot l = REF_LEVELS[slot]: the padded map (7·nWh x 7·nWw) is resized bilinearly to
        (7 // l)·l·nWh x (7 // l)·l·nWw when that differs, then pooled in (7 // l)^2 windows.
        """
        x = self._normalized(ref)
        _, hp, wp, _ = x.shape
        level = REF_LEVELS[slot]
        size = WINDOW // level
        target = (hp // WINDOW * level * size, wp // WINDOW * level * size)
        if target != (hp, wp):
            x = F.interpolate(
                x.permute(0, 3, 1, 2), size=target, mode="bilinear", align_corners=False
            ).permute(0, 2, 3, 1)
        return _pool_windows(x, size, self.pool_layers_clips[slot])

    def forward(self, target: Tensor, refs: Sequence[Tensor]) -> Tensor:
        """Update the target B x h x w x C from the three references (each B x h x w x C)."""
        if len(refs) != len(REF_LEVELS):
            raise ValueError(f"CFFM needs {len(REF_LEVELS)} reference features, got {len(refs)}")
        _, h, w, _ = target.shape
        x = self._normalized(target)
        pooled_target = _pool_windows(x, WINDOW, self.pool_layers[0])
        pooled_refs = [self.pooled_reference(ref, slot) for slot, ref in enumerate(refs)]
        out = self.attn(x, pooled_target, pooled_refs)[:, :h, :w]
        y = target + out
        return y + self.mlp(self.norm2(y))


class CFFMTransformer(nn.Module):
    """``decoder_focal``: ``depth`` :class:`CFFMBlock` s applied to the target in turn."""

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([CFFMBlock(dim) for _ in range(depth)])

    def forward(self, target: Tensor, refs: Sequence[Tensor]) -> Tensor:
        """Target B x C x h x w and references [t-9, t-6, t-3] (each B x C x h x w) -> B x C x h x w."""
        x = target.permute(0, 2, 3, 1)
        refs_last = [r.permute(0, 2, 3, 1) for r in refs]
        for block in self.blocks:
            x = block(x, refs_last)
        return x.permute(0, 3, 1, 2)


class CFFMHead(SegFormerHead):
    """SegFormer MLP decoder + ``decoder_focal`` + ``linear_pred2`` (official module names)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        embed_dim: int = 256,
        num_classes: int = 124,
        depth: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, embed_dim, num_classes, dropout)
        self.linear_pred2 = nn.Conv2d(2 * embed_dim, num_classes, kernel_size=1)
        self.decoder_focal = CFFMTransformer(embed_dim, depth)

    def frame_feature(self, feats: Sequence[Tensor]) -> Tensor:
        """Fused per-frame feature F (B x E x h x w at 1/4) from encoder maps [x^1..x^4].

        Uses the head's current decoder mode (reference or folded).
        """
        return self.fused(feats)

    @staticmethod
    def eighth(feature: Tensor) -> Tensor:
        """F resized bilinearly to (int(h/2), int(w/2)), the 1/8 map the transformer works on."""
        h, w = feature.shape[-2:]
        return resize_logits(feature, (h // 2, w // 2))

    def temporal(self, target: Tensor, refs: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """Logits B x K x size of the target from its 1/8 feature and the references' [t-9, t-6, t-3]."""
        mined = self.decoder_focal(target, refs)
        logits = self.linear_pred2(self.dropout(torch.cat([target, mined], dim=1)))
        return resize_logits(logits, size)


@register
class CFFM(SegFormer):
    """CFFM on MiT ``backbone``: online, one frame per ``step``, references from the past only.

    After each ``step``: ``last_step_info`` = {"keyframe": True (every frame runs the encoder),
    "references": number of reference frames used (0 for the per-frame fallback), "fallback"},
    and ``last_clip`` holds the clip's frame indices (references, then the target).
    """

    info = MethodInfo(
        "cffm",
        paper="CFFM (Sun et al., CVPR 2022)",
        type="S",
        default_interval=4,
        description="SegFormer + cross-frame feature mining over references t-9, t-6, t-3 "
        "(per-frame fallback for frames 0-2); cache=true keeps past 1/8 features.",
        size_divisor=32,
    )

    Options = CFFMOptions
    options: CFFMOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: CFFMOptions | None = None
    ) -> None:
        super().__init__(backbone, num_classes, options)
        self.depth = self.options.depth if self.options.depth is not None else DEPTHS[backbone]
        self.decode_head = CFFMHead(
            self.backbone.embed_dims,
            self.options.decoder_dim,
            num_classes,
            self.depth,
            dropout=self.options.dropout,
        )
        self.sampler = ReferenceClipSampler()
        self.last_clip: list[int] = []
        self._history: dict[int, Tensor] = {}  # frame index -> F8 (cache) or the image (recompute)

    def reset_state(self) -> None:
        """Empty the ring buffer."""
        self.last_clip = []
        self._history = {}

    @property
    def steady_state_after(self) -> int:
        """From frame 9 on every reference (t-9, t-6, t-3) exists: GMACs and FPS are measured there."""
        return -min(self.sampler.dilations)

    def state_tensors(self) -> list[Tensor]:
        """The ring buffer: past frames' 1/8 features (cache=true) or images (cache=false)."""
        return list(self._history.values())

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Logits at 1/4 resolution of frame ``self.t`` and this step's diagnostics."""
        t = self.t
        clip = self.sampler.test_clip(t, t + 1)
        temporal = len(clip) == len(REF_LEVELS) + 1
        head = self.decode_head
        if self.options.cache:
            feature = head.frame_feature(self.encode(image))
            current = head.eighth(feature)
            if temporal:
                logits = head.temporal(current, [self._history[i] for i in clip[:-1]], feature.shape[-2:])
            else:
                logits = head.classify(feature)
            self._history[t] = current
        else:
            self._history[t] = image
            logits = (
                self._recompute(clip) if temporal else head.classify(head.frame_feature(self.encode(image)))
            )
        for old in [i for i in self._history if i <= t - HISTORY]:
            del self._history[old]
        self.last_clip = list(clip)
        refs = len(clip) - 1 if temporal else 0
        return logits, {"keyframe": True, "references": refs, "fallback": not temporal}

    def _recompute(self, clip: Sequence[int]) -> Tensor:
        """As released: encode all clip frames as one B·T batch, then the head on the target."""
        frames = torch.stack([self._history[i] for i in clip], dim=1)  # N x T x 3 x H x W
        n, length = frames.shape[:2]
        head = self.decode_head
        feature = head.frame_feature(self.encode(frames.flatten(0, 1)))
        eighth = head.eighth(feature)
        eighth = eighth.view(n, length, *eighth.shape[1:])
        refs = [eighth[:, i] for i in range(length - 1)]
        return head.temporal(eighth[:, -1], refs, feature.shape[-2:])

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Released losses on a clip [t-9, t-6, t-3, t]: images N x 4 x 3 x H x W, labels N x 4 x H' x W'.

        ``loss = 0.5 * loss_frames + 1.0 * loss_seg`` with ``loss_frames`` the CE of the four
        per-frame predictions against their own labels (one mean over all their pixels) and
        ``loss_seg`` the CE of the CFFM output against the target's label.
        """
        n, length = images.shape[:2]
        if length != len(REF_LEVELS) + 1:
            raise ValueError(
                f"CFFM trains on clips of {len(REF_LEVELS) + 1} frames (t-9, t-6, t-3, t), got {length}"
            )
        head = self.decode_head
        feature = head.frame_feature(self.encode(images.flatten(0, 1)))
        per_frame = head.classify(feature)
        eighth = head.eighth(feature)
        eighth = eighth.view(n, length, *eighth.shape[1:])
        output = head.temporal(eighth[:, -1], [eighth[:, i] for i in range(length - 1)], feature.shape[-2:])
        reduction = self.options.loss_reduction
        loss_frames = segmentation_loss(per_frame, labels.flatten(0, 1), reduction)
        loss_seg = segmentation_loss(output, labels[:, -1], reduction)
        loss = 0.5 * loss_frames + 1.0 * loss_seg
        return {"loss": loss, "loss_seg": loss_seg, "loss_frames": loss_frames}

    def train_sampler(self) -> ReferenceClipSampler:
        """CFFM's clips: t-9, t-6, t-3, t with t >= 9, on a video reversed with probability 0.5."""
        return ReferenceClipSampler()


__all__ = ["CFFM", "CFFMHead", "CFFMOptions", "DEPTHS", "relative_position_index", "rolled_ring_index"]
