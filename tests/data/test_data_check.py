"""check_dataset finds every planted fault by kind and path; `vssbench data check` exit codes."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vssbench.cli import main
from vssbench.data import VSPWDataset, check_dataset, synthesize


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory) -> Path:
    # 4 videos x 5 frames x 32x48: val 2, test 1, train 1.
    return synthesize(tmp_path_factory.mktemp("check") / "vspw", videos=4, frames=5, size=(32, 48), seed=2)


def test_clean_tree_is_ok(clean_tree: Path) -> None:
    report = check_dataset(clean_tree, "val")
    assert report.ok and report.problems == []
    assert report.num_videos == 2 and report.num_frames == 10
    assert report.sizes == Counter({(32, 48): 10})
    assert report.label_histogram.shape == (256,) and report.label_histogram.sum() == 10 * 32 * 48
    assert report.label_histogram[125:255].sum() == 0
    # The histogram is the raw mask values, counted independently here.
    ds = VSPWDataset(clean_tree, "val")
    expected = np.zeros(256, dtype=np.int64)
    for video in ds.videos:
        for stem in ds.frame_stems(video):
            expected += np.bincount(np.array(Image.open(ds.mask_path(video, stem))).ravel(), minlength=256)
    np.testing.assert_array_equal(report.label_histogram, expected)
    text = report.format()
    assert text.startswith("ok: ") and "2 videos, 10 frames" in text and "32x48 (10)" in text
    top = int(np.argmax(expected))
    assert f"({top})" in text.splitlines()[2]


def _plant_faults(root: Path) -> set[tuple[str, Path]]:
    """Break a copy of the tree in every way the checker knows; returns the expected (kind, path)."""
    ds = VSPWDataset(root, "val")
    a, b = ds.videos
    sa, sb = ds.frame_stems(a), ds.frame_stems(b)
    expected: set[tuple[str, Path]] = set()

    ds.mask_path(a, sa[0]).unlink()
    expected.add(("missing_mask", ds.image_path(a, sa[0])))

    ds.image_path(a, sa[1]).unlink()
    expected.add(("missing_frame", ds.mask_path(a, sa[1])))

    Image.fromarray(np.ones((30, 40), dtype=np.uint8)).save(ds.mask_path(a, sa[2]))
    expected.add(("size_mismatch", ds.mask_path(a, sa[2])))

    jpg = ds.image_path(a, sa[3])
    jpg.write_bytes(jpg.read_bytes()[:300])
    expected.add(("unreadable_image", jpg))

    ds.mask_path(b, sb[0]).write_bytes(b"definitely not a png")
    expected.add(("unreadable_mask", ds.mask_path(b, sb[0])))

    bad = np.array(Image.open(ds.mask_path(b, sb[1])))
    bad[0, :3] = (130, 200, 254)
    Image.fromarray(bad).save(ds.mask_path(b, sb[1]))
    expected.add(("bad_label_values", ds.mask_path(b, sb[1])))

    Image.new("RGB", (48, 32), (1, 2, 3)).save(ds.mask_path(b, sb[2]))
    expected.add(("rgb_mask", ds.mask_path(b, sb[2])))

    png = ds.mask_path(b, sb[3])
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    expected.add(("unreadable_mask", png))

    (root / "data" / "0009_empty" / "origin").mkdir(parents=True)
    (root / "data" / "0009_empty" / "mask").mkdir(parents=True)
    expected.add(("empty_video", root / "data" / "0009_empty"))

    (root / "data" / "0010_nomask" / "origin").mkdir(parents=True)
    shutil.copy(ds.image_path(b, sb[4]), root / "data" / "0010_nomask" / "origin" / "00000001.jpg")
    expected.add(("missing_dir", root / "data" / "0010_nomask" / "mask"))
    expected.add(("missing_mask", root / "data" / "0010_nomask" / "origin" / "00000001.jpg"))

    with (root / "val.txt").open("a") as f:
        f.write("0008_missing\n0009_empty\n0010_nomask\n")
    expected.add(("missing_video", root / "data" / "0008_missing"))
    return expected


@pytest.fixture()
def broken_tree(clean_tree: Path, tmp_path: Path) -> tuple[Path, set[tuple[str, Path]]]:
    root = tmp_path / "broken"
    shutil.copytree(clean_tree, root)
    return root, _plant_faults(root)


def test_every_planted_fault_is_reported(broken_tree) -> None:
    root, expected = broken_tree
    report = check_dataset(root, "val")
    assert not report.ok
    found = {(p.kind, p.path) for p in report.problems}
    assert found == expected  # each fault, with its path, and nothing else
    assert len(report.problems) == len(expected)
    bad_values = next(p for p in report.problems if p.kind == "bad_label_values")
    assert "130" in bad_values.message and "200" in bad_values.message and "254" in bad_values.message
    lines = report.format().splitlines()
    for problem in report.problems:
        assert f"{problem.path}: {problem.kind}: {problem.message}" in lines


def test_missing_split_and_duplicates(clean_tree: Path, tmp_path: Path) -> None:
    report = check_dataset(clean_tree, "nosuch")
    assert [(p.kind, p.path) for p in report.problems] == [("missing_split", clean_tree / "nosuch.txt")]
    root = tmp_path / "dup"
    shutil.copytree(clean_tree, root)
    video = (root / "val.txt").read_text().splitlines()[0]
    with (root / "val.txt").open("a") as f:
        f.write(f"{video}\n")
    report = check_dataset(root, "val")
    assert [(p.kind, p.path) for p in report.problems] == [("duplicate_video", root / "val.txt")]
    assert report.num_videos == 2


def test_cli_data_check_exit_codes(clean_tree: Path, broken_tree) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["data", "check", "--data", str(clean_tree), "--split", "val"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("ok: ")
    root, expected = broken_tree
    bad = runner.invoke(main, ["data", "check", "--data", str(root)])
    assert bad.exit_code == 1
    for kind, path in expected:
        assert f"{path}: {kind}: " in bad.output
    missing = runner.invoke(main, ["data", "check", "--data", str(clean_tree), "--split", "nosuch"])
    assert missing.exit_code == 1 and "missing_split" in missing.output


def test_cli_data_synth(tmp_path: Path) -> None:
    out = tmp_path / "cli-synth"
    args = ["data", "synth", "--out", str(out), "--videos", "2", "--frames", "2", "--size", "16x24"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert check_dataset(out, "val").ok and check_dataset(out, "train").ok
