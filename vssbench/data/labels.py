"""VSPW label space: class names, palette, the raw -> evaluation remap, prediction PNG I/O.

Raw VSPW masks hold 0..124 and 255: 0 is "others" and 255 is "void", both ignored by the
evaluation. The evaluation space drops them: raw k in 1..124 becomes k-1 (124 classes, 0..123)
and raw 0 and 255 become :data:`IGNORE_INDEX` (mmseg ``reduce_zero_label=True``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from vssbench.errors import DataError

NUM_CLASSES = 124
IGNORE_INDEX = 255
#: Raw mask value of the "others" class (not evaluated) and of void pixels.
RAW_OTHERS = 0
RAW_VOID = 255
#: Largest raw class value; raw values 125..254 never occur in a valid mask.
RAW_MAX_CLASS = 124

#: The 124 evaluated classes in evaluation order (raw value k is CLASS_NAMES[k - 1]), spelled as
#: in the dataset's label file (VSPW ``label_num_dic_final.json``, CFFM ``VSPWDataset2.CLASSES``).
CLASS_NAMES: tuple[str, ...] = (
    "wall", "ceiling", "door", "stair", "ladder", "escalator", "Playground_slide",
    "handrail_or_fence", "window", "rail", "goal", "pillar", "pole", "floor", "ground", "grass",
    "sand", "athletic_field", "road", "path", "crosswalk", "building", "house", "bridge",
    "tower", "windmill", "well_or_well_lid", "other_construction", "sky", "mountain", "stone",
    "wood", "ice", "snowfield", "grandstand", "sea", "river", "lake", "waterfall", "water",
    "billboard_or_Bulletin_Board", "sculpture", "pipeline", "flag", "parasol_or_umbrella",
    "cushion_or_carpet", "tent", "roadblock", "car", "bus", "truck", "bicycle", "motorcycle",
    "wheeled_machine", "ship_or_boat", "raft", "airplane", "tyre", "traffic_light", "lamp",
    "person", "cat", "dog", "horse", "cattle", "other_animal", "tree", "flower", "other_plant",
    "toy", "ball_net", "backboard", "skateboard", "bat", "ball",
    "cupboard_or_showcase_or_storage_rack", "box", "traveling_case_or_trolley_case", "basket",
    "bag_or_package", "trash_can", "cage", "plate", "tub_or_bowl_or_pot", "bottle_or_cup",
    "barrel", "fishbowl", "bed", "pillow", "table_or_desk", "chair_or_seat", "bench", "sofa",
    "shelf", "bathtub", "gun", "commode", "roaster", "other_machine", "refrigerator",
    "washing_machine", "Microwave_oven", "fan", "curtain", "textiles", "clothes",
    "painting_or_poster", "mirror", "flower_pot_or_vase", "clock", "book", "tool", "blackboard",
    "tissue", "screen_or_television", "computer", "printer", "Mobile_phone", "keyboard",
    "other_electronic_product", "fruit", "food", "instrument", "train",
)  # fmt: skip
assert len(CLASS_NAMES) == NUM_CLASSES


def raw_class_name(value: int) -> str:
    """Name of a raw mask value: "others" (0), "void" (255), a class name (1..124) or "invalid"."""
    if value == RAW_OTHERS:
        return "others"
    if value == RAW_VOID:
        return "void"
    if 1 <= value <= RAW_MAX_CLASS:
        return CLASS_NAMES[value - 1]
    return "invalid"


def _bit_interleaved_palette(n: int) -> np.ndarray:
    """PASCAL-VOC style colours: bits of the index spread over R, G, B from the top bit down.

    Index -> colour is injective, so distinct indices always get distinct colours.
    """
    idx = np.arange(n, dtype=np.int64)
    colours = np.zeros((n, 3), dtype=np.int64)
    for j in range(8):
        for c in range(3):
            bit = (idx >> (3 * j + c)) & 1
            colours[:, c] |= bit << (7 - j)
    return colours.astype(np.uint8)


def _make_palette() -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    # Shift by one so that class 0 is not black: black is left for the unused entries.
    palette[:NUM_CLASSES] = _bit_interleaved_palette(NUM_CLASSES + 1)[1:]
    palette[IGNORE_INDEX] = (255, 255, 255)
    return palette


#: uint8 [256, 3]: distinct colours for classes 0..123, white for 255, black elsewhere.
PALETTE: np.ndarray = _make_palette()
PALETTE.flags.writeable = False

#: Raw-space palette for synthetic masks: raw 0 black, raw k the colour of class k-1, 255 white.
RAW_PALETTE: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
RAW_PALETTE[1 : RAW_MAX_CLASS + 1] = PALETTE[:NUM_CLASSES]
RAW_PALETTE[RAW_VOID] = (255, 255, 255)
RAW_PALETTE.flags.writeable = False

_REMAP_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_REMAP_LUT[1 : RAW_MAX_CLASS + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
_RAW_VALID = np.zeros(256, dtype=bool)
_RAW_VALID[: RAW_MAX_CLASS + 1] = True
_RAW_VALID[RAW_VOID] = True


def invalid_raw_values(raw: np.ndarray) -> list[int]:
    """Sorted distinct values of a raw mask outside {0..124, 255} (empty when the mask is valid)."""
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        values = np.unique(raw)
        return [int(v) for v in values if not (0 <= v <= 255 and _RAW_VALID[int(v)])]
    counts = np.bincount(raw.ravel(), minlength=256)
    return [int(v) for v in np.flatnonzero((counts > 0) & ~_RAW_VALID)]


def remap_raw_label(raw: np.ndarray) -> np.ndarray:
    """Raw VSPW mask (any shape, values 0..124 and 255) -> evaluation space, uint8 of the same shape.

    Raw 0 ("others") and 255 (void) become 255; raw k in 1..124 becomes k-1. One 256-entry
    lookup table, so it costs one pass over the pixels. Raises ValueError naming any value
    outside {0..124, 255}: the VSPW README's arithmetic remap would silently turn them into
    classes 124..253.
    """
    raw = np.asarray(raw)
    if not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"a raw label map must hold integers, got dtype {raw.dtype}")
    if raw.dtype != np.uint8:
        bad = invalid_raw_values(raw)
        if bad:
            raise ValueError(f"raw label values {bad} are outside {{0..124, 255}}")
        raw = raw.astype(np.uint8)
    out = _REMAP_LUT[raw]
    if not _RAW_VALID[raw].all():
        raise ValueError(f"raw label values {invalid_raw_values(raw)} are outside {{0..124, 255}}")
    return out


def _check_prediction(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise ValueError(f"a prediction must be an H x W map, got shape {pred.shape}")
    if not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"a prediction must hold integer class ids, got dtype {pred.dtype}")
    if pred.size and (pred.min() < 0 or pred.max() >= NUM_CLASSES):
        bad = np.unique(pred[(pred < 0) | (pred >= NUM_CLASSES)])
        raise ValueError(f"prediction values {bad.tolist()} are outside 0..{NUM_CLASSES - 1}")
    return pred.astype(np.uint8, copy=False)


def save_prediction(pred: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an H x W prediction (class ids 0..123) as a palette ('P' mode) PNG, VSPW submission style.

    Any value outside 0..123 raises ValueError instead of being written (an out-of-range id would
    be scored as a wrong class by the official evaluation). Creates parent folders.
    """
    pred = _check_prediction(pred)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(pred))  # mode 'L'
    image.putpalette(PALETTE.tobytes())  # turns 'L' into 'P' without touching the indices
    image.save(path, format="PNG")


def load_prediction(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a prediction PNG back as uint8 class ids [H, W] (palette indices, never colours)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(
                    path, f"prediction PNG has mode {image.mode!r}; expected 'P' or 'L' (class ids)"
                )
            return np.array(image, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read prediction: {exc}") from exc
