"""Mix Transformer (MiT), the hierarchical encoder of SegFormer (Xie et al., NeurIPS 2021).

Rebuilt from the paper and the released NVlabs configurations of B0..B5 (widths, depths, heads,
spatial-reduction ratios, LayerNorm eps 1e-6 in blocks and stage norms, 1e-5 in patch-embed and
reduction norms). Module and parameter names follow the original NVlabs code (``patch_embed{s}``,
``block{s}.{j}``, ``norm{s}``), so official checkpoints load by prefix alone (see
:mod:`vssbench.models.checkpoint`).

The encoder has four stages; stage ``s`` produces a map ``x^s`` at stride 4, 8, 16, 32 with
``embed_dims[s-1]`` channels. The sizes are ceil divisions of the input: ``ceil(H/4)`` for
stage 1, then ``ceil(prev/2)`` per stage (480x853 gives 120x214, 60x107, 30x54, 15x27).
Stages run one at a time through :meth:`MixTransformer.forward_stage` so that keyframe methods
can run only the shallow stages on non-keyframes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: LayerNorm eps of block norms (norm1/norm2) and stage-end norms; the original builds them with
#: ``partial(nn.LayerNorm, eps=1e-6)``.
BLOCK_NORM_EPS = 1e-6
#: LayerNorm eps of the patch-embedding and spatial-reduction norms (plain ``nn.LayerNorm``).
DEFAULT_NORM_EPS = 1e-5


@dataclass(frozen=True)
class MiTConfig:
    """Shape of one MiT variant (per-stage tuples of length 4) and its SegFormer decoder width."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int]
    mlp_ratios: tuple[int, int, int, int]
    default_decoder_dim: int


_SMALL = dict(num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1), mlp_ratios=(4, 4, 4, 4))
_WIDE = (64, 128, 320, 512)

#: The six published variants (NVlabs ``mit_b0``..``mit_b5`` and ``local_configs/segformer``).
#: ``default_decoder_dim`` is the official ADE/Cityscapes head width; the VSPW configs (and
#: vssbench's default) use 256 for every variant.
MIT_CONFIGS: dict[str, MiTConfig] = {
    "b0": MiTConfig((32, 64, 160, 256), (2, 2, 2, 2), default_decoder_dim=256, **_SMALL),
    "b1": MiTConfig(_WIDE, (2, 2, 2, 2), default_decoder_dim=256, **_SMALL),
    "b2": MiTConfig(_WIDE, (3, 4, 6, 3), default_decoder_dim=768, **_SMALL),
    "b3": MiTConfig(_WIDE, (3, 4, 18, 3), default_decoder_dim=768, **_SMALL),
    "b4": MiTConfig(_WIDE, (3, 8, 27, 3), default_decoder_dim=768, **_SMALL),
    "b5": MiTConfig(_WIDE, (3, 6, 40, 3), default_decoder_dim=768, **_SMALL),
}


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch per sample with probability ``p`` (training only).

    Kept samples are scaled by ``1/(1-p)`` so the expectation is unchanged; in eval mode (or with
    ``p == 0``) this is the identity.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows (padding k//2), then LayerNorm over channels.

    Input B x C_in x H x W; output tokens B x (H'·W') x C with H' = ceil(H/stride).
    """

    def __init__(self, in_chans: int, embed_dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(embed_dim, eps=DEFAULT_NORM_EPS)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a spatially reduced sequence.

    With ``sr_ratio > 1`` the token map is shrunk by a ``sr x sr`` stride-``sr`` conv plus
    LayerNorm before the fused ``kv`` projection (rows ``[k; v]``, head-major inside each half,
    as in the original checkpoints). Attention is computed by
    :func:`torch.nn.functional.scaled_dot_product_attention` with scale ``head_dim^-0.5``.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=DEFAULT_NORM_EPS)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            source = self.norm(reduced.flatten(2).transpose(1, 2))
        else:
            source = x
        kv = self.kv(source).reshape(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """3x3 depth-wise conv over the token map (the Mix-FFN's source of position information)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 -> depth-wise 3x3 conv (no residual inside) -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x += DropPath(Attn(norm1 x))``; ``x += DropPath(FFN(norm2 x))``."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


def _init_weights(module: nn.Module) -> None:
    """NVlabs init: Linear trunc-normal(0.02)/0, LayerNorm 1/0, Conv normal(0, sqrt(2/fan_out))/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class MixTransformer(nn.Module):
    """The MiT encoder ``variant`` (``"b0"``..``"b5"``) with stochastic depth ``drop_path_rate``.

    The drop-path probability grows linearly from 0 to ``drop_path_rate`` over all blocks of all
    stages, as in the original. ``embed_dims`` are the channel counts C_1..C_4 of the outputs.
    """

    def __init__(self, variant: str = "b0", drop_path_rate: float = 0.1) -> None:
        super().__init__()
        if variant not in MIT_CONFIGS:
            raise ValueError(f"unknown MiT variant {variant!r}; available: {', '.join(MIT_CONFIGS)}")
        cfg = MIT_CONFIGS[variant]
        self.variant = variant
        self.config = cfg
        self.embed_dims: tuple[int, int, int, int] = cfg.embed_dims
        rates = torch.linspace(0, drop_path_rate, sum(cfg.depths), device="cpu").tolist()
        in_chans = 3
        first = 0
        for s in range(4):
            kernel, stride = (7, 4) if s == 0 else (3, 2)
            dim = cfg.embed_dims[s]
            setattr(self, f"patch_embed{s + 1}", OverlapPatchEmbed(in_chans, dim, kernel, stride))
            blocks = [
                Block(dim, cfg.num_heads[s], cfg.sr_ratios[s], cfg.mlp_ratios[s], rates[first + j])
                for j in range(cfg.depths[s])
            ]
            setattr(self, f"block{s + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{s + 1}", nn.LayerNorm(dim, eps=BLOCK_NORM_EPS))
            in_chans = dim
            first += cfg.depths[s]
        self.apply(_init_weights)

    def forward_stage(self, index: int, x: Tensor) -> Tensor:
        """Run stage ``index`` (0-based) on ``x`` and return its B x C x H x W map.

        ``x`` is the normalized image (B x 3 x H x W) for stage 0, otherwise the previous stage's
        output map.
        """
        if not 0 <= index < 4:
            raise ValueError(f"stage index must be 0..3, got {index}")
        tokens, h, w = getattr(self, f"patch_embed{index + 1}")(x)
        sr = self.config.sr_ratios[index]
        if min(h, w) < sr:
            # The reduction conv needs at least sr x sr tokens; say which input is too small
            # instead of surfacing a bare conv error.
            raise ValueError(
                f"MiT stage {index + 1} map is {h}x{w}, smaller than its spatial-reduction ratio {sr}: "
                f"input {tuple(x.shape[-2:])} is too small (each side of the image must be >= 29 pixels)"
            )
        for block in getattr(self, f"block{index + 1}"):
            tokens = block(tokens, h, w)
        tokens = getattr(self, f"norm{index + 1}")(tokens)
        b = tokens.shape[0]
        return tokens.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: Tensor, num_stages: int = 4) -> list[Tensor]:
        """Encode images B x 3 x H x W into ``[x^1, ..., x^num_stages]`` (B x C_i x H_i x W_i)."""
        if not 1 <= num_stages <= 4:
            raise ValueError(f"num_stages must be 1..4, got {num_stages}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape B x 3 x H x W, got {tuple(x.shape)}")
        feats: list[Tensor] = []
        for index in range(num_stages):
            x = self.forward_stage(index, x)
            feats.append(x)
        return feats
