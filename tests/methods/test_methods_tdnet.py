"""TDNet on MiT: registry and options, FIFO at the start of a video and across reset(), any input
size, parameter counts, the APM against a naive reference, the norm, the initialisation, and
training (OHEM/CE terms, auxiliary heads, the path of each iteration, the trainer setting it)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vssbench.data.samplers import ConsecutiveClipSampler
from vssbench.errors import OptionError
from vssbench.methods import available, create, method_info
from vssbench.methods.tdnet import ChannelLayerNorm, TDNet, TDNetOptions
from vssbench.models.decoder import set_decoder_mode
from vssbench.models.losses import ohem_cross_entropy
from vssbench.profiling import count_parameters, find_dead_parameters
from vssbench.training.parallel import TrainStep
from vssbench.training.trainer import Trainer


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


def _up(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """The original's upsampling: bilinear, align_corners=True."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def test_registered_as_efficiency_method_with_settable_options() -> None:
    assert "tdnet" in available()
    info = method_info("tdnet")
    assert (info.type, info.default_interval) == ("E", 4)
    model = create(
        "tdnet", num_classes=7, kv_stride="3", kv_stride_train="2", warmup="partial", num_paths="2",
        interval="2", loss="ce", norm="channel", aux_weight="0.4", max_gap="3",
    )  # fmt: skip
    assert isinstance(model, TDNet) and not model.training
    o = model.options
    assert (o.kv_stride, o.kv_stride_train, o.warmup, model.num_paths) == (3, 2, "partial", 2)
    assert (o.loss, o.norm, o.aux_weight, o.max_gap) == ("ce", "channel", 0.4, 3)
    assert len(model.propagation) == 2 and all(len(hops) == 1 for hops in model.propagation)  # TD2: 2 Att
    assert len(model.aux_heads) == 2 and isinstance(model.norms[0], ChannelLayerNorm)
    sampler = model.train_sampler()
    assert isinstance(sampler, ConsecutiveClipSampler) and (sampler.length, sampler.max_gap) == (2, 3)
    d = create("tdnet").options
    assert (d.kv_stride, d.kv_stride_train, d.loss, d.norm) == (4, 3, "ohem", "spatial")
    assert (d.aux_weight, d.sub_loss_weight, d.max_gap) == (0.1, 0.5, 2)
    assert isinstance(create("tdnet").norms[0], nn.GroupNorm)
    with pytest.raises(OptionError, match="unknown option 'distill'"):
        create("tdnet", distill=True)
    with pytest.raises(OptionError, match=r"interval must be a positive multiple of num_paths \(4\).*got 6"):
        create("tdnet", interval=6)
    with pytest.raises(OptionError, match=r"tdnet.feature_stride must be one of \[4, 8\], got '16'"):
        create("tdnet", feature_stride="16")
    with pytest.raises(OptionError, match=r"tdnet.loss must be one of \['ohem', 'ce'\], got 'focal'"):
        create("tdnet", loss="focal")
    with pytest.raises(OptionError, match=r"aux_weight must be >= 0 \(0: no auxiliary heads\), got -0.1"):
        create("tdnet", aux_weight=-0.1)
    with pytest.raises(OptionError, match="kv_stride and kv_stride_train must be >= 1, got 4, 0"):
        create("tdnet", kv_stride_train=0)
    with pytest.raises(OptionError, match="max_gap must be >= 1"):
        create("tdnet", max_gap=0)
    with pytest.raises(ValueError, match="norm must be 'spatial' or 'channel', got 'batch'"):
        TDNetOptions(norm="batch")  # type: ignore[arg-type]


