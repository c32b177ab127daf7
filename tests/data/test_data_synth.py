"""Synthetic VSPW-mini: determinism, layout, label values, temporal structure, the cached default."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vssbench.data import VSPWDataset, cache_dir, default_dataset, synthesize
from vssbench.data import synth as synth_module
from vssbench.data.synth import MARKER
from vssbench.errors import DataError, OptionError

SMALL = dict(videos=3, frames=5, size=(32, 48))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_bytes(tmp_path: Path) -> None:
    a = _files(synthesize(tmp_path / "a", seed=5, **SMALL))
    b = _files(synthesize(tmp_path / "b", seed=5, **SMALL))
    assert a.keys() == b.keys() and len(a) == 3 * 5 * 2 + 3 + 1
    assert all(a[k] == b[k] for k in a)
    c = _files(synthesize(tmp_path / "c", seed=6, **SMALL))
    assert any(c.get(k) != v for k, v in a.items() if k.endswith(".jpg"))


@pytest.mark.parametrize(
    ("videos", "val", "expected"),
    [(5, 1, (1, 1, 3)), (5, 3, (3, 1, 1)), (5, 4, (4, 0, 1)), (3, 2, (2, 0, 1)), (2, 1, (1, 0, 1))],
)
def test_val_videos_sets_the_val_split(
    tmp_path: Path, videos: int, val: int, expected: tuple[int, int, int]
) -> None:
    root = synthesize(tmp_path / "mini", videos=videos, frames=1, size=(16, 16), val_videos=val)
    ids = [f"{v:04d}_synth{v:04d}" for v in range(1, videos + 1)]
    split = {name: (root / f"{name}.txt").read_text().splitlines() for name in ("val", "test", "train")}
    assert tuple(len(split[n]) for n in ("val", "test", "train")) == expected
    assert split["val"] + split["test"] + split["train"] == ids  # val first, then test, then train


@pytest.mark.parametrize("val", [0, 5, -1])
def test_val_videos_out_of_range_is_named(tmp_path: Path, val: int) -> None:
    with pytest.raises(OptionError, match=rf"--val-videos {val}: must be in 1\.\.4"):
        synthesize(tmp_path / "mini", videos=5, frames=1, size=(16, 16), val_videos=val)
    assert not (tmp_path / "mini").exists()


def test_layout_and_splits(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "mini", videos=5, frames=4, size=(32, 48), seed=0)
    assert root == tmp_path / "mini"
    split = {name: (root / f"{name}.txt").read_text().splitlines() for name in ("train", "val", "test")}
    assert split["val"] == ["0001_synth0001", "0002_synth0002"]  # max(1, 5 // 2)
    assert split["test"] == ["0003_synth0003"]
    assert split["train"] == ["0004_synth0004", "0005_synth0005"]
    for name in ("train", "val", "test"):
        assert (root / f"{name}.txt").read_text().endswith("\n")
    assert json.loads((root / MARKER).read_text())["splits"] == {"train": 2, "val": 2, "test": 1}
    ds = VSPWDataset(root, "val")
    for video in ds.videos:
        stems = ds.frame_stems(video)
        assert all(re.fullmatch(r"\d{8}", s) for s in stems)
        numbers = [int(s) for s in stems]
        assert numbers == list(range(numbers[0], numbers[0] + 4)) and numbers[0] != 1
        with Image.open(ds.image_path(video, stems[0])) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (48, 32)
        with Image.open(ds.mask_path(video, stems[0])) as mask:
            assert mask.format == "PNG" and mask.mode == "P" and mask.size == (48, 32)
    assert not [p for p in tmp_path.iterdir() if p.name != "mini"]  # no temporary folder left


@pytest.mark.parametrize("videos, expected", [(1, (0, 1, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (6, (2, 3, 1))])
def test_split_sizes(tmp_path: Path, videos: int, expected: tuple[int, int, int]) -> None:
    root = synthesize(tmp_path / "s", videos=videos, frames=1, size=(16, 16))
    sizes = tuple(len((root / f"{n}.txt").read_text().splitlines()) for n in ("train", "val", "test"))
    assert sizes == expected


def test_label_values_and_temporal_structure(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "mini", videos=2, frames=8, size=(64, 96), seed=1)
    ds = VSPWDataset(root, "val")
    video = ds.videos[0]
    stems = ds.frame_stems(video)
    masks = np.stack([np.array(Image.open(ds.mask_path(video, s))) for s in stems])
    values = set(np.unique(masks).tolist())
    assert values <= set(range(125)) | {255}
    assert 0 in values and 255 in values  # "others" and void, as in real VSPW
    assert len(values - {0, 255}) >= 4  # 2-3 background classes and several objects
    # Consecutive masks are alike (a scene, not noise) but never identical (motion, label noise).
    same = (masks[1:] == masks[:-1]).mean(axis=(1, 2))
    assert (same > 0.6).all() and (same < 1.0).all()
    # Pixels of a class look alike: the mean colour differs between the two largest classes.
    images = np.stack([np.asarray(Image.open(ds.image_path(video, s)).convert("RGB")) for s in stems]).astype(
        float
    )
    counts = np.bincount(masks.ravel(), minlength=256)
    counts[[0, 255]] = 0
    a, b = np.argsort(-counts)[:2]
    assert np.abs(images[masks == a].mean(axis=0) - images[masks == b].mean(axis=0)).max() > 20


def test_refuses_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty") as info:
        synthesize(out, **SMALL)
    assert info.value.path == out and (out / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (synthesize(empty, **SMALL) / "val.txt").is_file()


def test_cache_dir_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VSSBENCH_CACHE", str(tmp_path / "vc"))
    assert cache_dir() == tmp_path / "vc"
    monkeypatch.delenv("VSSBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vssbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "vssbench"


@pytest.fixture()
def tiny_default(monkeypatch, tmp_path: Path) -> Path:
    """default_dataset() into a temporary cache, with tiny parameters to keep the test fast."""
    monkeypatch.setenv("VSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(synth_module.DEFAULT_PARAMS, "frames", 2)
    monkeypatch.setitem(synth_module.DEFAULT_PARAMS, "size", (16, 24))
    return tmp_path / "cache" / "synthetic-vspw-mini-v1"


def test_default_dataset_generated_once(tiny_default: Path, monkeypatch) -> None:
    root = default_dataset()
    assert root == tiny_default
    assert [len((root / f"{n}.txt").read_text().splitlines()) for n in ("val", "test", "train")] == [3, 1, 2]
    assert synth_module.read_marker(root)["videos"] == 6
    before = _files(root)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a complete dataset")

    monkeypatch.setattr(synth_module, "_build", fail)
    assert default_dataset() == root and _files(root) == before


def test_default_dataset_replaces_incomplete(tiny_default: Path) -> None:
    (tiny_default / "data").mkdir(parents=True)
    (tiny_default / "val.txt").write_text("half-written\n")  # no marker: incomplete
    root = default_dataset()
    assert synth_module.read_marker(root) is not None
    assert "half-written" not in (root / "val.txt").read_text()
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]


def test_default_dataset_concurrent(tiny_default: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(default_dataset())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [tiny_default] * 3
    assert synth_module.read_marker(tiny_default) is not None
    assert sorted(p.name for p in tiny_default.parent.iterdir()) == [tiny_default.name]
    assert len(VSPWDataset(tiny_default, "val").videos) == 3


# --- `vssbench data synth`: bad arguments are one line, exit 2, no traceback (issue 9) ---------------


@pytest.mark.parametrize(
    "flag, value",
    [("--videos", "0"), ("--frames", "0"), ("--size", "10x10"), ("--seed", "-1"), ("--size", "abc")],
)
def test_cli_synth_bad_argument_is_one_line(tmp_path: Path, flag: str, value: str) -> None:
    from click.testing import CliRunner

    from vssbench.cli import main

    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["data", "synth", "--out", str(out), "--videos", "1", flag, value])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{flag} {value}" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-made


@pytest.mark.slow
def test_cli_synth_bad_argument_subprocess(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vssbench.cli", "data", "synth", "--out", str(tmp_path / "x"), "--seed", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip() == "error: --seed -1: must be >= 0"


def test_library_bad_parameters_are_option_errors(tmp_path: Path) -> None:
    from vssbench.errors import OptionError

    for kwargs, text in [
        (dict(videos=0), "--videos 0"),
        (dict(frames=-2), "--frames -2"),
        (dict(size=(15, 40)), "--size 15x40"),
        (dict(seed=-3), "--seed -3"),
    ]:
        with pytest.raises(OptionError, match=text):
            synthesize(tmp_path / "x", **{**SMALL, **kwargs})
    with pytest.raises(ValueError):  # OptionError stays a ValueError for older callers
        synthesize(tmp_path / "x", **{**SMALL, "videos": 0})
