"""VSPW reader: split files, stem pairing, remap on read, lazy streaming, errors naming files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vssbench.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TestTransform,
    VSPWDataset,
    load_prediction,
    read_raw_mask,
    write_predictions_dir,
)
from vssbench.errors import DataError


def _write_frame(root: Path, video: str, stem: str, colour: tuple[int, int, int], raw: np.ndarray) -> None:
    origin, mask = root / "data" / video / "origin", root / "data" / video / "mask"
    origin.mkdir(parents=True, exist_ok=True)
    mask.mkdir(parents=True, exist_ok=True)
    h, w = raw.shape
    Image.new("RGB", (w, h), colour).save(origin / f"{stem}.jpg", quality=95)
    png = Image.fromarray(raw.astype(np.uint8))
    png.putpalette([0, 0, 0] * 256)  # a palette whose colours say nothing: the indices count
    png.save(mask / f"{stem}.png")


@pytest.fixture()
def hand_tree(tmp_path: Path) -> Path:
    """Two videos, frames written out of order, raw masks with known values, messy split file."""
    root = tmp_path / "vspw"
    raw = np.array([[0, 1, 2, 124], [255, 61, 29, 1]], dtype=np.uint8)
    raw = np.kron(raw, np.ones((4, 4), dtype=np.uint8))  # 8 x 16
    for stem, grey in (("00000107", 30), ("00000105", 10), ("00000106", 20)):
        _write_frame(root, "0001_a", stem, (grey, grey, grey), raw)
    _write_frame(root, "0002_b", "00000001", (50, 60, 70), raw)
    (root / "data" / "0001_a" / "origin" / ".00000104.jpg").write_bytes(b"hidden, not a frame")
    (root / "val.txt").write_text("\n0001_a\n\n  0002_b")  # blank lines, no final newline
    return root


def test_split_file_parsing(hand_tree: Path) -> None:
    ds = VSPWDataset(hand_tree, "val")
    assert ds.videos == ["0001_a", "0002_b"] and len(ds) == 2
    assert ds.root == hand_tree and ds.split == "val"


def test_missing_split_file_names_it(hand_tree: Path) -> None:
    with pytest.raises(DataError, match="split file not found") as info:
        VSPWDataset(hand_tree, "train")
    assert info.value.path == hand_tree / "train.txt"


def test_frame_stems_sorted_and_paths(hand_tree: Path) -> None:
    ds = VSPWDataset(hand_tree, "val")
    assert ds.frame_stems("0001_a") == ["00000105", "00000106", "00000107"]
    assert ds.num_frames("0001_a") == 3 and ds.num_frames("0002_b") == 1
    assert ds.image_path("0001_a", "00000105") == hand_tree / "data/0001_a/origin/00000105.jpg"
    assert ds.mask_path("0001_a", "00000105") == hand_tree / "data/0001_a/mask/00000105.png"


def test_unpaired_files_raise_naming_them(hand_tree: Path) -> None:
    (hand_tree / "data/0001_a/mask/00000106.png").unlink()
    with pytest.raises(DataError, match="frame has no mask") as info:
        VSPWDataset(hand_tree, "val").frame_stems("0001_a")
    assert info.value.path == hand_tree / "data/0001_a/origin/00000106.jpg"
    (hand_tree / "data/0002_b/origin/00000001.jpg").unlink()
    with pytest.raises(DataError, match="mask has no frame") as info:
        VSPWDataset(hand_tree, "val").frame_stems("0002_b")
    assert info.value.path == hand_tree / "data/0002_b/mask/00000001.png"


def test_missing_video_raises(hand_tree: Path) -> None:
    (hand_tree / "val.txt").write_text("0003_missing\n")
    with pytest.raises(DataError, match="has no folder") as info:
        VSPWDataset(hand_tree, "val").frame_stems("0003_missing")
    assert info.value.path == hand_tree / "data" / "0003_missing"


def test_iter_video_values(hand_tree: Path) -> None:
    ds = VSPWDataset(hand_tree, "val")
    frames = list(ds.iter_video("0001_a", TestTransform((16, 32))))
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.stem for f in frames] == ["00000105", "00000106", "00000107"]
    assert all(f.video == "0001_a" and f.load_time > 0 for f in frames)
    raw = np.kron(
        np.array([[0, 1, 2, 124], [255, 61, 29, 1]], dtype=np.uint8), np.ones((4, 4), dtype=np.uint8)
    )
    expected = np.kron(
        np.array([[255, 0, 1, 123], [255, 60, 28, 0]], dtype=np.uint8), np.ones((4, 4), dtype=np.uint8)
    )
    np.testing.assert_array_equal(frames[0].label, expected)  # remapped, at mask resolution
    assert frames[0].label.dtype == np.uint8 and frames[0].label.shape == (8, 16)
    np.testing.assert_array_equal(read_raw_mask(ds.mask_path("0001_a", "00000105")), raw)
    # Image: keep-ratio resize of 8x16 into (16, 32) then ImageNet normalization of grey 10.
    image = frames[0].image
    assert image.shape == (1, 3, 16, 32) and image.dtype == torch.float32
    for c in range(3):
        torch.testing.assert_close(
            image[0, c].mean(), torch.tensor((10 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]), atol=0.05, rtol=0
        )


def test_iter_video_default_resolution(hand_tree: Path) -> None:
    frame = next(iter(VSPWDataset(hand_tree, "val").iter_video("0002_b", TestTransform())))
    assert frame.image.shape == (1, 3, 427, 853)  # 8x16: limited by the long side, 8 * 53.3 + 0.5
    assert frame.label.shape == (8, 16)


class _CountingTransform:
    def __init__(self) -> None:
        self.calls = 0
        self.inner = TestTransform((8, 12), keep_ratio=False)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        self.calls += 1
        return self.inner(image)


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vssbench-decode-")]


@pytest.fixture()
def long_tree(tmp_path: Path) -> Path:
    root = tmp_path / "long"
    raw = np.ones((6, 8), dtype=np.uint8)
    for i in range(12):
        _write_frame(root, "0001_long", f"{i + 40:08d}", (i * 10, 0, 0), raw)
    (root / "val.txt").write_text("0001_long\n")
    return root


def test_iter_video_is_lazy_and_closes(long_tree: Path) -> None:
    ds = VSPWDataset(long_tree, "val")
    transform = _CountingTransform()
    gen = ds.iter_video("0001_long", transform, prefetch=1)
    assert transform.calls == 0  # nothing is decoded before the first frame is asked for
    first = next(gen)
    assert first.index == 0
    time.sleep(0.3)  # give the worker every chance to run ahead
    # One frame handed out, at most one waiting in the queue and one decoded, blocked on put.
    assert transform.calls <= 3
    second = next(gen)
    assert second.index == 1
    gen.close()
    assert not _decode_threads()
    calls = transform.calls
    time.sleep(0.1)
    assert transform.calls == calls <= 4  # the worker stopped


def test_iter_video_break_stops_worker(long_tree: Path) -> None:
    ds = VSPWDataset(long_tree, "val")
    for frame in ds.iter_video("0001_long", _CountingTransform(), prefetch=2):
        if frame.index == 2:
            break
    # Breaking out of a for loop closes the generator once it is garbage-collected (immediately
    # in CPython); the worker thread is joined.
    time.sleep(0.05)
    assert not _decode_threads()


def test_iter_video_ctrl_c_during_join_still_stops_worker(
    long_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C landing while the generator joins its worker (it is finishing a frame) must not leave
    # the thread running: a live decode thread at interpreter exit aborts the process (exit -6).
    ds = VSPWDataset(long_tree, "val")
    gen = ds.iter_video("0001_long", _CountingTransform(), prefetch=1)
    next(gen)
    real_join = threading.Thread.join
    calls = []

    def interrupted_join(self: threading.Thread, timeout: float | None = None) -> None:
        calls.append(self.name)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    with pytest.raises(KeyboardInterrupt):
        gen.close()
    monkeypatch.undo()
    assert len(calls) >= 2  # the join was retried after the interrupt
    assert not _decode_threads()


def test_iter_video_decode_error_names_file(long_tree: Path) -> None:
    ds = VSPWDataset(long_tree, "val")
    bad = ds.image_path("0001_long", "00000045")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated JPEG
    seen = []
    with pytest.raises(DataError) as info:
        for frame in ds.iter_video("0001_long", _CountingTransform()):
            seen.append(frame.index)
    assert info.value.path == bad
    assert seen == [0, 1, 2, 3, 4]
    assert not _decode_threads()


def test_iter_video_bad_mask_values_name_file(long_tree: Path) -> None:
    ds = VSPWDataset(long_tree, "val")
    path = ds.mask_path("0001_long", "00000041")
    Image.fromarray(np.full((6, 8), 200, dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match="200") as info:
        list(ds.iter_video("0001_long", _CountingTransform()))
    assert info.value.path == path


def test_rgb_mask_is_rejected(long_tree: Path) -> None:
    ds = VSPWDataset(long_tree, "val")
    path = ds.mask_path("0001_long", "00000040")
    Image.new("RGB", (8, 6), (1, 1, 1)).save(path)
    with pytest.raises(DataError, match="mode 'RGB'") as info:
        ds.read_label("0001_long", "00000040")
    assert info.value.path == path


def test_size_mismatch_is_rejected(long_tree: Path) -> None:
    ds = VSPWDataset(long_tree, "val")
    path = ds.mask_path("0001_long", "00000040")
    Image.fromarray(np.ones((5, 8), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match="5x8 but its frame is 6x8") as info:
        ds.read_frame("0001_long", "00000040")
    assert info.value.path == path


def test_write_predictions_dir(tmp_path: Path) -> None:
    pred = np.array([[0, 1], [122, 123]], dtype=np.uint8)
    path = write_predictions_dir(tmp_path / "preds", "0001_a", "00000105", pred)
    assert path == tmp_path / "preds" / "0001_a" / "00000105.png"
    np.testing.assert_array_equal(load_prediction(path), pred)
