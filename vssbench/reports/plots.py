"""Figures from training logs and result records (matplotlib object API, no pyplot state).

* :func:`mask_accuracy_figure` (the paper's Fig. 4): binary-mask accuracy against iteration,
  one line per run, with the accuracy of the trivial "everything consistent" mask dashed.
* :func:`masks_figure` (Fig. 3): keyframe, frame, predicted low-similarity mask (w < threshold)
  and the true label-change mask, per requested non-keyframe; :func:`similarity_masks` runs the
  model that fills it (the one figure whose inputs come from a model).
* :func:`tradeoff_figure`: a stability metric against FPS or GMACs per frame, marker area =
  mIoU (with a legend of reference areas), one colour per method, backbones connected; the
  paper's points on Params, or in a panel of their own for FPS (its GPU, 480x853); contended
  FPS hollow.
* :func:`curves_figure`: training loss terms and validation metrics against iteration.

Every figure is a :class:`matplotlib.figure.Figure` of a fixed size in inches at :data:`DPI`
(``layout="constrained"``, legends outside the axes), drawn under one style (:data:`STYLE`),
and :func:`save_figure` writes PNG/PDF/SVG without timestamps or software versions, so the same
inputs give the same bytes.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; harmless when a backend is already chosen by the caller

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

from vssbench import paper
from vssbench.data import VSPWDataset, default_dataset
from vssbench.errors import DataError, OptionError
from vssbench.reports.tables import BACKBONE_ORDER, backbone_label, variant_of
from vssbench.results.records import fps_contended

#: Resolution of every saved figure (dots per inch).
DPI = 200
#: Width of a figure in inches (a two-column paper's full width is ~7 in).
WIDTH = 6.4
#: The one style of every figure (applied with ``matplotlib.rc_context`` around drawing and saving).
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.4,
    "savefig.dpi": DPI,
    "svg.hashsalt": "vssbench",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "image.interpolation": "nearest",
}
#: One colour per method, the same in every figure (tab10, in Table 1's order).
METHOD_COLORS: dict[str, str] = {
    "segformer": "#1f77b4",
    "tfc": "#d62728",
    "feature_reuse": "#ff7f0e",
    "tdnet": "#8c564b",
    "mrcfa": "#9467bd",
    "cffm": "#2ca02c",
}
_EXTRA_COLORS = ("#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: A line colour per run (by position) where runs, not methods, are told apart.
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
FORMATS = ("png", "pdf", "svg")
#: Record keys that hold fractions (plotted as percent).
_FRACTIONS = frozenset({"mIoU", "wIoU", "mIoU_mmseg", "mVC8", "mVC16", "aAcc", "mAcc"})
#: Axis labels (with units) of record keys.
AXIS_LABELS: dict[str, str] = {
    "fps": "FPS (frames/s, per keyframe interval)",
    "gmacs_per_frame": "GMACs per frame",
    "gmacs_nonkeyframe": "GMACs per non-keyframe",
    "gmacs_keyframe": "GMACs per keyframe",
    "params": "parameters (M)",
    "mIoU": "mIoU (%)",
    "wIoU": "wIoU (%)",
    "mVC8": "mVC$_8$ (%)",
    "mVC16": "mVC$_{16}$ (%)",
}


def method_color(method: str) -> str:
    """The colour of a method (unknown methods get a stable extra colour from their name)."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA_COLORS[sum(map(ord, method)) % len(_EXTRA_COLORS)]


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width`` x ``height`` inches at :data:`DPI` (no pyplot)."""
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (.png, .pdf or .svg) deterministically; returns the path.

    No software version, creation date or random ids are written, so equal figures give equal
    files. The pixel size of a PNG is the figure size in inches x :data:`DPI`. The folder must
    exist (:class:`DataError` naming it otherwise: nothing is created where it was not asked).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise OptionError(f"{path}: unknown figure format {path.suffix!r}; use one of .png, .pdf, .svg")
    metadata: dict[str, Any] = {
        "png": {"Software": None},
        "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
        "svg": {"Creator": None, "Date": None},
    }[fmt]
    if not path.parent.is_dir():
        raise DataError(path.parent, "folder does not exist; create it first")
    with matplotlib.rc_context(STYLE):
        fig.savefig(path, format=fmt, dpi=DPI, metadata=metadata)
    return path


# ---------------------------------------------------------------------------------------------
# Training logs


@dataclass
class TrainingLog:
    """One training run's log: ``entries`` (the JSON objects of ``log.jsonl``, in order),
    ``config`` (``config.json`` beside it, ``{}`` when absent) and ``path``."""

    path: Path
    entries: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.config.get("method", "?"))

    @property
    def backbone(self) -> str:
        return str(self.config.get("backbone", "?"))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.config.get("options") or {})

    def label(self) -> str:
        """Legend text: method, backbone and (for methods with a ``focal`` option) the focal loss."""
        name = paper.METHOD_LABELS.get(self.method, self.method).replace("SegFormer + ", "")
        text = f"{name} MiT-{self.backbone.upper()}" if self.backbone != "?" else name
        focal = self.options.get("focal")
        if focal is None and self.method == "tfc":
            focal = True  # TFC's default
        if focal is not None:
            on = focal if isinstance(focal, bool) else str(focal).lower() in ("1", "true", "yes", "on")
            text += " (focal BCE)" if on else " (no BCE supervision)"
        return text

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, values) of every entry that holds a finite ``key``."""
        its, vals = [], []
        for e in self.entries:
            v = e.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and "iter" in e:
                its.append(float(e["iter"]))
                vals.append(float(v))
        return np.asarray(its), np.asarray(vals)


