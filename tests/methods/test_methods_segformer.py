"""SegFormer adapter: step at input size, causality, training loss against a direct computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vssbench.methods import create
from vssbench.methods.segformer import SegFormer, SegFormerOptions, segmentation_loss


@pytest.fixture(scope="module")
def model() -> SegFormer:
    torch.manual_seed(0)
    return SegFormer("b0", num_classes=7).eval()


def _frames(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, 64, 72, generator=g) for _ in range(n)]


def _run(model: SegFormer, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    model.reset()
    with torch.no_grad():
        return [model.step(f) for f in frames]


def test_step_returns_upsampled_decoder_logits(model: SegFormer) -> None:
    image = _frames(1)[0]
    model.reset()
    with torch.no_grad():
        out = model.step(image)
        quarter = model.decode_head(model.encode(image))
    assert out.shape == (1, 7, 64, 72) and quarter.shape == (1, 7, 16, 18)
    expected = F.interpolate(quarter, size=(64, 72), mode="bilinear", align_corners=False)
    assert torch.equal(out, expected)
    assert model.last_step_info == {"keyframe": True} and model.t == 1
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model.step(torch.randn(3, 64, 64))


def test_every_frame_is_processed_alike_and_causally(model: SegFormer) -> None:
    frames = _frames(5)
    outs = _run(model, frames)
    with torch.no_grad():
        model.reset()
        single = [model.step(f) for f in frames[::-1]][::-1]  # order does not matter for an image method
    assert all(torch.equal(a, b) for a, b in zip(outs, single))
    changed = frames[:3] + [torch.randn(1, 3, 64, 72)] + frames[4:]
    again = _run(model, changed)
    assert all(torch.equal(a, b) for a, b in zip(outs[:3], again[:3]))  # the past is unaffected
    assert not torch.equal(outs[3], again[3])


def test_forward_train_is_per_frame_cross_entropy() -> None:
    torch.manual_seed(0)
    model = SegFormer("b0", num_classes=5, options=SegFormerOptions(drop_path_rate=0.0)).eval()
    images = torch.randn(2, 3, 3, 64, 64)
    labels = torch.randint(0, 5, (2, 3, 64, 64))
    labels[0, 1, :10] = 255
    losses = model.forward_train(images, labels)
    assert set(losses) == {"loss", "loss_seg"}
    with torch.no_grad():
        per_pixel, labelled = [], []
        for n in range(2):
            for t in range(3):
                logits = model.decode_head(model.encode(images[n, t : t + 1]))
                up = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
                ce = F.cross_entropy(up, labels[n, t : t + 1], ignore_index=255, reduction="none")
                per_pixel.append(ce.flatten())  # an ignored pixel is 0 and counts (mmseg, the default)
                labelled.append(ce[labels[n, t : t + 1] != 255])
    assert losses["loss"].item() == pytest.approx(torch.cat(per_pixel).mean().item(), rel=1e-5)
    torch.manual_seed(0)
    valid = SegFormer("b0", 5, SegFormerOptions(drop_path_rate=0.0, loss_reduction="valid")).eval()
    expected_valid = torch.cat(labelled).mean().item()
    assert valid.forward_train(images, labels)["loss"].item() == pytest.approx(expected_valid, rel=1e-5)
    losses["loss"].backward()
    assert model.backbone.patch_embed1.proj.weight.grad is not None


def test_loss_on_fully_ignored_labels_is_zero_not_nan() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 16, 16), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_forward_train_shape_errors(model: SegFormer) -> None:
    with pytest.raises(ValueError, match="N x T x 3 x H x W"):
        model.forward_train(torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="labels N x T x H x W"):
        model.forward_train(torch.randn(1, 2, 3, 64, 64), torch.zeros(1, 3, 64, 64, dtype=torch.long))


def test_parameter_groups_partition_the_model(model: SegFormer) -> None:
    groups = model.parameter_groups()
    assert set(groups) == {"encoder", "decoder"}
    assert groups["encoder"] is model.backbone and groups["decoder"] is model.decode_head
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in groups.values() for p in g.parameters()) == total


def test_options_validate_and_reach_the_model() -> None:
    m = create("segformer", decoder_dim="64", drop_path_rate="0.0", num_classes=3)
    assert m.decode_head.embed_dim == 64 and m.options == SegFormerOptions(4, 64, 0.0)
    assert all(blk.drop_path.p == 0.0 for blk in m.backbone.block4)
    for bad in ({"interval": 0}, {"decoder_dim": 0}, {"drop_path_rate": 1.5}):
        with pytest.raises(ValueError):
            SegFormerOptions(**bad)
