"""Label space: class names, palette, raw -> evaluation remap, prediction PNG round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vssbench.data import (
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    PALETTE,
    load_prediction,
    raw_class_name,
    remap_raw_label,
    save_prediction,
)
from vssbench.errors import DataError


def test_class_names_drop_others() -> None:
    assert NUM_CLASSES == 124 and IGNORE_INDEX == 255
    assert len(CLASS_NAMES) == 124 and len(set(CLASS_NAMES)) == 124
    assert CLASS_NAMES[0] == "wall"
    assert CLASS_NAMES[28] == "sky"  # raw 29
    assert CLASS_NAMES[60] == "person"  # raw 61
    assert CLASS_NAMES[123] == "train"  # raw 124
    assert "others" not in CLASS_NAMES
    assert raw_class_name(0) == "others" and raw_class_name(255) == "void"
    assert raw_class_name(1) == "wall" and raw_class_name(124) == "train"
    assert raw_class_name(200) == "invalid"


def test_palette_distinct_colours() -> None:
    assert PALETTE.shape == (256, 3) and PALETTE.dtype == np.uint8
    colours = {tuple(c) for c in PALETTE[:NUM_CLASSES].tolist()}
    assert len(colours) == NUM_CLASSES
    assert tuple(PALETTE[255]) == (255, 255, 255)
    assert (255, 255, 255) not in colours and (0, 0, 0) not in colours


def test_remap_hand_made() -> None:
    raw = np.array([[0, 255, 1], [124, 2, 61]], dtype=np.uint8)
    expected = np.array([[255, 255, 0], [123, 1, 60]], dtype=np.uint8)
    out = remap_raw_label(raw)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    np.testing.assert_array_equal(out, expected)


def test_remap_every_valid_value() -> None:
    raw = np.concatenate([np.arange(125), [255]]).astype(np.uint8)
    out = remap_raw_label(raw)
    assert out[0] == 255 and out[-1] == 255
    np.testing.assert_array_equal(out[1:125], np.arange(124))


def test_remap_other_integer_dtypes() -> None:
    raw = np.array([0, 1, 124, 255], dtype=np.int64)
    np.testing.assert_array_equal(remap_raw_label(raw), [255, 0, 123, 255])


@pytest.mark.parametrize("bad", [125, 200, 254])
def test_remap_rejects_invalid_values(bad: int) -> None:
    raw = np.array([1, bad, 3], dtype=np.uint8)
    with pytest.raises(ValueError, match=str(bad)):
        remap_raw_label(raw)


def test_remap_rejects_out_of_byte_range_and_floats() -> None:
    with pytest.raises(ValueError, match="300"):
        remap_raw_label(np.array([1, 300], dtype=np.int32))
    with pytest.raises(ValueError, match="integers"):
        remap_raw_label(np.array([1.0, 2.0]))


def test_prediction_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, NUM_CLASSES, size=(17, 23)).astype(np.uint8)
    pred[0, 0], pred[0, 1] = 0, 123
    path = tmp_path / "sub" / "00000012.png"
    save_prediction(pred, path)
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[: 3 * NUM_CLASSES], dtype=np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette, PALETTE[:NUM_CLASSES])
        # The pixel colour is the palette colour of the class.
        assert image.convert("RGB").getpixel((1, 0)) == tuple(PALETTE[123].tolist())
    np.testing.assert_array_equal(load_prediction(path), pred)


def test_prediction_accepts_int64(tmp_path) -> None:
    pred = np.array([[0, 5], [77, 123]], dtype=np.int64)
    save_prediction(pred, tmp_path / "p.png")
    np.testing.assert_array_equal(load_prediction(tmp_path / "p.png"), pred)


@pytest.mark.parametrize(
    "pred, match",
    [
        (np.array([[0, 124]], dtype=np.uint8), "124"),
        (np.array([[0, 255]], dtype=np.uint8), "255"),
        (np.array([[-1, 3]], dtype=np.int64), "-1"),
        (np.zeros((2, 2, 3), dtype=np.uint8), "H x W"),
        (np.zeros((2, 2), dtype=np.float32), "integer"),
    ],
)
def test_save_prediction_rejects_bad_values(tmp_path, pred: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_prediction(pred, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_load_prediction_rejects_rgb(tmp_path) -> None:
    path = tmp_path / "rgb.png"
    Image.new("RGB", (4, 3), (10, 20, 30)).save(path)
    with pytest.raises(DataError, match="mode 'RGB'") as info:
        load_prediction(path)
    assert info.value.path == path