def read_log(path: str | Path) -> TrainingLog:
    """Read a training log: a training folder (``log.jsonl`` + ``config.json``) or a ``log.jsonl``.

    A truncated final line (a run killed mid-write) is ignored; any other unparseable line
    raises :class:`DataError` naming the file and line.
    """
    p = Path(path)
    log = p / "log.jsonl" if p.is_dir() else p
    if not log.is_file():
        raise DataError(log, "no training log here (expected DIR/log.jsonl or a .jsonl file)")
    lines = log.read_text(encoding="utf-8").split("\n")
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # cut off mid-write
            raise DataError(log, f"line {number} is not valid JSON") from None
        if not isinstance(entry, dict):
            raise DataError(log, f"line {number} is not a JSON object")
        entries.append(entry)
    config: dict[str, Any] = {}
    config_path = log.parent / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(config_path, f"not valid JSON ({exc})") from None
    return TrainingLog(log, entries, config)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (the first points average what exists)."""
    if window <= 1 or values.size == 0:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def mask_accuracy_figure(
    logs: Sequence[TrainingLog], window: int = 1, trivial: float | None = None, key: str = "mask_acc"
) -> Figure:
    """Fig. 4: binary-mask accuracy (%) against iteration, one line per log.

    ``trivial`` is the accuracy of the mask that calls every point consistent (the share of
    consistent points, ~0.9 on VSPW), drawn dashed so that the curves' height can be read
    against it; ``window`` smooths with a trailing moving average. A log without ``key`` is an
    error naming it.
    """
    fig = new_figure(WIDTH, 3.6)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for i, log in enumerate(logs):
            its, vals = log.series(key)
            if its.size == 0:
                raise DataError(log.path, f"no {key!r} values in this log (is it a TFC training log?)")
            ax.plot(
                its, 100.0 * smooth(vals, window), color=RUN_COLORS[i % len(RUN_COLORS)], label=log.label()
            )
        if trivial is not None:
            ax.axhline(
                100.0 * trivial,
                color="black",
                linestyle="--",
                linewidth=1.0,
                label=f"all-consistent mask ({100.0 * trivial:.1f}%)",
            )
        ax.set_xlabel("training iteration")
        ax.set_ylabel("binary-mask accuracy (%)")
        title = "(w >= threshold) vs. label consistency"
        ax.set_title(title + (f", mean of {window}" if window > 1 else ""))
        fig.legend(loc="outside right upper")
    return fig


def curves_figure(logs: Sequence[TrainingLog], keys: Sequence[str] | None = None, window: int = 1) -> Figure:
    """Training curves: one panel per key (loss terms, ``mask_acc``, ``lr``, validation metrics),
    one line per log, against iteration. ``keys`` defaults to the logs' losses, mask accuracy,
    learning rate and validation metrics (in that order); any numeric key can be named, and a key
    that no log holds raises :class:`OptionError` listing the keys the logs have."""
    found: set[str] = set()
    for log in logs:
        for e in log.entries:
            found.update(
                k
                for k, v in e.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iter"
            )
    if keys is None:
        keys = sorted((k for k in found if _default_curve(k)), key=_curve_order)
    unknown = [k for k in keys if k not in found]
    if unknown:
        have = ", ".join(sorted(found)) or "no numbers"
        raise OptionError(f"--keys: no log holds {', '.join(unknown)}; the logs have: {have}")
    keys = list(keys)
    if not keys:
        raise DataError(logs[0].path if logs else Path("."), "no numeric values to plot in the log(s)")
    cols = 2 if len(keys) > 1 else 1
    rows = math.ceil(len(keys) / cols)
    fig = new_figure(WIDTH, 2.4 * rows)
    with matplotlib.rc_context(STYLE):
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, key in zip(axes.flat, keys):
            percent = key.startswith("val_") or key == "mask_acc"
            for i, log in enumerate(logs):
                its, vals = log.series(key)
                if its.size == 0:
                    continue
                scale = 100.0 if percent else 1.0
                style = {"marker": "o", "markersize": 3} if key.startswith("val_") else {}
                ax.plot(
                    its,
                    scale * (vals if key.startswith("val_") else smooth(vals, window)),
                    color=RUN_COLORS[i % len(RUN_COLORS)],
                    label=log.label() if ax is axes.flat[0] else None,
                    **style,
                )
            ax.set_title(key)
            ax.set_xlabel("training iteration")
            ax.set_ylabel(_curve_unit(key))
            if key == "lr":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        for ax in list(axes.flat)[len(keys) :]:
            ax.set_visible(False)
        fig.legend(loc="outside upper center", ncols=min(len(logs), 3))
    return fig


def _default_curve(key: str) -> bool:
    """Keys plotted without ``keys``: losses, mask accuracy, lr and validation metrics (not
    bookkeeping such as ``time`` or ``val_frames``)."""
    return (
        key.startswith("loss")
        or key in ("mask_acc", "lr")
        or (key.startswith("val_") and key[4:] in _FRACTIONS)
    )


def _curve_order(key: str) -> tuple[int, str]:
    if key == "loss":
        return (0, key)
    if key.startswith("loss"):
        return (1, key)
    if key == "mask_acc":
        return (2, key)
    if key == "lr":
        return (3, key)
    if key.startswith("val_"):
        return (4, key)
    return (5, key)


def _curve_unit(key: str) -> str:
    if key.startswith("loss"):
        return "loss (nats)" if key != "loss_bce" else "focal BCE"
    if key == "mask_acc":
        return "accuracy (%)"
    if key == "lr":
        return "learning rate"
    if key.startswith("val_"):
        return f"{key[4:]} (%)"
    return key


# ---------------------------------------------------------------------------------------------
# Trade-off


def _metric(record: Mapping[str, Any], key: str) -> float | None:
    v = record.get(key)
    if key == "params" and isinstance(v, (int, float)):
        return float(v) / 1e6
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return None
    return 100.0 * float(v) if key in _FRACTIONS else float(v)


#: Cost axes of :func:`tradeoff_figure`.
TRADEOFF_X = ("fps", "gmacs_per_frame", "gmacs_nonkeyframe", "gmacs_keyframe", "params")
#: Record keys the paper's Table 1 has: only these can place its points (``with_paper``).
PAPER_KEYS = ("mIoU", "mVC8", "mVC16", "params", "fps")
#: Where the paper's FPS come from: Table 1 does not name its GPU (Table 3: one A100), at
#: VSPW's test size.
PAPER_FPS_SETUP = "the paper: its GPU (Table 3: one A100), 480x853"
_KEY_NAMES = {
    "gmacs_per_frame": "GMACs per frame",
    "gmacs_nonkeyframe": "GMACs per non-keyframe",
    "gmacs_keyframe": "GMACs per keyframe",
}
#: Area (points^2) of a marker for a ``size`` value v: 12 + 4 v (mIoU in percent: 12..412).
_AREA_BASE, _AREA_SCALE = 12.0, 4.0


@dataclass
class _Point:
    """One marker of the trade-off plot (``area`` in points^2; ``hollow``: a contended FPS)."""

    backbone: str
    x: float
    y: float
    area: float
    hollow: bool = False


def _area(value: float | None) -> float:
    return _AREA_BASE + _AREA_SCALE * max(value or 0.0, 0.0)


def _check_paper_axes(x: str, y: str, size: str) -> None:
    """Refuse ``with_paper`` on an axis the paper's Table 1 has no column for, saying why."""
    for flag, key in (("--x", x), ("--y", y), ("--size", size)):
        if key not in PAPER_KEYS:
            name = _KEY_NAMES.get(key, key)
            raise OptionError(
                f"--with-paper: the paper reports no {name} (its Table 1 has mIoU, mVC8, mVC16, Params "
                f"and FPS; Sec. 4.2 gives GFLOPs at non-keyframes for four rows only), so its points "
                f"cannot be placed on {flag} {key}; use --x fps or --x params, or leave out --with-paper"
            )


