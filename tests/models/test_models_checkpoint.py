"""Checkpoint formats: round trips through every layout, strict errors, partial loads."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from vssbench.errors import CheckpointError
from vssbench.methods import create
from vssbench.methods.feature_reuse import FeatureReuse, FeatureReuseOptions
from vssbench.methods.segformer import SegFormer
from vssbench.models.checkpoint import (
    FORMATS,
    detect_format,
    hf_to_vssbench,
    load_checkpoint,
    mit_to_vssbench,
    mmseg_to_vssbench,
    read_state_dict,
    save_checkpoint,
    vssbench_to_hf,
    vssbench_to_mmseg,
)
from vssbench.models.safetensors_io import write_safetensors


def _model(seed: int) -> SegFormer:
    torch.manual_seed(seed)
    model = SegFormer("b0", num_classes=124).eval()
    # Random BN statistics so that buffers are part of what must round-trip.
    bn = model.decode_head.linear_fuse.bn
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 1.5)
    bn.num_batches_tracked.fill_(seed + 7)
    return model


@pytest.fixture(scope="module")
def source() -> SegFormer:
    return _model(0)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def _logits(model: SegFormer, image: torch.Tensor) -> torch.Tensor:
    model.reset()
    with torch.no_grad():
        return model.step(image)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module, prefix: str = "") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if key.startswith(prefix):
            assert torch.equal(sa[key], sb[key]), key


def _sd(model: SegFormer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_vssbench_round_trip(tmp_path: Path, source: SegFormer, image: torch.Tensor) -> None:
    path = tmp_path / "model.pth"
    save_checkpoint(source, path, extra={"epoch": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "vssbench" and raw["version"] == 1 and raw["epoch"] == 3
    assert (raw["method"], raw["backbone"], raw["num_classes"]) == ("segformer", "b0", 124)
    assert raw["options"] == {
        "interval": 4,
        "decoder_dim": 256,
        "drop_path_rate": 0.1,
        "dropout": 0.1,
        "loss_reduction": "mmseg",
    }
    target = _model(1)
    assert not torch.equal(_logits(target, image), _logits(source, image))
    report = load_checkpoint(target, path)
    assert report.format == "vssbench" and report.ok and report.loaded == len(source.state_dict())
    assert not report.dropped and not report.untouched
    assert torch.equal(_logits(target, image), _logits(source, image))
    _assert_same_state(source, target)
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(source, path, extra={"state_dict": {}})


def test_mmseg_round_trip_drops_conv_seg(tmp_path: Path, source: SegFormer, image: torch.Tensor) -> None:
    sd = vssbench_to_mmseg(_sd(source))
    assert set(sd) == set(source.state_dict())  # the NVlabs names are ours
    sd["decode_head.conv_seg.weight"] = torch.randn(124, 128, 1, 1)
    sd["decode_head.conv_seg.bias"] = torch.randn(124)
    path = tmp_path / "segformer.b0.512x512.ade.160k.pth"
    torch.save({"meta": {"CLASSES": ("wall", "floor"), "iter": 160000}, "state_dict": sd}, path)
    assert detect_format(torch.load(path, weights_only=True)) == "mmseg"
    target = _model(1)
    report = load_checkpoint(target, path)
    assert report.format == "mmseg" and report.ok
    assert sorted(report.dropped) == ["decode_head.conv_seg.bias", "decode_head.conv_seg.weight"]
    assert torch.equal(_logits(target, image), _logits(source, image))


def test_mit_imagenet_file_loads_the_encoder_only(
    tmp_path: Path, source: SegFormer, image: torch.Tensor
) -> None:
    sd = {k[len("backbone.") :]: v for k, v in _sd(source).items() if k.startswith("backbone.")}
    sd["head.weight"] = torch.randn(1000, 256)
    sd["head.bias"] = torch.randn(1000)
    path = tmp_path / "mit_b0.pth"
    torch.save(sd, path)
    target = _model(1)
    decoder_before = {k: v.clone() for k, v in target.decode_head.state_dict().items()}
    report = load_checkpoint(target, path)
    assert report.format == "mit" and report.ok
    assert sorted(report.dropped) == ["head.bias", "head.weight"]
    assert sorted(report.untouched) == sorted(f"decode_head.{k}" for k in decoder_before)
    _assert_same_state(source, target, prefix="backbone.")
    for key, value in target.decode_head.state_dict().items():
        assert torch.equal(value, decoder_before[key]), key
    # Encoder features now equal the source's.
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(target.encode(image), source.encode(image)))
    # Strictness still applies to the backbone keys.
    del sd["block2.1.mlp.fc1.weight"]
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"mit_b0\.pth[\s\S]*backbone\.block2\.1\.mlp\.fc1\.weight"):
        load_checkpoint(_model(2), path)


@pytest.mark.parametrize("writer", ["torch", "ours", "package"])
def test_hf_round_trip(tmp_path: Path, source: SegFormer, image: torch.Tensor, writer: str) -> None:
    sd = vssbench_to_hf(_sd(source))
    assert len(sd) == 208  # reference 2.3: HF B0 has 208 entries
    if writer == "torch":
        path = tmp_path / "pytorch_model.bin"
        torch.save(sd, path)
    elif writer == "ours":
        path = tmp_path / "model.safetensors"
        write_safetensors(path, sd, metadata={"format": "pt"})
    else:
        st = pytest.importorskip("safetensors.torch")
        path = tmp_path / "model.safetensors"
        st.save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
    target = _model(1)
    report = load_checkpoint(target, tmp_path)  # a save_pretrained-style directory resolves to the file
    assert report.format == "hf" and report.ok and report.loaded == len(source.state_dict())
    assert torch.equal(_logits(target, image), _logits(source, image))


def test_hf_names_follow_the_reference_table(source: SegFormer) -> None:
    sd = _sd(source)
    hf = vssbench_to_hf(sd)
    kv = sd["backbone.block3.1.attn.kv.weight"]  # 320 x 160: rows [k; v]
    assert torch.equal(hf["segformer.encoder.block.2.1.attention.self.key.weight"], kv[:160])
    assert torch.equal(hf["segformer.encoder.block.2.1.attention.self.value.weight"], kv[160:])
    pairs = {
        "backbone.patch_embed2.proj.weight": "segformer.encoder.patch_embeddings.1.proj.weight",
        "backbone.patch_embed1.norm.bias": "segformer.encoder.patch_embeddings.0.layer_norm.bias",
        "backbone.block1.0.norm1.weight": "segformer.encoder.block.0.0.layer_norm_1.weight",
        "backbone.block1.0.attn.q.bias": "segformer.encoder.block.0.0.attention.self.query.bias",
        "backbone.block2.1.attn.proj.weight": "segformer.encoder.block.1.1.attention.output.dense.weight",
        "backbone.block1.1.attn.sr.weight": "segformer.encoder.block.0.1.attention.self.sr.weight",
        "backbone.block3.0.attn.norm.weight": "segformer.encoder.block.2.0.attention.self.layer_norm.weight",
        "backbone.block4.1.norm2.bias": "segformer.encoder.block.3.1.layer_norm_2.bias",
        "backbone.block4.0.mlp.fc1.weight": "segformer.encoder.block.3.0.mlp.dense1.weight",
        "backbone.block4.0.mlp.dwconv.dwconv.weight": "segformer.encoder.block.3.0.mlp.dwconv.dwconv.weight",
        "backbone.block4.0.mlp.fc2.bias": "segformer.encoder.block.3.0.mlp.dense2.bias",
        "backbone.norm4.weight": "segformer.encoder.layer_norm.3.weight",
        "decode_head.linear_c1.proj.weight": "decode_head.linear_c.0.proj.weight",
        "decode_head.linear_fuse.conv.weight": "decode_head.linear_fuse.weight",
        "decode_head.linear_fuse.bn.running_var": "decode_head.batch_norm.running_var",
        "decode_head.linear_pred.bias": "decode_head.classifier.bias",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(hf[theirs], sd[ours]), ours
    back = hf_to_vssbench(hf)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    # transformers-5 in-memory names map to the same keys.
    v5 = {
        "segformer.stages.2.blocks.1.attention.k_proj.weight": kv[:160],
        "segformer.stages.2.blocks.1.attention.v_proj.weight": kv[160:],
        "segformer.stages.0.blocks.0.layernorm_before.bias": sd["backbone.block1.0.norm1.bias"],
        "segformer.stages.0.blocks.1.attention.sequence_reduction.sequence_reduction.weight": sd[
            "backbone.block1.1.attn.sr.weight"
        ],
        "segformer.stages.3.layer_norm.weight": sd["backbone.norm4.weight"],
        "segformer.stages.1.patch_embeddings.layer_norm.weight": sd["backbone.patch_embed2.norm.weight"],
        "decode_head.linear_projections.3.proj.bias": sd["decode_head.linear_c4.proj.bias"],
    }
    mapped = hf_to_vssbench(v5)
    assert set(mapped) == {
        "backbone.block3.1.attn.kv.weight",
        "backbone.block1.0.norm1.bias",
        "backbone.block1.1.attn.sr.weight",
        "backbone.norm4.weight",
        "backbone.patch_embed2.norm.weight",
        "decode_head.linear_c4.proj.bias",
    }
    assert torch.equal(mapped["backbone.block3.1.attn.kv.weight"], kv)
    with pytest.raises(CheckpointError, match="tfc.gate.weight"):
        vssbench_to_hf({**sd, "tfc.gate.weight": torch.zeros(1)})


def test_hf_encoder_only_file_drops_the_image_classifier(tmp_path: Path, source: SegFormer) -> None:
    sd = {k: v for k, v in vssbench_to_hf(_sd(source)).items() if k.startswith("segformer.")}
    sd["classifier.weight"] = torch.randn(1000, 256)
    sd["classifier.bias"] = torch.randn(1000)
    path = tmp_path / "mit-b0.safetensors"
    write_safetensors(path, sd)
    target = _model(1)
    report = load_checkpoint(target, path)
    assert (
        report.format == "hf"
        and report.ok
        and sorted(report.dropped) == ["classifier.bias", "classifier.weight"]
    )
    assert report.untouched and all(k.startswith("decode_head.") for k in report.untouched)
    _assert_same_state(source, target, prefix="backbone.")


def test_strict_errors_name_the_file_keys_and_shapes(tmp_path: Path, source: SegFormer) -> None:
    sd = _sd(source)
    del sd["backbone.block2.1.mlp.fc1.weight"]
    sd["decode_head.extra.weight"] = torch.zeros(3)
    sd["decode_head.linear_pred.weight"] = torch.zeros(150, 256, 1, 1)
    sd["decode_head.linear_pred.bias"] = torch.zeros(150)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": sd}, path)
    target = _model(1)
    before = _sd(target)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target, path)
    message = str(info.value)
    assert str(path) in message
    assert "1 missing key(s): backbone.block2.1.mlp.fc1.weight" in message
    assert "1 unexpected key(s): decode_head.extra.weight" in message
    assert "decode_head.linear_pred.weight: model [124, 256, 1, 1] vs file [150, 256, 1, 1]" in message
    assert "decode_head.linear_pred.bias: model [124] vs file [150]" in message
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing copied

    # Non-strict: every matching key loads; the rest is reported.
    report = load_checkpoint(target, path, strict=False)
    assert report.missing == ["backbone.block2.1.mlp.fc1.weight"]
    assert report.unexpected == ["decode_head.extra.weight"]
    assert {k for k, _, _ in report.mismatched} == {
        "decode_head.linear_pred.weight",
        "decode_head.linear_pred.bias",
    }
    assert report.loaded == len(before) - 3
    _assert_same_state(source, target, prefix="backbone.block1.")
    assert torch.equal(target.decode_head.linear_pred.weight, before["decode_head.linear_pred.weight"])


def test_long_key_lists_are_truncated_with_a_count(tmp_path: Path, source: SegFormer) -> None:
    sd = {k: v for k, v in _sd(source).items() if not k.startswith("backbone.block")}
    path = tmp_path / "few.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"(\d+) missing key\(s\): .* \.\.\. and \d+ more") as info:
        load_checkpoint(_model(1), path, format="mmseg")
    listed = str(info.value).split("missing key(s): ")[1].split(" ... ")[0]
    assert len(listed.split(", ")) == 3  # the first few; the message stays within ~10 lines
    assert len(str(info.value).splitlines()) <= 10


def test_vssbench_error_mentions_what_the_file_was_saved_from(tmp_path: Path) -> None:
    path = tmp_path / "b1.pth"
    torch.manual_seed(0)
    save_checkpoint(SegFormer("b1", num_classes=124), path)
    with pytest.raises(CheckpointError, match="saved from method segformer \\(backbone b1"):
        load_checkpoint(_model(0), path)


class _NotAllowed:
    pass


def test_non_checkpoints_are_errors_naming_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.txt: not a readable checkpoint"):
        read_state_dict(text)
    with pytest.raises(CheckpointError, match="nothing.pth: no such checkpoint"):
        read_state_dict(tmp_path / "nothing.pth")
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(CheckpointError, match="list.pth: not a checkpoint"):
        read_state_dict(listing)
    pickled = tmp_path / "object.pth"
    pickled.write_bytes(pickle.dumps({"a": _NotAllowed()}, protocol=2))
    with pytest.raises(CheckpointError, match="object.pth: not a readable checkpoint"):
        load_checkpoint(_model(0), pickled)
    unknown = tmp_path / "unknown.pth"
    torch.save({"foo.weight": torch.zeros(1)}, unknown)
    with pytest.raises(CheckpointError, match="unknown.pth: .*unknown key layout"):
        load_checkpoint(_model(0), unknown)
    with pytest.raises(CheckpointError, match="formats: auto, vssbench"):
        load_checkpoint(_model(0), unknown, format="timm")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        read_state_dict(empty_dir)


def test_detect_format_and_wrappers(source: SegFormer) -> None:
    sd = _sd(source)
    assert detect_format(sd) == "mmseg"  # the same names; the wrapper marker decides "vssbench"
    assert detect_format({"format": "vssbench", "state_dict": sd}) == "vssbench"
    assert detect_format({"model": vssbench_to_hf(sd)}) == "hf"
    assert detect_format({k[9:]: v for k, v in sd.items() if k.startswith("backbone.")}) == "mit"
    assert detect_format({f"module.{k}": v for k, v in sd.items()}) == "mmseg"
    with pytest.raises(CheckpointError, match="mmsegmentation 1.x"):
        detect_format({"backbone.layers.0.0.projection.weight": torch.zeros(1)})
    assert set(FORMATS) == {"vssbench", "mmseg", "mit", "hf"}


def test_ddp_prefix_is_stripped(tmp_path: Path, source: SegFormer, image: torch.Tensor) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _sd(source).items()}}, path)
    target = _model(1)
    assert load_checkpoint(target, path).ok
    assert torch.equal(_logits(target, image), _logits(source, image))


def test_converters_report_dropped_keys() -> None:
    dropped: list[str] = []
    out = mmseg_to_vssbench(
        {"decode_head.conv_seg.weight": torch.zeros(1), "backbone.x": torch.ones(1)}, dropped
    )
    assert list(out) == ["backbone.x"] and dropped == ["decode_head.conv_seg.weight"]
    dropped = []
    out = mit_to_vssbench({"head.bias": torch.zeros(1), "norm1.weight": torch.ones(1)}, dropped)
    assert list(out) == ["backbone.norm1.weight"] and dropped == ["head.bias"]


def test_create_loads_a_checkpoint_into_any_segformer_family_adapter(
    tmp_path: Path, source: SegFormer
) -> None:
    path = tmp_path / "segformer.pth"
    save_checkpoint(source, path)
    reuse = create("feature_reuse", backbone="b0", checkpoint=str(path), interval=1)
    assert isinstance(reuse, FeatureReuse) and not reuse.training
    _assert_same_state(source, reuse)
    with pytest.raises(CheckpointError, match="this looks like a b0 checkpoint .*: pass --backbone b0"):
        create("segformer", backbone="b1", checkpoint=str(path))
    assert FeatureReuseOptions().interval == 4


class _WithExtraModule(SegFormer):
    """A SegFormer-family adapter with a module beyond backbone/decode_head (as TFC has)."""

    def __init__(self) -> None:
        super().__init__("b0", num_classes=124)
        self.gate = torch.nn.Linear(4, 2)


def test_official_file_into_an_extended_adapter(tmp_path: Path, source: SegFormer) -> None:
    sd = vssbench_to_mmseg(_sd(source))
    sd["decode_head.temporal_attn.weight"] = torch.zeros(8, 8)  # e.g. CFFM's extra head module
    path = tmp_path / "cffm.pth"
    torch.save({"state_dict": sd}, path)
    torch.manual_seed(3)
    target = _WithExtraModule().eval()
    gate = target.gate.weight.clone()
    expected = r"2 missing key\(s\): gate.weight, gate.bias[\s\S]*decode_head.temporal_attn"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(target, path)
    report = load_checkpoint(target, path, strict=False)
    assert report.missing == ["gate.weight", "gate.bias"] and report.unexpected == [
        "decode_head.temporal_attn.weight"
    ]
    _assert_same_state(source, target, prefix="backbone.")
    _assert_same_state(source, target, prefix="decode_head.")
    assert torch.equal(target.gate.weight, gate)
