"""Method registry: every built-in adapter is registered; errors list what exists; --set coercion."""

from __future__ import annotations

import pkgutil
import sys

import pytest
import torch

import vssbench.methods as methods
from vssbench.errors import OptionError
from vssbench.methods import available, create, method_info, method_options
from vssbench.methods.feature_reuse import FeatureReuse, FeatureReuseOptions
from vssbench.methods.segformer import SegFormer, SegFormerOptions


def _adapter_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.iter_modules(methods.__path__)
        if info.name != "base" and not info.name.startswith("_") and not info.ispkg
    ]


def test_every_adapter_file_is_imported_and_registered() -> None:
    modules = _adapter_modules()
    assert {"segformer", "feature_reuse"} <= set(modules)
    for name in modules:
        # methods/__init__.py must import each adapter explicitly (no hidden side-effect imports).
        assert f"vssbench.methods.{name}" in sys.modules, (
            f"vssbench/methods/__init__.py does not import {name}"
        )
    registered = set(available())
    assert set(modules) <= registered  # each adapter file registers the method it is named after
    assert available() == sorted(registered)


def test_infos_and_options() -> None:
    seg = method_info("segformer")
    assert (seg.name, seg.type, seg.default_interval) == ("segformer", "Image", 4)
    assert seg.paper == "SegFormer (Xie et al., NeurIPS 2021)"
    reuse = method_info("feature_reuse")
    assert (reuse.type, reuse.default_interval) == ("E", 4)
    assert reuse.paper == "Clockwork convnets (Shelhamer et al., ECCV 2016), as the TFC paper's baseline"
    assert method_options("segformer") is SegFormerOptions
    assert method_options("feature_reuse") is FeatureReuseOptions


def test_create_builds_the_adapter_in_eval_mode() -> None:
    model = create("feature_reuse", backbone="b0", num_classes=11, interval="2")
    assert isinstance(model, FeatureReuse) and not model.training
    assert model.options.interval == 2 and isinstance(model.options.interval, int)
    assert model.decode_head.num_classes == 11 and model.backbone.variant == "b0"
    model.reset()
    with torch.no_grad():
        model.step(torch.randn(1, 3, 64, 64))
        model.step(torch.randn(1, 3, 64, 64))
        assert model.last_step_info == {"keyframe": False}
        model.step(torch.randn(1, 3, 64, 64))
        assert model.last_step_info == {"keyframe": True}
    assert type(create("segformer")) is SegFormer


def test_unknown_names_and_bad_values_list_what_exists() -> None:
    with pytest.raises(OptionError, match=r"unknown method 'nope'; available: .*feature_reuse.*segformer"):
        create("nope")
    with pytest.raises(OptionError, match=r"backbone 'b9' for method 'segformer'; available: b0, b1, b2"):
        create("segformer", backbone="b9")
    with pytest.raises(OptionError, match=r"unknown option 'stride'.*interval \(default 4\).*decoder_dim"):
        create("feature_reuse", stride=2)
    with pytest.raises(OptionError, match=r"feature_reuse.interval must be int, got 'two'"):
        create("feature_reuse", interval="two")
    with pytest.raises(OptionError, match="interval must be >= 1"):
        create("feature_reuse", interval="0")
