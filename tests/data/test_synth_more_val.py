"""``--more-val-videos K``: K extra val videos, every file of the dataset without them unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.data import synth as synth_module
from vssbench.data import synthesize
from vssbench.data.synth import MARKER
from vssbench.errors import OptionError

TINY = dict(videos=4, frames=2, size=(32, 32), seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _split(root: Path, name: str) -> list[str]:
    return (root / f"{name}.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny dataset without (K=0) and with two extra val videos (K=2)."""
    base = tmp_path_factory.mktemp("more_val")
    return synthesize(base / "k0", **TINY), synthesize(base / "k2", more_val_videos=2, **TINY)


def test_train_and_test_and_every_old_file_are_byte_identical(pair: tuple[Path, Path]) -> None:
    k0, k2 = pair
    assert _split(k2, "train") == _split(k0, "train") == ["0004_synth0004"]
    assert _split(k2, "test") == _split(k0, "test") == ["0003_synth0003"]
    old, new = _files(k0), _files(k2)
    changed = sorted(name for name in old if old[name] != new.get(name))
    assert changed == [MARKER, "val.txt"]  # every frame and mask of the 4 videos is the same
    added = {name.split("/")[1] for name in set(new) - set(old)}
    assert added == {"0005_synth0005", "0006_synth0006"}
    assert len(set(new) - set(old)) == 2 * 2 * 2  # 2 videos x 2 frames x (jpg, png)


def test_the_extra_videos_end_the_val_split_and_differ(pair: tuple[Path, Path]) -> None:
    k0, k2 = pair
    assert _split(k0, "val") == ["0001_synth0001", "0002_synth0002"]
    assert _split(k2, "val") == [*_split(k0, "val"), "0005_synth0005", "0006_synth0006"]
    files = _files(k2)
    five = [files[n] for n in sorted(files) if n.startswith("data/0005_synth0005/")]
    six = [files[n] for n in sorted(files) if n.startswith("data/0006_synth0006/")]
    assert len(five) == len(six) == 4 and set(five).isdisjoint(six)
    # Each video has its own start frame, drawn from its own seed: the stems differ too.
    stems = {v: sorted(p.stem for p in (k2 / "data" / v / "origin").iterdir()) for v in _split(k2, "val")}
    assert stems["0005_synth0005"] != stems["0006_synth0006"]


def test_the_marker_records_k_only_when_set(pair: tuple[Path, Path]) -> None:
    k0, k2 = pair
    meta0 = json.loads((k0 / MARKER).read_text())
    meta2 = json.loads((k2 / MARKER).read_text())
    assert "more_val_videos" not in meta0 and meta0["splits"] == {"train": 1, "val": 2, "test": 1}
    assert meta2["more_val_videos"] == 2 and meta2["splits"] == {"train": 1, "val": 4, "test": 1}
    assert meta2["videos"] == meta0["videos"] == 4
    assert {k: v for k, v in meta2.items() if k not in ("more_val_videos", "splits")} == {
        k: v for k, v in meta0.items() if k != "splits"
    }


def test_the_cached_default_is_not_a_tree_with_extra_val_videos(tmp_path: Path) -> None:
    root = tmp_path / "default"
    root.mkdir()
    params = dict(synth_module.DEFAULT_PARAMS, size=list(synth_module.DEFAULT_PARAMS["size"]))
    marker = dict(params, version=synth_module.SYNTH_VERSION)
    (root / MARKER).write_text(json.dumps(marker))
    assert synth_module._default_is_complete(root)
    (root / MARKER).write_text(json.dumps(dict(marker, more_val_videos=2)))
    assert not synth_module._default_is_complete(root)


def test_cli_writes_the_extra_val_videos(tmp_path: Path) -> None:
    out = tmp_path / "mini"
    args = ["data", "synth", "--out", str(out), "--videos", "4", "--frames", "1", "--size", "16x16"]
    result = CliRunner().invoke(main, [*args, "--more-val-videos", "1"])
    assert result.exit_code == 0, result.output
    assert _split(out, "val") == ["0001_synth0001", "0002_synth0002", "0005_synth0005"]
    assert json.loads((out / MARKER).read_text())["more_val_videos"] == 1


@pytest.mark.parametrize("value", ["-1", "-3"])
def test_a_negative_k_is_one_line_exit_2_naming_the_flag(tmp_path: Path, value: str) -> None:
    out = tmp_path / "mini"
    args = ["data", "synth", "--out", str(out), "--videos", "4", "--frames", "1", "--size", "16x16"]
    result = CliRunner().invoke(main, [*args, "--more-val-videos", value])
    assert result.exit_code == 2
    assert result.stderr == f"error: --more-val-videos {value}: must be >= 0\n"
    assert not out.exists()
    with pytest.raises(OptionError, match=rf"^--more-val-videos {value}: must be >= 0$"):
        synthesize(out, more_val_videos=int(value), **TINY)
