"""`train --resume` of a finished training: it says so in one line and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from vssbench.cli import main


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--method",
        "segformer",
        "--data",
        str(root),
        "--preset",
        "synthetic",
        "--iters",
        "2",
        "--crop",
        "32x32",
        "--batch-size",
        "1",
        "--val-every",
        "1",
        "--val-videos",
        "1",
        "--val-size",
        "32x48",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_resuming_a_finished_training_changes_nothing(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = CliRunner().invoke(main, _train_args(data_root, out))
    assert first.exit_code == 0, first.output
    before = _snapshot(out)
    assert set(before) == {"best.pth", "config.json", "last.pth", "log.jsonl", "model.pth"}

    again = CliRunner().invoke(main, _train_args(data_root, out, "--resume"))
    assert again.exit_code == 0, again.output
    assert again.stdout == (
        f"training already complete (2 of 2 iterations); nothing changed; results in {out}: "
        "best.pth, config.json, last.pth, log.jsonl, model.pth\n"
    )
    assert again.stderr == ""
    assert _snapshot(out) == before  # log.jsonl byte-identical, no file rewritten

    # --json: the summary of the finished run, read back from its log
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    as_json = CliRunner().invoke(main, _train_args(data_root, out, "--resume", "--json"))
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["already_complete"] is True
    assert (summary["start_iteration"], summary["iterations"], summary["max_iterations"]) == (2, 2, 2)
    assert summary["final"] == [line for line in lines if "loss" in line][-1]
    assert summary["val"] == [line for line in lines if "val_mIoU" in line][-1]
    assert summary["best_val_mIoU"] == max(line["val_mIoU"] for line in lines if "val_mIoU" in line)
    assert _snapshot(out) == before


def test_a_finished_training_without_its_model_file_gets_it_back(data_root: Path, tmp_path: Path) -> None:
    """Stopped after the last last.pth but before model.pth: --resume writes model.pth only."""
    out = tmp_path / "run"
    assert CliRunner().invoke(main, _train_args(data_root, out)).exit_code == 0
    model = torch.load(out / "model.pth", weights_only=True)
    (out / "model.pth").unlink()
    before = _snapshot(out)
    again = CliRunner().invoke(main, _train_args(data_root, out, "--resume"))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("training already complete (2 of 2 iterations); wrote model.pth; ")
    assert _snapshot(out).items() >= before.items()
    rewritten = torch.load(out / "model.pth", weights_only=True)
    assert rewritten["state_dict"].keys() == model["state_dict"].keys()
    for key, value in model["state_dict"].items():
        assert torch.equal(rewritten["state_dict"][key], value), key