def tradeoff_figure(
    records: Sequence[Mapping[str, Any]],
    x: str = "fps",
    y: str = "mVC8",
    size: str = "mIoU",
    with_paper: bool = False,
) -> Figure:
    """``y`` (e.g. mVC8) against ``x`` (a cost of :data:`TRADEOFF_X`), marker area ``12 + 4 *
    size`` (points^2; a legend shows reference areas), one colour per method, a method's
    backbones joined in backbone order (the legend says so only when some method has several).

    ``with_paper`` adds the paper's Table 1 points (hollow diamonds, dotted lines). The paper has
    only ``params`` and ``fps`` among the costs: ``params`` shares our axes; ``fps`` gets a panel
    of its own, since the paper's GPU at 480x853 is not the machine and size our FPS were timed
    on (each panel's title says which); any other ``x`` (or a ``y``/``size`` the paper lacks)
    raises :class:`OptionError` saying why. When FPS are plotted, a point whose FPS was timed on
    a busy machine (``fps_protocol.contended``) is hollow, with a legend entry and its cpu share.
    Point labels (backbones) are placed around their points so that they overlap neither each
    other nor a marker where the space allows.
    """
    if x not in TRADEOFF_X:
        raise OptionError(
            f"--x {x}: not a cost axis of the trade-off plot; choose one of {', '.join(TRADEOFF_X)}"
        )
    if with_paper:
        _check_paper_axes(x, y, size)
    fps_shown = "fps" in (x, y, size)
    by_method: dict[str, list[_Point]] = {}
    shares: list[float | None] = []
    devices: list[str] = []
    sizes: list[str] = []
    for r in records:
        if r.get("error"):
            continue
        xv, yv = _metric(r, x), _metric(r, y)
        if xv is None or yv is None:
            continue
        busy, share = fps_contended(r) if fps_shown else (False, None)
        if busy:
            shares.append(share)
        name = str(r["method"]) + (f" [{variant_of(r)}]" if variant_of(r) else "")
        by_method.setdefault(name, []).append(
            _Point(str(r["backbone"]), xv, yv, _area(_metric(r, size)), busy)
        )
        if r.get("device") and str(r["device"]) not in devices:
            devices.append(str(r["device"]))
        shape = r.get("input_size") or r.get("resolution")
        if isinstance(shape, (list, tuple)) and len(shape) == 2 and f"{shape[0]}x{shape[1]}" not in sizes:
            sizes.append(f"{shape[0]}x{shape[1]}")
    if not by_method:
        raise DataError(Path("."), f"no record has both {x!r} and {y!r} (profile records have no accuracy)")
    paper_points = _paper_points(x, y, size) if with_paper else {}
    apart = with_paper and x == "fps"
    fig = new_figure(WIDTH, 3.8)
    with matplotlib.rc_context(STYLE):
        if apart:
            ours_ax, paper_ax = fig.subplots(1, 2, sharey=True)
        else:
            ours_ax = paper_ax = fig.add_subplot()
        order = lambda b: BACKBONE_ORDER.index(b) if b in BACKBONE_ORDER else 9  # noqa: E731
        names = sorted(
            by_method,
            key=lambda n: (
                list(METHOD_COLORS).index(n.split(" ")[0]) if n.split(" ")[0] in METHOD_COLORS else 9,
                n,
            ),
        )
        backbones = sorted({p.backbone for pts in by_method.values() for p in pts}, key=order)
        joined = any(len(by_method[n]) > 1 for n in names)
        handles: list[Any] = []
        labels: list[tuple[str, float, float, float, dict[str, Any]]] = []
        for name in names:
            points = sorted(by_method[name], key=lambda p: order(p.backbone))
            color = method_color(name.split(" ")[0])
            xs, ys = [p.x for p in points], [p.y for p in points]
            if len(points) > 1:
                ours_ax.plot(xs, ys, color=color, linewidth=1.0, alpha=0.7, zorder=1)
            ours_ax.scatter(
                xs,
                ys,
                s=[p.area for p in points],
                facecolors=["none" if p.hollow else color for p in points],
                edgecolors=[color if p.hollow else "black" for p in points],
                linewidths=[1.4 if p.hollow else 0.5 for p in points],
                zorder=2,
            )
            label = paper.METHOD_LABELS.get(name.split(" ")[0], name) + name[len(name.split(" ")[0]) :]
            handles.append(
                Line2D(
                    [],
                    [],
                    color=color,
                    linestyle="-" if len(points) > 1 else "",
                    linewidth=1.0,
                    marker="o",
                    markersize=6,
                    markerfacecolor=color,
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    label=label,
                )
            )
            if len(backbones) > 1:
                labels.extend((p.backbone.upper(), p.x, p.y, p.area, {"fontsize": 7}) for p in points)
        paper_labels: list[tuple[str, float, float, float, dict[str, Any]]] = []
        for m, pts in paper_points.items():
            color = method_color(m)
            xs, ys = [p.x for p in pts], [p.y for p in pts]
            paper_ax.plot(xs, ys, color=color, linestyle=":", linewidth=1.0, zorder=1)
            paper_ax.scatter(
                xs,
                ys,
                s=[p.area * math.pi / 4 for p in pts],  # a diamond of the circle's area
                marker="D",
                facecolors="none",
                edgecolors=color,
                linewidths=1.0,
                zorder=2,
            )
            paper_labels.extend(
                (p.backbone.upper(), p.x, p.y, p.area, {"fontsize": 6, "color": "0.4"}) for p in pts
            )
        if paper_points:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    linestyle=":",
                    linewidth=1.0,
                    marker="D",
                    markersize=5,
                    markerfacecolor="none",
                    label="the paper's Table 1\n(colour: method)",
                )
            )
        if shares:
            known = sorted({s for s in shares if s is not None})
            share_text = (
                ""
                if not known
                else f" (cpu share {known[0]:.2f})"
                if len(known) == 1
                else f" (cpu share {known[0]:.2f}-{known[-1]:.2f})"
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="",
                    marker="o",
                    markersize=6,
                    markerfacecolor="none",
                    markeredgecolor="0.3",
                    markeredgewidth=1.4,
                    label=f"hollow: FPS timed on a\nbusy machine{share_text}",
                )
            )
        for ax in {id(ours_ax): ours_ax, id(paper_ax): paper_ax}.values():
            ax.set_xlabel("FPS (frames/s)" if apart else AXIS_LABELS.get(x, x))
            ax.margins(0.1)
        ours_ax.set_ylabel(AXIS_LABELS.get(y, y))
        only = f"all {backbone_label(backbones[0])}" if len(backbones) == 1 else ""
        if apart:
            where = "; ".join(devices) or "this machine"
            ours_title = (
                f"ours: {where}" + (f", {'/'.join(sizes)}" if sizes else "") + (f"; {only}" if only else "")
            )
            ours_ax.set_title(textwrap.fill(ours_title, 34), fontsize=7)
            paper_ax.set_title(textwrap.fill(PAPER_FPS_SETUP, 34), fontsize=7)
            paper_ax.tick_params(labelleft=True)
        elif only:
            ours_ax.set_title(f"ours: {only}" if paper_points else only)
        joined = joined or any(len(p) > 1 for p in paper_points.values())
        fig.legend(
            handles=handles,
            loc="outside right upper",
            title="lines join a method's backbones" if joined else None,
            title_fontsize=7,
        )
        fig.legend(
            handles=_size_handles(
                [p.area for pts in by_method.values() for p in pts]
                + [p.area for pts in paper_points.values() for p in pts],
                size,
            ),
            title=f"marker area: {AXIS_LABELS.get(size, size)}",
            loc="outside right lower",
            labelspacing=1.2,
            borderpad=0.8,
        )
        fig.draw_without_rendering()  # the final layout and limits, where the labels are placed
        if apart:
            _place_labels(ours_ax, labels)
            _place_labels(paper_ax, paper_labels)
        else:
            _place_labels(ours_ax, labels + paper_labels)  # one axes: labels avoid each other
    return fig


