"""Multi-scale deformable attention (MSDA, Zhu et al., Deformable DETR) and its sparse application.

Everything here is pure PyTorch (``F.grid_sample``), so it runs, and back-propagates, on CPU and
GPU alike; no custom CUDA op is needed.

* :func:`ms_deform_attn` is the sampling core with Deformable DETR's tensor layout.
* :class:`MSDeformAttn` is the attention module: exactly four Linears (``value_proj``,
  ``sampling_offsets``, ``attention_weights``, ``output_proj``), Deformable DETR's initialization,
  and no residual, dropout or norm inside.
* :class:`DeformableEncoderLayer` is one post-norm encoder layer (MSDA + ReLU FFN). At d=256,
  8 heads, 4 levels, 4 points and FFN 1024 it holds 756,864 parameters: the "+0.7M" that TFC adds
  to every backbone in the paper's Table 1.
* :func:`sparse_msda_update` runs that layer on the selected points of a dense query map only
  (TFC's *sparse MSDA*) and leaves every other point untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DeformableEncoderLayer",
    "MSDeformAttn",
    "flatten_levels",
    "ms_deform_attn",
    "ms_deform_attn_grid_sample",
    "pixel_centre_reference",
    "sine_position_encoding",
    "sparse_msda_update",
]


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or as it is when it is float64 (positions never go below float32)."""
    return x if x.dtype == torch.float64 else x.float()


def _level_sizes(spatial_shapes: torch.Tensor) -> list[tuple[int, int]]:
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must be [L, 2] (H, W), got shape {tuple(spatial_shapes.shape)}")
    return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Sample a multi-level value map at fractional locations and sum with attention weights.

    value [N, S, M, Dh] holds the L levels flattened row-major and concatenated
    (S = sum of H_l*W_l); spatial_shapes [L, 2] int64 gives each level's (H, W);
    sampling_locations [N, Q, M, L, P, 2] are (x, y) in [0, 1] with (0, 0) the top-left corner
    of the map (pixel (i, j) has its centre at ((j+.5)/W, (i+.5)/H)); attention_weights
    [N, Q, M, L, P]. Sampling is bilinear with zero padding (align_corners=False, grid = 2*loc-1),
    the convention of Deformable DETR's CUDA kernel. Returns [N, Q, M*Dh], heads concatenated
    head-major.
    """
    n, s, m, dh = value.shape
    sizes = _level_sizes(spatial_shapes)
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"sampling_locations must be [N, Q, M, L, P, 2], got shape {tuple(sampling_locations.shape)}"
        )
    _, q, m_loc, n_levels, n_points, _ = sampling_locations.shape
    if sampling_locations.shape[0] != n or m_loc != m or n_levels != len(sizes):
        raise ValueError(
            f"sampling_locations {tuple(sampling_locations.shape)} does not match value {tuple(value.shape)} "
            f"and {len(sizes)} levels"
        )
    if tuple(attention_weights.shape) != (n, q, m, n_levels, n_points):
        raise ValueError(
            f"attention_weights must be {(n, q, m, n_levels, n_points)}, got {tuple(attention_weights.shape)}"
        )
    if sum(h * w for h, w in sizes) != s:
        raise ValueError(
            f"value has S={s} positions but spatial_shapes {sizes} sum to {sum(h * w for h, w in sizes)}"
        )

    return _sample_and_sum(value, spatial_shapes.to(value.device), sampling_locations, attention_weights)


def _sample_and_sum(
    value: torch.Tensor, shapes: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The core of :func:`ms_deform_attn` as one weighted gather (``F.embedding_bag``).

    Bilinear sampling is linear in the value map, so every (query, head) output is a weighted sum
    of at most L*P*4 value rows: the four corners of each sampling point, each weighted by its
    bilinear weight times the point's attention weight, with corners outside the map weighted 0
    (zero padding). ``embedding_bag`` sums those rows straight out of ``value``'s own [N, S, M, Dh]
    layout, so no per-level transposed copy of the value map is made (what ``grid_sample`` needs)
    and the work is proportional to the number of queries: 2-3x faster than the grid_sample
    formulation on CPU. Gradients reach the value, the locations (through the bilinear weights)
    and the attention weights.
    """
    n, s, m, dh = value.shape
    _, q, _, n_levels, n_points, _ = locations.shape
    # int32 indices halve the memory traffic of the index arithmetic (the bulk of the cost).
    itype = torch.int32 if n * s * m < 2**31 else torch.int64
    shapes = shapes.to(itype)
    h = shapes[:, 0].view(1, 1, 1, n_levels, 1)
    w = shapes[:, 1].view(1, 1, 1, n_levels, 1)
    start = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1].to(itype)])
    # Row of (n, position, head) in value viewed as [N*S*M, Dh]: (n*S + position)*M + head.
    base = (
        torch.arange(n, device=value.device, dtype=itype).view(n, 1, 1, 1, 1) * (s * m)
        + torch.arange(m, device=value.device, dtype=itype).view(1, 1, m, 1, 1)
        + start.view(1, 1, 1, n_levels, 1) * m
    )
    # Pixel coordinates with pixel centres at integers (align_corners=False).
    x = locations[..., 0] * w - 0.5
    y = locations[..., 1] * h - 0.5
    x0f, y0f = x.floor(), y.floor()
    fx, fy = x - x0f, y - y0f
    x0, y0 = x0f.to(itype), y0f.to(itype)
    x1, y1 = x0 + 1, y0 + 1
    # Separable bilinear weights; a corner outside the map gets weight 0 (zero padding).
    wx0 = (1 - fx) * ((x0 >= 0) & (x0 < w))
    wx1 = fx * ((x1 >= 0) & (x1 < w))
    wy0 = (1 - fy) * ((y0 >= 0) & (y0 < h)) * weights
    wy1 = fy * ((y1 >= 0) & (y1 < h)) * weights
    # Clamped corner rows/columns (their weight is already 0 where clamping moved them),
    # pre-multiplied by M so that a corner's row is one addition.
    col0 = x0.clamp(min=0).minimum(w - 1) * m
    col1 = x1.clamp(min=0).minimum(w - 1) * m
    row0 = base + y0.clamp(min=0).minimum(h - 1) * (w * m)
    row1 = base + y1.clamp(min=0).minimum(h - 1) * (w * m)
    shape = (n, q, m, n_levels, n_points, 4)
    rows = torch.empty(shape, dtype=itype, device=value.device)
    for corner, (r, c) in enumerate(((row0, col0), (row0, col1), (row1, col0), (row1, col1))):
        torch.add(r, c, out=rows[..., corner])
    # Stacked (not written with out=) so that gradients reach the locations and weights.
    corner_weights = torch.stack((wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1), dim=-1).to(value.dtype)
    bag = n_levels * n_points * 4
    out = F.embedding_bag(
        rows.view(n * q * m, bag),
        value.reshape(n * s * m, dh),
        per_sample_weights=corner_weights.view(n * q * m, bag),
        mode="sum",
    )
    return out.view(n, q, m * dh)


