"""TFC adapter: interpolation, sparse update, keyframe schedules, variants, training forward, params."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vssbench.errors import OptionError
from vssbench.methods import available, create
from vssbench.methods.feature_reuse import FeatureReuse
from vssbench.methods.segformer import SegFormer
from vssbench.methods.tfc import (
    TFC,
    TFCOptions,
    cosine_similarity_map,
    interpolate_features,
    interpolation_weight,
    select_points,
)
from vssbench.models.decoder import resize_logits
from vssbench.models.losses import focal_bce


def moving_block_video(frames: int = 5, seed: int = 0, size: int = 64) -> torch.Tensor:
    """T x 1 x 3 x size x size: a fixed noise background with a block of fresh noise that moves."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 3, size, size, generator=g)
    video = []
    for t in range(frames):
        frame = base.clone()
        y, x = 4 + 8 * t, 8 + 6 * t
        frame[:, :, y : y + 16, x : x + 16] = 2.0 * torch.randn(1, 3, 16, 16, generator=g)
        video.append(frame)
    return torch.stack(video)


def run(model: torch.nn.Module, video: torch.Tensor) -> tuple[list[torch.Tensor], list[dict]]:
    model.reset()
    outs, infos = [], []
    with torch.inference_mode():
        for frame in video:
            outs.append(model.step(frame))
            infos.append(dict(model.last_step_info))
    return outs, infos


@pytest.fixture(scope="module")
def models() -> dict[str, TFC]:
    """One B0 TFC (and one with the flow estimator) with the same weights, built once.

    Every option but ``update="flow"`` only changes what a step computes, not the modules, so
    :func:`make` swaps the options of these models instead of building a new one per test.
    """
    torch.manual_seed(0)
    base = TFC("b0").eval()
    flow = TFC("b0", options=TFCOptions(update="flow")).eval()
    missing, unexpected = flow.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("flow.") for key in missing)
    return {"base": base, "flow": flow}


def make(models: dict[str, TFC], **options) -> TFC:
    model = models["flow" if options.get("update") == "flow" else "base"]
    model.options = TFCOptions(**options)
    model.zero_grad(set_to_none=True)
    return model.eval()


def weights_of(models: dict[str, TFC], cls: type) -> torch.nn.Module:
    """A SegFormer-family model holding the TFC weights (without the MSDA layer)."""
    model = cls("b0").eval()
    model.load_state_dict({k: v for k, v in models["base"].state_dict().items() if not k.startswith("msda.")})
    return model


# ----------------------------------------------------------------------------- pure functions


def test_soft_interpolation_endpoints_and_clamp() -> None:
    torch.manual_seed(0)
    zk, zt = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    ones, zeros = torch.ones(2, 3, 5), torch.zeros(2, 3, 5)
    assert torch.equal(interpolate_features(zk, zt, ones, "soft", 0.8), zk)
    assert torch.equal(interpolate_features(zk, zt, zeros, "soft", 0.8), zt)
    assert torch.equal(interpolate_features(zk, zt, ones * 1.5, "soft", 0.8), zk)  # clamped to 1
    assert torch.equal(interpolate_features(zk, zt, -ones, "soft", 0.8), zt)  # clamped to 0
    mixed = interpolate_features(zk, zt, ones * 0.25, "soft", 0.8)
    torch.testing.assert_close(mixed, 0.25 * zk + 0.75 * zt)


def test_hard_fixed_none_interpolation() -> None:
    torch.manual_seed(1)
    zk, zt = torch.randn(1, 2, 1, 3), torch.randn(1, 2, 1, 3)
    w = torch.tensor([[[0.79, 0.8, 0.95]]])
    assert torch.equal(interpolation_weight(w, "hard", 0.8), torch.tensor([[[0.0, 1.0, 1.0]]]))
    hard = interpolate_features(zk, zt, w, "hard", 0.8)
    assert torch.equal(hard[..., 0], zt[..., 0]) and torch.equal(hard[..., 1:], zk[..., 1:])
    torch.testing.assert_close(interpolate_features(zk, zt, w, "fixed", 0.8), 0.9 * zk + 0.1 * zt)
    assert interpolate_features(zk, zt, w, "none", 0.8) is zt
    with pytest.raises(ValueError, match="bogus"):
        interpolation_weight(w, "bogus", 0.8)  # type: ignore[arg-type]


