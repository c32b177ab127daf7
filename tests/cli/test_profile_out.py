"""Per-row checkpoints (``--checkpoint METHOD[:BACKBONE]=PATH``) and ``vssbench profile --out DIR``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.errors import OptionError
from vssbench.harness import build_configs
from vssbench.harness.configs import checkpoint_for, parse_checkpoints
from vssbench.harness.profile import write_records
from vssbench.methods import create
from vssbench.models import save_checkpoint
from vssbench.models.checkpoint import file_digest

METHODS = ("segformer", "tfc")
BACKBONES = ("b0", "b1")


# --- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "table"),
    [
        ([], {}),
        (["w.pth"], {"": "w.pth"}),
        ("w.pth", {"": "w.pth"}),  # one string is one value
        (["segformer=s.pth"], {"segformer": "s.pth"}),
        (["tfc:b1=t1.pth"], {"tfc:b1": "t1.pth"}),
        (["w.pth", "tfc=t.pth", "tfc:b1=t1.pth"], {"": "w.pth", "tfc": "t.pth", "tfc:b1": "t1.pth"}),
        # Keyed only by a registered method (and b0..b5); anything else is a path, '=' and all.
        (["runs/lr=0.1/model.pth"], {"": "runs/lr=0.1/model.pth"}),
        (["nomethod=x.pth"], {"": "nomethod=x.pth"}),
        (["tfc:b9=x.pth"], {"": "tfc:b9=x.pth"}),
        (["segformer=a=b.pth"], {"segformer": "a=b.pth"}),  # split at the first '=' only
    ],
)
def test_parse_checkpoints(values: list[str], table: dict[str, str]) -> None:
    assert parse_checkpoints(values, METHODS, BACKBONES) == table


def test_the_most_specific_key_wins_and_a_row_without_one_is_random_init() -> None:
    keyed = parse_checkpoints(["tfc=t.pth", "tfc:b1=t1.pth"], METHODS, BACKBONES)
    rows = {(m, b): checkpoint_for(keyed, m, b) for m in METHODS for b in BACKBONES}
    assert rows == {
        ("segformer", "b0"): None,
        ("segformer", "b1"): None,
        ("tfc", "b0"): "t.pth",
        ("tfc", "b1"): "t1.pth",
    }
    with_default = parse_checkpoints(["tfc:b1=t1.pth", "w.pth"], METHODS, BACKBONES)  # order is free
    assert [checkpoint_for(with_default, m, b) for m in METHODS for b in BACKBONES] == [
        "w.pth",
        "w.pth",
        "w.pth",
        "t1.pth",
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a.pth", "b.pth"], "--checkpoint a.pth and --checkpoint b.pth: two checkpoints for every row"),
        (
            ["tfc=a.pth", "tfc=b.pth"],
            "--checkpoint tfc=a.pth and --checkpoint tfc=b.pth: two checkpoints for tfc",
        ),
        (
            ["tfc:b0=a.pth", "tfc:b0=a.pth"],
            "--checkpoint tfc:b0=a.pth and --checkpoint tfc:b0=a.pth: two checkpoints for tfc:b0",
        ),
        (["cffm=c.pth"], "--checkpoint cffm=c.pth: cffm is not one of the --method rows (segformer, tfc)"),
        (
            ["cffm:b0=c.pth"],
            "--checkpoint cffm:b0=c.pth: cffm is not one of the --method rows (segformer, tfc)",
        ),
        (["tfc:b3=c.pth"], "--checkpoint tfc:b3=c.pth: b3 is not one of the --backbone rows (b0, b1)"),
        (["tfc="], "--checkpoint tfc=: no path after '='"),
    ],
)
def test_bad_checkpoint_values_are_option_errors_naming_them(values: list[str], message: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_checkpoints(values, METHODS, BACKBONES)
    assert str(info.value) == message


def test_build_configs_gives_each_row_its_checkpoint() -> None:
    configs = build_configs("segformer,tfc", "b0,b1", checkpoint=["w.pth", "tfc:b1=t1.pth"], non_strict=True)
    assert [(c.method, c.backbone, c.checkpoint, c.non_strict) for c in configs] == [
        ("segformer", "b0", "w.pth", True),
        ("segformer", "b1", "w.pth", True),
        ("tfc", "b0", "w.pth", True),
        ("tfc", "b1", "t1.pth", True),
    ]
    # A row without a checkpoint has nothing to load non-strictly.
    keyed = build_configs("segformer,tfc", "b0", checkpoint=["tfc=t.pth"], non_strict=True)
    assert [(c.checkpoint, c.non_strict) for c in keyed] == [(None, False), ("t.pth", True)]
    # One plain path is what it always was: the same checkpoint for every row.
    plain = build_configs("segformer,tfc", "b0", checkpoint="w.pth")
    assert [c.checkpoint for c in plain] == ["w.pth", "w.pth"]
    assert [c.checkpoint for c in build_configs("segformer", "b0")] == [None]


def test_a_key_outside_the_sweep_is_one_line_exit_2() -> None:
    args = ["profile", "--method", "segformer", "--size", "64x64", "--checkpoint", "cffm=c.pth"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        "error: --checkpoint cffm=c.pth: cffm is not one of the --method rows (segformer)\n"
    )


# --- profile with per-row checkpoints, --out ------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-init B0 checkpoints of segformer (no train_seed) and tfc (train_seed 7)."""
    folder = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(11)
    save_checkpoint(create("segformer", backbone="b0"), folder / "segformer.pth")
    torch.manual_seed(12)
    save_checkpoint(create("tfc", backbone="b0"), folder / "tfc.pth", extra={"train_seed": 7})
    return {"segformer": folder / "segformer.pth", "tfc": folder / "tfc.pth"}


