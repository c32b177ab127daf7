"""MSDA core, module, encoder layer and sparse application against naive references."""

from __future__ import annotations

import math

import pytest
import torch

from vssbench.models.msda import (
    DeformableEncoderLayer,
    MSDeformAttn,
    flatten_levels,
    ms_deform_attn,
    ms_deform_attn_grid_sample,
    pixel_centre_reference,
    sine_position_encoding,
    sparse_msda_update,
)


def naive_ms_deform_attn(value, shapes, locations, weights):
    """Per-point bilinear sampling with the CUDA kernel's formula h_im = y*H - 0.5, zero outside."""
    n, s, m, dh = value.shape
    _, q, _, n_levels, n_points, _ = locations.shape
    starts = [0]
    for h, w in shapes.tolist():
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, q, m, dh, dtype=value.dtype)
    for b in range(n):
        for qi in range(q):
            for head in range(m):
                for lev, (h, w) in enumerate(shapes.tolist()):
                    vmap = value[b, starts[lev] : starts[lev + 1], head].reshape(h, w, dh)
                    for p in range(n_points):
                        x, y = locations[b, qi, head, lev, p].tolist()
                        h_im, w_im = y * h - 0.5, x * w - 0.5
                        if not (-1 < h_im < h and -1 < w_im < w):
                            continue
                        h0, w0 = math.floor(h_im), math.floor(w_im)
                        lh, lw = h_im - h0, w_im - w0
                        sample = torch.zeros(dh, dtype=value.dtype)
                        for hh, ww, cw in (
                            (h0, w0, (1 - lh) * (1 - lw)),
                            (h0, w0 + 1, (1 - lh) * lw),
                            (h0 + 1, w0, lh * (1 - lw)),
                            (h0 + 1, w0 + 1, lh * lw),
                        ):
                            if 0 <= hh < h and 0 <= ww < w:
                                sample += cw * vmap[hh, ww]
                        out[b, qi, head] += weights[b, qi, head, lev, p] * sample
    return out.reshape(n, q, m * dh)


