"""The registry's generic behaviour, on toy methods registered here (built-in ones are tested elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest
import torch

from vssbench.errors import OptionError
from vssbench.methods import base


@dataclass(frozen=True)
class _ToyOptions:
    interval: int = 4
    threshold: float = 0.8
    mode: Literal["soft", "hard"] = "soft"
    focal: bool = True
    budget: Optional[float] = None


class _Toy(base.VideoSegmenter):
    info = base.MethodInfo(name="_toy_registry", paper="none", type="Image")

    def __init__(self, options: _ToyOptions) -> None:
        super().__init__()
        self.options = options
        self.scale = torch.nn.Parameter(torch.ones(()))

    def reset(self) -> None:
        pass

    def step(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.scale


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the toy method in a private copy of the registry (other tests never see it)."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    base.register(_Toy.info, _ToyOptions)(lambda backbone, num_classes, options: _Toy(options))


def test_create_coerces_string_options() -> None:
    model = base.create("_toy_registry", interval="2", threshold="0.5", mode="hard", focal="false", budget="none")
    assert model.options == _ToyOptions(interval=2, threshold=0.5, mode="hard", focal=False, budget=None)
    assert not model.training


def test_optional_float_accepts_number() -> None:
    assert base.create("_toy_registry", budget="0.25").options.budget == 0.25


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"bogus": 1}, "unknown option 'bogus'.*interval"),
        ({"interval": "two"}, "interval must be int"),
        ({"interval": 2.5}, "interval must be int"),
        ({"mode": "medium"}, r"mode must be one of \['soft', 'hard'\]"),
        ({"focal": "maybe"}, "focal must be a boolean"),
    ],
)
def test_bad_options_are_named(options: dict, fragment: str) -> None:
    with pytest.raises(OptionError, match=fragment):
        base.create("_toy_registry", **options)


def test_unknown_method_and_backbone_list_what_exists() -> None:
    with pytest.raises(OptionError, match="unknown method 'nope'.*_toy_registry"):
        base.create("nope")
    with pytest.raises(OptionError, match="unknown backbone 'b9'.*b0, b1, b2, b3, b4, b5"):
        base.create("_toy_registry", backbone="b9")


def test_duplicate_registration_is_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        base.register(_Toy.info, _ToyOptions)(lambda **kw: _Toy(_ToyOptions()))


def test_bad_method_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="method type"):
        base.MethodInfo(name="x", paper="y", type="Fast")
