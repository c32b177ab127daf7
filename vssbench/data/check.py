"""Validate a VSPW tree and report every problem with its path (``vssbench data check``)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vssbench.data.labels import RAW_MAX_CLASS, RAW_VOID, raw_class_name
from vssbench.data.vspw import (
    DECODE_ERRORS,
    IMAGE_SUFFIX,
    MASK_MODES,
    MASK_SUFFIX,
    list_stems,
    read_split_file,
)
from vssbench.errors import DataError

#: Every problem kind :func:`check_dataset` reports.
PROBLEM_KINDS = (
    "missing_split",  # ROOT/<split>.txt does not exist or cannot be read
    "empty_split",  # the split file lists no video
    "duplicate_video",  # a video listed twice
    "missing_video",  # listed video without ROOT/data/<video>
    "missing_dir",  # a video without its origin/ or mask/ folder
    "empty_video",  # a video without any frame or mask
    "missing_mask",  # a frame without a mask of the same stem
    "missing_frame",  # a mask without a frame of the same stem
    "unreadable_image",  # cannot open or fully decode (truncated, corrupt, not an image)
    "unreadable_mask",
    "rgb_mask",  # a colour mask instead of index/grey values
    "size_mismatch",  # image and mask of a frame differ in size
    "bad_label_values",  # raw values outside {0..124, 255}
)


@dataclass
class Problem:
    """One thing wrong with the dataset: where, what kind (see PROBLEM_KINDS), and details."""

    path: Path
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`.

    ``sizes`` counts frames per (H, W); ``label_histogram`` is int64 [256], pixels per *raw* mask
    value over all readable masks (0 = others, 255 = void, 1..124 = classes).
    """

    root: Path
    split: str
    problems: list[Problem] = field(default_factory=list)
    num_videos: int = 0
    num_frames: int = 0
    sizes: Counter = field(default_factory=Counter)
    label_histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def add(self, path: Path, kind: str, message: str) -> None:
        """Record a problem."""
        assert kind in PROBLEM_KINDS, kind
        self.problems.append(Problem(Path(path), kind, message))

    def format(self, top: int = 10) -> str:
        """One line "path: kind: message" per problem, or an "ok" summary (sizes, top classes)."""
        if self.problems:
            lines = [str(p) for p in self.problems]
            lines.append(f"{len(self.problems)} problem(s) in {self.root} split {self.split}")
            return "\n".join(lines)
        lines = [f"ok: {self.root} split {self.split}: {self.num_videos} videos, {self.num_frames} frames"]
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sorted(self.sizes.items(), key=lambda kv: -kv[1]))
        lines.append(f"frame sizes: {sizes or 'none'}")
        total = int(self.label_histogram.sum())
        if total:
            order = np.argsort(-self.label_histogram, kind="stable")[:top]
            parts = [
                f"{raw_class_name(int(v))} ({int(v)}) {100.0 * self.label_histogram[v] / total:.1f}%"
                for v in order
                if self.label_histogram[v] > 0
            ]
            lines.append("top raw labels: " + ", ".join(parts))
        return "\n".join(lines)


_VALID_RAW = np.zeros(256, dtype=bool)
_VALID_RAW[: RAW_MAX_CLASS + 1] = True
_VALID_RAW[RAW_VOID] = True


def _check_image(path: Path, report: CheckReport) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            image.load()
            return image.height, image.width
    except DECODE_ERRORS as exc:
        report.add(path, "unreadable_image", f"cannot decode: {exc}")
        return None


def _check_mask(path: Path, report: CheckReport) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            mode = image.mode
            image.load()
            values = np.array(image)
    except DECODE_ERRORS as exc:
        report.add(path, "unreadable_mask", f"cannot decode: {exc}")
        return None
    shape = (int(values.shape[0]), int(values.shape[1]))
    if mode not in MASK_MODES:
        report.add(
            path, "rgb_mask", f"mask has mode {mode!r} (colours); expected an index ('P') or grey ('L') PNG"
        )
        return shape
    flat = values.ravel().astype(np.int64)
    big = flat[(flat < 0) | (flat > 255)]
    counts = np.bincount(flat[(flat >= 0) & (flat <= 255)], minlength=256)
    bad = sorted(
        {int(v) for v in np.flatnonzero((counts > 0) & ~_VALID_RAW)} | {int(v) for v in np.unique(big)}
    )
    if bad:
        shown = ", ".join(str(v) for v in bad[:20]) + (", ..." if len(bad) > 20 else "")
        report.add(path, "bad_label_values", f"values {shown} are outside {{0..124, 255}}")
    report.label_histogram += counts
    return shape


def _check_video(root: Path, video: str, report: CheckReport) -> None:
    vdir = root / "data" / video
    if not vdir.is_dir():
        report.add(vdir, "missing_video", f"video {video!r} is listed but has no folder")
        return
    origin, mask = vdir / "origin", vdir / "mask"
    missing = [d for d in (origin, mask) if not d.is_dir()]
    for d in missing:
        report.add(d, "missing_dir", f"video {video!r} has no {d.name}/ folder")
    images = list_stems(origin, IMAGE_SUFFIX)
    masks = list_stems(mask, MASK_SUFFIX)
    if not images and not masks:
        if not missing:
            report.add(
                vdir,
                "empty_video",
                f"video {video!r} has no frames (no origin/*{IMAGE_SUFFIX}, no mask/*{MASK_SUFFIX})",
            )
        return
    report.num_videos += 1
    mask_set, image_set = set(masks), set(images)
    for stem in images:
        if stem not in mask_set:
            report.add(origin / f"{stem}{IMAGE_SUFFIX}", "missing_mask", f"no mask/{stem}{MASK_SUFFIX}")
    for stem in masks:
        if stem not in image_set:
            report.add(mask / f"{stem}{MASK_SUFFIX}", "missing_frame", f"no origin/{stem}{IMAGE_SUFFIX}")
    for stem in images:
        if stem not in mask_set:
            continue
        report.num_frames += 1
        image_path, mask_path = origin / f"{stem}{IMAGE_SUFFIX}", mask / f"{stem}{MASK_SUFFIX}"
        image_size = _check_image(image_path, report)
        mask_size = _check_mask(mask_path, report)
        if image_size is not None:
            report.sizes[image_size] += 1
        if image_size is not None and mask_size is not None and image_size != mask_size:
            report.add(
                mask_path,
                "size_mismatch",
                f"mask is {mask_size[0]}x{mask_size[1]} but its frame is {image_size[0]}x{image_size[1]}",
            )


def check_dataset(root: str | os.PathLike[str], split: str = "val") -> CheckReport:
    """Check every video of a split of a VSPW tree and collect all problems (never stops at the first).

    Reads every image and mask completely (truncated files are found), so it takes a while on the
    full dataset. See PROBLEM_KINDS for what is reported.
    """
    root = Path(root)
    report = CheckReport(root=root, split=split)
    split_file = root / f"{split}.txt"
    try:
        videos = read_split_file(split_file)
    except DataError as exc:
        report.add(split_file, "missing_split", exc.reason)
        return report
    if not videos:
        report.add(split_file, "empty_split", "lists no video")
    seen: set[str] = set()
    for video in videos:
        if video in seen:
            report.add(split_file, "duplicate_video", f"video {video!r} is listed more than once")
            continue
        seen.add(video)
        _check_video(root, video, report)
    return report
