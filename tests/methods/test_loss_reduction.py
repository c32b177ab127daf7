"""``loss_reduction``: mmseg 0.x's mean over all pixels (the released default) against the valid mean."""

from __future__ import annotations

import pytest
import torch

from vssbench.data.samplers import ReferenceClipSampler
from vssbench.methods import create, describe, method_options

MMSEG_BASED = ["segformer", "feature_reuse", "tfc", "cffm", "mrcfa"]


@pytest.mark.parametrize("name", MMSEG_BASED)
def test_mmseg_is_the_default_of_every_mmseg_based_method(name: str) -> None:
    assert method_options(name)().loss_reduction == "mmseg"
    assert describe(name)["options"]["loss_reduction"] == "mmseg"


@pytest.mark.parametrize("name", ["segformer", "cffm"])
def test_half_the_pixels_ignored_halves_the_loss(name: str) -> None:
    frames = 4 if name == "segformer" else len(ReferenceClipSampler().dilations) + 1
    g = torch.Generator().manual_seed(0)
    images = torch.randn(1, frames, 3, 64, 64, generator=g)
    labels = torch.randint(0, 5, (1, frames, 64, 64), generator=g)
    labels[..., :32] = 255  # exactly half of every frame's pixels
    losses = {}
    for reduction in ("mmseg", "valid"):
        torch.manual_seed(0)
        model = create(name, num_classes=5, loss_reduction=reduction, dropout=0.0, drop_path_rate=0.0).train()
        losses[reduction] = model.forward_train(images, labels)["loss"]
    assert (losses["mmseg"] / losses["valid"]).item() == pytest.approx(0.5, rel=1e-5)