def _paper_points(x: str, y: str, size: str) -> dict[str, list[_Point]]:
    """The paper's Table 1 points per method (backbone order) on the axes x, y and size."""
    out: dict[str, list[_Point]] = {}
    table_methods = sorted(
        {v.method for v in paper.PAPER_VALUES if v.table == "table1"},
        key=lambda m: list(METHOD_COLORS).index(m) if m in METHOD_COLORS else 9,
    )
    for m in table_methods:
        for b in BACKBONE_ORDER:
            px = paper.paper_value("table1", m, b, x)
            py = paper.paper_value("table1", m, b, y)
            if px is not None and py is not None:
                out.setdefault(m, []).append(
                    _Point(b, px, py, _area(paper.paper_value("table1", m, b, size)))
                )
    return out


def _size_handles(areas: Sequence[float], size: str) -> list[Any]:
    """Legend markers of reference areas spanning ``areas`` (smallest, middle, largest, rounded)."""
    values = [(a - _AREA_BASE) / _AREA_SCALE for a in areas]
    lo, hi = min(values), max(values)
    picks = [lo] if hi - lo < 1e-9 else [lo, (lo + hi) / 2, hi]
    unit = "%" if size in _FRACTIONS else ""
    handles = []
    for v in dict.fromkeys(float(f"{p:.3g}") for p in picks):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                markersize=math.sqrt(_area(v)),
                markerfacecolor="0.75",
                markeredgecolor="black",
                markeredgewidth=0.5,
                label=f"{v:g}{unit}",
            )
        )
    return handles


