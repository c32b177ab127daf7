"""Decoder modes: folded == reference for option variants and in float64, cost of both modes, switching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vssbench.config import RunConfig
from vssbench.errors import OptionError
from vssbench.methods import create
from vssbench.models.decoder import SegFormerHead, set_decoder_mode
from vssbench.profiling import count_gmacs


def video(
    frames: int, size: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """A noise background with a moving block of fresh noise (TFC selects the changed points)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 3, size, size, generator=g)
    out = []
    for t in range(frames):
        frame = base.clone()
        frame[:, :, 4 + 8 * t : 20 + 8 * t, 8 + 6 * t : 24 + 6 * t] = 2.0 * torch.randn(
            1, 3, 16, 16, generator=g
        )
        out.append(frame.to(dtype))
    return out


def run(model: nn.Module, frames: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[dict]]:
    model.reset()
    outs, infos = [], []
    with torch.inference_mode():
        for frame in frames:
            outs.append(model.step(frame))
            infos.append(dict(model.last_step_info))
    return outs, infos


def both_modes(
    model: nn.Module, frames: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict]]:
    set_decoder_mode(model, "reference")
    ref, infos = run(model, frames)
    set_decoder_mode(model, "folded")
    folded, folded_infos = run(model, frames)
    set_decoder_mode(model, "reference")
    assert [i["keyframe"] for i in infos] == [i["keyframe"] for i in folded_infos]
    return ref, folded, infos


def max_relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max() / x.abs().max()) for x, y in zip(a, b))


# Folded == reference with each method's default options (B0, float32) is a contract check of every
# registered method (tests/methods/test_contract.py). Here: option variants that take other folded
# paths, and float64 exactness of the methods' own folded paths (the head alone:
# tests/models/test_models_decoder.py).
# Interval 3 over 4 frames: keyframe, two non-keyframes, keyframe. TFC with threshold 1 updates
# every point (the folded MSDA values of all four levels are used).
VARIANTS = [
    ("feature_reuse", {"cache_fuse": False}),
    ("tfc", {"threshold": 1.0}),
    ("tfc", {"threshold": 1.0, "cache_fuse": False, "update": "flow", "similarity_level": 1}),
]


def test_folded_equals_reference_float32_variants() -> None:
    frames = video(4)
    for name, options in VARIANTS:
        torch.manual_seed(0)
        model = create(name, backbone="b0", interval=3, **options).eval()
        ref, folded, infos = both_modes(model, frames)
        assert [i["keyframe"] for i in infos] == [True, False, False, True]
        assert max_relative(ref, folded) < 1e-5, (name, options)
        if name == "tfc" and options.get("update", "msda") == "msda":
            assert infos[1]["updated_fraction"] == 1.0


@pytest.mark.parametrize("backbone", ["b0", "b1"])
def test_folded_equals_reference_float64(backbone: str) -> None:
    """Feature reuse's cached fuse terms and TFC's folded MSDA values are exact, not approximate."""
    frames = video(3, dtype=torch.float64)
    for name, options in [("feature_reuse", {}), ("tfc", {"threshold": 1.0})]:
        torch.manual_seed(1)
        model = create(name, backbone=backbone, interval=2, **options).double().eval()
        ref, folded, _ = both_modes(model, frames)
        assert max_relative(ref, folded) < 1e-12, (name, backbone)


def test_set_decoder_mode_walks_every_module_and_rejects_bad_modes() -> None:
    class OtherHead(nn.Module):  # another method's head exposing the attribute
        def __init__(self) -> None:
            super().__init__()
            self.decoder_mode = "reference"

    model = nn.ModuleDict(
        {"a": SegFormerHead((4, 8, 8, 8), 8, 3), "b": nn.Sequential(OtherHead()), "c": nn.Linear(2, 2)}
    )
    assert set_decoder_mode(model, "folded") == 2
    assert model["a"].decoder_mode == "folded" and model["b"][0].decoder_mode == "folded"
    assert set_decoder_mode(nn.Linear(2, 2), "folded") == 0  # nothing to fold: left as it is
    with pytest.raises(OptionError, match="folded, reference"):
        set_decoder_mode(model, "fast")
    with pytest.raises(OptionError, match="bogus"):
        model["a"].decoder_mode = "bogus"
    assert SegFormerHead((4, 8, 8, 8), 8, 3).decoder_mode == "reference"  # modules start literal


