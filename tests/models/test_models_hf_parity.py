"""Parity with transformers' SegformerForSemanticSegmentation (skipped without transformers).

HF builds every LayerNorm with eps 1e-5, while the original (and vssbench) uses 1e-6 in the block
and stage norms; the test sets those HF norms to 1e-6 so that the comparison is exact up to
float rounding.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from vssbench.methods.segformer import SegFormer
from vssbench.models.checkpoint import hf_to_vssbench, load_checkpoint
from vssbench.models.mit import MIT_CONFIGS

transformers = pytest.importorskip("transformers")

_ORIGINAL_EPS_NORMS = re.compile(r"(layernorm_before|layernorm_after|stages\.\d+\.layer_norm)$")


def _hf_model(variant: str) -> nn.Module:
    cfg = MIT_CONFIGS[variant]
    config = transformers.SegformerConfig(
        hidden_sizes=list(cfg.embed_dims),
        depths=list(cfg.depths),
        num_attention_heads=list(cfg.num_heads),
        sr_ratios=list(cfg.sr_ratios),
        mlp_ratios=list(cfg.mlp_ratios),
        decoder_hidden_size=256,
        num_labels=124,
    )
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.LayerNorm):
                # Random affine parameters, so a swapped or misnamed norm cannot go unnoticed.
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
                if _ORIGINAL_EPS_NORMS.search(name):
                    module.eps = 1e-6
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


@pytest.mark.parametrize("variant", ["b0", "b1"])
def test_logits_match_transformers(variant: str, tmp_path: Path) -> None:
    hf = _hf_model(variant)
    hf.save_pretrained(tmp_path)  # writes the on-disk (4.x) names as model.safetensors
    ours = SegFormer(variant, num_classes=124).eval()
    report = load_checkpoint(ours, tmp_path)
    assert report.format == "hf" and report.ok and report.loaded == len(ours.state_dict())

    image = torch.randn(2, 3, 67, 93, generator=torch.Generator().manual_seed(2))  # odd, non-divisible size
    with torch.no_grad():
        expected = hf(pixel_values=image).logits  # 1/4 resolution
        got = ours.decode_head(ours.encode(image))
    assert got.shape == expected.shape == (2, 124, 17, 24)
    abs_diff = (got - expected).abs().max().item()
    rel_diff = abs_diff / expected.abs().max().item()
    print(f"\nHF parity {variant}: max |diff| {abs_diff:.3e}, relative to max |logit| {rel_diff:.3e}")
    assert rel_diff < 1e-4

    # The transformers-5 in-memory names (model.state_dict()) map onto the same weights.
    again = SegFormer(variant, num_classes=124).eval()
    result = again.load_state_dict(hf_to_vssbench(hf.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in ours.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