def _place_labels(ax: Any, items: Sequence[tuple[str, float, float, float, dict[str, Any]]]) -> None:
    """Annotate each point (text, x, y, marker area in points^2, text style) at the first of a
    ring of offsets around it whose box overlaps no marker and no label placed before it, and
    stays inside the axes; else at the offset with the least overlap. The figure's layout must
    be final (``draw_without_rendering``); the labels are kept out of it."""
    to_px = ax.figure.dpi / 72.0
    obstacles = []
    for _, x, y, area, _ in items:
        cx, cy = ax.transData.transform((x, y))
        r = math.sqrt(area) / 2.0 * to_px
        obstacles.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    frame = ax.get_window_extent()
    for i, (text, x, y, area, style) in enumerate(items):
        gap = math.sqrt(area) / 2.0 + 1.5  # points from the centre to the marker's edge, and a little
        candidates = []
        for ring in (1.0, 1.8, 2.8, 4.0):
            d, e = gap * ring, gap * ring * 0.7
            candidates += [
                (e, e, "left", "bottom"),
                (e, -e, "left", "top"),
                (-e, e, "right", "bottom"),
                (-e, -e, "right", "top"),
                (d, 0.0, "left", "center"),
                (-d, 0.0, "right", "center"),
                (0.0, d, "center", "bottom"),
                (0.0, -d, "center", "top"),
            ]
        ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=candidates[0][:2], **style)
        ann.set_in_layout(False)
        best: tuple[float, tuple[float, float, str, str]] | None = None
        for dx, dy, ha, va in candidates:
            ann.xyann = (dx, dy)
            ann.set_horizontalalignment(ha)
            ann.set_verticalalignment(va)
            box = ann.get_window_extent()
            cost = sum(_overlap(box, o) for j, o in enumerate(obstacles) if j != i)
            inside = Bbox.intersection(box, frame)
            cost += box.width * box.height - (inside.width * inside.height if inside is not None else 0.0)
            if best is None or cost < best[0]:
                best = (cost, (dx, dy, ha, va))
            if cost == 0.0:
                break
        assert best is not None
        dx, dy, ha, va = best[1]
        ann.xyann = (dx, dy)
        ann.set_horizontalalignment(ha)
        ann.set_verticalalignment(va)
        obstacles.append(ann.get_window_extent())