def test_core_matches_naive_reference_including_points_outside() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[3, 4], [2, 5]])
    n, q, m, dh, n_points = 2, 5, 2, 3, 3
    value = torch.randn(n, 12 + 10, m, dh, generator=g, dtype=torch.float64)
    # Locations in [-0.4, 1.4]: many fall partly or wholly outside the map.
    locations = torch.rand(n, q, m, 2, n_points, 2, generator=g, dtype=torch.float64) * 1.8 - 0.4
    weights = torch.rand(n, q, m, 2, n_points, generator=g, dtype=torch.float64)
    outside = (locations < 0) | (locations > 1)
    assert outside.any() and (~outside).all(-1).any()
    got = ms_deform_attn(value, shapes, locations, weights)
    want = naive_ms_deform_attn(value, shapes, locations, weights)
    assert got.shape == (n, q, m * dh)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_grid_sample_formulation_matches_naive_and_gradients_agree() -> None:
    g = torch.Generator().manual_seed(3)
    shapes = torch.tensor([[3, 4], [2, 5]])
    n, q, m, dh, n_points = 2, 4, 2, 3, 2
    value = torch.randn(n, 22, m, dh, generator=g, dtype=torch.float64, requires_grad=True)
    locations = (
        torch.rand(n, q, m, 2, n_points, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    ).requires_grad_()
    weights = torch.rand(n, q, m, 2, n_points, generator=g, dtype=torch.float64, requires_grad=True)
    want = naive_ms_deform_attn(value.detach(), shapes, locations.detach(), weights.detach())
    slow = ms_deform_attn_grid_sample(value, shapes, locations, weights)
    fast = ms_deform_attn(value, shapes, locations, weights)
    torch.testing.assert_close(slow, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast, want, rtol=0, atol=1e-12)
    probe = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    grads_fast = torch.autograd.grad((fast * probe).sum(), (value, locations, weights))
    grads_slow = torch.autograd.grad((slow * probe).sum(), (value, locations, weights))
    for got, ref in zip(grads_fast, grads_slow):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
    assert grads_fast[1].abs().sum() > 0  # the locations do receive a gradient


def test_point_far_outside_contributes_zero() -> None:
    value = torch.ones(1, 6, 1, 2, dtype=torch.float64)
    shapes = torch.tensor([[2, 3]])
    locations = torch.tensor([[-0.6, 0.5], [0.5, 1.6], [1.0 + 1 / 3, 0.5]], dtype=torch.float64)
    locations = locations.view(1, 3, 1, 1, 1, 2)
    weights = torch.ones(1, 3, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn(value, shapes, locations, weights)
    # x=-0.6 -> w_im = -2.3, y=1.6 -> h_im = 2.7: wholly outside; x=4/3 -> w_im = 3.5 (W=3): outside.
    assert torch.equal(out, torch.zeros(1, 3, 2, dtype=torch.float64))


def test_pixel_centre_reference_returns_the_pixel() -> None:
    g = torch.Generator().manual_seed(1)
    h, w = 5, 7
    value = torch.randn(1, h * w, 1, 4, generator=g, dtype=torch.float64)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ref = pixel_centre_reference(rows.flatten(), cols.flatten(), h, w, torch.float64)
    locations = ref.view(1, h * w, 1, 1, 1, 2)
    weights = torch.ones(1, h * w, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn(value, torch.tensor([[h, w]]), locations, weights)
    torch.testing.assert_close(out, value[:, :, 0], rtol=0, atol=1e-12)


def test_core_rejects_mismatched_shapes() -> None:
    value = torch.zeros(1, 10, 2, 4)
    locations = torch.zeros(1, 3, 2, 1, 2, 2)
    weights = torch.zeros(1, 3, 2, 1, 2)
    with pytest.raises(ValueError, match="sum to 12"):
        ms_deform_attn(value, torch.tensor([[3, 4]]), locations, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, torch.tensor([[2, 5]]), locations, weights[..., :1])


def test_init_directions_and_uniform_weights() -> None:
    attn = MSDeformAttn(d_model=32, n_levels=4, n_heads=8, n_points=4)
    query = torch.randn(2, 6, 32)
    offsets = attn.sampling_offsets(query).view(2, 6, 8, 4, 4, 2)
    directions = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]]).float()
    for head in range(8):
        for point in range(4):
            # Same direction on every level, point p at distance (p+1) along it, whatever the query.
            want = (point + 1) * directions[head]
            torch.testing.assert_close(
                offsets[:, :, head, :, point], want.expand(2, 6, 4, 2), rtol=0, atol=1e-6
            )
    weights = attn.attention_weights(query).view(2, 6, 8, 16).softmax(-1)
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / 16), rtol=0, atol=1e-7)
    assert torch.equal(attn.value_proj.bias, torch.zeros(32)) and torch.equal(
        attn.output_proj.bias, torch.zeros(32)
    )


def _identity_attention(offset_xy: tuple[float, float]) -> MSDeformAttn:
    attn = MSDeformAttn(d_model=2, n_levels=1, n_heads=1, n_points=1).double()
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor(offset_xy, dtype=torch.float64))
        for lin in (attn.value_proj, attn.output_proj):
            lin.weight.copy_(torch.eye(2, dtype=torch.float64))
    return attn


@pytest.mark.parametrize("offset,shift", [((1.0, 0.0), (0, 1)), ((0.0, 1.0), (1, 0)), ((-2.0, 1.0), (1, -2))])
def test_offsets_are_in_pixels_of_the_level(offset, shift) -> None:
    """Offset (dx, dy) px from pixel (i, j)'s centre reads pixel (i+dy, j+dx) on a non-square level."""
    h, w = 3, 5
    attn = _identity_attention(offset)
    vmap = torch.arange(h * w * 2, dtype=torch.float64).view(1, h * w, 2)
    i, j = 1, 2
    ref = pixel_centre_reference(torch.tensor([[i]]), torch.tensor([[j]]), h, w, torch.float64)
    out = attn(torch.zeros(1, 1, 2, dtype=torch.float64), ref, vmap, torch.tensor([[h, w]]))
    want = vmap[0, (i + shift[0]) * w + (j + shift[1])]
    torch.testing.assert_close(out[0, 0], want, rtol=0, atol=1e-12)


def test_encoder_layer_parameter_count() -> None:
    layer = DeformableEncoderLayer()
    # sampling_offsets 256->256, attention_weights 256->128, value/output 256->256, FFN, two norms.
    attn = (256 * 256 + 256) + (256 * 128 + 128) + 2 * (256 * 256 + 256)
    ffn = (256 * 1024 + 1024) + (1024 * 256 + 256)
    assert sum(p.numel() for p in layer.parameters()) == attn + ffn + 2 * 512 == 756_864
    names = {name for name, _ in layer.self_attn.named_children()}
    assert names == {"value_proj", "sampling_offsets", "attention_weights", "output_proj"}