def test_folded_weights_follow_loaded_and_trained_parameters() -> None:
    """No stale folded weights: after a checkpoint load or an optimizer step both modes still agree."""
    torch.manual_seed(0)
    model = create("feature_reuse", backbone="b0", interval=2).double().eval()
    set_decoder_mode(model, "folded")
    frames = video(2, dtype=torch.float64)
    before, _ = run(model, frames)
    torch.manual_seed(5)
    other = create("feature_reuse", backbone="b0", interval=2).double()
    model.load_state_dict(other.state_dict())
    loaded, _ = run(model, frames)
    set_decoder_mode(model, "reference")
    loaded_ref, _ = run(model, frames)
    assert max_relative(before, loaded) > 1e-3  # the new weights are used ...
    assert max_relative(loaded_ref, loaded) < 1e-12  # ... exactly as the reference mode uses them
    # A training step in folded mode changes the parameters that the folded maps come from.
    set_decoder_mode(model, "folded")
    model.train()
    images = torch.stack(frames, 1)
    labels = torch.randint(0, 124, (1, 2, 64, 64), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model.forward_train(images, labels)["loss"].backward()
    assert model.decode_head.linear_c1.proj.weight.grad.abs().sum() > 0
    assert model.decode_head.linear_fuse.conv.weight.grad.abs().sum() > 0
    optimizer.step()
    model.eval()
    stepped, _ = run(model, frames)
    set_decoder_mode(model, "reference")
    stepped_ref, _ = run(model, frames)
    assert max_relative(loaded, stepped) > 1e-3 and max_relative(stepped_ref, stepped) < 1e-12


def test_training_gradients_are_the_same_in_both_modes() -> None:
    torch.manual_seed(0)
    model = create("segformer", backbone="b0").double().train()
    images = torch.stack(video(2, dtype=torch.float64), 1)
    labels = torch.randint(0, 124, (1, 2, 64, 64), generator=torch.Generator().manual_seed(1))
    grads = {}
    for mode in ("reference", "folded"):
        set_decoder_mode(model, mode)
        model.zero_grad()
        torch.manual_seed(2)  # the same dropout masks
        model.forward_train(images, labels)["loss"].backward()
        grads[mode] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert grads["reference"].keys() == grads["folded"].keys()
    for key, g in grads["reference"].items():
        torch.testing.assert_close(grads["folded"][key], g, rtol=1e-9, atol=1e-12, msg=key)


def test_tfc_mode_switch_mid_video_starts_a_new_keyframe() -> None:
    torch.manual_seed(0)
    model = create("tfc", backbone="b0").eval()
    frames = video(3)
    model.reset()
    with torch.inference_mode():
        model.step(frames[0])
        set_decoder_mode(model, "folded")
        model.step(frames[1])
        assert model.last_step_info["keyframe"] is True  # the reference-mode state is not reused
        model.step(frames[2])
        assert model.last_step_info["keyframe"] is False


# ----------------------------------------------------------------------------- cost


def test_segformer_gmacs_folded_saves_the_fuse_conv_exactly() -> None:
    """Reference - folded = 4E^2 h1 w1 (fuse conv at 1/4) - E^2 sum_l (C_l + 1) (the folding products)."""
    torch.manual_seed(0)
    model = create("segformer", backbone="b0").eval()
    frame = video(1)[0]
    gmacs = {}
    for mode in ("reference", "folded"):
        set_decoder_mode(model, mode)
        gmacs[mode] = count_gmacs(model, frame, interval=1)["gmacs_per_frame"] * 1e9
    e, n1 = 256, 16 * 16
    channels = (32, 64, 160, 256)
    expected = 4 * e * e * n1 - e * e * sum(c + 1 for c in channels)
    assert gmacs["reference"] - gmacs["folded"] == pytest.approx(expected, rel=1e-9)
    assert gmacs["folded"] < gmacs["reference"]


def test_tfc_nonkeyframe_gmacs_folded_by_the_expected_margin() -> None:
    """threshold=1 (every point updated): the folded fuse terms and MSDA values of levels 1-2
    versus reference.

    Reference: linear_c1 + W_1 at 1/4, linear_c2 + W_2 at 1/8 and the dense value projection of
    both levels; folded: C_l -> E maps for the fuse and the value, plus their folding products.
    linear_c2 (for the similarity), the resizes and the per-query MSDA work are the same in both.
    """
    torch.manual_seed(0)
    model = create("tfc", backbone="b0", threshold=1.0).eval()
    frames = video(2)
    result = {}
    for mode in ("reference", "folded"):
        set_decoder_mode(model, mode)
        result[mode] = count_gmacs(model, frames, interval=2)
    e, (c1, c2), (n1, n2) = 256, (32, 64), (16 * 16, 8 * 8)
    reference = c1 * e * n1 + e * e * n1 + e * e * n2 + e * e * (n1 + n2)
    folded = 2 * c1 * e * n1 + 2 * c2 * e * n2 + 2 * e * e * (c1 + 1) + 2 * e * e * (c2 + 1)
    measured = (result["reference"]["gmacs_nonkeyframe"] - result["folded"]["gmacs_nonkeyframe"]) * 1e9
    assert measured == pytest.approx(reference - folded, rel=1e-9)


def test_run_config_decoder_field() -> None:
    assert RunConfig().decoder == "folded"
    with pytest.raises(OptionError, match="decoder"):
        RunConfig(decoder="fast")
    assert RunConfig(decoder="reference").config_hash != RunConfig().config_hash
    assert RunConfig(decoder="reference").conditions_hash != RunConfig().conditions_hash


def test_paper_profile_rows_put_the_paper_text_beside_the_measurement() -> None:
    from vssbench.harness.paper_profile import format_paper_profile, paper_profile

    rows = paper_profile(backbones=("b0",), decoder_dims=(32,), size=(64, 64))
    assert [(r["method"], r["decoder_dim"], r["decoder"]) for r in rows] == [
        ("segformer", 32, "reference"),
        ("tfc", 32, "reference"),
    ]
    assert [r["paper_gflops_nonkeyframe"] for r in rows] == [6.8, 6.4]
    for r in rows:
        assert r["gmacs_nonkeyframe"] > 0 and r["ratio"] == pytest.approx(
            r["gmacs_nonkeyframe"] / r["paper_gflops_nonkeyframe"]
        )
    assert rows[0]["gmacs_keyframe"] == pytest.approx(
        rows[0]["gmacs_nonkeyframe"]
    )  # SegFormer: every frame alike
    assert "6.8" in format_paper_profile(rows) and "6.4" in format_paper_profile(rows)
