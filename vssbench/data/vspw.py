"""Reader of the official VSPW layout, streaming one video frame by frame.

Layout (VSPW_480p and the synthetic VSPW-mini)::

    ROOT/{train,val,test}.txt           one video id per line
    ROOT/data/<video>/origin/<stem>.jpg RGB frames
    ROOT/data/<video>/mask/<stem>.png   raw masks (index or grey PNG, values 0..124 and 255)

Frames are ordered by stem (8-digit zero-padded, so lexicographic = temporal order) and an image
and a mask are paired by stem. Names starting with '.' are skipped (as CFFM/MRCFA do).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vssbench.data.labels import remap_raw_label, save_prediction
from vssbench.data.transforms import TestTransform
from vssbench.errors import DataError

IMAGE_SUFFIX = ".jpg"
MASK_SUFFIX = ".png"
#: PIL modes whose pixel values are raw label values (never colours).
MASK_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B")
#: Errors PIL raises for missing, unidentifiable, truncated or corrupt files.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def read_split_file(path: str | os.PathLike[str]) -> list[str]:
    """Video ids listed in a split file, in file order.

    Surrounding whitespace and blank lines are dropped, and a final line without a newline is
    kept whole (the official ``line[:-1]`` parsing would cut its last character).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "split file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read split file: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def list_stems(folder: Path, suffix: str) -> list[str]:
    """Sorted stems of the files ``*<suffix>`` in ``folder`` (hidden names skipped; [] if absent)."""
    if not folder.is_dir():
        return []
    return sorted(
        entry.name[: -len(suffix)]
        for entry in os.scandir(folder)
        if entry.name.endswith(suffix) and not entry.name.startswith(".") and entry.is_file()
    )


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file completely into an RGB PIL image; DataError naming the file on failure."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncation shows up here, with the file's name
            return image.convert("RGB")
    except DECODE_ERRORS as exc:
        raise DataError(path, f"cannot read image: {exc}") from exc


def read_raw_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a VSPW mask PNG into its raw values, uint8 [H, W] (palette indices for 'P' images).

    A colour (RGB/RGBA) mask is an error rather than being converted: its colours are not the
    class values. Grey masks with more than 8 bits are accepted when their values fit in 0..255.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in MASK_MODES:
                raise DataError(
                    path,
                    f"mask has mode {image.mode!r}: colour-coded masks are not supported, "
                    "expected an index ('P') or grey ('L') PNG holding raw class values",
                )
            image.load()
            values = np.array(image)
    except DataError:
        raise
    except DECODE_ERRORS as exc:
        raise DataError(path, f"cannot read mask: {exc}") from exc
    if values.dtype != np.uint8:
        if values.size and (values.min() < 0 or values.max() > 255):
            raise DataError(
                path, f"mask values range {values.min()}..{values.max()} do not fit raw labels 0..255"
            )
        values = values.astype(np.uint8)
    return values


@dataclass
class Frame:
    """One frame of a video as the harness consumes it.

    ``image`` is float32 [1, 3, h, w], normalized RGB at the transform's resolution; ``label`` is
    uint8 [H, W] in evaluation space (0..123, 255 ignored) at the *mask's* resolution, which is
    where predictions are scored; ``load_time`` is the seconds spent reading, decoding and
    transforming this frame (data time, kept apart from model time).
    """

    video: str
    index: int
    stem: str
    image: torch.Tensor
    label: np.ndarray
    load_time: float