def test_encoder_layer_is_post_norm_with_residual() -> None:
    torch.manual_seed(0)
    layer = DeformableEncoderLayer(d_model=16, d_ffn=32, n_levels=2, n_heads=2, n_points=2).eval()
    levels = [torch.randn(1, 16, 4, 4), torch.randn(1, 16, 2, 2)]
    tokens, shapes = flatten_levels(levels)
    query, pos = torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    ref = torch.rand(1, 3, 2)
    got = layer(query, ref, tokens, shapes, pos=pos)
    q = layer.norm1(query + layer.self_attn(query + pos, ref, tokens, shapes))
    want = layer.norm2(q + layer.linear2(torch.relu(layer.linear1(q))))
    torch.testing.assert_close(got, want)


def _setup(n: int = 1, c: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    layer = DeformableEncoderLayer(d_model=c, d_ffn=64, n_levels=3, n_heads=4, n_points=2).eval()
    with torch.no_grad():  # random offsets/weights so the sampling is not the init grid
        layer.self_attn.sampling_offsets.weight.normal_(0, 0.2)
        layer.self_attn.attention_weights.weight.normal_(0, 0.2)
    z = torch.randn(n, c, 8, 12)
    pyramid = [torch.randn(n, c, 8, 12), torch.randn(n, c, 4, 6), torch.randn(n, c, 2, 3)]
    return layer, z, pyramid


def _dense(layer, z, pyramid):
    """The layer applied to every point of z, written directly (no gather/scatter)."""
    n, c, h, w = z.shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.flatten().expand(n, -1), cols.flatten().expand(n, -1)
    tokens, shapes = flatten_levels(pyramid)
    out = layer(
        z.flatten(2).transpose(1, 2),
        pixel_centre_reference(rows, cols, h, w),
        tokens,
        shapes,
        pos=sine_position_encoding(rows, cols, h, w, c),
    )
    return out.transpose(1, 2).reshape(n, c, h, w)


def test_sparse_with_every_point_equals_dense() -> None:
    layer, z, pyramid = _setup(n=2)
    mask = torch.ones(2, 8, 12, dtype=torch.bool)
    sparse = sparse_msda_update(layer, z, pyramid, mask)
    torch.testing.assert_close(sparse, _dense(layer, z, pyramid), rtol=0, atol=1e-6)


def test_sparse_with_mask_updates_only_selected_points() -> None:
    layer, z, pyramid = _setup(n=2)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(2, 8, 12, generator=g) < 0.2
    mask[0] = False
    mask[0, 0, 0] = mask[0, 7, 11] = mask[0, 3, 5] = True  # different counts per sample
    assert mask[0].sum() != mask[1].sum()
    out = sparse_msda_update(layer, z, pyramid, mask)
    dense = _dense(layer, z, pyramid)
    sel = mask[:, None].expand_as(z)
    torch.testing.assert_close(out[sel], dense[sel], rtol=0, atol=1e-6)
    assert torch.equal(out[~sel], z[~sel])
    # Each sample alone gives the same result as the padded batch.
    for b in range(2):
        alone = sparse_msda_update(layer, z[b : b + 1], [p[b : b + 1] for p in pyramid], mask[b : b + 1])
        torch.testing.assert_close(alone, out[b : b + 1], rtol=0, atol=1e-6)


def test_sparse_with_no_point_returns_z() -> None:
    layer, z, pyramid = _setup()
    assert sparse_msda_update(layer, z, pyramid, torch.zeros(1, 8, 12, dtype=torch.bool)) is z


def test_sparse_precomputed_value_and_pos_map() -> None:
    layer, z, pyramid = _setup()
    mask = torch.rand(1, 8, 12) < 0.3
    tokens, _ = flatten_levels(pyramid)
    value = layer.self_attn.project_value(tokens)
    base = sparse_msda_update(layer, z, pyramid, mask)
    assert torch.equal(sparse_msda_update(layer, z, pyramid, mask, value=value), base)
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(12), indexing="ij")
    pos_map = sine_position_encoding(rows, cols, 8, 12, 32).permute(2, 0, 1)[None]
    torch.testing.assert_close(
        sparse_msda_update(layer, z, pyramid, mask, pos=pos_map), base, rtol=0, atol=1e-6
    )
    without = sparse_msda_update(layer, z, pyramid, mask, pos=None)
    assert not torch.allclose(without, base)
    with pytest.raises(ValueError, match="mask"):
        sparse_msda_update(layer, z, pyramid, mask[:, :4])


