"""TDNet on MiT: registry, FIFO at the start of a video and across reset(), any input size,
parameter count, the APM against a naive reference, and training losses with gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vssbench.data.samplers import ConsecutiveClipSampler
from vssbench.errors import OptionError
from vssbench.methods import available, create, method_info
from vssbench.methods.tdnet import TDNet, TDNetOptions
from vssbench.models.decoder import resize_logits, set_decoder_mode
from vssbench.profiling import count_parameters


def _frames(n: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, *size, generator=g) for _ in range(n)]


def _model(num_classes: int = 5, **options: object) -> TDNet:
    torch.manual_seed(0)
    return TDNet("b0", num_classes=num_classes, options=TDNetOptions(**options)).eval()


def _run(model: TDNet, frames: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int], list[int]]:
    outs, hops, cached = [], [], []
    with torch.no_grad():
        for f in frames:
            outs.append(model.step(f))
            hops.append(model.last_step_info["hops"])
            cached.append(len(model.state_tensors()))
    return outs, hops, cached


def test_registered_as_efficiency_method_with_settable_options() -> None:
    assert "tdnet" in available()
    info = method_info("tdnet")
    assert (info.type, info.default_interval) == ("E", 4)
    model = create("tdnet", num_classes=7, kv_stride="3", warmup="partial", num_paths="2", interval="2")
    assert isinstance(model, TDNet) and not model.training
    assert (model.options.kv_stride, model.options.warmup, model.num_paths) == (3, "partial", 2)
    assert len(model.propagation) == 2 and all(len(hops) == 1 for hops in model.propagation)  # TD2: 2 Att
    assert model.train_sampler().length == 2 and isinstance(model.train_sampler(), ConsecutiveClipSampler)
    with pytest.raises(OptionError, match="unknown option 'distill'"):
        create("tdnet", distill=True)
    with pytest.raises(OptionError, match=r"interval must be a positive multiple of num_paths \(4\).*got 6"):
        create("tdnet", interval=6)
    with pytest.raises(OptionError, match=r"tdnet.feature_stride must be one of \[4, 8\], got '16'"):
        create("tdnet", feature_stride="16")


def test_parameter_count_b0_matches_table1() -> None:
    model = TDNet("b0", num_classes=124)
    counts = count_parameters(model)
    assert abs(counts["total"] - 5.8e6) <= 0.3e6
    assert counts["other"] == 0  # every parameter is in a group
    e, d = 256, 64
    # per path: q and k (conv E->d + bias, BN, conv d->d + bias), v (conv E->E + bias); N(N-1) Att fc E->E
    qk = e * d + d + 2 * d + d * d + d
    apm = 4 * (2 * qk + e * e + e) + 12 * (e * e + e)
    # per path: channel LayerNorm (2E), 3x3 conv E->E/4 (no bias), BN, 1x1 conv E/4->124 + bias
    head = 4 * (2 * e + 9 * e * (e // 4) + 2 * (e // 4) + (e // 4) * 124 + 124)
    assert counts["groups"]["apm"] == apm == 1_218_560
    assert counts["groups"]["head"] == head == 624_624
    assert counts["groups"]["decoder"] == (32 + 64 + 160 + 256) * e + 4 * e + 4 * e * e + 2 * e


def test_fifo_at_start_of_video_and_across_reset() -> None:
    model = _model()
    frames = _frames(6)
    outs, hops, cached = _run(model, frames)
    # The original: V_t only until the FIFO holds N-1 = 3 frames; then the full 3-hop APM.
    assert hops == [0, 0, 0, 3, 3, 3]
    assert cached == [3, 6, 9, 9, 9, 9]  # (q, k, v) per cached frame, at most 3 frames
    with torch.no_grad():
        for t in range(3):  # the first frames are the sub prediction of their own path
            _, sub = model.predict(t, model.features(frames[t]), [])
            assert torch.allclose(outs[t], resize_logits(sub, (64, 64)), atol=1e-5)
    # reset() empties the FIFO: the same frames give the same outputs again, bit for bit.
    model.reset()
    assert model.state_tensors() == [] and model.t == 0
    again, hops2, _ = _run(model, frames)
    assert hops2 == hops and all(torch.equal(a, b) for a, b in zip(outs, again))
    # Without reset, frame 0 of another video would see the old FIFO (different result).
    other, _, _ = _run(model, frames[:1])
    assert not torch.allclose(other[0], outs[0])
    # "partial" uses what is cached so far; a shape change without reset is an error.
    partial = _model(warmup="partial")
    _, hops3, _ = _run(partial, frames[:5])
    assert hops3 == [0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="call reset"):
        partial.step(torch.randn(1, 3, 64, 96))


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_any_input_resolution(size: tuple[int, int]) -> None:
    model = _model()
    outs, hops, _ = _run(model, _frames(4, size))
    assert all(o.shape == (1, 5, *size) and bool(torch.isfinite(o).all()) for o in outs)
    assert hops[-1] == 3
    # z at 1/8 (MiT's ceil sizes), cached tokens subsampled by kv_stride 4
    h8, w8 = math.ceil(math.ceil(size[0] / 4) / 2), math.ceil(math.ceil(size[1] / 4) / 2)
    q, k, v = model.state_tensors()[:3]
    n = math.ceil(h8 / 4) * math.ceil(w8 / 4)
    assert q.shape == (1, n, 64) and k.shape == (1, n, 64) and v.shape == (1, n, 256)


def test_decoder_modes_compute_the_same_function() -> None:
    model = _model()
    frames = _frames(5, (64, 96))
    reference, _, _ = _run(model, frames)
    assert set_decoder_mode(model, "folded") == 1  # the MLP decoder follows --decoder like SegFormer's
    model.reset()
    folded, _, _ = _run(model, frames)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(reference, folded))
    with pytest.raises(TypeError, match="no classifier"):
        model.decode_head.classify(torch.zeros(1, 256, 2, 2))


def _naive_frame_logits(model: TDNet, frames: list[torch.Tensor]) -> torch.Tensor:
    """Frame t = len(frames)-1 >= 3 recomputed with plain ops in the original's layout.

    The shared trunk and the per-path convs are called as modules; the subsampling, the token
    layout, the hop chain, the attention, the channel norm and the path/hop indexing are redone.
    """

    def tokens(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])

    t = len(frames) - 1
    cache = []
    for tau in range(t - 3, t):
        enc = model.encodings[tau % 4]
        z = F.max_pool2d(model.features(frames[tau]), kernel_size=1, stride=4)  # the original's subsampling
        cache.append(tuple(tokens(m(z)) for m in (enc.query, enc.key, enc.value)))
    p = t % 4
    z = model.features(frames[t])
    q_t = tokens(model.encodings[p].query(z))
    v_t = model.encodings[p].value(z)
    carried = None
    queries = [cache[1][0], cache[2][0], q_t]
    for j in range(3):
        hop = model.propagation[p][j]
        value = cache[j][2] if carried is None else carried + cache[j][2]
        attn = torch.softmax(queries[j] @ cache[j][1].transpose(1, 2) / 8.0, dim=-1)
        carried = (attn @ value) @ hop.fc.weight.T + hop.fc.bias
    x = carried.transpose(1, 2).reshape(v_t.shape) + v_t
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    norm = model.norms[p]
    x = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight[:, None, None] + norm.bias[:, None, None]
    return resize_logits(model.heads[p](x), frames[t].shape[-2:])


def test_apm_matches_naive_reference_in_steady_state() -> None:
    model = _model()
    frames = _frames(7, (64, 96))
    outs, _, _ = _run(model, frames)
    with torch.no_grad():
        for t in (3, 6):  # paths 3 and 2, FIFO full
            assert torch.allclose(outs[t], _naive_frame_logits(model, frames[: t + 1]), atol=1e-4)


def test_training_losses_finite_with_gradients_into_apm_and_equal_to_inference() -> None:
    model = _model().train()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 4, 3, 64, 64, generator=g)
    labels = torch.randint(0, 5, (2, 4, 64, 64), generator=g)
    labels[:, :, :4] = 255
    torch.manual_seed(3)
    path = int(torch.randint(4, ()))
    torch.manual_seed(3)
    out = model.forward_train(images, labels)
    assert set(out) == {"loss", "loss_full", "loss_sub"}
    assert all(bool(torch.isfinite(v)) for v in out.values())
    assert torch.allclose(out["loss"], out["loss_full"] + 0.5 * out["loss_sub"])
    out["loss"].backward()
    for hop in model.propagation[path]:  # every hop of the target's path
        assert hop.fc.weight.grad is not None and bool(hop.fc.weight.grad.abs().sum() > 0)
    for i, prev in enumerate(((path - 3) % 4, (path - 2) % 4, (path - 1) % 4)):
        assert bool(model.encodings[prev].key[0].weight.grad.abs().sum() > 0)
        assert (model.encodings[prev].query[0].weight.grad is not None) == (i > 0)  # oldest frame: no query
    assert model.backbone.patch_embed1.proj.weight.grad is not None
    other = (path + 1) % 4
    assert all(h.fc.weight.grad is None for h in model.propagation[other])
    with pytest.raises(ValueError, match="clips of num_paths=4 frames, got 3"):
        model.forward_train(images[:, :3], labels[:, :3])

    # In eval mode, the training computation is the streaming one: the clip as frames t-3..t
    # of a video where frame t falls on the drawn path gives the same full-prediction CE.
    model.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        loss_full = model.forward_train(images, labels)["loss_full"]
        t = path if path == 3 else path + 4
        lead = [torch.zeros(2, 3, 64, 64)] * (t - 3)
        model.reset()
        for frame in [*lead, *images.unbind(1)]:
            logits = model.step(frame)
        expected = F.cross_entropy(logits, labels[:, -1], ignore_index=255)
    assert model.last_step_info == {"path": path, "hops": 3}
    assert torch.allclose(loss_full, expected, atol=1e-4)


def test_every_parameter_is_used_within_two_cycles() -> None:
    # One cycle after reset() never reaches the full APM of paths 0..2 (warm-up), two cycles do;
    # the FIFO keeps its graph, so the caching convs count as used too.
    from vssbench.profiling import find_dead_parameters

    model = _model()
    frames = _frames(8)
    assert find_dead_parameters(model, frames) == []
    dead = find_dead_parameters(model, frames[:4])
    assert {name.rsplit(".", 2)[0] for name in dead} == {
        *(f"propagation.{p}.{j}" for p in range(3) for j in range(3)),
        "encodings.3.key",  # frame 3's cache is first read at frame 4
        "encodings.0.query",  # frame 0's query would be read as a hop target at frames 1-2 (partial warm-up)
    }
