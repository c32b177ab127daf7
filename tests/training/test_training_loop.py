"""The trainer: learning, every method, files, resume, non-finite losses, init from ImageNet MiT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.helpers import run_args
from vssbench.cli import main
from vssbench.errors import OptionError
from vssbench.methods import available, create
from vssbench.training.hooks import LRSchedulerHook
from vssbench.training.parallel import TrainStep
from vssbench.training.recipes import TrainConfig, build_config, build_optimizer, build_scheduler
from vssbench.training.run import load_init, train
from vssbench.training.trainer import Trainer

TINY = dict(crop=(32, 32), scale=(48, 32), batch_size=1, val_every=0, log_every=1, threads=1)


def tiny(method: str, root: Path, **fields) -> TrainConfig:
    return build_config("synthetic", method=method, data=str(root), **{**TINY, **fields})


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_loss_decreases_over_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = create("segformer", num_classes=4, drop_path_rate=0.0).train()
    images = torch.randn(2, 2, 3, 32, 32)
    labels = (torch.arange(32).view(1, 1, 1, 32) // 8).expand(2, 2, 32, 32).clone()  # 4 vertical bands
    config = TrainConfig(method="segformer", iters=25, warmup_iters=2, lr=1e-3)
    optimizer = build_optimizer(model, config)
    batches = iter(lambda: {"images": images, "labels": labels}, None)
    losses = []

    class Record(LRSchedulerHook):
        def after_step(self) -> None:
            super().after_step()
            losses.append(self.trainer.scalars["loss"])

    Trainer(
        TrainStep(model),
        optimizer,
        batches,
        device=torch.device("cpu"),
        max_iter=25,
        hooks=[Record(build_scheduler(optimizer, config))],
    ).train()
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("method", available())
def test_every_registered_method_trains(method: str, data_root: Path, tmp_path: Path) -> None:
    # batch 2: every adapter's forward_train sees a batch of clips, and a BatchNorm on a method's
    # subsampled 1x1 map (TDNet's keys at 32 px) has more than one value per channel
    summary = train(
        tiny(method, data_root, iters=2, batch_size=2, checkpoint_every=2), tmp_path / method, progress=False
    )
    assert summary["iterations"] == 2
    lines = read_log(tmp_path / method / "log.jsonl")
    assert [line["iter"] for line in lines] == [1, 2]
    for line in lines:
        assert {"iter", "loss", "lr", "time"} <= set(line) and line["loss"] > 0
    weights = torch.load(tmp_path / method / "model.pth", weights_only=True)
    assert weights["format"] == "vssbench" and weights["method"] == method and weights["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in weights["state_dict"].values() if v.is_floating_point())
    torch.manual_seed(0)  # the trainer's seeded initialization
    model = create(method, num_classes=124)
    names = {id(p): k for k, p in model.named_parameters()}
    moved = {k for k, p in model.named_parameters() if not torch.equal(weights["state_dict"][k], p.detach())}
    for group, module in model.parameter_groups().items():  # every declared group was trained
        assert moved & {names[id(p)] for p in module.parameters()}, group


def test_too_small_a_batch_for_batchnorm_is_a_clear_error(data_root: Path, tmp_path: Path) -> None:
    # TDNet's key encoders normalize 1/8 maps subsampled by kv_stride_train (4 here; 3 by default,
    # which leaves 2x2): 1x1 at 32 px, one value per channel at batch 1
    with pytest.raises(
        OptionError,
        match=r"iteration 1: a BatchNorm .* one value per channel .* larger --crop or "
        r"--batch-size",
    ):
        config = tiny("tdnet", data_root, iters=1, options={"kv_stride_train": 4})
        train(config, tmp_path / "tdnet", progress=False)


@pytest.mark.slow
def test_files_formats_and_run_loads_model(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "tfc"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train",
            "--method",
            "tfc",
            "--data",
            str(data_root),
            "--iters",
            "3",
            "--batch-size",
            "1",
            "--crop",
            "32x32",
            "--interval",
            "2",
            "--val-every",
            "3",
            "--val-videos",
            "1",
            "--val-size",
            "32x48",
            "--checkpoint-every",
            "2",
            "--log-every",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
            "--json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds only the record
    assert summary["iterations"] == 3 and set(summary["paths"]) == {
        "config.json",
        "log.jsonl",
        "last.pth",
        "model.pth",
        "best.pth",
    }
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "tfc" and config["options"] == {"interval": 2} and config["iters"] == 3
    assert config["crop"] == [32, 32] and config["preset"] == "paper"  # --data defaults to the paper recipe
    lines = read_log(out / "log.jsonl")
    train_lines = [line for line in lines if "loss" in line]
    val_lines = [line for line in lines if "val_mIoU" in line]
    assert [line["iter"] for line in train_lines] == [1, 2, 3]
    for line in train_lines:
        assert {"loss", "loss_seg", "loss_bce", "mask_acc", "lr"} <= set(line)
        assert line["loss"] == pytest.approx(line["loss_seg"] + line["loss_bce"], rel=1e-5)
    assert len(val_lines) == 1 and val_lines[0]["iter"] == 3
    assert {"val_mIoU", "val_wIoU", "val_mVC8", "val_mVC16"} <= set(val_lines[0])
    assert summary["val"]["val_mIoU"] == val_lines[0]["val_mIoU"] == summary["best_val_mIoU"]
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["iteration"] == 3 and set(state["rng"][0]) >= {"python", "numpy", "torch"}
    assert state["data"]["next_position"] == 3 and state["config"] == config
    # paper warm-up: lr of iteration 1 is 1e-6 of the base lr
    assert train_lines[0]["lr"] == pytest.approx(6e-5 * 1e-6)

    record_dir = tmp_path / "runs"
    result = runner.invoke(
        main,
        [
            "run",
            "--method",
            "tfc",
            "--data",
            str(data_root),
            "--checkpoint",
            str(out / "model.pth"),
            "--interval",
            "2",
            "--size",
            "32x48",
            "--max-videos",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--out",
            str(record_dir),
            "--json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    record = record[0] if isinstance(record, list) else record
    # run evaluates the same weights on the same video as the final validation: same numbers
    assert record["mIoU"] == pytest.approx(val_lines[0]["val_mIoU"], abs=1e-12)
    assert record["mVC8"] == pytest.approx(val_lines[0]["val_mVC8"], abs=1e-12)


def test_resume_is_bit_exact(data_root: Path, tmp_path: Path) -> None:
    # SegFormer with drop path 0.1: exercises the torch RNG as well as the data order
    config = tiny("segformer", data_root, iters=4, batch_size=2, checkpoint_every=2, lr=1e-3, warmup_iters=1)
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", stop_at=2, progress=False)
    assert torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)["iteration"] == 2
    train(config, tmp_path / "resumed", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "model.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    straight = [
        {k: v for k, v in line.items() if k != "time"}
        for line in read_log(tmp_path / "straight" / "log.jsonl")
    ]
    resumed = [
        {k: v for k, v in line.items() if k != "time"}
        for line in read_log(tmp_path / "resumed" / "log.jsonl")
    ]
    assert straight == resumed

    with pytest.raises(OptionError, match=r"config differs .* batch_size: 2 -> 1; lr: 0.001 -> 0.002"):
        train(config.replace(batch_size=1, lr=2e-3), tmp_path / "resumed", resume=True, progress=False)
    with pytest.raises(OptionError, match="already holds a training run"):
        train(config, tmp_path / "resumed", progress=False)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vssbench.methods.segformer import SegFormer

    original = SegFormer.forward_train
    calls = {"n": 0}

    def flaky(self, images, labels):
        out = original(self, images, labels)
        calls["n"] += 1
        if calls["n"] == 3:
            out["loss_seg"] = out["loss_seg"] * float("nan")
            out["loss"] = out["loss_seg"]
        return out

    monkeypatch.setattr(SegFormer, "forward_train", flaky)
    out = tmp_path / "nan"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--method",
            "segformer",
            "--data",
            str(data_root),
            "--iters",
            "5",
            "--batch-size",
            "1",
            "--crop",
            "32x32",
            "--val-every",
            "0",
            "--checkpoint-every",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: iteration 3: non-finite loss (loss=nan, loss_seg=nan)"]
    assert torch.load(out / "last.pth", weights_only=True)["iteration"] == 2
    assert not (out / "model.pth").exists()


def test_imagenet_mit_init_loads_the_encoder_and_reports_the_decoder(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create("segformer", num_classes=5).backbone.state_dict()
    mit = {**source, "head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}
    torch.save(mit, tmp_path / "mit_b0.pth")
    torch.manual_seed(2)
    model = create("tfc", num_classes=5)
    decoder_before = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    report = load_init(model, str(tmp_path / "mit_b0.pth"), "auto")
    assert report["format"] == "mit" and report["loaded"] == len(source)
    assert report["dropped"] == ["head.weight", "head.bias"]
    for key, value in source.items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    assert all(k.startswith(("decode_head.", "msda.")) for k in report["untouched"])
    assert {f"decode_head.{k}" for k in decoder_before} - {
        "decode_head.linear_fuse.bn.num_batches_tracked"
    } <= set(report["untouched"])
    for key, value in model.decode_head.state_dict().items():
        assert torch.equal(value, decoder_before[key])
    assert f"{len(report['untouched'])} untouched" in report["summary"]


def test_a_trained_encoder_exported_as_mit_initializes_another_method(
    tmp_path: Path, data_root: Path
) -> None:
    """The synthetic study's pretraining path: train -> `convert --to mit` -> `train --init`; the
    training's seed travels in model.pth into the record of a run that loads it."""
    out = tmp_path / "pretrain"
    train(tiny("segformer", data_root, iters=2, seed=5), out, progress=False)
    saved = torch.load(out / "model.pth", weights_only=True)
    assert (saved["train_seed"], saved["iteration"]) == (5, 2)
    mit = tmp_path / "mit_b0.pth"
    result = CliRunner().invoke(main, ["convert", str(out / "model.pth"), "--to", "mit", "--out", str(mit)])
    assert result.exit_code == 0, result.output
    exported = torch.load(mit, weights_only=True)
    encoder = {k[len("backbone.") :]: v for k, v in saved["state_dict"].items() if k.startswith("backbone.")}
    assert exported.keys() == encoder.keys() and all(torch.equal(exported[k], encoder[k]) for k in encoder)
    assert f"wrote {mit} ({len(encoder)} tensors, vssbench -> mit)" in result.stderr
    torch.manual_seed(9)
    model = create("tfc", num_classes=124)
    report = load_init(model, str(mit))
    assert report["format"] == "mit" and report["loaded"] == len(encoder) and report["dropped"] == []
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in encoder.items())
    # A run of the trained weights records the training's seed; random init records none.
    args = [
        "--method",
        "segformer",
        "--max-videos",
        "1",
        "--max-frames",
        "2",
        "--efficiency",
        "none",
        "--json",
    ]
    result = CliRunner().invoke(
        main, [*run_args(data_root, tmp_path / "runs", "--checkpoint", str(out / "model.pth")), *args]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["train_seed"] == 5
    result = CliRunner().invoke(main, [*run_args(data_root, tmp_path / "runs0"), *args])
    assert json.loads(result.stdout)[0]["train_seed"] is None


def test_convert_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    torch.save({"decode_head.linear_pred.weight": torch.zeros(2, 2)}, tmp_path / "head.pth")
    result = CliRunner().invoke(
        main, ["convert", str(tmp_path / "head.pth"), "--to", "mit", "--out", str(tmp_path / "m.pth")]
    )
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'head.pth'}: no encoder keys (backbone.*) to export\n"
    assert not (tmp_path / "m.pth").exists()
    result = CliRunner().invoke(
        main, ["convert", str(tmp_path / "head.pth"), "--to", "mit", "--out", str(tmp_path / "no" / "m.pth")]
    )
    assert result.exit_code == 2 and "does not exist" in result.stderr