def test_sparse_gradients_reach_offsets_values_and_inputs() -> None:
    layer, z, pyramid = _setup()
    layer.train()
    z.requires_grad_(True)
    mask = torch.zeros(1, 8, 12, dtype=torch.bool)
    mask[0, 2:5, 3:9] = True
    out = sparse_msda_update(layer, z, pyramid, mask)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    attn = layer.self_attn
    params = (
        attn.sampling_offsets.weight,
        attn.attention_weights.weight,
        attn.value_proj.weight,
        layer.linear1.weight,
    )
    for param in params:
        assert param.grad is not None and param.grad.abs().sum() > 0
    # Unselected points pass straight through: their gradient is exactly the upstream one.
    unselected = ~mask[:, None].expand_as(z)
    assert z.grad is not None and torch.equal(z.grad[unselected], upstream[unselected])


def test_sine_encoding_depends_only_on_position() -> None:
    enc = sine_position_encoding(torch.tensor([0, 3]), torch.tensor([1, 1]), 4, 6, 16)
    assert enc.shape == (2, 16)
    # First column channel: sin(2*pi*(j+.5)/W) at frequency 1.
    assert enc[0, 8].item() == pytest.approx(math.sin(2 * math.pi * 1.5 / 6), abs=1e-6)
    assert enc[0, 0].item() == pytest.approx(math.sin(2 * math.pi * 0.5 / 4), abs=1e-6)
    torch.testing.assert_close(enc[:, 8:], enc[0:1, 8:].expand(2, 8))  # same column, same column half


def _capture_locations(layer: DeformableEncoderLayer, z, pyramid, mask, autocast: bool) -> torch.Tensor:
    """The sampling locations that a sparse update computes (optionally under bfloat16 autocast)."""
    captured = []
    original = layer.self_attn.sampling

    def spy(*args, **kwargs):
        locations, weights = original(*args, **kwargs)
        captured.append(locations)
        return locations, weights

    layer.self_attn.sampling = spy
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            sparse_msda_update(layer, z, pyramid, mask)
    finally:
        del layer.self_attn.sampling
    return captured[0]


def test_sampling_locations_are_float32_under_bfloat16_autocast() -> None:
    """A 120 x 214 query map (1/4 of 480x853): bf16 would put x near 1 off by up to ~1.4 px."""
    torch.manual_seed(0)
    layer = DeformableEncoderLayer(32, 64, n_levels=2, n_heads=4, n_points=2).eval()
    h, w = 120, 214
    z = torch.randn(1, 32, h, w)
    pyramid = [torch.randn(1, 32, h, w), torch.randn(1, 32, 60, 107)]
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, ::7, w - 40 :] = True  # points on the right, where x ~ 1 and bf16 spacing is 1/128
    fp32 = _capture_locations(layer, z, pyramid, mask, autocast=False)
    bf16 = _capture_locations(layer, z, pyramid, mask, autocast=True)
    assert bf16.dtype == torch.float32
    # At init the offsets are small integers (exact in bf16): the locations are equal.
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=1e-6)
    # With learned offsets only the bf16 rounding of the offsets themselves remains (|offset| <~ 4 px).
    torch.nn.init.normal_(layer.self_attn.sampling_offsets.weight, std=0.02)
    fp32 = _capture_locations(layer, z, pyramid, mask, autocast=False)
    bf16 = _capture_locations(layer, z, pyramid, mask, autocast=True)
    pixels = torch.tensor([w, h], dtype=torch.float32)
    error = ((bf16 - fp32)[..., 0, :, :] * pixels).abs().max()  # level 0, in its pixels
    assert error < 0.05
    # What bf16 arithmetic on the locations would have done: x = (j + .5)/w itself rounds.
    cols = torch.arange(w - 40, w, dtype=torch.float32)
    naive = ((cols + 0.5) / w).bfloat16().float()
    assert ((naive - (cols + 0.5) / w) * w).abs().max() > 0.3
