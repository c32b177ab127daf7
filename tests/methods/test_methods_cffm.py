"""CFFM adapter: streaming protocol, reference selection, cache == recompute, the focal attention
against a naive per-window reference, parameter counts, official checkpoint keys, training losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vssbench.methods import available, create, method_info
from vssbench.methods.cffm import CFFM, CFFMAttention, CFFMOptions, rolled_ring_index
from vssbench.models.checkpoint import load_checkpoint
from vssbench.models.mit import MixTransformer
from vssbench.profiling import count_gmacs

SIZE = (64, 64)


def _video(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, 1, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> CFFM:
    torch.manual_seed(0)
    return create("cffm", backbone="b0", num_classes=11)


def test_registered_with_info_and_options() -> None:
    assert "cffm" in available()
    info = method_info("cffm")
    assert info.type == "S" and info.size_divisor == 32 and info.default_interval == 4
    options = CFFMOptions()
    assert options.cache is True and options.decoder_dim == 256 and options.depth is None
    with pytest.raises(ValueError, match="depth must be >= 1"):
        CFFMOptions(depth=0)


def test_early_frame_rules_and_ring_buffer(model: CFFM) -> None:
    """Frames 0..2 fall back to per-frame SegFormer; 3..8 use the released clips; then t-9, t-6, t-3."""
    expected = {
        0: [0],
        1: [1],
        2: [2],
        3: [0, 1, 2, 3],
        4: [0, 2, 3, 4],
        5: [0, 2, 4, 5],
        6: [0, 2, 4, 6],
        7: [0, 3, 5, 7],
        8: [0, 3, 6, 8],
        9: [0, 3, 6, 9],
        10: [1, 4, 7, 10],
        11: [2, 5, 8, 11],
    }
    video = _video(12)
    model.reset()
    with torch.no_grad():
        for t in range(12):
            logits = model.step(video[t])
            assert logits.shape == (1, 11, *SIZE) and torch.isfinite(logits).all()
            assert model.last_clip == expected[t]
            assert model.last_step_info["references"] == (0 if t < 3 else 3)
            assert model.last_step_info["fallback"] == (t < 3)
            # The ring buffer holds the last 9 frames' 1/8 features (what t+1..t+9 may need).
            assert sorted(model._history) == list(range(max(0, t - 8), t + 1))
            assert all(f.shape == (1, 256, 8, 8) for f in model.state_tensors())
            if t < 3:  # the fallback is exactly the per-frame SegFormer prediction
                head = model.decode_head
                plain = head.classify(head.frame_feature(model.encode(video[t])))
                assert torch.allclose(
                    logits, F.interpolate(plain, size=SIZE, mode="bilinear", align_corners=False)
                )
    model.reset()
    assert model.state_tensors() == [] and model.t == 0
    with torch.no_grad():
        model.step(video[5])
    assert model.last_clip == [0] and model.last_step_info["fallback"]


def test_cache_equals_recompute(model: CFFM) -> None:
    """cache=true (one backbone pass per frame) and the released recomputation give the same logits."""
    recompute = create("cffm", backbone="b0", num_classes=11, cache=False)
    recompute.load_state_dict(model.state_dict())
    video = _video(11, seed=1)
    model.reset()
    with torch.no_grad():
        for t in range(11):
            a, b = model.step(video[t]), recompute.step(video[t])
            assert model.last_clip == recompute.last_clip
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert len(recompute.state_tensors()) == 9 and recompute.state_tensors()[0].shape == (1, 3, *SIZE)


def _naive_attention(
    attn: CFFMAttention, x: torch.Tensor, pooled_t: torch.Tensor, refs: list[torch.Tensor]
) -> torch.Tensor:
    """Per query window, the key multiset built from coordinates (zero biases): own 7x7 window,
    the ring from the four (+-3, +-3) cyclic shifts without in-window tokens, the 5x5 pooled
    target windows, and kernel 7/5/3 neighbourhoods at stride 1/2/3 of the pooled references."""
    b, h, w, c = x.shape
    heads, hd = attn.num_heads, c // attn.num_heads
    wq, bq = attn.qkv.weight, attn.qkv.bias
    q, k, v = F.linear(x, wq, bq).split(c, dim=-1)
    out = torch.zeros(b, h, w, c)
    for wr in range(h // 7):
        for wc in range(w // 7):
            r0, c0 = 7 * wr, 7 * wc
            coords = [(r0 + i, c0 + j) for i in range(7) for j in range(7)]
            for (dy, dx), invalid in (
                ((3, 3), lambda i, j: i < 4 and j < 4),
                ((3, -3), lambda i, j: i < 4 and j >= 3),
                ((-3, 3), lambda i, j: i >= 3 and j < 4),
                ((-3, -3), lambda i, j: i >= 3 and j >= 3),
            ):
                coords += [
                    ((r0 + i + dy) % h, (c0 + j + dx) % w)
                    for i in range(7)
                    for j in range(7)
                    if not invalid(i, j)
                ]
            keys = [k[:, r, s] for r, s in coords]
            vals = [v[:, r, s] for r, s in coords]
            for grid, row, col, kernel in [(pooled_t, wr, wc, 5)] + [
                (ref, wr * lvl, wc * lvl, kern) for ref, lvl, kern in zip(refs, (1, 2, 3), (7, 5, 3))
            ]:
                kv = F.linear(grid, wq[c:], bq[c:])
                for a in range(kernel):
                    for e in range(kernel):
                        r, s = row - kernel // 2 + a, col - kernel // 2 + e
                        if 0 <= r < grid.shape[1] and 0 <= s < grid.shape[2]:
                            keys.append(kv[:, r, s, :c])
                            vals.append(kv[:, r, s, c:])
            kk = torch.stack(keys, 1).view(b, -1, heads, hd).transpose(1, 2)
            vv = torch.stack(vals, 1).view(b, -1, heads, hd).transpose(1, 2)
            qq = q[:, r0 : r0 + 7, c0 : c0 + 7].reshape(b, 49, heads, hd).transpose(1, 2)
            weights = (qq @ kk.transpose(-2, -1) * hd**-0.5).softmax(-1)
            o = (weights @ vv).transpose(1, 2).reshape(b, 49, c)
            out[:, r0 : r0 + 7, c0 : c0 + 7] = attn.proj(o).view(b, 7, 7, c)
    return out


def test_focal_attention_matches_naive_reference() -> None:
    torch.manual_seed(3)
    attn = CFFMAttention(16, num_heads=2)
    with torch.no_grad():
        for name, p in attn.named_parameters():
            if "relative_position_bias" in name:
                p.zero_()
    assert rolled_ring_index(7, 3).numel() == 132
    x = torch.randn(2, 14, 21, 16)  # 2 x 3 windows
    pooled_t = torch.randn(2, 2, 3, 16)
    refs = [torch.randn(2, 2 * level, 3 * level, 16) for level in (1, 2, 3)]
    with torch.no_grad():
        got = attn(x, pooled_t, refs)
        want = _naive_attention(attn, x, pooled_t, refs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "backbone, published, depth", [("b0", 4.7, 1), ("b1", 15.5, 2), ("b2", 26.5, 2), ("b5", 85.5, 4)]
)
def test_parameters_match_table1(backbone: str, published: float, depth: int) -> None:
    """124 classes, E=256: within 0.15M of the paper (B2: the reference's derived 26.53M)."""
    with torch.device("meta"):  # counts only; no memory for B5's weights
        cffm = CFFM(backbone, 124, CFFMOptions())
    assert len(cffm.decode_head.decoder_focal.blocks) == depth
    total = sum(p.numel() for p in cffm.parameters()) / 1e6
    assert abs(total - published) < 0.15, total


def _official_head_keys(
    num_classes: int, depth: int, in_channels: tuple[int, ...], e: int = 256
) -> dict[str, tuple[int, ...]]:
    """``decode_head.*`` names and shapes of the released CFFMHead_clips_resize1_8 (reference section 1)."""
    keys: dict[str, tuple[int, ...]] = {}
    for i, c in enumerate(in_channels, start=1):
        keys[f"linear_c{i}.proj.weight"], keys[f"linear_c{i}.proj.bias"] = (e, c), (e,)
    keys["linear_fuse.conv.weight"] = (e, 4 * e, 1, 1)
    for name in ("weight", "bias", "running_mean", "running_var"):
        keys[f"linear_fuse.bn.{name}"] = (e,)
    keys["linear_fuse.bn.num_batches_tracked"] = ()
    keys["linear_pred.weight"], keys["linear_pred.bias"] = (num_classes, e, 1, 1), (num_classes,)
    keys["linear_pred2.weight"], keys["linear_pred2.bias"] = (num_classes, 2 * e, 1, 1), (num_classes,)
    keys["conv_seg.weight"], keys["conv_seg.bias"] = (num_classes, 128, 1, 1), (num_classes,)
    for j in range(depth):
        p = f"decoder_focal.blocks.{j}."
        for norm in ("norm1", "norm2"):
            keys[p + norm + ".weight"], keys[p + norm + ".bias"] = (e,), (e,)
        keys[p + "mlp.fc1.weight"], keys[p + "mlp.fc1.bias"] = (4 * e, e), (4 * e,)
        keys[p + "mlp.fc2.weight"], keys[p + "mlp.fc2.bias"] = (e, 4 * e), (e,)
        keys[p + "attn.qkv.weight"], keys[p + "attn.qkv.bias"] = (3 * e, e), (3 * e,)
        keys[p + "attn.proj.weight"], keys[p + "attn.proj.bias"] = (e, e), (e,)
        keys[p + "attn.relative_position_bias_table"] = (169, 8)
        keys[p + "attn.relative_position_bias_table_to_neighbors"] = (1, 8, 49, 132)
        keys[p + "attn.relative_position_bias_table_to_windows.0"] = (8, 121)
        for i, n in enumerate((169, 121, 81)):
            keys[p + f"attn.relative_position_bias_table_to_windows_clips.{i}"] = (8, n)
        keys[p + "attn.relative_position_index"] = (49, 49)
        keys[p + "attn.valid_ind_rolled"] = (132,)
        keys[p + "attn.relative_position_index_0"] = (49, 25)
        for i, n in enumerate((49, 25, 9)):
            keys[p + f"attn.relative_position_index_clips_{i}"] = (49, n)
        keys[p + "pool_layers.0.weight"], keys[p + "pool_layers.0.bias"] = (1, 49), (1,)
        for i, n in enumerate((49, 9, 4)):
            keys[p + f"pool_layers_clips.{i}.weight"], keys[p + f"pool_layers_clips.{i}.bias"] = (1, n), (1,)
    return {f"decode_head.{k}": v for k, v in keys.items()}


def test_official_checkpoint_keys_load_strictly(tmp_path: Path) -> None:
    """An mmseg-style file with the released names (conv_seg included) loads strictly into B1 (depth 2)."""
    cffm = create("cffm", backbone="b1", num_classes=11)
    state = {f"backbone.{k}": v for k, v in MixTransformer("b1").state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    for key, shape in _official_head_keys(11, 2, (64, 128, 320, 512)).items():
        if "index" in key or "valid_ind" in key:
            state[key] = cffm.state_dict()[key[:]].clone()  # constants: int64 index buffers
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.randn(shape, generator=generator)
    path = tmp_path / "cffm_b1.pth"
    torch.save({"meta": {"iter": 160000}, "state_dict": state}, path)
    report = load_checkpoint(cffm, path)
    assert report.ok and report.format == "mmseg"
    assert report.dropped == ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    loaded = cffm.state_dict()
    for key in (
        "decode_head.decoder_focal.blocks.1.attn.relative_position_bias_table_to_neighbors",
        "decode_head.decoder_focal.blocks.0.pool_layers_clips.2.weight",
        "decode_head.linear_pred2.weight",
    ):
        assert torch.equal(loaded[key], state[key])


def test_forward_train_losses_and_gradients(model: CFFM) -> None:
    model.train()
    try:
        images = torch.randn(1, 4, 3, *SIZE, generator=torch.Generator().manual_seed(2))
        labels = torch.randint(0, 11, (1, 4, *SIZE), generator=torch.Generator().manual_seed(2))
        labels[0, 0, :8] = 255
        out = model.forward_train(images, labels)
        assert set(out) == {"loss", "loss_seg", "loss_frames"}
        assert all(torch.isfinite(v) for v in out.values())
        torch.testing.assert_close(out["loss"], 0.5 * out["loss_frames"] + out["loss_seg"])
        model.zero_grad()
        out["loss"].backward()
        block = model.decode_head.decoder_focal.blocks[0]
        for param in (
            block.attn.qkv.weight,
            block.attn.relative_position_bias_table_to_windows_clips[0],
            block.pool_layers_clips[2].weight,
            model.decode_head.linear_pred2.weight,
            model.backbone.patch_embed1.proj.weight,
        ):
            assert param.grad is not None and param.grad.abs().sum() > 0
        with pytest.raises(ValueError, match="clips of 4 frames"):
            model.forward_train(images[:, :3], labels[:, :3])
    finally:
        model.zero_grad()
        model.eval()
    sampler = model.train_sampler()
    assert sampler.dilations == (-9, -6, -3) and sampler.reverse_prob == 0.5
    assert set(model.parameter_groups()) == {"encoder", "decoder"}


def test_gmacs_count_everything(model: CFFM) -> None:
    """Nothing is left unsupported, and a reference frame costs one backbone pass with the cache."""
    frames = list(_video(4, seed=4))
    cached = count_gmacs(model, frames, 4)
    recompute = create("cffm", backbone="b0", num_classes=11, cache=False)
    recomputed = count_gmacs(recompute, frames, 4)
    assert cached["unsupported_ops"] == {} and recomputed["unsupported_ops"] == {}
    fallback, temporal = cached["gmacs_per_step"][0], cached["gmacs_per_step"][3]
    assert cached["gmacs_per_step"][:3] == [fallback] * 3 and temporal > fallback
    # Recompute runs the encoder + MLP decoder on 4 frames at t=3: about 3 more frames' worth.
    extra = recomputed["gmacs_per_step"][3] - temporal
    assert 2.9 * fallback < extra < 3.1 * fallback
