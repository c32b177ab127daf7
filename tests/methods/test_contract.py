"""The method contract: the rules every registered method keeps, checked alike for each of them.

Each test is parametrized over ``vssbench.methods.available()``, so a newly registered method is
checked without editing this file. Inputs are tiny: MiT-B0 at random init, 5 classes, 64x64
frames (and one size that is not a multiple of 32), a few frames beyond the method's lead-in.
What is particular to one method (its lead-in length, its options, its caches) is tested in that
method's own test file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vssbench.methods import VideoSegmenter, available, create, method_info
from vssbench.models.decoder import set_decoder_mode

NUM_CLASSES = 5
SIZE = (64, 64)
ODD_SIZE = (72, 100)  # neither side a multiple of 32

every_method = pytest.mark.parametrize("name", available())


def build(name: str, seed: int = 0) -> VideoSegmenter:
    """Method ``name`` on MiT-B0, random init from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return create(name, "b0", num_classes=NUM_CLASSES)


def input_size(name: str, size: tuple[int, int]) -> tuple[int, int]:
    """The network input size for a ``size`` frame: rounded up to the method's ``size_divisor``
    as the harness does (CFFM/MRCFA: 32), unchanged for the other methods."""
    d = method_info(name).size_divisor or 1
    return -(-size[0] // d) * d, -(-size[1] // d) * d


def video(frames: int, size: tuple[int, int] = SIZE, seed: int = 0, batch: int = 1) -> list[torch.Tensor]:
    """A noise background with a moving block of fresh noise in every frame (batch x 3 x H x W each)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    base = torch.randn(batch, 3, h, w, generator=g)
    out = []
    for t in range(frames):
        frame = base.clone()
        top, left = (4 + 8 * t) % (h - 16), (8 + 6 * t) % (w - 16)
        frame[:, :, top : top + 16, left : left + 16] = 2.0 * torch.randn(batch, 3, 16, 16, generator=g)
        out.append(frame)
    return out


def run(model: VideoSegmenter, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Logits of every frame of one video, from a reset."""
    model.reset()
    with torch.inference_mode():
        return [model.step(frame) for frame in frames]


def assert_same_logits(actual: list[torch.Tensor], expected: list[torch.Tensor], what: str) -> None:
    assert len(actual) == len(expected)
    for t, (a, e) in enumerate(zip(actual, expected)):
        same = torch.equal(a, e)
        assert same, f"{what}: frame {t} differs by up to {(a - e).abs().max().item():.3g}"


@every_method
@pytest.mark.parametrize("size", [SIZE, ODD_SIZE], ids=["64x64", "72x100"])
def test_step_returns_finite_logits_at_the_input_size(name: str, size: tuple[int, int]) -> None:
    model = build(name)
    h, w = input_size(name, size)
    frames = video(model.steady_state_after + 3, (h, w), batch=2)
    for t, logits in enumerate(run(model, frames)):
        assert logits.dtype == torch.float32, t
        assert logits.shape == (2, NUM_CLASSES, h, w), t
        assert torch.isfinite(logits).all(), t
    # A batch of two distinct videos: the logits are not one video's copied.
    assert not torch.equal(logits[0], logits[1])


@every_method
def test_reset_forgets_the_previous_video(name: str) -> None:
    """Video B gives the same logits from a fresh model, again after reset(), and after a video A."""
    model = build(name)
    length = model.steady_state_after + 3
    b = video(length, seed=1)
    first = run(model, b)
    assert_same_logits(run(model, b), first, "B again after reset()")
    run(model, video(length, input_size(name, ODD_SIZE), seed=2))  # A: other content and size
    assert_same_logits(run(model, b), first, "B after video A and reset()")


@every_method
def test_folded_decoder_equals_reference(name: str) -> None:
    """Over the lead-in, one keyframe interval and the next keyframe, float32, within 1e-4 relative."""
    model = build(name)
    frames = video(model.steady_state_after + method_info(name).default_interval + 1)
    logits, keyframes = {}, {}
    for mode in ("reference", "folded"):
        set_decoder_mode(model, mode)
        model.reset()
        logits[mode], keyframes[mode] = [], []
        with torch.inference_mode():
            for frame in frames:
                logits[mode].append(model.step(frame))
                keyframes[mode].append(model.last_step_info.get("keyframe"))
    assert keyframes["folded"] == keyframes["reference"]
    for t, (ref, folded) in enumerate(zip(logits["reference"], logits["folded"])):
        relative = float((folded - ref).abs().max() / ref.abs().max())
        assert relative < 1e-4, f"frame {t}: folded differs from reference by {relative:.3g} (relative)"


@every_method
def test_steady_state_after_the_lead_in(name: str) -> None:
    """From ``steady_state_after`` on, each step leaves the caches it leaves one interval later.

    The harness measures GMACs and FPS over the one keyframe interval after the lead-in; that
    interval stands for the rest of the video only if the caches (``state_tensors()``: the work
    they save or cost) and the keyframe schedule have stopped changing by then.
    """
    model = build(name)
    lead = model.steady_state_after
    assert isinstance(lead, int) and lead >= 0
    interval = method_info(name).default_interval
    cached, keyframes = [], []  # per step: shapes of the caches it leaves; whether it was a keyframe
    model.reset()
    with torch.inference_mode():
        for frame in video(lead + 2 * interval):
            model.step(frame)
            cached.append([tuple(x.shape) for x in model.state_tensors()])
            keyframes.append(model.last_step_info.get("keyframe"))
    steady, later = cached[lead : lead + interval], cached[lead + interval :]
    assert steady == later, (
        f"after a lead-in of {lead} frames the caches still change: steps {lead}.. leave "
        f"{[len(c) for c in steady]} tensors, one interval later {[len(c) for c in later]}"
    )
    assert keyframes[lead : lead + interval] == keyframes[lead + interval :], keyframes
    assert model.steady_state_after == lead  # a property of the options, not of the frames seen


@every_method
def test_forward_train_gives_a_finite_loss_whose_gradient_reaches_every_parameter_group(name: str) -> None:
    model = build(name).train()
    # A clip as the method's own training sampler draws it (frame count and order); batch 2 gives
    # every BatchNorm more than one value per channel.
    clip = len(model.train_sampler().sample(32, np.random.default_rng(0)))
    images = torch.stack(video(clip, batch=2), dim=1)  # 2 x T x 3 x H x W
    labels = torch.randint(0, NUM_CLASSES, (2, clip, *SIZE), generator=torch.Generator().manual_seed(0))
    losses = model.forward_train(images, labels)
    for key, value in losses.items():  # named scalars, all logged by the trainer
        assert isinstance(value, torch.Tensor) and value.ndim == 0 and torch.isfinite(value), key
    loss = losses["loss"]
    assert loss.requires_grad and loss.item() > 0
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter received a gradient"
    for key, grad in grads.items():
        assert torch.isfinite(grad).all(), key
    for group, module in model.parameter_groups().items():
        reached = [p for p in module.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert reached, f"the loss has no gradient in parameter group {group!r}"


@every_method
def test_state_tensors_are_a_list_of_tensors_emptied_by_reset(name: str) -> None:
    model = build(name)
    model.reset()
    assert model.state_tensors() == []
    with torch.inference_mode():
        for t, frame in enumerate(video(model.steady_state_after + 3)):
            model.step(frame)
            state = model.state_tensors()
            assert isinstance(state, list) and all(isinstance(x, torch.Tensor) for x in state), t
    model.reset()
    state = model.state_tensors()
    assert isinstance(state, list)
    survivors = len(state)
    assert survivors == 0, f"{survivors} cached tensors survive reset()"