def _overlap(a: Bbox, b: Bbox) -> float:
    both = Bbox.intersection(a, b)
    return 0.0 if both is None else both.width * both.height


# ---------------------------------------------------------------------------------------------
# Predicted masks (Fig. 3)


@dataclass
class MaskPanel:
    """One non-keyframe of :func:`masks_figure`: frame ``t`` and its keyframe ``k`` (RGB uint8
    H x W x 3), ``similarity`` w_t (h x w), ``changed`` (h x w bool: keyframe label != frame
    label at the similarity's resolution, nearest), ``valid`` (neither label is 255),
    ``threshold`` and ``accuracy`` ((ŵ >= threshold) == consistent over valid points)."""

    video: str
    t: int
    k: int
    image: np.ndarray
    key_image: np.ndarray
    similarity: np.ndarray
    changed: np.ndarray
    valid: np.ndarray
    threshold: float

    @property
    def predicted(self) -> np.ndarray:
        """Points predicted to change: clamp(w, 0, 1) < threshold."""
        return np.clip(self.similarity, 0.0, 1.0) < self.threshold

    @property
    def accuracy(self) -> float:
        """Binary-mask accuracy over valid points (NaN if none)."""
        if not self.valid.any():
            return float("nan")
        return float(((~self.predicted) == (~self.changed))[self.valid].mean())


