"""A small correlation-based flow estimator for TFC's "flow-guided warping" ablation (Table 2).

The paper's ablation warps the reused keyframe features with optical flow (RAFT) instead of
updating them with sparse MSDA. vssbench ships its own light estimator behind the
:class:`FlowEstimator` protocol, so a stronger one (RAFT or any other) can be plugged in by
passing an object with the same call signature.

Convention: ``flow[:, 0]`` (x) and ``flow[:, 1]`` (y) are in pixels of the feature map, and
point from the *current* frame to the *keyframe*: the keyframe content that belongs at current
pixel p lies at p + flow(p). :func:`warp` samples there (backward warping), so
``warp(x_key, flow)`` aligns a keyframe map with the current frame.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CorrelationFlow", "FlowEstimator", "resize_flow", "warp"]


@runtime_checkable
class FlowEstimator(Protocol):
    """Anything that maps (feat_key [N,C,h,w], feat_cur [N,C,h,w]) to flow [N,2,h,w] in pixels (x, y)."""

    def __call__(self, feat_key: torch.Tensor, feat_cur: torch.Tensor) -> torch.Tensor: ...


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp x [N,C,H,W] by flow [N,2,H,W] (pixels): out(p) = x(p + flow(p)), bilinear.

    Positions outside the map take the nearest border value (padding 'border'): a feature map
    has no meaningful "zero" content, and zeros would inject a false edge into the decoder.
    """
    n, _, h, w = x.shape
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"flow must be [N, 2, H, W] = {(n, 2, h, w)}, got {tuple(flow.shape)}")
    ys = torch.arange(h, device=x.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=flow.dtype).view(1, 1, w)
    # Pixel centre j sits at normalized (2j+1)/W - 1 with align_corners=False.
    gx = (2.0 * (xs + flow[:, 0]) + 1.0) / w - 1.0
    gy = (2.0 * (ys + flow[:, 1]) + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a flow field [N,2,h,w] to ``size`` (H, W), scaling its pixel units accordingly."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return out * scale


class CorrelationFlow(nn.Module):
    """Local cost volume + soft-argmax flow, with an optional tiny learned refinement.

    For every current pixel p and displacement d in [-radius, radius]^2 the cost is the scaled
    dot product <f_cur(p), f_key(p+d)> / sqrt(C) (f_key zero-padded outside); a softmax over the
    (2r+1)^2 displacements (temperature ``temperature``, learnable) gives flow(p) = sum softmax * d.
    The refinement is a 3x3 conv over [flow, costs] that adds a residual flow; it starts at zero
    so an untrained estimator is the pure soft-argmax. Memory is O(N*(2r+1)^2*h*w): the cost
    volume is built one displacement at a time, never as an unfolded C*(2r+1)^2 tensor.
    """

    def __init__(self, channels: int, radius: int = 4, refine: bool = True, temperature: float = 1.0) -> None:
        super().__init__()
        if radius < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        self.channels = channels
        self.radius = radius
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())
        window = 2 * radius + 1
        dy, dx = torch.meshgrid(
            torch.arange(-radius, radius + 1), torch.arange(-radius, radius + 1), indexing="ij"
        )
        self.register_buffer(
            "displacements", torch.stack([dx.flatten(), dy.flatten()], 0).float(), persistent=False
        )
        self.refine = nn.Conv2d(2 + window * window, 2, kernel_size=3, padding=1) if refine else None
        if self.refine is not None:
            nn.init.zeros_(self.refine.weight)
            nn.init.zeros_(self.refine.bias)

    def cost_volume(self, feat_key: torch.Tensor, feat_cur: torch.Tensor) -> torch.Tensor:
        """Costs [N, (2r+1)^2, h, w], displacement index k = (dy + r) * (2r+1) + (dx + r)."""
        if feat_key.shape != feat_cur.shape:
            raise ValueError(
                f"feature maps differ in shape: {tuple(feat_key.shape)} vs {tuple(feat_cur.shape)}"
            )
        r = self.radius
        _, c, h, w = feat_cur.shape
        padded = F.pad(feat_key, (r, r, r, r))
        costs = []
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                shifted = padded[:, :, dy : dy + h, dx : dx + w]
                costs.append((feat_cur * shifted).sum(1))
        return torch.stack(costs, dim=1) / c**0.5

    def forward(self, feat_key: torch.Tensor, feat_cur: torch.Tensor) -> torch.Tensor:
        """Flow [N, 2, h, w] (pixels, current -> keyframe) from two feature maps [N, C, h, w]."""
        costs = self.cost_volume(feat_key, feat_cur)
        prob = (costs / self.log_temperature.exp()).softmax(dim=1)
        flow = torch.einsum("nkhw,ck->nchw", prob, self.displacements.to(prob.dtype))
        if self.refine is not None:
            flow = flow + self.refine(torch.cat([flow, costs], dim=1))
        return flow
