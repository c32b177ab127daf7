"""The registry's generic behaviour, on toy methods registered here (built-in ones are tested elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest
import torch

from vssbench.errors import OptionError
from vssbench.methods import base


@dataclass(frozen=True)
class _ToyOptions(base.BaseOptions):
    threshold: float = 0.8
    mode: Literal["soft", "hard"] = "soft"
    focal: bool = True
    budget: Optional[float] = None  # noqa: UP007, UP045 (the Optional spelling is what is tested)


class _Toy(base.VideoSegmenter):
    """Per-frame toy at half resolution; with ``mode="hard"`` it keeps the previous frame as state."""

    info = base.MethodInfo(name="_toy_registry", paper="none", type="Image")
    Options = _ToyOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 2, options: _ToyOptions | None = None
    ) -> None:
        super().__init__(options)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.head = torch.nn.Module()
        self.head.decoder_mode = "reference"
        self.resets = 0
        self.previous: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.resets += 1
        self.previous = None

    def state_tensors(self) -> list[torch.Tensor]:
        return [] if self.previous is None else [self.previous]

    def segment(self, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if self.options.mode == "hard":
            self.previous = image
        return image[:, :2, ::2, ::2] * self.scale, {"keyframe": self.t == 0, "t": self.t}

    def train_losses(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = images.mean() * self.scale
        return {"loss": loss}


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the toy method in a private copy of the registry (other tests never see it)."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    assert base.register(_Toy) is _Toy


def test_create_coerces_string_options() -> None:
    model = base.create(
        "_toy_registry", interval="2", threshold="0.5", mode="hard", focal="false", budget="none"
    )
    assert model.options == _ToyOptions(interval=2, threshold=0.5, mode="hard", focal=False, budget=None)
    assert isinstance(model, _Toy) and model.options.decoder_dim == 256  # BaseOptions' shared fields
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


def test_duplicate_registration_is_rejected_naming_the_first() -> None:
    with pytest.raises(ValueError, match="already registered.*test_methods_registry_base._Toy"):
        base.register(_Toy)


def test_register_checks_what_the_class_declares() -> None:
    class NoInfo(_Toy):  # inherits info: registering it would silently reuse _Toy's name
        pass

    with pytest.raises(TypeError, match="must set info"):
        base.register(NoInfo)

    @dataclass(frozen=True)
    class Loose:
        interval: int = 4

    class LooseOptions(_Toy):
        info = base.MethodInfo(name="_loose", paper="none", type="Image")
        Options = Loose  # type: ignore[assignment]

    with pytest.raises(TypeError, match="subclassing BaseOptions"):
        base.register(LooseOptions)
    with pytest.raises(TypeError, match="VideoSegmenter subclass"):
        base.register(int)  # type: ignore[arg-type]


def test_shared_options_are_validated_once_for_every_method() -> None:
    for key, value, fragment in [
        ("interval", 0, "interval must be >= 1"),
        ("decoder_dim", 0, "decoder_dim must be >= 1"),
        ("drop_path_rate", 1.0, r"drop_path_rate must be in \[0, 1\)"),
    ]:
        with pytest.raises(OptionError, match=fragment):
            base.create("_toy_registry", **{key: value})


# ----------------------------------------------------------------------------- the template step()


def test_step_counts_frames_records_info_and_resizes_to_the_input() -> None:
    model = base.create("_toy_registry")
    model.reset()
    frames = [torch.randn(1, 3, 8, 10) for _ in range(3)]
    outs = [model.step(f) for f in frames]
    assert model.t == 3 and model.last_step_info == {"keyframe": False, "t": 2}
    assert all(o.shape == (1, 2, 8, 10) for o in outs)
    # The toy's half-resolution output upsampled bilinearly: the input size, not the method's.
    torch.testing.assert_close(
        outs[0],
        torch.nn.functional.interpolate(
            frames[0][:, :2, ::2, ::2], size=(8, 10), mode="bilinear", align_corners=False
        ),
    )
    model.reset()
    assert model.t == 0 and model.last_step_info == {} and model.resets == 2  # create() does not reset


@pytest.mark.parametrize("bad", [torch.randn(3, 8, 8), torch.randn(1, 1, 8, 8), "frame"])
def test_step_rejects_what_is_not_a_frame_batch(bad) -> None:
    model = base.create("_toy_registry")
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model.step(bad)


def test_size_change_within_a_video_is_an_error_only_while_state_is_held() -> None:
    stateless = base.create("_toy_registry")
    stateless.reset()
    stateless.step(torch.randn(1, 3, 8, 8))
    assert stateless.step(torch.randn(1, 3, 8, 12)).shape[-1] == 12  # nothing cached: any size
    stateful = base.create("_toy_registry", mode="hard")
    stateful.reset()
    stateful.step(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"frame 1 has shape \(1, 3, 8, 12\).*call reset\(\) between videos"):
        stateful.step(torch.randn(1, 3, 8, 12))
    stateful.reset()
    assert stateful.step(torch.randn(1, 3, 8, 12)).shape[-1] == 12


def test_a_decoder_mode_switch_restarts_the_video() -> None:
    model = base.create("_toy_registry", mode="hard")
    model.reset()
    model.step(torch.randn(1, 3, 8, 8))
    model.step(torch.randn(1, 3, 8, 8))
    model.head.decoder_mode = "folded"
    model.step(torch.randn(1, 3, 8, 8))
    assert model.last_step_info == {"keyframe": True, "t": 0} and model.resets == 2
    model.step(torch.randn(1, 3, 8, 8))
    assert model.last_step_info["t"] == 1


def test_forward_train_checks_the_clip_before_the_method_sees_it() -> None:
    model = base.create("_toy_registry")
    assert model.forward_train(torch.ones(1, 2, 3, 4, 4), torch.zeros(1, 2, 4, 4))["loss"].item() == 1.0
    with pytest.raises(ValueError, match="N x T x 3 x H x W"):
        model.forward_train(torch.ones(2, 3, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="labels N x T x H x W"):
        model.forward_train(torch.ones(1, 2, 3, 4, 4), torch.zeros(1, 3, 4, 4))


def test_bad_method_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="method type"):
        base.MethodInfo(name="x", paper="y", type="Fast")
