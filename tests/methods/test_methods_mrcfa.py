"""MRCFA adapter: streaming with and without the reference cache, early-frame rules, token masking,
official checkpoint names, parameter counts, GMACs and the released training losses."""

from __future__ import annotations

import pytest
import torch

from vssbench.errors import CheckpointError
from vssbench.methods import create, describe, method_info
from vssbench.methods.mrcfa import MRCFA, MRCFAOptions
from vssbench.models.checkpoint import load_checkpoint
from vssbench.models.decoder import resize_logits
from vssbench.profiling import count_gmacs, find_dead_parameters

# Clips of targets 0..9 at test time, written out by hand from the released test-time clip rule.
EXPECTED_CLIPS = [
    [0],
    [1],
    [2],
    [0, 1, 2, 3],
    [0, 2, 3, 4],
    [0, 2, 4, 5],
    [0, 2, 4, 6],
    [0, 3, 5, 7],
    [0, 3, 6, 8],
    [0, 3, 6, 9],
]
SIZE = (64, 96)  # non-square: 1/32 map is 2 x 3


def _pair(backbone: str = "b0", seed: int = 0) -> tuple[MRCFA, MRCFA]:
    torch.manual_seed(seed)
    cached = create("mrcfa", backbone=backbone, cache=True)
    recompute = create("mrcfa", backbone=backbone, cache=False)
    recompute.load_state_dict(cached.state_dict())
    # Non-trivial BN statistics, so the fused feature is not a plain normalization of the init.
    for model in (cached, recompute):
        model.decode_head.linear_fuse.bn.running_mean.fill_(0.1)
        model.decode_head.linear_fuse.bn.running_var.fill_(2.0)
    return cached, recompute


@pytest.fixture(scope="module")
def stream() -> dict:
    """Ten frames (batch 2, 64x96) through B0 with and without the cache, recorded per step."""
    cached, recompute = _pair()
    generator = torch.Generator().manual_seed(1)
    frames = [torch.randn(2, 3, *SIZE, generator=generator) for _ in range(len(EXPECTED_CLIPS))]
    out: dict = {
        "cached": cached,
        "recompute": recompute,
        "frames": frames,
        "logits": [],
        "ref": [],
        "info": [],
    }
    with torch.no_grad():
        for frame in frames:
            out["logits"].append(cached.step(frame))
            out["info"].append(dict(cached.last_step_info))
            out["ref"].append(recompute.step(frame))
            assert recompute.last_step_info == cached.last_step_info
    return out


def test_registered_with_its_protocol() -> None:
    info = method_info("mrcfa")
    assert (info.type, info.size_divisor, info.default_interval) == ("S", 32, 4)
    options = describe("mrcfa")["options"]
    assert options["cache"] is True and options["mask_ratio"] is None and options["decoder_dim"] == 256


def test_step_shapes_and_reset_between_videos(stream: dict) -> None:
    model = stream["cached"]
    for logits in stream["logits"]:
        assert logits.shape == (2, 124, *SIZE) and torch.isfinite(logits).all()
    assert sorted(model._history) == list(range(1, 10))  # ring buffer of the last 9 frames
    assert len(model.state_tensors()) == 9 * 4
    model.reset()
    assert model.t == 0 and model.state_tensors() == [] and model.last_step_info == {}
    with torch.no_grad():
        again = model.step(stream["frames"][0])
        assert model.last_step_info["clip"] == [0] and len(model.state_tensors()) == 4
        with pytest.raises(ValueError, match="call reset"):
            model.step(torch.randn(1, 3, *SIZE))
    torch.testing.assert_close(again, stream["logits"][0])
    model.reset()


def test_cache_gives_the_same_logits_as_recomputing_the_clip(stream: dict) -> None:
    for t, (a, b) in enumerate(zip(stream["logits"], stream["ref"])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"frame {t}")