class _Failure:
    """An exception raised in the decoding thread, carried to the consumer thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class VSPWDataset:
    """Videos of one split of a VSPW tree; frames are read lazily, one video at a time."""

    def __init__(self, root: str | os.PathLike[str], split: str = "val") -> None:
        self.root = Path(root)
        self.split = split
        self.videos: list[str] = read_split_file(self.split_file)
        self._stems: dict[str, list[str]] = {}

    @property
    def split_file(self) -> Path:
        """``ROOT/<split>.txt``."""
        return self.root / f"{self.split}.txt"

    def __len__(self) -> int:
        return len(self.videos)

    def __repr__(self) -> str:
        return f"VSPWDataset(root={str(self.root)!r}, split={self.split!r}, videos={len(self.videos)})"

    def video_dir(self, video: str) -> Path:
        """``ROOT/data/<video>``."""
        return self.root / "data" / video

    def image_path(self, video: str, stem: str) -> Path:
        """``ROOT/data/<video>/origin/<stem>.jpg``."""
        return self.video_dir(video) / "origin" / f"{stem}{IMAGE_SUFFIX}"

    def mask_path(self, video: str, stem: str) -> Path:
        """``ROOT/data/<video>/mask/<stem>.png``."""
        return self.video_dir(video) / "mask" / f"{stem}{MASK_SUFFIX}"

    def frame_stems(self, video: str) -> list[str]:
        """Sorted frame stems of a video; every frame must have a mask with the same stem.

        Raises DataError naming the folder when the video is missing or empty and naming the
        first unpaired file otherwise. The listing is cached per video.
        """
        if video in self._stems:
            return self._stems[video]
        vdir = self.video_dir(video)
        if not vdir.is_dir():
            raise DataError(vdir, f"video {video!r} listed in {self.split_file.name} has no folder")
        images = list_stems(vdir / "origin", IMAGE_SUFFIX)
        masks = list_stems(vdir / "mask", MASK_SUFFIX)
        if not images and not masks:
            raise DataError(vdir, f"video {video!r} has no frames (no origin/*.jpg, no mask/*.png)")
        if images != masks:
            image_set, mask_set = set(images), set(masks)
            no_mask = sorted(image_set - mask_set)
            if no_mask:
                raise DataError(
                    self.image_path(video, no_mask[0]),
                    f"frame has no mask ({len(no_mask)} unpaired frame(s) in this video)",
                )
            no_image = sorted(mask_set - image_set)
            raise DataError(
                self.mask_path(video, no_image[0]),
                f"mask has no frame ({len(no_image)} unpaired mask(s) in this video)",
            )
        self._stems[video] = images
        return images

    def num_frames(self, video: str) -> int:
        """Number of frames of a video."""
        return len(self.frame_stems(video))

    def read_label(self, video: str, stem: str) -> np.ndarray:
        """The frame's mask in evaluation space, uint8 [H, W] (0..123, 255 ignored)."""
        path = self.mask_path(video, stem)
        raw = read_raw_mask(path)
        try:
            return remap_raw_label(raw)
        except ValueError as exc:
            raise DataError(path, str(exc)) from exc

    def read_frame(self, video: str, stem: str) -> tuple[Image.Image, np.ndarray]:
        """Decoded RGB image and evaluation-space label of one frame (sizes checked to agree)."""
        image = read_image(self.image_path(video, stem))
        label = self.read_label(video, stem)
        if label.shape != (image.height, image.width):
            raise DataError(
                self.mask_path(video, stem),
                f"mask is {label.shape[0]}x{label.shape[1]} but its frame is {image.height}x{image.width}",
            )
        return image, label

    def load_frame(self, video: str, index: int, transform: TestTransform) -> Frame:
        """Read, decode and transform frame ``index`` of a video into a :class:`Frame`."""
        start = time.perf_counter()
        stem = self.frame_stems(video)[index]
        image, label = self.read_frame(video, stem)
        tensor = transform(image)
        return Frame(video, index, stem, tensor, label, time.perf_counter() - start)

    def iter_video(self, video: str, transform: TestTransform, prefetch: int = 2) -> Iterator[Frame]:
        """Yield the frames of a video in order, decoded ahead in a background thread.

        At most ``prefetch`` decoded frames wait in a bounded queue (plus the one being
        decoded), so memory does not grow with the video's length. Closing the generator early
        (``break``, ``close()``, garbage collection) stops and joins the worker. A read or decode
        error is re-raised here, in the consumer thread, as a DataError naming the file.
        """
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        num = self.num_frames(video)
        slots: queue.Queue[object] = queue.Queue(maxsize=prefetch)
        stop = threading.Event()

        def put(item: object) -> bool:
            # A bounded wait so that a closed consumer never leaves the worker blocked forever.
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for index in range(num):
                    if stop.is_set() or not put(self.load_frame(video, index, transform)):
                        return
            except BaseException as exc:  # noqa: BLE001 - carried to and re-raised by the consumer
                put(_Failure(exc))
                return
            put(_END)

        worker = threading.Thread(target=work, name=f"vssbench-decode-{video}", daemon=True)
        worker.start()
        try:
            while True:
                item = slots.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                assert isinstance(item, Frame)
                yield item
        finally:
            stop.set()
            _join_through_interrupts(worker)


def _join_through_interrupts(worker: threading.Thread) -> None:
    """Join ``worker`` even when Ctrl-C lands during the join, then re-raise that interrupt.

    A ``KeyboardInterrupt`` raised out of ``Thread.join`` would leave the decode thread running
    torch code while the interpreter shuts down, which aborts the process ("terminate called
    without an active exception", exit -6 instead of 130). The worker stops within one frame once
    ``stop`` is set, so the wait is short.
    """
    interrupt: KeyboardInterrupt | None = None
    while worker.is_alive():
        try:
            worker.join()
        except KeyboardInterrupt as exc:
            interrupt = exc
    if interrupt is not None:
        raise interrupt


def write_predictions_dir(out: str | os.PathLike[str], video: str, stem: str, pred: np.ndarray) -> Path:
    """Save one prediction as ``<out>/<video>/<stem>.png`` (the VSPW submission layout); returns the path.

    ``pred`` is uint8 [H, W] with class ids 0..123 at the mask's resolution.
    """
    path = Path(out) / video / f"{stem}{MASK_SUFFIX}"
    save_prediction(pred, path)
    return path