def similarity_masks(
    model: Any, dataset: Any, video: str, frames: Sequence[int], transform: Any
) -> list[MaskPanel]:
    """Run ``video``'s frames 0..max(frames) through ``model.step`` and collect a
    :class:`MaskPanel` for each requested frame.

    The model must expose ``last_similarity`` (N x h x w, None on keyframes: TFC does) and
    ``options.threshold``; a requested keyframe, a frame beyond the video, or a model without a
    similarity map raises :class:`OptionError` naming it.
    """
    if not hasattr(model, "last_similarity"):
        raise OptionError(f"{type(model).__name__} exposes no similarity map (last_similarity); TFC does")
    threshold = float(getattr(getattr(model, "options", None), "threshold", 0.8))
    count = dataset.num_frames(video)
    wanted = sorted({int(f) for f in frames})
    if not wanted or wanted[0] < 0 or wanted[-1] >= count:
        raise OptionError(f"--frames {','.join(map(str, frames))}: video {video!r} has frames 0..{count - 1}")
    stems = dataset.frame_stems(video)
    panels = []
    key_index, key_label, key_rgb = -1, None, None
    model.reset()
    with torch.inference_mode():
        for t in range(wanted[-1] + 1):
            frame = dataset.load_frame(video, t, transform)
            model.step(frame.image)
            similarity = model.last_similarity
            if similarity is None:
                key_index, key_label = t, frame.label
                key_rgb = None
                if t in wanted:
                    raise OptionError(
                        f"--frames: frame {t} of {video!r} is a keyframe (no similarity); pick non-keyframes"
                    )
                continue
            if t not in wanted:
                continue
            if key_rgb is None:
                key_rgb = np.asarray(dataset.read_frame(video, stems[key_index])[0])
            sim = similarity[0].float().cpu()
            size = tuple(sim.shape)
            both = torch.stack(
                [torch.from_numpy(key_label.astype(np.int64)), torch.from_numpy(frame.label.astype(np.int64))]
            )
            small = F.interpolate(both[None].float(), size=size, mode="nearest")[0].long().numpy()
            valid = (small[0] != 255) & (small[1] != 255)
            panels.append(
                MaskPanel(
                    video=video,
                    t=t,
                    k=key_index,
                    image=np.asarray(dataset.read_frame(video, stems[t])[0]),
                    key_image=key_rgb,
                    similarity=sim.numpy(),
                    changed=small[0] != small[1],
                    valid=valid,
                    threshold=threshold,
                )
            )
    return panels


