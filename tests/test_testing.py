"""The contract kit (``vssbench.testing``) catches adapters broken on purpose, and passes a correct one.

Each toy is a tiny conv net (no MiT) that segments a frame from its own features and the previous
frame's deep features, a cache it declares; each broken variant changes one thing. The toys are
registered in a private copy of the registry, so no other test sees them.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from vssbench.data.samplers import KeyframeClipSampler
from vssbench.errors import OptionError
from vssbench.methods import base as methods_base
from vssbench.methods.base import BaseOptions, MethodInfo, VideoSegmenter, register
from vssbench.models.losses import segmentation_loss
from vssbench.testing import CHECKS, ContractError, check_method


class Toy(VideoSegmenter):
    """Correct: logits of frame t from its stem features and deep(stem(frame t-1)), cached and declared."""

    info = MethodInfo("test_toy", paper="none (test)", type="S", default_interval=2)
    Options = BaseOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: BaseOptions | None = None
    ) -> None:
        super().__init__(options)
        self.num_classes = num_classes
        self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.deep = nn.Conv2d(8, 8, 3, padding=1)
        self.classifier = nn.Conv2d(16, num_classes, 1)
        self._previous: Tensor | None = None

    @property
    def steady_state_after(self) -> int:
        return 1  # frame 0 has no previous frame

    def reset_state(self) -> None:
        self._previous = None

    def state_tensors(self) -> list[Tensor]:
        return [] if self._previous is None else [self._previous]

    def _logits(self, x: Tensor, previous: Tensor | None) -> Tensor:
        return self.classifier(torch.cat([x, torch.zeros_like(x) if previous is None else previous], 1))

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        x = self.stem(image)
        logits = self._logits(x, self._previous)
        self._previous = self.deep(x)
        return logits, {"keyframe": True}

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        previous, losses = None, []
        for t in range(images.shape[1]):
            x = self.stem(images[:, t])
            losses.append(segmentation_loss(self._logits(x, previous), labels[:, t]))
            previous = self.deep(x)
        loss = torch.stack(losses).mean()
        return {"loss": loss}

    def train_sampler(self) -> KeyframeClipSampler:
        return KeyframeClipSampler(2)


class NoReset(Toy):
    """reset_state() forgets nothing: the last video's deep features leak into the next one."""

    info = MethodInfo("test_no_reset", paper="none (test)", type="S", default_interval=2)

    def reset_state(self) -> None:
        pass


class BatchMean(Toy):
    """Logits minus their mean over the batch: each video's logits depend on the other videos."""

    info = MethodInfo("test_batch_mean", paper="none (test)", type="S", default_interval=2)

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        logits, info = super().segment(image)
        return logits - 0.5 * logits.mean(0, keepdim=True), info


class Undeclared(Toy):
    """Caches deep(stem(frame)) for the next frame but declares nothing: its conv goes uncounted."""

    info = MethodInfo("test_undeclared", paper="none (test)", type="S", default_interval=2)

    def state_tensors(self) -> list[Tensor]:
        return []


class WrongShape(Toy):
    """One class too many."""

    info = MethodInfo("test_wrong_shape", paper="none (test)", type="S", default_interval=2)

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: BaseOptions | None = None
    ) -> None:
        super().__init__(backbone, num_classes, options)
        self.classifier = nn.Conv2d(16, num_classes + 1, 1)


class _TwoFrames:
    def sample(self, num_frames: int, rng: Any) -> list[int]:
        return [0, 1]  # whatever the video's length


class BadSampler(Toy):
    """A sampler that returns frame 1 of a one-frame video."""

    info = MethodInfo("test_bad_sampler", paper="none (test)", type="S", default_interval=2)

    def train_sampler(self) -> Any:
        return _TwoFrames()


TOYS = (Toy, NoReset, BatchMean, Undeclared, WrongShape, BadSampler)


