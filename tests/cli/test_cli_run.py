"""The ``vssbench run`` and ``vssbench profile`` commands (thin shells over the harness)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import run_args
from vssbench.cli import main
from vssbench.results.records import DESIGN_KEYS, RECORD_KEYS


@pytest.mark.slow
def test_run_json_is_the_only_thing_on_stdout(data_root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, run_args(data_root, tmp_path, "--method", "segformer", "--json"))
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)  # nothing else on stdout, or this would not parse; always a list
    assert set(DESIGN_KEYS) <= set(record) and set(record) == set(RECORD_KEYS)
    assert record["num_frames"] == 54 and record["random_init"] is True and record["error"] is None
    assert 0.0 <= record["mIoU"] <= 1.0 and record["fps"] > 0 and record["gmacs_per_frame"] > 0
    assert "WARNING: no --checkpoint: segformer-b0 is randomly initialized" in result.stderr
    run_dir = Path(record["run_dir"])
    assert run_dir.parent == tmp_path
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json",
        "log.txt",
        "per_class.csv",
        "record.json",
        "videos.jsonl",
    ]


def test_a_sweep_prints_every_row_and_exits_1_when_one_failed(
    data_root: Path, tmp_path: Path, failing_method: str
) -> None:
    args = run_args(
        data_root,
        tmp_path,
        "--method",
        f"{failing_method},segformer",
        "--max-videos",
        "1",
        "--max-frames",
        "3",
        "--set",
        "interval=2",
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "method",
        "backbone",
        "mIoU(%)",
        "wIoU(%)",
        "mVC8(%)",
        "mVC16(%)",
        "params(M)",
        "GMACs/frame",
        "FPS",
        "error",
    ]
    assert (
        lines[2].split()[:2] == ["test_failing", "b0"]
        and "RuntimeError: deliberate failure in step" in lines[2]
    )
    segformer = lines[3].split()
    assert segformer[:2] == ["segformer", "b0"] and segformer[6] == "3.75"  # params in M
    assert "error: test_failing-b0: RuntimeError: deliberate failure in step" in result.stderr
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/record.json"))]
    assert sorted(r["method"] for r in records) == ["segformer", "test_failing"]
    assert all(r["interval"] == 2 for r in records)


def test_profile_json_has_the_run_keys(tmp_path: Path) -> None:
    args = [
        "profile",
        "--method",
        "segformer",
        "--size",
        "64x64",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--decoder-dim",
        "64",
        "--interval",
        "2",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert set(record) == set(RECORD_KEYS)
    assert record["mIoU"] is None and record["mVC16"] is None and record["kind"] == "profile"
    assert record["options"]["decoder_dim"] == 64 and record["interval"] == 2
    assert record["gmacs_input_shape"] == [1, 3, 64, 64] and record["fps"] > 0 and record["params"] > 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--method", "nope"], "unknown method 'nope'; available:"),
        (["--method", "segformer", "--backbone", "b7"], "unknown backbone 'b7'"),
        (["--method", "segformer", "--split", "missing"], "missing.txt"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    data_root: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = CliRunner().invoke(main, run_args(data_root, tmp_path, *args))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_malformed_set_is_a_usage_error(data_root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, run_args(data_root, tmp_path, "--method", "segformer", "--set", "interval")
    )
    assert result.exit_code == 2 and "expected KEY=VALUE, got 'interval'" in result.stderr


def test_methods_lists_every_method_with_its_options() -> None:
    result = CliRunner().invoke(main, ["methods", "--json"])
    assert result.exit_code == 0, result.output
    described = {d["name"]: d for d in json.loads(result.stdout)}
    builtin = {name for name, d in described.items() if d["origin"] == "builtin"}
    assert builtin == {"segformer", "feature_reuse", "tfc", "cffm", "mrcfa", "tdnet"}  # plugins may add more
    tfc = described["tfc"]
    assert tfc["type"] == "E&S" and tfc["default_interval"] == 4
    assert tfc["options"]["threshold"] == 0.8 and tfc["options"]["interp"] == "soft"
    assert described["segformer"]["options"] == {
        "interval": 4,
        "decoder_dim": 256,
        "drop_path_rate": 0.1,
        "dropout": 0.1,
        "loss_reduction": "mmseg",
    }
    text = CliRunner().invoke(main, ["methods"]).stdout
    assert "tfc  [E&S]  TFC (Lin et al., AAAI 2024)  (builtin)" in text and "threshold=0.8" in text