def test_select_points_rules() -> None:
    w = torch.tensor([[[-0.5, 0.0, 0.5, 0.79, 0.8, 1.0]]])
    assert select_points(w, 0.8).tolist() == [[[True, True, True, True, False, False]]]
    assert not select_points(w, 0.0).any()  # negative similarities clamp to 0: nothing selected
    assert select_points(w, 1.0).all()  # 1.0 = every point, even where w is exactly 1


def test_cosine_similarity_map_hand_worked() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]]).T.reshape(1, 2, 1, 2)  # points (1,0) and (0,3)
    b = torch.tensor([[2.0, 0.0], [4.0, 4.0]]).T.reshape(1, 2, 1, 2)  # points (2,0) and (4,4)
    got = cosine_similarity_map(a, b)
    torch.testing.assert_close(got, torch.tensor([[[1.0, 1 / math.sqrt(2)]]]))


# ----------------------------------------------------------------------------- registry, options, params


def test_registered_with_info_and_options() -> None:
    assert "tfc" in available()
    model = create(
        "tfc", "b0", interp="hard", update="none", focal="false", threshold="0.5", similarity_level="1"
    )
    assert isinstance(model, TFC) and not model.training
    opts = model.options
    got = (opts.interp, opts.update, opts.focal, opts.threshold, opts.similarity_level)
    assert got == ("hard", "none", False, 0.5, 1)
    assert TFC.info.type == "E&S" and TFC.info.paper == "TFC (Lin et al., AAAI 2024)"


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("threshold", "1.5", "threshold"),
        ("interp", "bogus", "soft"),
        ("update", "raft", "msda"),
        ("similarity_level", "3", "similarity_level"),
        ("budget", "-0.1", "budget"),
        ("gamma", "-1", "gamma"),
        ("keyframe", "sometimes", "adaptive"),
        ("interval", "0", "interval"),
    ],
)
def test_bad_options_are_clear_errors(key: str, value: str, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        create("tfc", "b0", **{key: value})


def test_parameter_counts_match_table_1() -> None:
    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    b0 = TFC("b0")
    groups = {name: count(module) for name, module in b0.parameter_groups().items()}
    assert groups["tfc"] == 756_864 and sum(groups.values()) == count(b0)
    assert abs(count(b0) / 1e6 - 4.5) < 0.15
    for backbone, want in (("b1", 14.5), ("b5", 82.8)):
        with torch.device("meta"):
            model = TFC(backbone)
        assert abs(count(model) / 1e6 - want) < 0.15, (backbone, count(model))
    flow = TFC("b0", options=TFCOptions(update="flow"))
    assert count(flow.parameter_groups()["tfc"]) > groups["tfc"]  # + the flow estimator


# ----------------------------------------------------------------------------- inference behaviour


def test_interval_one_is_segformer(models) -> None:
    segformer = weights_of(models, SegFormer)
    video = moving_block_video(3)
    tfc_out, infos = run(make(models, interval=1), video)
    seg_out, _ = run(segformer, video)
    assert all(info["keyframe"] for info in infos)
    for a, b in zip(tfc_out, seg_out):
        assert torch.equal(a, b)


def test_keyframes_are_segformer_and_non_keyframes_skip_stages_3_4(models) -> None:
    model = make(models)
    calls = {"stage3": 0, "stage4": 0}
    hooks = [
        model.backbone.patch_embed3.register_forward_hook(
            lambda *_: calls.__setitem__("stage3", calls["stage3"] + 1)
        ),
        model.backbone.patch_embed4.register_forward_hook(
            lambda *_: calls.__setitem__("stage4", calls["stage4"] + 1)
        ),
    ]
    video = moving_block_video(5)
    outs, infos = run(model, video)
    for hook in hooks:
        hook.remove()
    assert [info["keyframe"] for info in infos] == [True, False, False, False, True]
    assert calls == {"stage3": 2, "stage4": 2}
    segformer = weights_of(models, SegFormer)
    seg_outs, _ = run(segformer, video)
    assert torch.equal(outs[0], seg_outs[0]) and torch.equal(outs[4], seg_outs[4])
    assert not torch.allclose(outs[2], seg_outs[2])


def test_update_none_interp_none_is_feature_reuse(models) -> None:
    reuse = weights_of(models, FeatureReuse)
    video = moving_block_video(5)
    tfc_out, _ = run(make(models, update="none", interp="none"), video)
    reuse_out, _ = run(reuse, video)
    for a, b in zip(tfc_out, reuse_out):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("update", ["msda", "none", "flow"])
def test_cached_fuse_term_equals_the_full_fuse(models, update: str) -> None:
    """cache_fuse only reorders exact linear algebra: the outputs agree to float rounding."""
    video = moving_block_video(5)
    cached, cached_infos = run(make(models, update=update, threshold=1.0), video)
    full, full_infos = run(make(models, update=update, threshold=1.0, cache_fuse=False), video)
    assert [i["keyframe"] for i in cached_infos] == [True, False, False, False, True]
    for a, b in zip(cached, full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_soft_interpolation_matches_manual_computation(models) -> None:
    """update=none, interp=soft: logits = classify(ŵ z_k + (1-ŵ) z_t), w from x̂^2, built by hand."""
    model = make(models, update="none")
    video = moving_block_video(2)
    outs, infos = run(model, video)
    head, mit = model.decode_head, model.backbone
    with torch.inference_mode():
        key_feats = mit(video[0])
        size = key_feats[0].shape[-2:]
        key_proj = head.project(key_feats)
        z_k = head.fuse(key_proj)
        cur = mit(video[1], 2)
        cur_proj = [head.project_level(1, cur[0], size), head.project_level(2, cur[1], size)]
        z_t = head.fuse([*cur_proj, key_proj[2], key_proj[3]])
        w = torch.nn.functional.cosine_similarity(key_proj[1], cur_proj[1], dim=1).clamp(0, 1)[:, None]
        want = resize_logits(head.classify(w * z_k + (1 - w) * z_t), video.shape[-2:])
    torch.testing.assert_close(outs[1], want, rtol=0, atol=1e-5)
    assert 0.2 < infos[1]["mean_similarity"] < 1.0 and infos[1]["updated_fraction"] == 0.0


def test_threshold_zero_equals_update_none_and_one_updates_all(models) -> None:
    video = moving_block_video(5)
    zero, zero_infos = run(make(models, threshold=0.0), video)
    none, _ = run(make(models, update="none"), video)
    for a, b in zip(zero, none):
        assert torch.equal(a, b)
    assert all(info["updated_fraction"] == 0.0 for info in zero_infos if not info["keyframe"])
    _, all_infos = run(make(models, threshold=1.0), video)
    fractions = [info["updated_fraction"] for info in all_infos]
    assert math.isnan(fractions[0]) and fractions[1:4] == [1.0, 1.0, 1.0] and math.isnan(fractions[4])


def test_sparse_update_touches_low_similarity_points_only(models) -> None:
    model = make(models)
    video = moving_block_video(3)
    outs, infos = run(model, video)
    none_outs, _ = run(make(models, update="none"), video)
    model.reset()
    with torch.inference_mode():
        model.step(video[0])
        model.step(video[1])
    similarity = model.last_similarity
    assert similarity is not None and similarity.shape == (1, 16, 16)
    low = similarity.clamp(0, 1) < 0.8
    assert infos[1]["updated_fraction"] == pytest.approx(low.float().mean().item())
    assert 0.0 < infos[1]["updated_fraction"] < 0.5
    assert infos[1]["mean_similarity"] == pytest.approx(similarity.mean().item())
    # Logits are 4x upsampled from 1/4: compare at the 1/4 grid (pixel centres 4i+1.5 -> nearest 4i+1/4i+2
    # blend), via a mask of 1/4 points far from any selected point.
    far = ~torch.nn.functional.max_pool2d(low[:, None].float(), 5, stride=1, padding=2).bool()[:, 0]
    far_full = far.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].expand_as(outs[1])
    assert far.any() and torch.equal(outs[1][far_full], none_outs[1][far_full])
    assert not torch.allclose(outs[1], none_outs[1])
    assert infos[0]["keyframe"] and math.isnan(infos[0]["mean_similarity"])


def test_batch_of_two_with_different_counts_matches_each_alone(models) -> None:
    model = make(models)
    video = moving_block_video(2)
    static = torch.cat([video[0], video[0]])  # sample 0 static, sample 1 changes
    second = torch.cat([video[0], video[1]])
    model.reset()
    with torch.inference_mode():
        model.step(static)
        batch = model.step(second)
    assert 0.0 < model.last_step_info["updated_fraction"] < 0.5
    for b in range(2):
        outs, _ = run(model, torch.stack([static[b : b + 1], second[b : b + 1]]))
        torch.testing.assert_close(outs[1], batch[b : b + 1], rtol=0, atol=1e-5)


VARIANTS = list(
    itertools.product(
        ["soft", "hard", "fixed", "none"], ["msda", "none", "flow"], [1, 2], ["fixed", "adaptive"]
    )
)


def test_every_variant_runs_and_gives_finite_logits(models) -> None:
    video = moving_block_video(5)
    first = None
    for interp, update, level, keyframe in VARIANTS:
        model = make(models, interp=interp, update=update, similarity_level=level, keyframe=keyframe)
        outs, infos = run(model, video)
        variant = (interp, update, level, keyframe)
        assert all(out.shape == (1, 124, 64, 64) and torch.isfinite(out).all() for out in outs), variant
        assert infos[0]["keyframe"], variant
        first = outs[0] if first is None else first
        assert torch.equal(outs[0], first), variant  # the keyframe is SegFormer in every variant
        if keyframe == "fixed":
            assert [info["keyframe"] for info in infos] == [True, False, False, False, True], variant


def test_adaptive_budget_zero_and_one(models) -> None:
    video = moving_block_video(6)
    fixed, fixed_infos = run(make(models), video)
    assert all(info["low_similarity_fraction"] > 0 for info in fixed_infos if not info["keyframe"])
    _, zero_infos = run(make(models, keyframe="adaptive", budget=0.0), video)
    assert all(info["keyframe"] for info in zero_infos)
    assert [info["promoted"] for info in zero_infos] == [False] + [True] * 5
    one, one_infos = run(make(models, keyframe="adaptive", budget=1.0), video)
    schedule = [True, False, False, False, True, False]
    assert [i["keyframe"] for i in one_infos] == [i["keyframe"] for i in fixed_infos] == schedule
    for a, b in zip(one, fixed):
        assert torch.equal(a, b)


def test_adaptive_promoted_frame_is_segformer_and_restarts_the_gap(models) -> None:
    video = moving_block_video(4)
    _, fixed_infos = run(make(models), video)
    budget = (fixed_infos[1]["low_similarity_fraction"] + fixed_infos[2]["low_similarity_fraction"]) / 2
    assert fixed_infos[1]["low_similarity_fraction"] < budget < fixed_infos[2]["low_similarity_fraction"]
    outs, infos = run(make(models, keyframe="adaptive", budget=budget), video)
    assert infos[1]["keyframe"] is False and infos[2]["promoted"] is True
    segformer = weights_of(models, SegFormer)
    with torch.inference_mode():
        torch.testing.assert_close(outs[2], segformer.step(video[2]), rtol=0, atol=1e-5)
    # The next frame is compared with the promoted keyframe (a small change again), not with frame 0.
    assert infos[3]["keyframe"] is False and infos[3]["low_similarity_fraction"] < budget


def test_causal_future_frames_do_not_change_the_past(models) -> None:
    model = make(models)
    video = moving_block_video(5)
    changed = video.clone()
    changed[3] = torch.randn_like(changed[3])
    a, _ = run(model, video)
    b, _ = run(model, changed)
    for t in range(3):
        assert torch.equal(a[t], b[t])
    assert not torch.allclose(a[3], b[3])


def test_shape_change_without_reset_is_an_error(models) -> None:
    model = make(models)
    model.reset()
    with torch.inference_mode():
        model.step(torch.randn(1, 3, 64, 64))
        with pytest.raises(ValueError, match="reset"):
            model.step(torch.randn(1, 3, 64, 96))


# ----------------------------------------------------------------------------- training forward


def clip_and_labels(frames: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    images = moving_block_video(frames, seed=3).transpose(0, 1)  # 1 x T x 3 x 64 x 64
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 5, (1, frames, 64, 64), generator=g)
    labels[:, :, :8] = 255
    return images, labels


def test_training_gradients_reach_msda_and_encoder(models) -> None:
    model = make(models, threshold=1.0).train()
    images, labels = clip_and_labels()
    out = model.forward_train(images, labels)
    assert set(out) == {"loss", "loss_seg", "loss_bce", "mask_acc"}
    torch.testing.assert_close(out["loss"], out["loss_seg"] + out["loss_bce"])
    assert out["loss_bce"] > 0 and 0.0 <= out["mask_acc"].item() <= 1.0
    out["loss"].backward()
    attn = model.msda.self_attn
    for name, param in [
        ("sampling_offsets", attn.sampling_offsets.weight),
        ("value_proj", attn.value_proj.weight),
        ("attention_weights", attn.attention_weights.weight),
        ("stage1", model.backbone.block1[0].attn.q.weight),
        ("stage4", model.backbone.block4[0].attn.q.weight),
        ("linear_c2", model.decode_head.linear_c2.proj.weight),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_training_losses_by_hand(models) -> None:
    """Identical frames: w = 1 everywhere, so L_bce and mask_acc follow from the labels alone."""
    model = make(models, update="none").eval()
    frame = moving_block_video(1, seed=5)[0]
    images = frame[:, None].expand(1, 3, 3, 64, 64)
    g = torch.Generator().manual_seed(6)
    key_labels = torch.randint(0, 4, (1, 64, 64), generator=g)
    same = torch.stack([key_labels, key_labels, key_labels], 1)
    out = model.forward_train(images, same)
    assert out["mask_acc"].item() == 1.0 and out["loss_bce"].item() < 1e-5
    changed = torch.stack([key_labels, (key_labels + 1) % 4, key_labels], 1)
    changed[:, 1, :, :32] = 255  # ignored half
    out = model.forward_train(images, changed)
    # Frame 1: every valid point inconsistent but predicted consistent; frame 2: all right.
    valid1 = 16 * 8  # 1/4 resolution, right half
    assert out["mask_acc"].item() == pytest.approx(256 / (256 + valid1))
    w = torch.ones(1)
    expect = (focal_bce(w, torch.zeros(1)) + focal_bce(w, torch.ones(1))) / 2
    assert out["loss_bce"].item() == pytest.approx(expect.item(), rel=1e-3)
    # L_seg: the mean of per-frame CEs, all three frames decoded the same way (w = 1 -> z_k).
    no_focal = make(models, update="none", focal=False).eval().forward_train(images, changed)
    assert no_focal["loss_bce"].item() == 0.0
    torch.testing.assert_close(no_focal["loss"], no_focal["loss_seg"])
    torch.testing.assert_close(no_focal["loss_seg"], out["loss_seg"])


def test_training_rejects_bad_shapes(models) -> None:
    model = make(models)
    images, labels = clip_and_labels(2)
    with pytest.raises(ValueError, match="labels"):
        model.forward_train(images, labels[:, :1])


# ----------------------------------------------------------------------------- fidelity fixes


def test_fixed_weight_is_the_weight_of_the_keyframe_hand_worked() -> None:
    zk = torch.full((1, 1, 1, 2), 10.0)
    zt = torch.tensor([[[[0.0, 20.0]]]])
    w = torch.tensor([[[0.3, -2.0]]])  # ignored by the fixed mode
    # Default 0.9 on z_k: 0.9*10 + 0.1*0 = 9; 0.9*10 + 0.1*20 = 11.
    assert interpolate_features(zk, zt, w, "fixed", 0.8).flatten().tolist() == pytest.approx([9.0, 11.0])
    # fixed_weight=0.25: 0.25*10 + 0.75*0 = 2.5; 0.25*10 + 0.75*20 = 17.5.
    got = interpolate_features(zk, zt, w, "fixed", 0.8, fixed_weight=0.25)
    assert got.flatten().tolist() == pytest.approx([2.5, 17.5])
    assert TFCOptions().fixed_weight == 0.9 and TFCOptions().interp == "soft"
    with pytest.raises(ValueError, match="fixed_weight"):
        TFCOptions(fixed_weight=1.5)


def test_fixed_weight_one_reuses_the_keyframe_and_zero_is_no_interpolation(models) -> None:
    video = moving_block_video(3)
    ones, _ = run(make(models, interp="fixed", fixed_weight=1.0, update="none"), video)
    # z' = z_k exactly: every non-keyframe shows the keyframe's logits.
    assert torch.equal(ones[1], ones[0]) and torch.equal(ones[2], ones[0])
    zeros, _ = run(make(models, interp="fixed", fixed_weight=0.0, update="none"), video)
    none, _ = run(make(models, interp="none", update="none"), video)
    for a, b in zip(zeros, none):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_per_point_diagnostics_cover_non_keyframes_only(models) -> None:
    from vssbench.harness.evaluate import accumulate_diagnostics

    video = moving_block_video(6)
    _, infos = run(make(models), video)
    keyframes = [i["keyframe"] for i in infos]
    assert keyframes == [True, False, False, False, True, False]
    for info in infos:
        for key in ("updated_fraction", "low_similarity_fraction", "mean_similarity"):
            assert math.isnan(info[key]) == info["keyframe"], key
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for info in infos:
        accumulate_diagnostics(sums, counts, info)
    non_key = [i for i in infos if not i["keyframe"]]
    assert counts["updated_fraction"] == counts["low_similarity_fraction"] == len(non_key) == 4
    assert sums["updated_fraction"] / 4 == pytest.approx(sum(i["updated_fraction"] for i in non_key) / 4)
    # Default threshold: the updated points are exactly the low-similarity ones.
    assert sums["updated_fraction"] == pytest.approx(sums["low_similarity_fraction"])
    assert sums["keyframe"] / counts["keyframe"] == pytest.approx(2 / 6)  # the keyframe share


def test_msda_output_residual_keeps_the_query_scale(models) -> None:
    """Residual variant: updated points are z + MSDA + FFN without LayerNorms; the others untouched."""
    video = moving_block_video(2)
    norm_out, _ = run(make(models, threshold=1.0), video)
    res_out, infos = run(make(models, threshold=1.0, msda_output="residual"), video)
    assert infos[1]["updated_fraction"] == 1.0
    assert torch.equal(norm_out[0], res_out[0]) and not torch.allclose(norm_out[1], res_out[1])
    layer = models["base"].msda.eval()
    q, ref = torch.randn(1, 5, 256), torch.rand(1, 5, 2)
    shapes = torch.tensor([[4, 4], [2, 2], [1, 1], [1, 1]])
    value = layer.self_attn.project_value(torch.randn(1, 22, 256))
    with torch.no_grad():
        got = layer.forward_with_value(q, ref, value, shapes, post_norm=False)
        x = q + layer.self_attn.attend(q, ref, value, shapes)
        want = x + layer.linear2(torch.relu(layer.linear1(x)))
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="msda_output"):
        TFCOptions(msda_output="pre")