@pytest.mark.parametrize("norm", ["spatial", "channel"])
def test_parameter_count_b0_matches_table1(norm: str) -> None:
    counts = count_parameters(TDNet("b0", num_classes=124, options=TDNetOptions(norm=norm)))
    assert counts["total"] == 5_808_384  # the TFC paper's 5.8M
    assert counts["other"] == 0  # every parameter is in a group
    e, d = 256, 64
    # per path: q and k (conv E->d + bias, BN, conv d->d + bias), v (conv E->E + bias); N(N-1) Att fc E->E
    qk = e * d + d + 2 * d + d * d + d
    apm = 4 * (2 * qk + e * e + e) + 12 * (e * e + e)
    # per path: norm (2E), 3x3 conv E->E/4 (no bias), BN, 1x1 conv E/4->124 + bias
    head = 4 * (2 * e + 9 * e * (e // 4) + 2 * (e // 4) + (e // 4) * 124 + 124)
    # per path: auxiliary FCN head on x^3 (160 channels): 3x3 conv 160->40, BN, 1x1 conv 40->124 + bias
    aux = 4 * (9 * 160 * 40 + 2 * 40 + 40 * 124 + 124)
    assert counts["groups"]["apm"] == apm == 1_218_560
    assert counts["groups"]["head"] == head + aux == 624_624 + 251_056
    assert counts["groups"]["decoder"] == (32 + 64 + 160 + 256) * e + 4 * e + 4 * e * e + 2 * e
    without = count_parameters(TDNet("b0", num_classes=124, options=TDNetOptions(norm=norm, aux_weight=0)))
    assert without["total"] == 5_557_328 == counts["total"] - aux


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
            assert torch.allclose(outs[t], _up(sub, (64, 64)), atol=1e-5)
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


def _naive_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, over: tuple[int, ...]) -> torch.Tensor:
    mean = x.mean(over, keepdim=True)
    var = x.var(over, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * w[:, None, None] + b[:, None, None]


def _naive_frame_logits(model: TDNet, frames: list[torch.Tensor]) -> torch.Tensor:
    """Frame t = len(frames)-1 >= 3 recomputed with plain ops in the original's layout.

    The MiT, the MLP decoder and the per-path convs are called as modules; the resize of z, the
    subsampling, the token layout, the hop chain, the attention, the norm (per channel over H x W
    for "spatial", over channels for "channel"), the final upsampling and the path/hop indexing are
    redone.
    """

    def tokens(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])

    def z_of(frame: torch.Tensor) -> torch.Tensor:
        feats = model.backbone(frame)
        return _up(model.decode_head(feats), feats[1].shape[-2:])  # 1/4 -> 1/8, align_corners=True

    t = len(frames) - 1
    cache = []
    for tau in range(t - 3, t):
        enc = model.encodings[tau % 4]
        z = F.max_pool2d(z_of(frames[tau]), kernel_size=1, stride=4)  # the original's subsampling
        cache.append(tuple(tokens(m(z)) for m in (enc.query, enc.key, enc.value)))
    p = t % 4
    z = z_of(frames[t])
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
    norm = model.norms[p]
    x = _naive_norm(x, norm.weight, norm.bias, (2, 3) if model.options.norm == "spatial" else (1,))
    return _up(model.heads[p](x), frames[t].shape[-2:])


@pytest.mark.parametrize("norm", ["spatial", "channel"])
def test_apm_matches_naive_reference_in_steady_state(norm: str) -> None:
    model = _model(norm=norm)
    with torch.no_grad():  # a norm affine away from (1, 0), so that it matters
        for m in model.norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    frames = _frames(7, (64, 96))
    outs, _, _ = _run(model, frames)
    with torch.no_grad():
        for t in (3, 6):  # paths 3 and 2, FIFO full
            assert torch.allclose(outs[t], _naive_frame_logits(model, frames[: t + 1]), atol=1e-4)


def test_spatial_norm_is_the_originals_layer_norm_over_h_w_with_a_per_channel_affine() -> None:
    norm = _model().norms[0]
    with torch.no_grad():
        norm.weight.zero_()
        norm.weight[:2] = torch.tensor([2.0, 1.0])
        norm.bias.zero_()
        norm.bias[:2] = torch.tensor([0.0, 5.0])
    x = torch.zeros(2, 256, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean 2.5, variance 1.25
    x[0, 1] = 7.0  # constant: normalised to 0, then the bias
    x[1, 0] = 10.0 * x[0, 0]  # another sample: its own statistics, the same normalised map
    y = norm(x)
    want = 2.0 * (x[0, 0] - 2.5) / math.sqrt(1.25 + 1e-5)
    assert torch.allclose(y[0, 0], want, atol=1e-5) and torch.allclose(y[1, 0], want, atol=1e-4)
    assert torch.allclose(y[0, 1], torch.full((2, 2), 5.0))
    # Without the affine it is nn.LayerNorm([H, W]) (the original's op, eps 1e-5) at any size.
    z = torch.randn(2, 256, 5, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    assert torch.allclose(norm(z), nn.LayerNorm([5, 7], elementwise_affine=False)(z), atol=1e-5)


def test_added_convs_initialised_as_the_original() -> None:
    # kaiming_normal_(a=1): std 1/sqrt(fan_in) (torch's default conv init has 1/sqrt(3 fan_in)); bias 0.
    model = TDNet("b0", num_classes=124)
    layers = {
        "head conv": (model.heads[1].conv, 256 * 9),
        "head classifier": (model.heads[2].classifier, 64),
        "aux conv": (model.aux_heads[0].conv, 160 * 9),
        "aux classifier": (model.aux_heads[3].classifier, 40),
        "value": (model.encodings[0].value, 256),
        "key": (model.encodings[1].key[0], 256),
        "att fc": (model.propagation[2][1].fc, 256),
    }
    for name, (layer, fan_in) in layers.items():
        assert float(layer.weight.detach().std()) == pytest.approx(1 / math.sqrt(fan_in), rel=0.06), name
        assert layer.bias is None or not bool(layer.bias.any()), name
    assert all(bool((h.bn.weight == 1).all()) and not bool(h.bn.bias.any()) for h in model.aux_heads)


def _clip(batch: int = 2, size: int = 64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 4, 3, size, size, generator=g)
    labels = torch.randint(0, 5, (batch, 4, size, size), generator=g)
    labels[:, :, :4] = 255
    return images, labels


def test_training_terms_gradients_and_path_of_the_iteration() -> None:
    model = _model().train()
    images, labels = _clip()
    model.train_iteration = 6  # the original's pos_id = cnt_iter % 4 with cnt_iter = 7: path 3
    assert model.train_path() == 3
    out = model.forward_train(images, labels)
    assert model.train_iteration == 7  # advanced for a caller that does not set it
    assert set(out) == {"loss", "loss_full", "loss_sub", "loss_aux"}
    assert all(bool(torch.isfinite(v)) for v in out.values())
    assert torch.allclose(out["loss"], out["loss_full"] + 0.5 * out["loss_sub"] + 0.1 * out["loss_aux"])
    out["loss"].backward()
    path = 3
    for hop in model.propagation[path]:  # every hop of the target's path
        assert hop.fc.weight.grad is not None and bool(hop.fc.weight.grad.abs().sum() > 0)
    for i, prev in enumerate((0, 1, 2)):  # frames t-3, t-2, t-1 use paths p-3, p-2, p-1
        assert bool(model.encodings[prev].key[0].weight.grad.abs().sum() > 0)
        assert (model.encodings[prev].query[0].weight.grad is not None) == (i > 0)  # oldest frame: no query
    assert model.backbone.patch_embed1.proj.weight.grad is not None
    assert [h.classifier.weight.grad is not None for h in model.aux_heads] == [False, False, False, True]
    assert [h.classifier.weight.grad is not None for h in model.heads] == [False, False, False, True]
    with pytest.raises(ValueError, match="clips of num_paths=4 frames, got 3"):
        model.forward_train(images[:, :3], labels[:, :3])
    # Iterations 0..3 train paths 1, 2, 3, 0 (the next iteration's auxiliary head gets the gradient).
    for iteration, expected in enumerate([1, 2, 3, 0]):
        model.zero_grad(set_to_none=True)
        model.train_iteration = iteration
        model.forward_train(images, labels)["loss"].backward()
        moved = [h.classifier.weight.grad is not None for h in model.aux_heads]
        assert moved == [p == expected for p in range(4)], iteration


@pytest.mark.parametrize("loss", ["ohem", "ce"])
def test_training_terms_equal_the_streaming_computation(loss: str) -> None:
    # In eval mode the training computation is the streaming one: the clip as frames 0..3 of a
    # video puts the target on path 3, reached at iteration 2 ((2 + 1) mod 4). kv_stride_train
    # = kv_stride here (3), so the cached frames are subsampled alike.
    model = _model(loss=loss, kv_stride=3)
    assert model.options.kv_stride_train == 3  # the default
    images, labels = _clip()
    target = labels[:, -1]
    with torch.no_grad():
        model.train_iteration = 2
        out = model.forward_train(images, labels)
        model.reset()
        for frame in images.unbind(1):
            logits = model.step(frame)
        x3 = model.backbone(images[:, -1])[2]
        aux = _up(model.aux_heads[3](x3), target.shape[-2:])
    assert model.last_step_info == {"path": 3, "hops": 3}

    def expected(x: torch.Tensor) -> torch.Tensor:
        if loss == "ce":
            return F.cross_entropy(x, target, ignore_index=255)
        return ohem_cross_entropy(x, target, thresh=0.7, min_kept=2 * 64 * 64 // 16)

    assert torch.allclose(out["loss_full"], expected(logits), atol=1e-4)
    assert torch.allclose(out["loss_aux"], expected(aux), atol=1e-4)
    # The test-time stride 4 is another computation (fewer cached tokens).
    model4 = _model(loss=loss)
    with torch.no_grad():
        for frame in images.unbind(1):
            logits4 = model4.step(frame)
    assert not torch.allclose(expected(logits4), out["loss_full"], atol=1e-4)


def test_no_auxiliary_heads_without_an_auxiliary_loss() -> None:
    model = _model(aux_weight=0.0).train()
    assert len(model.aux_heads) == 0
    images, labels = _clip()
    out = model.forward_train(images, labels)
    assert set(out) == {"loss", "loss_full", "loss_sub"}
    assert torch.allclose(out["loss"], out["loss_full"] + 0.5 * out["loss_sub"])


class _Wrapped(nn.Module):
    """Stands for DistributedDataParallel: the step module under ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: object) -> dict[str, torch.Tensor]:
        return self.module(*args)


def test_the_trainer_sets_the_iteration_so_a_resumed_run_continues_the_rotation() -> None:
    model = _model().train()
    images, labels = _clip(size=32)
    paths: list[int] = []
    train_losses = model.train_losses

    def spy(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        paths.append(model.train_path())
        return train_losses(images, labels)

    model.train_losses = spy  # type: ignore[method-assign]
    model.train_iteration = 100  # stale: the trainer overrides it before every step
    batches = iter(lambda: {"images": images, "labels": labels}, None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    # A run resumed at iteration 5 (through a DDP-like wrapper): iterations 5..8 train paths 2, 3, 0, 1.
    trainer = Trainer(
        _Wrapped(TrainStep(model)), optimizer, batches, device=torch.device("cpu"), max_iter=9, start_iter=5
    )
    trainer.train()
    assert paths == [2, 3, 0, 1]


def test_only_the_auxiliary_heads_are_dead_after_two_cycles() -> None:
    # One cycle after reset() never reaches the full APM of paths 0..2 (warm-up), two cycles do;
    # the FIFO keeps its graph, so the caching convs count as used too. The auxiliary heads are
    # training-only.
    model = _model()
    aux = {f"aux_heads.{name}" for name, _ in model.aux_heads.named_parameters()}
    assert len(aux) == 4 * 5  # conv weight, BN weight and bias, classifier weight and bias
    frames = _frames(8)
    assert set(find_dead_parameters(model, frames)) == aux
    dead = set(find_dead_parameters(model, frames[:4])) - aux
    assert {name.rsplit(".", 2)[0] for name in dead} == {
        *(f"propagation.{p}.{j}" for p in range(3) for j in range(3)),
        "encodings.3.key",  # frame 3's cache is first read at frame 4
        "encodings.0.query",  # frame 0's query would be read as a hop target at frames 1-2 (partial warm-up)
    }
