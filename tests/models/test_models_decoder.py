"""SegFormer MLP decoder: each step against a direct computation written here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vssbench.models.decoder import SegFormerHead, resize_logits


def _head_and_feats(seed: int = 0) -> tuple[SegFormerHead, list[torch.Tensor]]:
    torch.manual_seed(seed)
    head = SegFormerHead((8, 16, 24, 32), embed_dim=12, num_classes=5).double().eval()
    # Non-trivial BN statistics so the fused step is really checked.
    head.linear_fuse.bn.running_mean.uniform_(-1, 1)
    head.linear_fuse.bn.running_var.uniform_(0.5, 2)
    torch.nn.init.normal_(head.linear_fuse.bn.weight)
    torch.nn.init.normal_(head.linear_fuse.bn.bias)
    sizes = [(12, 10), (6, 5), (3, 3), (2, 2)]
    feats = [torch.randn(2, c, h, w, dtype=torch.float64) for c, (h, w) in zip((8, 16, 24, 32), sizes)]
    return head, feats


def test_project_level_is_a_per_token_linear_then_bilinear() -> None:
    head, feats = _head_and_feats()
    lin = head.linear_c3.proj
    manual = torch.einsum("bchw,ec->behw", feats[2], lin.weight) + lin.bias[None, :, None, None]
    expected = F.interpolate(manual, size=(12, 10), mode="bilinear", align_corners=False)
    assert torch.allclose(head.project_level(3, feats[2], (12, 10)), expected, atol=1e-12)
    # Level 1 already at the target size: no resampling at all.
    lin1 = head.linear_c1.proj
    same = torch.einsum("bchw,ec->behw", feats[0], lin1.weight) + lin1.bias[None, :, None, None]
    assert torch.allclose(head.project_level(1, feats[0], (12, 10)), same, atol=1e-12)
    with pytest.raises(ValueError, match="1..4"):
        head.project_level(5, feats[0], (12, 10))


def test_fuse_concatenates_levels_in_reverse_order() -> None:
    head, feats = _head_and_feats()
    projected = head.project(feats)
    assert [tuple(p.shape) for p in projected] == [(2, 12, 12, 10)] * 4
    cat = torch.cat([projected[3], projected[2], projected[1], projected[0]], dim=1)  # [x̂4, x̂3, x̂2, x̂1]
    conv = F.conv2d(cat, head.linear_fuse.conv.weight)
    bn = head.linear_fuse.bn
    normed = (conv - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var + bn.eps)[
        None, :, None, None
    ]
    expected = torch.relu(normed * bn.weight[None, :, None, None] + bn.bias[None, :, None, None])
    assert torch.allclose(head.fuse(projected), expected, atol=1e-12)
    assert head.linear_fuse.conv.bias is None


def test_forward_is_classify_of_fuse_of_project_and_at_level1_size() -> None:
    head, feats = _head_and_feats()
    z = head.fuse(head.project(feats))
    expected = F.conv2d(z, head.linear_pred.weight, head.linear_pred.bias)  # dropout is off in eval
    logits = head(feats)
    assert logits.shape == (2, 5, 12, 10)
    assert torch.allclose(logits, expected, atol=1e-12)


def test_dropout2d_drops_whole_channels_in_training() -> None:
    head, feats = _head_and_feats()
    head.train()
    z = torch.ones(1, 12, 4, 4, dtype=torch.float64)
    torch.manual_seed(3)
    dropped = head.dropout(z)
    per_channel = dropped.flatten(2)
    assert torch.all((per_channel == 0).all(-1) | (per_channel == 1 / 0.9).all(-1))


def test_resize_logits_bilinear_and_identity() -> None:
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert resize_logits(x, (2, 2)) is x
    up = resize_logits(x, (4, 4))
    # align_corners=False: output pixel 1 samples input coordinate 0.25 -> 0.75*x0 + 0.25*x1.
    assert up[0, 0, 0, 1].item() == pytest.approx(0.25)
    assert up[0, 0, 1, 1].item() == pytest.approx(0.25 * 0.75 * 2 + 0.25 * 0.25 * 3 + 0.75 * 0.25 * 1)
    assert torch.equal(up[0, 0, 0, 0], torch.tensor(0.0))


def test_head_module_names_match_nvlabs_keys() -> None:
    keys = set(SegFormerHead((32, 64, 160, 256), 256, 124).state_dict())
    assert {
        "linear_c1.proj.weight",
        "linear_c4.proj.bias",
        "linear_fuse.conv.weight",
        "linear_fuse.bn.running_var",
        "linear_fuse.bn.num_batches_tracked",
        "linear_pred.weight",
        "linear_pred.bias",
    } <= keys
    assert not any("conv_seg" in k for k in keys)
    assert len(keys) == 18 - 2  # reference 2.2: B0 head has 18 entries including the 2 of conv_seg


def test_folded_mode_equals_reference_including_borders() -> None:
    """Folded terms (C_l -> E at native size, bias before the resize) equal the literal head in float64.

    Odd, non-integer scale factors put samples on the clamped borders: a resized constant (the
    folded bias) must stay that constant there too.
    """
    head, feats = _head_and_feats()
    reference = head(feats)
    head.decoder_mode = "folded"
    folded = head(feats)
    assert head.folded and torch.allclose(folded, reference, rtol=0, atol=1e-12)
    const = torch.full((1, 12, 3, 3), 0.7, dtype=torch.float64)
    resized = resize_logits(const, (12, 10))
    assert resized.shape == (1, 12, 12, 10) and torch.allclose(
        resized, torch.full_like(resized, 0.7), rtol=0, atol=1e-15
    )
    # One level's folded term equals its fuse term of the projected map.
    level3 = head.fuse_term(3, head.linear_c3(feats[2]), (12, 10))
    assert torch.allclose(head.folded_term(3, feats[2], (12, 10)), level3, rtol=0, atol=1e-12)
    a, c = head.folded_projection(2)
    assert a.shape == (12, 16) and c.shape == (12,)