#: Grey level of void points in the true label-change mask (white: changed, black: unchanged).
VOID_GREY = 0.5


def masks_figure(panels: Sequence[MaskPanel], title: str | None = None) -> Figure:
    """Fig. 3: per panel a row of keyframe, frame, predicted mask (w < threshold, white) and the
    true label-change mask (white: the label changed, black: it did not, grey: void, i.e. label
    255 in the keyframe or the frame, which the accuracy does not count), titled with the mask
    accuracy; a legend below says what white, black and grey are."""
    if not panels:
        raise OptionError("no frames to show")
    h, w = panels[0].image.shape[:2]
    cell = WIDTH / 4
    fig = new_figure(WIDTH, len(panels) * (cell * h / w + 0.45) + (0.3 if title else 0.0))
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        axes = fig.subplots(len(panels), 4, squeeze=False)
        for row, p in zip(axes, panels):
            true = np.where(p.valid, p.changed.astype(float), VOID_GREY)
            images = [
                (p.key_image, f"keyframe {p.k}"),
                (p.image, f"frame {p.t}"),
                (p.predicted.astype(float), f"w < {p.threshold:g} (predicted)\nacc. {100 * p.accuracy:.1f}%"),
                (true, "label changed (true)"),
            ]
            for ax, (img, label) in zip(row, images):
                if img.ndim == 2:
                    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, extent=(0, w, h, 0))
                else:
                    ax.imshow(img, extent=(0, w, h, 0))
                ax.set_title(label, fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
        if title:
            fig.suptitle(title)
        swatches = [
            ("white: low similarity (predicted) / label changed (true)", "white"),
            ("black: high similarity / label unchanged", "black"),
            ("grey: void (label 255 in keyframe or frame), not scored", str(VOID_GREY)),
        ]
        fig.legend(
            handles=[Patch(facecolor=c, edgecolor="0.3", linewidth=0.5, label=t) for t, c in swatches],
            loc="outside lower center",
            ncols=1,
            fontsize=7,
        )
    return fig


def consistent_share(
    root: str | Path | None, split: str = "train", interval: int = 4, max_videos: int | None = 20
) -> float:
    """Share of labelled points whose label equals their keyframe's (frames k+1..k+interval-1 of
    every keyframe k = 0, interval, ...): the accuracy of the trivial "everything consistent" mask
    on that data (at label resolution). ``root=None`` is the embedded synthetic dataset."""
    dataset = VSPWDataset(default_dataset() if root is None else root, split)
    same = total = 0
    for video in dataset.videos[: max_videos or None]:
        key = None
        for t, stem in enumerate(dataset.frame_stems(video)):
            label = dataset.read_label(video, stem)
            if t % interval == 0:
                key = label
                continue
            valid = (key != 255) & (label != 255)
            same += int((key == label)[valid].sum())
            total += int(valid.sum())
    if total == 0:
        raise DataError(dataset.root, f"no labelled non-keyframe points in split {split!r}")
    return same / total


def read_logs(paths: Iterable[str | Path]) -> list[TrainingLog]:
    """:func:`read_log` of each path (at least one)."""
    logs = [read_log(p) for p in paths]
    if not logs:
        raise OptionError("give at least one training log (a training folder or its log.jsonl)")
    return logs


__all__ = [
    "AXIS_LABELS",
    "DPI",
    "FORMATS",
    "METHOD_COLORS",
    "PAPER_KEYS",
    "STYLE",
    "TRADEOFF_X",
    "VOID_GREY",
    "MaskPanel",
    "TrainingLog",
    "consistent_share",
    "curves_figure",
    "mask_accuracy_figure",
    "masks_figure",
    "method_color",
    "new_figure",
    "read_log",
    "read_logs",
    "save_figure",
    "similarity_masks",
    "smooth",
    "tradeoff_figure",
]