def ms_deform_attn_grid_sample(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Deformable DETR's own formulation of :func:`ms_deform_attn` (per-level ``F.grid_sample``).

    Same arguments and result; kept as a second, independent implementation for the tests and
    for comparison in the benchmark (fvcore counts its ``grid_sampler`` ops by name).
    """
    n, s, m, dh = value.shape
    sizes = _level_sizes(spatial_shapes)
    _, q, _, n_levels, n_points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in sizes], dim=1)
    # grid_sample wants [batch, Q, P, 2] in [-1, 1]; heads are folded into the batch.
    grids = (2.0 * sampling_locations - 1.0).transpose(1, 2).flatten(0, 1)  # [N*M, Q, L, P, 2]
    weights = attention_weights.transpose(1, 2).flatten(0, 1)  # [N*M, Q, L, P]
    out = None
    # Accumulating level by level keeps one level's samples in memory, never all L of them.
    for level, (h, w) in enumerate(sizes):
        v = per_level[level].flatten(2).transpose(1, 2).reshape(n * m, dh, h, w)
        sampled = F.grid_sample(
            v, grids[:, :, level], mode="bilinear", padding_mode="zeros", align_corners=False
        )
        term = torch.einsum("bdqp,bqp->bdq", sampled, weights[:, :, level])  # [N*M, Dh, Q]
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(n, m * dh, q).transpose(1, 2).contiguous()


def flatten_levels(levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten level maps [N, C, H_l, W_l] into tokens [N, S, C] plus spatial_shapes [L, 2] (H, W)."""
    if not levels:
        raise ValueError("need at least one level map")
    tokens = torch.cat([x.flatten(2).transpose(1, 2) for x in levels], dim=1)
    shapes = torch.tensor([tuple(x.shape[-2:]) for x in levels], dtype=torch.long, device=tokens.device)
    return tokens, shapes


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with Deformable DETR's parameters and initialization.

    Each query predicts, per head and level, ``n_points`` offsets (in pixels of that level, so
    they are divided by the level's (W, H)) from its reference point and one weight per sampled
    point (softmax over levels x points, per head). The values come from ``input_flatten``
    through ``value_proj``, never from the query.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: head h looks 1..P pixels along direction 2*pi*h/M at every level."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float64) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], dim=-1)
        grid = grid / grid.abs().max(dim=-1, keepdim=True).values  # max(|x|, |y|) = 1
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float64).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten().to(self.sampling_offsets.bias.dtype))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def project_value(self, input_flatten: torch.Tensor) -> torch.Tensor:
        """value_proj of the flattened levels [N, S, C] -> [N, S, M, Dh] (independent of the queries)."""
        n, s, _ = input_flatten.shape
        return self.value_proj(input_flatten).view(n, s, self.n_heads, self.d_model // self.n_heads)

    def attend(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
    ) -> torch.Tensor:
        """Attention of ``query`` [N, Q, C] over an already projected ``value`` [N, S, M, Dh] -> [N, Q, C].

        ``reference_points`` is [N, Q, L, 2] or [N, Q, 2] (the same point on every level), (x, y)
        in [0, 1]. Splitting this from :meth:`project_value` lets a caller project (and cache) the
        dense value maps once and attend with any subset of queries.
        """
        n, q, _ = query.shape
        n_levels = self.n_levels
        if spatial_shapes.shape[0] != n_levels:
            raise ValueError(
                f"expected {n_levels} levels, got spatial_shapes of shape {tuple(spatial_shapes.shape)}"
            )
        if reference_points.dim() == 3:
            reference_points = reference_points[:, :, None, :].expand(n, q, n_levels, 2)
        if tuple(reference_points.shape) != (n, q, n_levels, 2):
            raise ValueError(
                f"reference_points must be [N, Q, L, 2] or [N, Q, 2] = {(n, q, n_levels, 2)}, "
                f"got {tuple(reference_points.shape)}"
            )
        locations, weights = self.sampling(query, reference_points, spatial_shapes)
        out = ms_deform_attn(value, spatial_shapes, locations, weights)
        return self.output_proj(out)

    def sampling(
        self, query: torch.Tensor, reference_points: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling locations [N, Q, M, L, P, 2] (float32) and attention weights [N, Q, M, L, P] of ``query``.

        ``reference_points`` as in :meth:`attend` (here already [N, Q, L, 2]). The offsets are
        level pixels divided by the level's (W, H) and added to the reference point, all in
        float32 (float64 for a float64 model) whatever the autocast or parameter dtype: in bfloat16
        (8-bit mantissa) a location near x = 1 on a 214-px-wide 1/4 level is off by up to ~1.4 px (0.11 px in
        float16). The attention weights are a softmax over levels x points per head, as in
        Deformable DETR (normalized per head, not over all heads).
        """
        n, q, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        offsets = _at_least_float32(self.sampling_offsets(query).view(n, q, m, n_levels, n_points, 2))
        weights = self.attention_weights(query).view(n, q, m, n_levels * n_points).softmax(-1)
        weights = weights.view(n, q, m, n_levels, n_points)
        normalizer = spatial_shapes.flip(-1).to(offsets.dtype)  # (W, H): offsets are in level pixels
        reference = reference_points.to(offsets.dtype)[:, :, None, :, None, :]
        locations = reference + offsets / normalizer[None, None, None, :, None, :]
        return locations, weights

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query [N, Q, C], reference_points [N, Q, L, 2] or [N, Q, 2], input_flatten [N, S, C] -> [N, Q, C].

        ``level_start_index`` is accepted for Deformable DETR's signature; the PyTorch core
        splits levels by H*W and does not need it.
        """
        del level_start_index
        return self.attend(query, reference_points, self.project_value(input_flatten), spatial_shapes)


class DeformableEncoderLayer(nn.Module):
    """One post-norm Deformable DETR encoder layer: MSDA then a ReLU FFN, each with residual + LayerNorm.

    q = norm1(q + dropout(MSDA(q + pos))); q = norm2(q + dropout(FFN(q))). The positional
    encoding enters only the attention's query (offsets and weights), as in Deformable DETR.
    """

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    @property
    def d_model(self) -> int:
        return self.self_attn.d_model

    def forward_with_value(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        pos: torch.Tensor | None = None,
        post_norm: bool = True,
    ) -> torch.Tensor:
        """The layer on queries [N, Q, C] with an already projected value [N, S, M, Dh] -> [N, Q, C].

        ``post_norm=False`` skips the two LayerNorms and keeps only the residual branches,
        q = query + MSDA; out = q + FFN(q), so that the output stays on the query's own scale
        (TFC's ``msda_output="residual"`` variant; the norms' parameters are then unused).
        """
        attn_query = query if pos is None else query + pos
        attended = self.self_attn.attend(attn_query, reference_points, value, spatial_shapes)
        q = query + self.dropout1(attended)
        if post_norm:
            q = self.norm1(q)
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(q))))
        out = q + self.dropout3(ffn)
        return self.norm2(out) if post_norm else out

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query [N, Q, C] attending over input_flatten [N, S, C] (the values, without pos) -> [N, Q, C]."""
        del level_start_index
        value = self.self_attn.project_value(input_flatten)
        return self.forward_with_value(query, reference_points, value, spatial_shapes, pos)


def sine_position_encoding(
    rows: torch.Tensor,
    cols: torch.Tensor,
    height: int,
    width: int,
    channels: int,
    temperature: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Parameter-free 2-D sine encoding of pixel (row, col) of an height x width map -> [..., channels].

    The pixel centre is normalized to (0, 2*pi] ((i+.5)/height * 2*pi), as DETR's normalized
    sine embedding; half the channels encode the row, half the column, each as
    [sin(u / T^(2k/F)) for k < F/2] + [cos(...)] with F = channels/2. Being a function of
    the normalized position, it is the same for a point whatever subset of points is encoded.
    """
    if channels % 4 != 0:
        raise ValueError(f"channels must be divisible by 4 for a 2-D sine encoding, got {channels}")
    feats = channels // 2
    k = torch.arange(feats // 2, device=rows.device, dtype=dtype)
    inv_freq = temperature ** (-2.0 * k / feats)
    u = (rows.to(dtype) + 0.5) / height * (2.0 * math.pi)
    v = (cols.to(dtype) + 0.5) / width * (2.0 * math.pi)
    pu = u[..., None] * inv_freq
    pv = v[..., None] * inv_freq
    return torch.cat([pu.sin(), pu.cos(), pv.sin(), pv.cos()], dim=-1)


def pixel_centre_reference(
    rows: torch.Tensor, cols: torch.Tensor, height: int, width: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Reference points ((j+.5)/W, (i+.5)/H) as (x, y) in [0, 1] for pixels (i, j) -> [..., 2]."""
    return torch.stack([(cols.to(dtype) + 0.5) / width, (rows.to(dtype) + 0.5) / height], dim=-1)


def sparse_msda_update(
    layer: DeformableEncoderLayer,
    z: torch.Tensor,
    pyramid: list[torch.Tensor] | None,
    mask: torch.Tensor,
    pos: torch.Tensor | str | None = "sine",
    value: torch.Tensor | None = None,
    spatial_shapes: torch.Tensor | None = None,
    post_norm: bool = True,
) -> torch.Tensor:
    """Update only the selected points of the query map ``z`` with the deformable layer (sparse MSDA).

    z [N, C, h, w] is the query map (TFC: the fused decoder feature at 1/4); pyramid is the list
    of L level maps [N, C, H_l, W_l] that the queries attend to; mask [N, h, w] bool selects the
    points to update. Each selected point (i, j) is a query with feature z[:, :, i, j] and
    reference point its own pixel centre ((j+.5)/w, (i+.5)/h) on every level. ``pos`` is the
    query's positional encoding: ``"sine"`` (the parameter-free :func:`sine_position_encoding`,
    computed for the selected points only), a map [N, C, h, w] read at the selected points, or
    None. The output equals z at unselected points, bit
    for bit, and the layer's output at selected points.

    Cost: the queries' offsets, weights, sampling, output projection and FFN are computed for
    the selected points only, so they scale with their number. The value projection of the
    pyramid is dense (one Linear per level position) and does not depend on the queries; pass
    ``value`` [N, S, M, Dh] (``layer.self_attn.project_value`` of the flattened pyramid) to reuse
    a projection computed earlier, e.g. cached levels of a keyframe, or a folded one; with
    ``value`` given, ``pyramid`` may be None and ``spatial_shapes`` [L, 2] (H, W) give the
    levels' sizes instead. ``post_norm`` is passed to the layer (see
    :meth:`DeformableEncoderLayer.forward_with_value`). Reference points are float32 whatever
    the autocast dtype. A batch with different counts
    per sample is padded to the largest count with unselected points whose results are dropped.
    No selected point returns ``z`` itself without any work.
    """
    n, c, h, w = z.shape
    if tuple(mask.shape) != (n, h, w):
        raise ValueError(f"mask must be [N, h, w] = {(n, h, w)}, got {tuple(mask.shape)}")
    if c != layer.d_model:
        raise ValueError(f"z has {c} channels but the layer's d_model is {layer.d_model}")
    flat_mask = mask.reshape(n, h * w).bool()
    counts = flat_mask.sum(1)
    q_max = int(counts.max()) if n else 0
    if q_max == 0:
        return z

    # Selected indices first (raster order), then unselected ones as padding: a stable sort.
    order = torch.argsort((~flat_mask).to(torch.uint8), dim=1, stable=True)[:, :q_max]  # [N, Q]
    rows = torch.div(order, w, rounding_mode="floor")
    cols = order % w
    z_tokens = z.flatten(2).transpose(1, 2)  # [N, h*w, C]
    query = torch.gather(z_tokens, 1, order[..., None].expand(n, q_max, c))
    # float32 whatever the dtype: a bfloat16 (j+.5)/w is off by up to ~0.4 px at w = 214.
    reference = pixel_centre_reference(rows, cols, h, w, torch.promote_types(z.dtype, torch.float32))
    if pos is None:
        encoding = None
    elif isinstance(pos, str):
        if pos != "sine":
            raise ValueError(f"pos must be 'sine', a [N, C, h, w] map or None, got {pos!r}")
        encoding = sine_position_encoding(rows, cols, h, w, c, dtype=z.dtype)
    else:
        if tuple(pos.shape) != (n, c, h, w):
            raise ValueError(f"pos map must be {(n, c, h, w)}, got {tuple(pos.shape)}")
        encoding = torch.gather(pos.flatten(2).transpose(1, 2), 1, order[..., None].expand(n, q_max, c))

    if value is None:
        if pyramid is None:
            raise ValueError("sparse_msda_update needs the pyramid, or a projected value with spatial_shapes")
        tokens, shapes = flatten_levels(pyramid)
        value = layer.self_attn.project_value(tokens)
    else:
        if spatial_shapes is not None:
            shapes = spatial_shapes.to(device=z.device, dtype=torch.long)
        elif pyramid is not None:
            shapes = torch.tensor([tuple(x.shape[-2:]) for x in pyramid], dtype=torch.long, device=z.device)
        else:
            raise ValueError("sparse_msda_update with a projected value needs the pyramid or spatial_shapes")
        if value.shape[:2] != (n, int(shapes.prod(1).sum())):
            raise ValueError(
                f"value {tuple(value.shape)} does not match the pyramid's "
                f"{n} x {int(shapes.prod(1).sum())} positions"
            )
    updated = layer.forward_with_value(query, reference, value, shapes, encoding, post_norm)  # [N, Q, C]

    keep = torch.arange(q_max, device=z.device)[None, :] < counts[:, None]  # drop the padding
    batch_index = torch.arange(n, device=z.device)[:, None].expand(n, q_max)
    out = z_tokens.clone()
    out[batch_index[keep], order[keep]] = updated[keep].to(out.dtype)
    return out.transpose(1, 2).reshape(n, c, h, w)