def test_early_frame_rules(stream: dict) -> None:
    assert [info["clip"] for info in stream["info"]] == EXPECTED_CLIPS
    assert [info["fallback"] for info in stream["info"]] == [True] * 3 + [False] * 7
    # 1/32 map 2x3 = 6 reference tokens, floor(0.8 * 6) = 4 kept on B0
    assert [info["kept_tokens"] for info in stream["info"]] == [0] * 3 + [4] * 7
    model = stream["recompute"]
    head = model.decode_head
    frames = stream["frames"]
    with torch.no_grad():
        # frames 0..2: the plain per-frame SegFormer prediction
        for t in range(3):
            per_frame = head.classify(head.fused(model.encode(frames[t])))
            torch.testing.assert_close(
                stream["logits"][t], resize_logits(per_frame, SIZE), rtol=1e-4, atol=1e-4
            )
        # frame 9: the released computation on the clip [0, 3, 6, 9], independent of any buffer
        feats, z, refs, _ = model._clip_forward(torch.stack([frames[i] for i in (0, 3, 6, 9)], dim=1))
        outs, _ = head.temporal(feats, z, refs)
        torch.testing.assert_close(stream["logits"][9], resize_logits(outs[-1], SIZE), rtol=1e-4, atol=1e-4)
        # ...and it differs from using other references (the references matter)
        feats, z, refs, _ = model._clip_forward(torch.stack([frames[i] for i in (1, 4, 7, 9)], dim=1))
        other, _ = head.temporal(feats, z, refs)
        assert not torch.allclose(outs[-1], other[-1], atol=1e-4)


