"""What ``vssbench plot masks`` needs besides the figure: the model and the frames (Fig. 3).

A source is a run folder (``config.json`` of :class:`~vssbench.config.RunConfig`: method,
backbone, options, checkpoint, data, split, resolution), a training folder (``config.json`` with
method/backbone/options and ``model.pth``) or a checkpoint file (vssbench's format names its
method, backbone and options; other formats need ``--method``/``--backbone``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vssbench import methods
from vssbench.data import TestTransform, VSPWDataset, default_dataset
from vssbench.errors import DataError, OptionError
from vssbench.reports.plots import masks_figure, similarity_masks
from vssbench.results.store import find_run_dir, is_run_dir


@dataclass
class MaskSource:
    """A model to build: ``method``, ``backbone``, ``options``, ``checkpoint`` (None: random init),
    and the run's data conditions where known (``data``, ``split``, ``resolution``,
    ``size_divisor``, ``num_classes``, ``seed``). ``resolution=None`` (a training folder, a
    checkpoint) runs the model at the frames' own size."""

    path: Path
    method: str
    backbone: str
    options: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    data: str | None = None
    split: str = "val"
    resolution: tuple[int, int] | None = None
    size_divisor: int | None = None
    num_classes: int = 124
    seed: int = 0


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object")
    return data


def load_mask_source(path: str | Path, method: str | None = None, backbone: str | None = None) -> MaskSource:
    """Resolve a run folder, training folder or checkpoint file into a :class:`MaskSource`.

    ``method``/``backbone`` override what the source says. A checkpoint whose method is not
    known from it or the flags raises :class:`OptionError`.
    """
    p = Path(path)
    if p.is_dir() and not (p / "config.json").is_file() and not is_run_dir(p):
        p = find_run_dir(p)  # a folder holding one run (`vssbench reproduce`'s runs/<name>)
    if p.is_dir():
        config_path = p / "config.json"
        if not config_path.is_file():
            raise DataError(p, "not a run or training folder (no config.json)")
        config = _read_json(config_path)
        for key in ("method", "backbone"):
            if not isinstance(config.get(key), str) and not (method if key == "method" else backbone):
                raise DataError(config_path, f"no {key!r} in the config")
        checkpoint = config.get("checkpoint")
        if checkpoint is None and (p / "model.pth").is_file():
            checkpoint = str(p / "model.pth")
        return MaskSource(
            path=p,
            method=method or config["method"],
            backbone=backbone or config["backbone"],
            options=dict(config.get("options") or {}),
            checkpoint=checkpoint,
            data=config.get("data"),
            split=config.get("split", "val") if "resolution" in config else "val",
            resolution=tuple(config["resolution"]) if config.get("resolution") else None,  # type: ignore[arg-type]
            size_divisor=config.get("size_divisor"),
            num_classes=int(config.get("num_classes", 124)),
            seed=int(config.get("seed", 0)),
        )
    if not p.is_file():
        raise DataError(p, "no such run folder or checkpoint file")
    meta: dict[str, Any] = {}
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(raw, dict) and raw.get("format") == "vssbench":
            meta = raw
    except Exception:  # noqa: BLE001 - safetensors or another format: the flags must say what it is
        meta = {}
    method = method or meta.get("method")
    backbone = backbone or meta.get("backbone")
    if not method or not backbone:
        raise OptionError(
            f"{p}: the checkpoint does not name its method/backbone; pass --method and --backbone"
        )
    return MaskSource(
        path=p,
        method=str(method),
        backbone=str(backbone),
        options=dict(meta.get("options") or {}),
        checkpoint=str(p),
        num_classes=int(meta.get("num_classes") or 124),
    )


def render_masks(
    source: MaskSource,
    video: str | None = None,
    frames: list[int] | tuple[int, ...] = (1, 2, 3),
    data: str | None = None,
    split: str | None = None,
    size: tuple[int, int] | None = None,
    options: dict[str, Any] | None = None,
) -> Any:
    """Build the model, run ``video``'s frames and return the Fig. 3 figure (see
    :func:`vssbench.reports.plots.similarity_masks`). ``data=None`` uses the source's data root,
    else the embedded synthetic dataset; ``options`` override the source's. The model runs at
    ``size``, else the source's resolution (a run's), else the frames' own size (the title says
    which)."""
    known = {f for f in methods.describe(source.method)["options"]}
    merged = {k: v for k, v in source.options.items() if k in known}
    merged.update(options or {})
    if source.checkpoint is None:
        print(
            f"WARNING: {source.path}: no checkpoint, the model is randomly initialized; "
            "its masks mean nothing",
            file=sys.stderr,
        )
    torch.manual_seed(source.seed)
    model = methods.create(
        source.method, source.backbone, num_classes=source.num_classes, checkpoint=source.checkpoint, **merged
    )
    root = data or source.data or default_dataset()
    dataset = VSPWDataset(root, split or source.split)
    if not dataset.videos:
        raise DataError(dataset.split_file, "lists no videos")
    video = video or dataset.videos[0]
    if video not in dataset.videos:
        raise OptionError(
            f"--video {video!r} is not in {dataset.split_file} (first: {', '.join(dataset.videos[:3])})"
        )
    resolution = size or source.resolution
    if resolution is None:
        image, _ = dataset.read_frame(video, dataset.frame_stems(video)[0])
        resolution = (image.height, image.width)
    transform = TestTransform(resolution, size_divisor=source.size_divisor)
    panels = similarity_masks(model, dataset, video, frames, transform)
    init = Path(source.checkpoint).name if source.checkpoint else "random init"
    h, w = transform.output_size(*panels[0].image.shape[:2]) if panels else resolution
    return masks_figure(
        panels, title=f"{source.method}-{source.backbone} ({init}), video {video}, model input {h}x{w}"
    )


__all__ = ["MaskSource", "load_mask_source", "render_masks"]