def test_profile_sweep_rows_carry_their_own_checkpoint_and_out_writes_the_json(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "nested" / "profiles"
    args = [
        "profile",
        "--method",
        "segformer,tfc",
        "--size",
        "64x64",
        "--interval",
        "2",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--checkpoint",
        f"segformer={checkpoints['segformer']}",
        "--checkpoint",
        f"tfc:b0={checkpoints['tfc']}",
        "--json",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["method"] for r in records] == ["segformer", "tfc"]
    for record in records:
        path = checkpoints[record["method"]]
        assert record["checkpoint"] == str(path.resolve()) and record["random_init"] is False
        assert record["checkpoint_sha256"] == file_digest(path)[0] and record["error"] is None
    assert records[0]["checkpoint_sha256"] != records[1]["checkpoint_sha256"]
    assert [r["train_seed"] for r in records] == [None, 7]
    # --out: the same list, in a folder created with its parents, and nothing else there.
    assert json.loads((out / "records.json").read_text(encoding="utf-8")) == records
    assert sorted(p.name for p in out.iterdir()) == ["records.json"]
    assert f"wrote 2 records to {out / 'records.json'}\n" in result.stderr


def test_profile_without_out_writes_nothing_and_train_seed_is_null_without_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["profile", "--method", "segformer", "--size", "64x64", "--interval", "2", "--warmup", "0"]
    result = CliRunner().invoke(main, [*args, "--repeats", "1", "--threads", "1", "--json-lines"])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["train_seed"] is None and record["random_init"] is True
    assert record["checkpoint_sha256"] is None and "wrote" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_records_replaces_the_file_whole(tmp_path: Path) -> None:
    first = write_records([{"method": "a", "fps": 1.5}, {"method": "b", "fps": None}], tmp_path / "x" / "y")
    assert first == tmp_path / "x" / "y" / "records.json"
    assert json.loads(first.read_text()) == [{"method": "a", "fps": 1.5}, {"method": "b", "fps": None}]
    second = write_records([{"method": "c"}], tmp_path / "x" / "y")
    assert second == first and json.loads(first.read_text()) == [{"method": "c"}]
    assert sorted(p.name for p in first.parent.iterdir()) == ["records.json"]  # no temporary left
    with pytest.raises(ValueError):  # NaN is not JSON: nothing is written, the old file stays
        write_records([{"fps": float("nan")}], first.parent)
    assert json.loads(first.read_text()) == [{"method": "c"}]


def test_out_with_paper_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["profile", "--paper", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "--out writes profile records" in result.stderr
    assert not (tmp_path / "p").exists()