@pytest.fixture(autouse=True)
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the toys in a private copy of the registry (other tests never see them)."""
    monkeypatch.setattr(methods_base, "_REGISTRY", dict(methods_base._REGISTRY))
    for cls in TOYS:
        register(cls)


def broken_rules(name: str) -> dict[str, str]:
    """Rule -> message, for every rule that method ``name`` breaks."""
    broken = {}
    for rule, check in CHECKS.items():
        try:
            check(name)
        except ContractError as exc:
            broken[rule] = str(exc)
    return broken


def test_a_correct_toy_keeps_every_rule() -> None:
    assert broken_rules(Toy.info.name) == {}
    check_method(Toy.info.name)


@pytest.mark.parametrize(
    "cls, rule",
    [
        (NoReset, "reset"),
        (BatchMean, "batch"),
        (Undeclared, "state_declared"),
        (WrongShape, "step_output"),
        (BadSampler, "sampler"),
    ],
    ids=lambda x: getattr(getattr(x, "info", None), "name", x),
)
def test_a_broken_toy_breaks_exactly_its_rule(cls: type[Toy], rule: str) -> None:
    name = cls.info.name
    broken = broken_rules(name)
    assert sorted(broken) == [rule], broken
    prefix = f"contract rule '{rule}' broken by method '{name}': "
    assert broken[rule].startswith(prefix)
    assert "\nFix: " in broken[rule]
    with pytest.raises(AssertionError) as caught:
        check_method(name)
    assert str(caught.value).startswith(prefix)


def test_the_messages_say_what_was_observed() -> None:
    with pytest.raises(ContractError, match=r"step\(\) on 2 x 3 x 64 x 64 frames returned \(2, 6, 64, 64\)"):
        check_method(WrongShape.info.name, checks=["step_output"])
    with pytest.raises(ContractError, match=r"held but not in state_tensors\(\): _previous"):
        check_method(Undeclared.info.name, checks=["state_declared"])
    with pytest.raises(ContractError, match=r"sample\(1\) returned \[0, 1\]"):
        check_method(BadSampler.info.name, checks=["sampler"])


class NoResetWrongShape(NoReset, WrongShape):
    """Broken twice: reset() forgets nothing, and one class too many."""

    info = MethodInfo("test_broken_twice", paper="none (test)", type="S", default_interval=2)


def test_several_broken_rules_are_reported_together() -> None:
    register(NoResetWrongShape)
    name = NoResetWrongShape.info.name
    with pytest.raises(ContractError) as caught:
        check_method(name, checks=["reset", "batch", "step_output"], num_classes=3)
    message = str(caught.value)
    assert caught.value.rule == "reset"  # the first broken rule, in the order asked for
    assert message.startswith(f"contract rule 'reset' broken by method '{name}': ")
    also = message.split("Also broken:\n", 1)[1]
    assert also.startswith(f"contract rule 'step_output' broken by method '{name}': ")
    assert "returned (2, 4, 64, 64)" in also  # num_classes reaches the method
    assert "'batch'" not in message


def test_an_exception_in_the_method_breaks_the_rule_it_happened_in(failing_method: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_method(failing_method, checks=["step_output"])
    message = str(caught.value)
    assert message.startswith(f"contract rule 'step_output' broken by method '{failing_method}': ")
    assert "RuntimeError: deliberate failure in step" in message
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_unknown_rules_are_listed() -> None:
    with pytest.raises(ValueError, match="unknown contract rule.*'resset'.*rules: batch, checkpoint"):
        check_method(Toy.info.name, checks=["resset"])


def test_a_bad_option_is_the_callers_mistake() -> None:
    with pytest.raises(OptionError, match="unknown option 'intervall'"):
        check_method(Toy.info.name, checks=["reset"], intervall=2)
    check_method(Toy.info.name, interval=3)  # a valid option reaches the method (every rule)


def test_the_kit_keeps_the_callers_random_state() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_method(Toy.info.name, checks=["checkpoint", "training"])
    assert torch.equal(torch.rand(3), expected)
