"""MiT encoder: published configs, parameter counts, stage sizes, attention maths, drop path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vssbench.methods.segformer import SegFormer
from vssbench.models.mit import MIT_CONFIGS, DropPath, EfficientSelfAttention, MixTransformer


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_configs_match_reference_table() -> None:
    table = {  # variant: (embed_dims, depths, default decoder dim) (NVlabs configs)
        "b0": ((32, 64, 160, 256), (2, 2, 2, 2), 256),
        "b1": ((64, 128, 320, 512), (2, 2, 2, 2), 256),
        "b2": ((64, 128, 320, 512), (3, 4, 6, 3), 768),
        "b3": ((64, 128, 320, 512), (3, 4, 18, 3), 768),
        "b4": ((64, 128, 320, 512), (3, 8, 27, 3), 768),
        "b5": ((64, 128, 320, 512), (3, 6, 40, 3), 768),
    }
    assert set(MIT_CONFIGS) == set(table)
    for name, (dims, depths, decoder) in table.items():
        cfg = MIT_CONFIGS[name]
        assert (cfg.embed_dims, cfg.depths, cfg.default_decoder_dim) == (dims, depths, decoder)
        assert (
            cfg.num_heads == (1, 2, 5, 8) and cfg.sr_ratios == (8, 4, 2, 1) and cfg.mlp_ratios == (4, 4, 4, 4)
        )


def test_b0_parameter_count_at_150_classes_is_the_reference_exactly() -> None:
    # HF SegFormer-B0, 150 classes, decoder 256 = 3,752,694.
    assert _count(SegFormer("b0", num_classes=150)) == 3_752_694


@pytest.mark.parametrize(("variant", "paper_millions"), [("b0", 3.8), ("b1", 13.8), ("b5", 82.1)])
def test_parameter_counts_match_tfc_table1(variant: str, paper_millions: float) -> None:
    # TFC paper Table 1: 124 classes, decoder 256. Meta tensors carry real shapes, so the count is exact.
    with torch.device("meta"):
        model = SegFormer(variant, num_classes=124)
    assert abs(_count(model) / 1e6 - paper_millions) <= 0.1


def test_b0_exact_count_decomposes_into_encoder_and_head() -> None:
    model = SegFormer("b0", num_classes=124)
    head = (
        4 * 256 * 256 + 256 * (32 + 64 + 160 + 256) + 4 * 256 + 2 * 256 + 124 * 257
    )  # linear_c, fuse, bn, pred
    assert _count(model.decode_head) == head
    assert _count(model) == 3_752_694 - 26 * 257  # 150 -> 124 classes removes 26 rows of linear_pred


def test_stage_sizes_at_evaluation_resolution() -> None:
    with torch.device("meta"):  # shapes only: 480x853 without spending real compute
        feats = MixTransformer("b0")(torch.empty(1, 3, 480, 853))
    assert [tuple(f.shape[-2:]) for f in feats] == [(120, 214), (60, 107), (30, 54), (15, 27)]
    assert [f.shape[1] for f in feats] == [32, 64, 160, 256]


def test_stage_sizes_odd_input_worked_by_hand() -> None:
    # 67x93: ceil(67/4)=17, ceil(93/4)=24; then 9x12, 5x6, 3x3 (ceil halving).
    model = MixTransformer("b0").eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 67, 93))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 17, 24),
        (2, 64, 9, 12),
        (2, 160, 5, 6),
        (2, 256, 3, 3),
    ]


def test_forward_stage_composes_to_forward_and_num_stages() -> None:
    torch.manual_seed(0)
    model = MixTransformer("b0").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        two = model(x, num_stages=2)
        y = x
        staged = []
        for index in range(4):
            y = model.forward_stage(index, y)
            staged.append(y)
    for a, b in zip(full, staged):
        assert torch.equal(a, b)
    assert len(two) == 2 and all(torch.equal(a, b) for a, b in zip(two, full[:2]))


def test_norm_eps_follow_the_original() -> None:
    model = MixTransformer("b0")
    eps = {name: m.eps for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps["block1.0.norm1"] == 1e-6 and eps["block4.1.norm2"] == 1e-6 and eps["norm3"] == 1e-6
    assert eps["patch_embed1.norm"] == 1e-5 and eps["block2.0.attn.norm"] == 1e-5
    assert "block4.0.attn.norm" not in eps and not hasattr(model.block4[0].attn, "sr")


def test_module_names_match_nvlabs_keys() -> None:
    keys = set(MixTransformer("b0").state_dict())
    for key in [
        "patch_embed1.proj.weight",
        "patch_embed4.norm.bias",
        "block1.0.attn.q.weight",
        "block1.1.attn.kv.bias",
        "block3.1.attn.sr.weight",
        "block3.1.attn.norm.weight",
        "block2.0.mlp.dwconv.dwconv.weight",
        "block4.1.mlp.fc2.bias",
        "norm4.weight",
    ]:
        assert key in keys
    assert MixTransformer("b0").state_dict()["block1.0.attn.kv.weight"].shape == (64, 32)
    assert len(keys) == 176  # reference 2.2: B0 backbone has 176 state-dict entries


def test_attention_equals_naive_reference() -> None:
    torch.manual_seed(1)
    for heads, sr in [(2, 2), (5, 1)]:
        dim = 40 if heads == 2 else 160
        attn = EfficientSelfAttention(dim, heads, sr).double()
        for p in attn.parameters():
            torch.nn.init.normal_(p, std=0.2)
        h, w = 6, 5
        x = torch.randn(2, h * w, dim, dtype=torch.float64)
        # Naive: explicit per-head loops, kv weight rows [k; v], softmax(q k^T / sqrt(d)) v.
        if sr > 1:
            grid = x.transpose(1, 2).reshape(2, dim, h, w)
            red = F.conv2d(grid, attn.sr.weight, attn.sr.bias, stride=sr).flatten(2).transpose(1, 2)
            red = F.layer_norm(red, (dim,), attn.norm.weight, attn.norm.bias, eps=1e-5)
        else:
            red = x
        q = x @ attn.q.weight.T + attn.q.bias
        k = red @ attn.kv.weight[:dim].T + attn.kv.bias[:dim]
        v = red @ attn.kv.weight[dim:].T + attn.kv.bias[dim:]
        d = dim // heads
        outs = []
        for i in range(heads):
            sl = slice(i * d, (i + 1) * d)
            weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)
            outs.append(weights @ v[..., sl])
        expected = torch.cat(outs, dim=-1) @ attn.proj.weight.T + attn.proj.bias
        assert torch.allclose(attn(x, h, w), expected, atol=1e-10)


def test_drop_path_is_identity_in_eval_and_per_sample_in_training() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 2)
    assert torch.equal(drop.eval()(x), x)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))  # whole samples dropped
    kept = (per_sample[:, 0] != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.03


def test_drop_path_rates_grow_linearly() -> None:
    model = MixTransformer("b0", drop_path_rate=0.1)
    rates = [blk.drop_path.p for s in range(1, 5) for blk in getattr(model, f"block{s}")]
    assert rates == pytest.approx([0.1 * i / 7 for i in range(8)])


def test_init_follows_nvlabs() -> None:
    torch.manual_seed(0)
    model = MixTransformer("b1")
    fc1 = model.block3[0].mlp.fc1.weight  # 1280 x 320
    assert abs(fc1.std().item() - 0.02) < 0.002 and fc1.abs().max().item() <= 2.0
    conv = model.patch_embed2.proj.weight  # fan_out = 3*3*128
    assert abs(conv.std().item() - math.sqrt(2 / (9 * 128))) < 0.005
    dw = model.block1[0].mlp.dwconv.dwconv.weight  # groups = channels: fan_out = 9
    assert abs(dw.std().item() - math.sqrt(2 / 9)) < 0.03
    assert torch.all(model.block1[0].mlp.fc1.bias == 0) and torch.all(model.norm2.weight == 1)


def test_too_small_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="spatial-reduction"):
        MixTransformer("b0")(torch.randn(1, 3, 20, 64))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        MixTransformer("b0")(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="available: b0"):
        MixTransformer("b9")