def test_token_masking_keeps_the_top_scored_reference_tokens(stream: dict) -> None:
    head = stream["cached"].decode_head
    assert head.kept_tokens(num_target=6, num_reference=6) == (5, 4)
    assert head.kept_tokens(num_target=4, num_reference=4) == (4, 3)  # 64x64: k clamped to 4 targets
    assert head.kept_tokens(num_target=1, num_reference=1) == (1, 1)  # s never 0
    torch.manual_seed(3)
    feats = [torch.randn(1, c, 64 // s, 96 // s) for c, s in zip((32, 64, 160, 256), (4, 8, 16, 32))]
    z = torch.randn(1, 256, 16, 24)
    refs = tuple(torch.randn(1, 3, 6, c) for c in (64, 160, 256, 256))
    with torch.no_grad():
        _, keep = head.temporal(feats, z, refs)
        q = head.hypercorre_module.q3(feats[3].flatten(2).transpose(1, 2))[0]  # 6 target x 256
    for r in range(3):
        affinity = q @ refs[2][0, r].T  # target x reference tokens, no scaling
        score = [sorted(affinity[:, j].tolist(), reverse=True)[:5] for j in range(6)]
        ranked = sorted(range(6), key=lambda j: -sum(score[j]))
        assert keep[0, r].tolist() == sorted(ranked[:4])


def test_mask_ratio_per_backbone_and_option() -> None:
    with torch.device("meta"):
        assert MRCFA("b0").decode_head.mask_ratio == 0.8
        assert MRCFA("b2").decode_head.mask_ratio == 0.5
        assert MRCFA("b0", options=MRCFAOptions(mask_ratio=0.25)).decode_head.mask_ratio == 0.25
    with pytest.raises(ValueError, match="mask_ratio"):
        MRCFAOptions(mask_ratio=0.0)


@pytest.mark.parametrize(("backbone", "table1"), [("b0", 5.2), ("b1", 16.2), ("b5", 84.5)])
def test_parameters_match_table1(backbone: str, table1: float) -> None:
    with torch.device("meta"):
        model = MRCFA(backbone)
    total = sum(p.numel() for p in model.parameters())
    assert abs(total / 1e6 - table1) <= 0.15
    # the reference derives 5.30 / 16.34 / 84.63M including the dead 128->124 conv_seg (15,996)
    derived = {"b0": 5.30, "b1": 16.34, "b5": 84.63}[backbone]
    assert abs((total + 128 * 124 + 124) / 1e6 - derived) < 0.005
    assert model.decode_head.deco4.smalldecoder[1].out_channels == 124
    assert model.decode_head.embed_dim == 256
    groups = model.parameter_groups()
    assert sum(p.numel() for g in groups.values() for p in g.parameters()) == total


def _official_head(
    in_channels: tuple[int, ...], backbone: str, e: int = 256, k: int = 124
) -> dict[str, tuple]:
    """Names and shapes of the official MRCFA head (the released checkpoint layout), by hand."""
    c1, c2, c3, c4 = in_channels
    shapes: dict[str, tuple] = {}
    for i, c in enumerate(in_channels, start=1):
        shapes[f"linear_c{i}.proj.weight"], shapes[f"linear_c{i}.proj.bias"] = (e, c), (e,)
    shapes["linear_fuse.conv.weight"] = (e, 4 * e, 1, 1)
    for p in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"linear_fuse.bn.{p}"] = (e,)
    shapes["linear_fuse.bn.num_batches_tracked"] = ()
    shapes["linear_pred.weight"], shapes["linear_pred.bias"] = (k, e, 1, 1), (k,)
    shapes["conv_seg.weight"], shapes["conv_seg.bias"] = (k, 128, 1, 1), (k,)
    for i in range(1, 5):
        shapes[f"deco{i}.smalldecoder.1.weight"], shapes[f"deco{i}.smalldecoder.1.bias"] = (k, e, 1, 1), (k,)
    for i, c in ((1, c2), (2, c3), (3, c4)):
        for p in ("q", "k"):
            shapes[f"hypercorre_module.{p}{i}.weight"], shapes[f"hypercorre_module.{p}{i}.bias"] = (
                (c, c),
                (c,),
            )
    if backbone == "b1":  # (in, out, kernel) per conv
        layers = {
            "4": [(1, 1, 3), (1, 2, 3)],
            "3": [(1, 1, 3), (1, 2, 3)],
            "2": [(1, 1, 5), (1, 2, 3)],
            "4to3": [(2, 2, 3), (2, 2, 3)],
            "3to2": [(2, 2, 3), (2, 1, 3)],
        }
    else:
        layers = {
            "4": [(1, 1, 3)],
            "3": [(1, 1, 5)],
            "2": [(1, 1, 5)],
            "4to3": [(1, 1, 3)],
            "3to2": [(1, 1, 3)],
        }
    for name, convs in layers.items():
        for j, (cin, cout, ks) in enumerate(convs):
            prefix = f"hypercorre_module.hpn.encoder_layer{name}"
            shapes[f"{prefix}.{3 * j}.conv2.weight"], shapes[f"{prefix}.{3 * j}.conv2.bias"] = (
                (cout, cin, ks, ks),
                (cout,),
            )
            shapes[f"{prefix}.{3 * j + 1}.weight"], shapes[f"{prefix}.{3 * j + 1}.bias"] = (cout,), (cout,)
    shapes["sr2.weight"], shapes["sr2.bias"] = (c2, c2, 4, 4), (c2,)
    shapes["sr3.weight"], shapes["sr3.bias"] = (c3, c3, 2, 2), (c3,)
    shapes["sr1_feat.weight"], shapes["sr1_feat.bias"] = (e, e, 4, 4), (e,)
    return shapes


@pytest.mark.parametrize(("backbone", "channels"), [("b0", (32, 64, 160, 256)), ("b1", (64, 128, 320, 512))])
def test_official_checkpoint_names_load_strictly(tmp_path, backbone: str, channels: tuple[int, ...]) -> None:
    model = MRCFA(backbone)
    generator = torch.Generator().manual_seed(0)
    state = {
        f"backbone.{k}": torch.randn(v.shape, generator=generator)
        for k, v in model.backbone.state_dict().items()
    }
    for name, shape in _official_head(channels, backbone).items():
        state[f"decode_head.{name}"] = (
            torch.tensor(7)
            if name.endswith("num_batches_tracked")
            else torch.randn(shape, generator=generator)
        )
    path = tmp_path / "mrcfa_official.pth"
    torch.save({"meta": {"mmseg_version": "0.13.0"}, "state_dict": state}, path)
    report = load_checkpoint(model, path)
    assert report.format == "mmseg" and report.ok
    assert sorted(report.dropped) == ["decode_head.conv_seg.bias", "decode_head.conv_seg.weight"]
    loaded = model.state_dict()
    for key in (
        "decode_head.hypercorre_module.hpn.encoder_layer2.0.conv2.weight",
        "decode_head.sr1_feat.weight",
    ):
        torch.testing.assert_close(loaded[key], state[key])
    del state["decode_head.sr1_feat.weight"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="sr1_feat.weight"):
        load_checkpoint(MRCFA(backbone), path)


def test_b1_two_conv_refinement_streams_alike_in_both_modes() -> None:
    cached, recompute = _pair("b1", seed=2)
    assert len(cached.decode_head.hypercorre_module.hpn.encoder_layer2) == 6
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for _t in range(4):
            frame = torch.randn(1, 3, 64, 64, generator=generator)
            torch.testing.assert_close(cached.step(frame), recompute.step(frame), rtol=1e-4, atol=1e-4)
    # 2x2 reference tokens, floor(0.5 * 4) = 2 kept on B1
    assert cached.last_step_info["kept_tokens"] == 2 and not cached.last_step_info["fallback"]


def test_gmacs_count_everything_and_caching_saves_backbone_runs() -> None:
    cached, recompute = _pair()
    frame = torch.randn(1, 3, 64, 64)
    a = count_gmacs(cached, frame, 4)
    b = count_gmacs(recompute, frame, 4)
    assert a["unsupported_ops"] == {} and b["unsupported_ops"] == {}
    assert a["gmacs_by_operator"]["matmul"] > 0  # the affinity and aggregation matmuls
    fallback, temporal = b["gmacs_per_step"][0], b["gmacs_per_step"][3]
    # without the cache, frame 3 runs the backbone and decoder on all 4 clip frames
    assert 3.0 * fallback < temporal < 4.5 * fallback
    assert a["gmacs_per_step"][3] < 1.2 * fallback
    assert cached.state_tensors() == []  # count_gmacs resets


@pytest.mark.parametrize("cache", [True, False])
def test_only_the_reference_classifiers_are_dead_at_inference(cache: bool) -> None:
    # eval returns o4 only (as released), so deco1..3 never reach a prediction; everything a cached
    # reference contributes (sr*, k*) must still count as alive through the cache
    torch.manual_seed(0)
    model = create("mrcfa", backbone="b0", cache=cache)
    dead = find_dead_parameters(model, [torch.randn(1, 3, 64, 64) for _ in range(4)])
    assert sorted(dead) == [
        f"decode_head.deco{i}.smalldecoder.1.{p}" for i in (1, 2, 3) for p in ("bias", "weight")
    ]


def test_forward_train_released_losses_and_gradients() -> None:
    torch.manual_seed(0)
    model = create("mrcfa", backbone="b0").train()
    images = torch.randn(2, 4, 3, 64, 64)
    labels = torch.randint(0, 124, (2, 4, 64, 64))
    labels[:, :, :8] = 255
    losses = model.forward_train(images, labels)
    assert all(torch.isfinite(v) for v in losses.values())
    torch.testing.assert_close(losses["loss"], 0.5 * losses["loss_frame"] + losses["loss_temporal"])
    # the four outputs share the target label, so the stacked CE is the mean of the four
    mean4 = sum(losses[f"loss_o{i}"] for i in range(1, 5)) / 4
    torch.testing.assert_close(losses["loss_temporal"].detach(), mean4)
    losses["loss"].backward()
    head = model.decode_head
    for name in (
        "hypercorre_module.hpn.encoder_layer3to2.0.conv2.weight",
        "hypercorre_module.k1.weight",
        "hypercorre_module.q3.weight",
        "sr2.weight",
        "sr3.weight",
        "sr1_feat.weight",
        "deco1.smalldecoder.1.weight",
        "deco4.smalldecoder.1.weight",
    ):
        grad = head.get_parameter(name).grad
        assert grad is not None and bool(grad.abs().sum() > 0), name
    with pytest.raises(ValueError, match="clips of 4 frames"):
        model.forward_train(images[:, :3], labels[:, :3])
    assert type(model.train_sampler()).__name__ == "ReferenceClipSampler"
