"""Parameter counts, dead parameters, GMACs and the FPS protocol on toy adapters with
hand-computable answers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vssbench.methods.base import MethodInfo, VideoSegmenter
from vssbench.profiling import (
    MACS_CONVENTION,
    auto_repeats,
    count_gmacs,
    count_parameters,
    environment,
    find_dead_parameters,
    find_dead_parameters_by_gradient,
    measure_fps,
    params,
)

INFO = MethodInfo(name="toy", paper="none", type="Image", default_interval=1)


class ToySegmenter(VideoSegmenter):
    """Per-pixel Linear encoder + 1x1 conv decoder; ``unused`` never touches the output and
    ``zeroed`` only through a multiplication by 0 (all-zero gradient)."""

    info = INFO

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(3, 8)  # 32 params
        self.decoder = nn.Conv2d(8, 5, 1)  # 45
        self.shift = nn.Parameter(torch.zeros(5))  # 5, in no group
        self.unused = nn.Linear(4, 4)  # 20, in no group
        self.zeroed = nn.Parameter(torch.ones(1))  # 1, in no group

    def reset(self) -> None:
        pass

    def step(self, image: torch.Tensor) -> torch.Tensor:
        x = self.encoder(image.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.decoder(x) + self.shift.view(1, 5, 1, 1) + 0 * self.zeroed

    def parameter_groups(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}


def test_count_parameters_toy() -> None:
    model = ToySegmenter()
    counts = count_parameters(model, dead=["unused.weight", "unused.bias"])
    assert counts == {
        "total": 32 + 45 + 5 + 20 + 1,
        "groups": {"encoder": 32, "decoder": 45},
        "other": 5 + 20 + 1,
        "dead": 20,
        "total_inference": 32 + 45 + 5 + 1,
    }
    plain = count_parameters(nn.Linear(10, 3))
    assert plain == {"total": 33, "groups": {}, "other": 33, "dead": 0, "total_inference": 33}
    with pytest.raises(ValueError, match="nope"):
        count_parameters(model, dead=["nope"])


def test_find_dead_parameters_toy() -> None:
    model = ToySegmenter()
    model.encoder.weight.requires_grad_(False)  # a frozen parameter is still alive
    images = [torch.randn(1, 3, 4, 4) for _ in range(2)]
    dead = find_dead_parameters(model, images)
    # The graph walk is structural: `0 * zeroed` is connected to the output, so it counts as used;
    # the gradient reference sees its all-zero gradient.
    assert sorted(dead) == ["unused.bias", "unused.weight"]
    assert sorted(find_dead_parameters_by_gradient(model, images)) == [
        "unused.bias",
        "unused.weight",
        "zeroed",
    ]
    assert model.encoder.weight.requires_grad is False  # flags and grads are restored
    assert all(p.grad is None for p in model.parameters())


def test_find_dead_parameters_sees_through_a_softmax_output() -> None:
    # the probabilities sum to 1 per pixel, so a plain sum of the outputs has zero gradient
    model = ToySegmenter()
    model.step = lambda image: ToySegmenter.step(model, image).softmax(dim=1)  # type: ignore[method-assign]
    dead = find_dead_parameters(model, [torch.randn(1, 3, 4, 4)])
    assert sorted(dead) == ["unused.bias", "unused.weight"]
    assert sorted(find_dead_parameters_by_gradient(model, [torch.randn(1, 3, 4, 4)])) == [
        "unused.bias",
        "unused.weight",
        "zeroed",
    ]


@pytest.mark.parametrize(
    "method, options",
    [
        ("segformer", {}),
        ("feature_reuse", {}),
        ("tfc", {}),
        ("tfc", {"threshold": 0.0}),  # nothing is updated: the MSDA layer is dead
        ("tfc", {"update": "flow"}),
    ],
)
def test_graph_walk_finds_the_dead_set_of_the_gradient_search(method: str, options: dict) -> None:
    from vssbench.methods import create

    torch.manual_seed(0)
    adapter = create(method, backbone="b0", **options)
    images = [torch.randn(1, 3, 32, 48) for _ in range(4)]
    dead = find_dead_parameters(adapter, images)
    assert dead == find_dead_parameters_by_gradient(adapter, images)
    if options:
        assert dead and all(name.startswith("msda.") for name in dead)


def test_graph_walk_keeps_no_activations(monkeypatch: pytest.MonkeyPatch) -> None:
    # Memory stays at inference level: every tensor autograd would save goes through the drop hook.
    packed: list[torch.Size] = []

    def counting(tensor: torch.Tensor) -> None:
        packed.append(tensor.shape)
        return None

    monkeypatch.setattr(params, "_drop_saved", counting)
    dead = find_dead_parameters(ToySegmenter(), [torch.randn(1, 3, 64, 64) for _ in range(3)])
    assert sorted(dead) == ["unused.bias", "unused.weight"]
    assert torch.Size([1, 8, 64, 64]) in packed  # the decoder conv's input, which a backward pass would need


class FnAdapter(VideoSegmenter):
    """Adapter whose step is one given function of the image (for op-level MAC checks)."""

    info = INFO

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn
        self.linear = LINEAR  # parameters must belong to the traced module

    def reset(self) -> None:
        pass

    def step(self, image: torch.Tensor) -> torch.Tensor:
        return self.fn(image)


LINEAR = nn.Linear(3, 8)
GRID = torch.rand(1, 5, 7, 2) * 2 - 1


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # [1, 16, 3]


def _sdpa(x: torch.Tensor) -> torch.Tensor:
    t = _tokens(x).unsqueeze(1)  # [1, 1, 16, 3]
    k = t[:, :, :8]  # Nk = 8
    v = torch.cat([k, k], dim=-1)  # d_v = 6
    return F.scaled_dot_product_attention(t, k, v)


# input 1x3x4x4 throughout: 16 pixels, 48 elements
BAG_INDEX = torch.arange(30).reshape(5, 6) % 12
BAG_WEIGHTS = torch.rand(5, 6)

CASES = {
    "linear": (lambda x: LINEAR(_tokens(x)), 16 * 3 * 8),
    "sdpa": (_sdpa, 1 * 1 * 16 * 8 * (3 + 6)),
    "grid_sample_bilinear": (
        lambda x: F.grid_sample(x, GRID, mode="bilinear", align_corners=False),
        4 * 3 * 5 * 7,
    ),
    "grid_sample_nearest": (lambda x: F.grid_sample(x, GRID, mode="nearest", align_corners=False), 0),
    "interpolate_bilinear": (
        lambda x: F.interpolate(x, size=(8, 6), mode="bilinear", align_corners=False),
        4 * 3 * 8 * 6,
    ),
    "interpolate_nearest": (lambda x: F.interpolate(x, size=(8, 6), mode="nearest"), 0),
    "mul_and_sum": (lambda x: (x * x).sum(dim=1), 48),
    "cosine_similarity": (lambda x: F.cosine_similarity(x, x + 1, dim=1), 3 * 48),
    "softmax_gelu_add": (lambda x: F.gelu(x.softmax(dim=1)) + x, 0),
    # the 48 input values as a table of 12 rows x 4 channels; 5 bags of 6 weighted entries
    "embedding_bag_weighted": (
        lambda x: F.embedding_bag(BAG_INDEX, x.reshape(12, 4), per_sample_weights=BAG_WEIGHTS, mode="sum"),
        5 * 6 * 4,
    ),
    "integer_mul": (lambda x: (BAG_INDEX * 3).float().sum() + x, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_count_gmacs_hand_computed_ops(case: str) -> None:
    fn, macs = CASES[case]
    result = count_gmacs(FnAdapter(fn), torch.randn(1, 3, 4, 4), interval=1)
    assert result["gmacs_per_frame"] == pytest.approx(macs / 1e9, abs=1e-15)
    assert result["gmacs_keyframe"] == result["gmacs_nonkeyframe"] == result["gmacs_per_frame"]
    assert result["unsupported_ops"] == {}
    assert result["input_shape"] == [1, 3, 4, 4]
    assert result["macs_convention"] == MACS_CONVENTION == "one multiply-add = one"


class KeyframeToy(VideoSegmenter):
    """Keyframe every ``interval`` frames: deep features on keyframes, a cheap update blended
    with the cached keyframe features otherwise."""

    info = MethodInfo(name="toy_key", paper="none", type="E", default_interval=3)

    def __init__(self, interval: int = 3) -> None:
        super().__init__()
        self.interval = interval
        self.stem = nn.Linear(3, 16)
        self.deep = nn.Linear(16, 16)
        self.head = nn.Linear(16, 5)
        self.steps = 0
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.cache: torch.Tensor | None = None

    def step(self, image: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        x = self.stem(_tokens(image))
        if self.t % self.interval == 0 or self.cache is None:
            self.cache = self.deep(x)
            feat = self.cache
        else:
            feat = x * self.cache
        self.t += 1
        return self.head(feat)


def test_count_gmacs_keyframe_adapter() -> None:
    model = KeyframeToy(interval=3)
    frames = [torch.randn(1, 3, 4, 4) for _ in range(3)]
    result = count_gmacs(model, frames, interval=3)
    key = 16 * 3 * 16 + 16 * 16 * 16 + 16 * 16 * 5  # stem + deep + head
    nonkey = 16 * 3 * 16 + 16 * 16 + 16 * 16 * 5  # stem + blend mul + head
    assert result["gmacs_per_step"] == pytest.approx([key / 1e9, nonkey / 1e9, nonkey / 1e9])
    assert result["gmacs_keyframe"] == pytest.approx(key / 1e9)
    assert result["gmacs_nonkeyframe"] == pytest.approx(nonkey / 1e9)
    assert result["gmacs_per_frame"] == pytest.approx((key + 2 * nonkey) / 3 / 1e9)
    assert result["gmacs_by_operator"]["linear"] == pytest.approx((key + 2 * nonkey - 2 * 256) / 3 / 1e9)
    assert model.steps == 3  # fvcore's trace ran each step exactly once
    with pytest.raises(ValueError, match="need 3 frames"):
        count_gmacs(model, frames[:2], interval=3)


class CountingToy(VideoSegmenter):
    info = INFO

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 3)
        self.steps = 0
        self.resets = 0
        self.grad_enabled: set[bool] = set()

    def reset(self) -> None:
        self.resets += 1

    def step(self, image: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        self.grad_enabled.add(torch.is_grad_enabled())
        return self.layer(_tokens(image))


def test_measure_fps_protocol() -> None:
    model = CountingToy()
    frames = [torch.randn(1, 3, 4, 4) for _ in range(5)]
    result = measure_fps(model, frames, interval=4, warmup=2, repeats=5)
    assert model.steps == (2 + 5) * 4
    assert model.resets == 2 + 5  # one reset before every (warm-up or timed) interval
    assert model.grad_enabled == {False}  # ran under inference_mode
    times = result["interval_times_s"]
    assert len(times) == 5 and all(t > 0 for t in times)
    assert result["interval_time_s"] == sorted(times)[2]
    assert result["fps"] == pytest.approx(4 / result["interval_time_s"])
    assert (result["repeats"], result["warmup"], result["interval"]) == (5, 2, 4)
    with pytest.raises(ValueError, match="need 4 frames"):
        measure_fps(model, frames[:3], interval=4)


def test_auto_repeats_fill_the_timing_budget() -> None:
    assert auto_repeats(0.5) == 20 and auto_repeats(10.0) == 3 and auto_repeats(0.001) == 30
    assert auto_repeats(2.6, budget_s=10.0) == 4  # ceil(10 / 2.6)
    model = CountingToy()
    result = measure_fps(model, torch.randn(1, 3, 4, 4), interval=2, warmup=1, repeats=None)
    assert result["repeats"] == 30 == len(result["interval_times_s"])  # a toy interval takes microseconds
    assert model.steps == (1 + 30) * 2


def test_environment_describes_this_process() -> None:
    env = environment("cpu")
    assert env["torch"] == torch.__version__
    assert env["threads"] == torch.get_num_threads()
    assert env["device"].startswith("cpu (") and f"{env['threads']} threads" in env["device"]
    assert env["cuda"] == torch.version.cuda


class CachingToy(KeyframeToy):
    """A keyframe that also caches something its own output does not use (like TFC's value
    projection for later frames): that work must be counted at the keyframe."""

    def __init__(self, interval: int = 3) -> None:
        super().__init__(interval)
        self.prepare = nn.Linear(16, 8)
        self.extra: torch.Tensor | None = None

    def step(self, image: torch.Tensor) -> torch.Tensor:
        keyframe = self.t % self.interval == 0 or self.cache is None
        logits = super().step(image)
        if keyframe:
            self.extra = self.prepare(self.cache)  # used by no output of this step
        return logits

    def state_tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.cache, self.extra) if t is not None]


def test_count_gmacs_counts_work_cached_for_later_frames() -> None:
    frames = [torch.randn(1, 3, 4, 4) for _ in range(3)]
    plain = count_gmacs(KeyframeToy(interval=3), frames, interval=3)
    caching = count_gmacs(CachingToy(interval=3), frames, interval=3)
    extra = 16 * 16 * 8  # prepare: 16 tokens x 16 -> 8
    assert caching["gmacs_per_step"][0] == pytest.approx(plain["gmacs_per_step"][0] + extra / 1e9)
    assert caching["gmacs_per_step"][1:] == pytest.approx(
        plain["gmacs_per_step"][1:]
    )  # old caches not re-counted
