"""The paper's tables from result records: pure functions records -> :class:`ReportTable` -> text.

* :func:`main_table` (Table 1): Methods, Backbone, Type, mIoU, mVC8, mVC16, Params (M),
  FPS (f/s), GMACs/frame, grouped by backbone; the difference to SegFormer on the same backbone
  under the same conditions in parentheses.
* :func:`ablation_table` (Table 2): its groups, rows recognised from each record's options;
  missing variants are left out, never invented.
* :func:`speed_table` (Table 3): sparse MSDA at a share of points against MiT stages 3-4, from
  ``benchmarks/bench_sparse_msda.py``'s CSV, and per-interval FPS of records.

Percentages and Params carry one decimal (records hold fractions); FPS and GMACs per frame as
many as their column's smallest value needs for three significant digits (:func:`column_digits`).
Deltas are computed from the records' unrounded values, then rounded. Nothing here recomputes a
metric: the numbers are the records'.
Renderers: :func:`to_markdown`, :func:`to_csv`, :func:`to_latex` (booktabs), :func:`to_html`.

Seeds: records of one row (method, backbone, variant, conditions) with different checkpoints
are its replicates, e.g. trainings with ``--seed`` 0, 1, 2 (the record's ``train_seed``); they
make one row whose cells are means, accuracy cells with the sample standard deviation
(``49.0 ±1.2``), and whose delta is the difference of means. Of records with the same
checkpoint only the latest counts. Table 1 can take its efficiency columns from ``vssbench
profile`` records instead of the runs' own (``main_table(..., efficiency=...)``).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vssbench import methods, paper
from vssbench.errors import DataError, OptionError, VssbenchError
from vssbench.reports.stats import compare_groups, compare_runs, same_checkpoint, seeds_text, train_seed
from vssbench.results.records import CONTENDED_MARK, compare_records, contended_note, fps_contended

#: Backbone order of the tables.
BACKBONE_ORDER = ("b0", "b1", "b2", "b3", "b4", "b5")
#: Options that do not change what a row is: cache_fuse only changes float rounding, drop_path_rate
#: only acts in training.
NEUTRAL_OPTIONS = frozenset({"cache_fuse", "drop_path_rate"})
#: Markers in the Methods cell.
RANDOM_MARK = "*"
CONDITIONS_MARK = "†"
FORMATS = ("md", "csv", "latex", "html")


@dataclass
class ReportTable:
    """A rendered table: ``frame`` holds display strings, ``data`` the numbers (CSV), ``notes``
    the footnotes, ``group_column`` the column whose change starts a new block (a rule in LaTeX)."""

    title: str
    frame: pd.DataFrame
    data: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    group_column: str | None = None
    text_columns: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Loading


def find_record_files(paths: Iterable[str | Path], names: Sequence[str] = ("record.json",)) -> list[Path]:
    """Record files named by ``paths``: record files, run folders, or folders searched recursively
    for files called one of ``names`` (``("record.json", "records.json")`` also finds the lists
    that ``vssbench profile --out`` writes).

    Order: the order of ``paths``, each folder's records sorted by path. A path that does not
    exist, or a folder without any such file, raises :class:`DataError` naming it.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted({f for name in names for f in path.rglob(name)})
            if not files:
                raise DataError(path, f"no {' or '.join(names)} in this folder or below it")
            found.extend(files)
        else:
            raise DataError(path, "no such file or folder")
    unique: list[Path] = []
    for f in found:
        if f.resolve() not in {u.resolve() for u in unique}:
            unique.append(f)
    return unique


def load_records(
    paths: Iterable[str | Path], names: Sequence[str] = ("record.json",)
) -> list[dict[str, Any]]:
    """Read the records named by ``paths`` (see :func:`find_record_files`); a file may hold one
    record or a JSON list of them.

    Each record gains ``_source`` (its file) and ``_dir`` (its run folder, where ``videos.jsonl``
    lives). Invalid JSON, a non-object, or a record without ``method``/``backbone`` raises
    :class:`DataError` naming the file and key.
    """
    records = []
    for path in find_record_files(paths, names):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, f"not a readable result record ({exc})") from None
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict):
                raise DataError(path, "a result record must be a JSON object")
            for key in ("method", "backbone"):
                if not isinstance(item.get(key), str):
                    raise DataError(path, f"record has no {key!r} (not a vssbench result record)")
            records.append({**item, "_source": str(path), "_dir": str(path.parent)})
    return records


# ---------------------------------------------------------------------------------------------
# What a record is


def method_type(method: str) -> str:
    """Table 1's Type (Image, E, S, E&S): the registry's, else the paper's fallback table, else "?"."""
    if method in methods.available():
        return methods.method_info(method).type
    return paper.FALLBACK_TYPES.get(method, "?")


def _defaults(method: str) -> tuple[dict[str, Any] | None, int]:
    """A registered method's option defaults and default interval (None, 4 when not registered)."""
    if method not in methods.available():
        return None, 4
    options = methods.method_options(method)
    defaults = {}
    for f in dataclasses.fields(options):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
    return defaults, methods.method_info(method).default_interval


def _fmt_option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, str) and a.lower() == str(b).lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def variant_of(record: Mapping[str, Any]) -> str:
    """Canonical string of a record's non-default options, e.g. ``"interp=hard,update=none"``.

    Options equal to the method's defaults and the neutral options (:data:`NEUTRAL_OPTIONS`)
    are left out; the keyframe interval enters as ``interval=N`` when it is not the method's
    default. Keys sorted; ``""`` is the default setup. A method that is not registered here
    has no known defaults, so only its interval can make a variant.
    """
    method = str(record.get("method"))
    defaults, default_interval = _defaults(method)
    options = record.get("options") or {}
    parts: dict[str, Any] = {}
    if defaults is not None:
        for key, value in options.items():
            if key in NEUTRAL_OPTIONS or key == "interval":
                continue
            if key in defaults and _same_value(value, defaults[key]):
                continue
            if (
                isinstance(defaults.get(key), float)
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                value = float(value)
            parts[key] = value
    interval = record.get("interval", options.get("interval"))
    if interval is not None and int(interval) != default_interval:
        parts["interval"] = int(interval)
    return ",".join(f"{k}={_fmt_option(v)}" for k, v in sorted(parts.items()))


def backbone_label(backbone: str) -> str:
    """``b0`` -> ``MiT-B0`` (the paper's spelling)."""
    return f"MiT-{backbone.upper()}" if backbone.lower().startswith("b") else backbone


def method_label(method: str, variant: str = "") -> str:
    """Table 1's name of a method (``SegFormer + TFC``), with a non-default variant in brackets."""
    label = paper.METHOD_LABELS.get(method, method)
    return f"{label} [{variant}]" if variant else label


def _order_key(record: Mapping[str, Any]) -> tuple:
    backbone = str(record.get("backbone"))
    method = str(record.get("method"))
    b = BACKBONE_ORDER.index(backbone) if backbone in BACKBONE_ORDER else len(BACKBONE_ORDER)
    labels = list(paper.METHOD_LABELS)
    m = labels.index(method) if method in labels else len(labels)
    return (b, backbone, m, method, variant_of(record))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _left_out_notes(errors: Sequence[str], duplicates: int, notes: list[str]) -> None:
    """The notes naming the failed runs and counting the older duplicates a table left out."""
    if errors:
        notes.append(f"left out (the run failed): {', '.join(errors)}")
    if duplicates:
        notes.append(
            f"{duplicates} older duplicate record(s) left out (same method, backbone, options, conditions)"
        )


def _usable(records: Sequence[Mapping[str, Any]], notes: list[str]) -> list[Mapping[str, Any]]:
    """Records without an error; the latest of duplicates (same subject, variant, conditions)."""
    kept: dict[tuple, Mapping[str, Any]] = {}
    errors, duplicates = [], 0
    for r in records:
        if r.get("error"):
            errors.append(f"{r.get('method')}-{r.get('backbone')}")
            continue
        key = (
            r.get("method"),
            r.get("backbone"),
            variant_of(r),
            r.get("conditions_hash"),
            r.get("checkpoint"),
        )
        if key in kept:
            duplicates += 1
            if str(r.get("created") or "") < str(kept[key].get("created") or ""):
                continue
        kept[key] = r
    _left_out_notes(errors, duplicates, notes)
    return sorted(kept.values(), key=_order_key)


#: Record keys that a row of several replicates shows as their mean.
MEAN_KEYS: tuple[str, ...] = (
    "mIoU",
    "mVC8",
    "mVC16",
    "wIoU",
    "mIoU_mmseg",
    "aAcc",
    "mAcc",
    "params",
    "params_dead",
    "params_inference",
    "gmacs_per_frame",
    "fps",
)
#: Columns whose cells add the replicates' standard deviation (``49.0 ±1.2``). The efficiency
#: columns show the mean alone: params and GMACs do not depend on the seed, and FPS varies with
#: the machine, not with the weights.
SPREAD_KEYS = frozenset({"mIoU", "mVC8", "mVC16"})


def _row_groups(records: Sequence[Mapping[str, Any]], notes: list[str]) -> list[Mapping[str, Any]]:
    """The rows of a table: records without an error, one row per method, backbone, variant and
    conditions, in table order.

    Records of a row with the same checkpoint (:func:`~vssbench.reports.stats.same_checkpoint`)
    are duplicates: the latest (``created``) counts. Records with different checkpoints are the
    row's replicates (seeds): a row of one is that record itself; a row of several is
    :func:`_merged`.
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    errors, duplicates = [], 0
    for r in records:
        if r.get("error"):
            errors.append(f"{r.get('method')}-{r.get('backbone')}")
            continue
        key = (r.get("method"), r.get("backbone"), variant_of(r), r.get("conditions_hash"))
        members = groups.setdefault(key, [])
        same = next((i for i, m in enumerate(members) if same_checkpoint(m, r)), None)
        if same is None:
            members.append(r)
            continue
        duplicates += 1
        if str(r.get("created") or "") >= str(members[same].get("created") or ""):
            members[same] = r
    _left_out_notes(errors, duplicates, notes)
    return sorted((_merged(m) for m in groups.values()), key=_order_key)


def _seed_key(record: Mapping[str, Any]) -> tuple:
    seed = train_seed(record)
    return (seed is None, seed or 0, str(record.get("created") or ""), str(record.get("checkpoint")))


def _merged(replicates: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """One row from its replicates: the record itself for one; for several, the first (by
    train_seed) with the mean of each of :data:`MEAN_KEYS` over the replicates that have it,
    ``_std`` (sample standard deviations, ddof 1, of keys two or more have), ``_replicates``,
    the FPS protocol of a contended replicate (so the row is marked), ``random_init`` if any is."""
    if len(replicates) == 1:
        return replicates[0]
    ordered = sorted(replicates, key=_seed_key)
    row = dict(ordered[0])
    spread: dict[str, float] = {}
    for key in MEAN_KEYS:
        values = [float(r[key]) for r in ordered if _is_number(r.get(key))]
        row[key] = statistics.fmean(values) if values else None
        if len(values) >= 2:
            spread[key] = statistics.stdev(values)
    contended = [r for r in ordered if fps_contended(r)[0]]
    if contended:
        row["fps_protocol"] = min(contended, key=lambda r: fps_contended(r)[1] or 0.0)["fps_protocol"]
    row["random_init"] = any(r.get("random_init") for r in ordered)
    row["_std"] = spread
    row["_replicates"] = ordered
    return row


def _replicates(row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The records a row stands for (itself when it has one)."""
    return list(row.get("_replicates") or [row])


def _spread(row: Mapping[str, Any], key: str, scale: float) -> float | None:
    """The standard deviation over a row's replicates of ``key``, in display units (None for one)."""
    sd = (row.get("_std") or {}).get(key)
    return None if sd is None else sd * scale


def _seed_columns(nrow: dict[str, Any], row: Mapping[str, Any], columns: Sequence[tuple]) -> None:
    """The data frame's ``<key>_std``, ``n_runs`` and ``train_seeds`` of a row."""
    for _, key, scale, _ in columns:
        nrow[f"{key}_std"] = _spread(row, key, scale)
    nrow["n_runs"] = len(_replicates(row))
    nrow["train_seeds"] = [train_seed(r) for r in _replicates(row)]


def _seeds_note(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], deltas: bool = True) -> str | None:
    """What ``±`` means and over which seeds (per row when the rows differ); None when every
    row is one run."""
    counts = [len(_replicates(r)) for r in rows]
    if max(counts, default=1) < 2:
        return None
    seeds = [[train_seed(x) for x in _replicates(r)] for r in rows]
    what = "accuracy cells read 'mean ±sd' (sample standard deviation, n - 1), the other cells the mean"
    if deltas:
        what += ", deltas the difference of means"
    if all(sorted(s, key=str) == sorted(seeds[0], key=str) for s in seeds):
        return f"mean ± standard deviation over {counts[0]} seeds ({_seeds_of(seeds[0])}): {what}"
    per_row = "; ".join(
        f"{label} {n} seed{'' if n == 1 else 's'} ({_seeds_of(s)})"
        for label, n, s in zip(labels, counts, seeds)
    )
    return f"mean ± standard deviation over the seeds of each row: {per_row}; {what}"


def _seeds_of(seeds: Sequence[int | None]) -> str:
    if all(s is None for s in seeds):
        return "train_seed not recorded"
    return f"train_seed {seeds_text(seeds)}"


def _reference(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The record whose conditions the most rows share (ties: the first in table order)."""
    hashes = [r.get("conditions_hash") for r in records if r.get("conditions_hash") is not None]
    if not hashes:
        return None
    common = Counter(hashes).most_common(1)[0][0]
    return next(r for r in records if r.get("conditions_hash") == common)


def _differing(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Iterable[str] = ()) -> str | None:
    """A note naming the condition fields in which ``b`` differs from ``a`` (None when the same)."""
    verdict = compare_records([a, b])
    differing = {k: v for k, v in verdict["differing"].items() if k not in set(ignore)}
    if not differing:
        return None
    parts = [f"{k} (this row {_show(v[1])}, the others {_show(v[0])})" for k, v in differing.items()]
    return ", ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


def _flag_rows(
    rows: Sequence[Mapping[str, Any]], labels: Sequence[str], notes: list[str], ignore: Iterable[str] = ()
) -> list[str]:
    """Marks per row (random init, differing conditions) and their notes."""
    ignore = tuple(ignore)
    ref = _reference(rows)
    marks = []
    random_rows = []
    for r, label in zip(rows, labels):
        mark = ""
        if r.get("random_init") and r.get("kind", "run") == "run":
            mark += RANDOM_MARK
            random_rows.append(label)
        if ref is not None and r is not ref and r.get("conditions_hash") is not None:
            diff = _differing(ref, r, ignore)
            if diff:
                mark += CONDITIONS_MARK
                notes.append(f"{CONDITIONS_MARK} {label}: conditions differ from the other rows: {diff}")
        marks.append(mark)
    if random_rows:
        notes.insert(
            0,
            f"{RANDOM_MARK} randomly initialized (no checkpoint), accuracy is meaningless: "
            f"{', '.join(random_rows)}",
        )
    return marks


# ---------------------------------------------------------------------------------------------
# Cells


def _pct(value: Any) -> float | None:
    return 100.0 * float(value) if _is_number(value) else None


def signed(value: float, digits: int = 1) -> str:
    """``+2.6`` / ``-0.3``; a value that rounds to zero reads ``+0.0`` (never ``-0.0``)."""
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def column_digits(values: Iterable[float | None], significant: int = 3, least: int = 1, most: int = 4) -> int:
    """Decimals of a whole column: enough for its smallest non-zero magnitude to show
    ``significant`` digits (GMACs of 0.14 read ``0.144``, of 14.2 ``14.2``), at least ``least``
    (the paper's one decimal) and at most ``most``. One count per column keeps it aligned and
    its deltas as precise as its values."""
    magnitudes = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not magnitudes:
        return least
    return max(least, min(most, significant - 1 - math.floor(math.log10(min(magnitudes)))))


#: Marks of a with-paper cell (``ours | paper``) where the paper has no number, and what they mean.
PAPER_NO_ROW = "n/r"
PAPER_NO_COLUMN = "n/c"
PAPER_MARKS_NOTE = (
    f"'{PAPER_NO_ROW}': the paper has no such row (a variant, or a method/backbone it does not "
    f"report); '{PAPER_NO_COLUMN}': the paper has no such column (it reports no GMACs per frame; "
    "Sec. 4.2 gives GFLOPs at non-keyframes for four rows only); '-': we have no value"
)


def _with_paper(text: str, paper_value: float | None, digits: int = 1, column: bool = True) -> str:
    """``ours | paper``, the paper's value printed with our column's ``digits`` (its TDNet mIoU
    31.74 reads 31.7 among one-decimal cells; the CSV keeps the printed value); the mark of a
    missing row, or of a column the paper does not have (``column=False``)."""
    if not column:
        return f"{text} | {PAPER_NO_COLUMN}"
    if paper_value is None:
        return f"{text} | {PAPER_NO_ROW}"
    return f"{text} | {paper_value:.{digits}f}"


#: Table 1's columns: (header, record key, scale to display units, digits; None: by magnitude,
#: :func:`column_digits`).
MAIN_COLUMNS: tuple[tuple[str, str, float, int | None], ...] = (
    ("mIoU", "mIoU", 100.0, 1),
    ("mVC8", "mVC8", 100.0, 1),
    ("mVC16", "mVC16", 100.0, 1),
    ("Params (M)", "params", 1e-6, 1),
    ("FPS (f/s)", "fps", 1.0, None),
    ("GMACs/frame", "gmacs_per_frame", 1.0, None),
)
#: Columns of Table 1 that the paper does not report (Sec. 4.2 gives non-keyframe GFLOPs only).
NOT_IN_PAPER = frozenset({"gmacs_per_frame"})


def _value(record: Mapping[str, Any], key: str, scale: float) -> float | None:
    v = record.get(key)
    return float(v) * scale if _is_number(v) else None


def _digits_by_column(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, float, int | None]]
) -> dict[str, int]:
    return {
        key: digits if digits is not None else column_digits(_value(r, key, scale) for r in rows)
        for _, key, scale, digits in columns
    }


def _contended_cell(text: str, record: Mapping[str, Any], label: str, found: list) -> str:
    """``text`` with :data:`CONTENDED_MARK` when the record's FPS was timed on a busy machine
    (collecting ``(label, cpu share)`` into ``found`` for the note)."""
    busy, share = fps_contended(record)
    if not busy or text == "-":
        return text
    found.append((label, share))
    return text + CONTENDED_MARK


def _params_note(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str | None:
    """What the Params column counts, with the parameters dead at inference per row (when any)."""
    dead = []
    for r, label in zip(rows, labels):
        n, total = r.get("params_dead"), r.get("params")
        if _is_number(n) and n > 0 and _is_number(total):
            dead.append(f"{label}: {n / 1e6:.3f} M dead, {(total - n) / 1e6:.2f} M at inference")
    if not dead:
        return None
    return (
        "Params (M) counts every parameter of the model, including those unused at inference "
        "(params_dead of the record, found by following the inference graph): " + "; ".join(dead)
    )


def main_table(
    records: Sequence[Mapping[str, Any]],
    with_paper: bool = False,
    ci: Mapping[tuple[int, str], Any] | None = None,
    efficiency: Sequence[Mapping[str, Any]] | None = None,
) -> ReportTable:
    """Table 1 from records: one row per method x backbone x variant, grouped by backbone.

    Non-image rows show ``value (+delta)``: the difference to SegFormer on the same backbone
    whose conditions are the same (:func:`~vssbench.results.records.compare_records`), from
    unrounded values. Percentages and Params carry one decimal; FPS and GMACs per frame as many
    as :func:`column_digits` gives the column. Params counts every parameter (a note gives the
    ones dead at inference per row); an FPS timed on a busy machine ends in ``‡`` with a note.
    ``with_paper`` appends the paper's number (``ours | paper``, in our column's decimals) for
    rows the paper has (default variant), :data:`PAPER_NO_ROW` for rows it does not and
    :data:`PAPER_NO_COLUMN` under GMACs per frame (the paper has Sec. 4.2's GFLOPs at
    non-keyframes, not per frame). ``ci`` maps (row index, metric key) to an
    :class:`~vssbench.reports.stats.Interval` added to the delta (see :func:`main_table_ci`).

    A row's replicates (records with different checkpoints, e.g. seeds) make one row of means;
    its accuracy cells add the sample standard deviation (``44.3 ±0.8 (-8.4)``), and ``data``
    gains ``<key>_std``, ``n_runs`` and ``train_seeds`` (only when some row has several).
    ``efficiency``: ``vssbench profile`` records whose params, params_dead, params_inference,
    gmacs_per_frame, fps and fps_protocol replace the rows' own (:func:`_with_efficiency`).
    """
    notes: list[str] = []
    rows = _row_groups(records, notes)
    labels = [f"{method_label(str(r['method']), variant_of(r))} ({r['backbone']})" for r in rows]
    efficiency_notes: list[str] = []
    if efficiency is not None:
        rows = _with_efficiency(rows, labels, efficiency, efficiency_notes)
    seeded = any(len(_replicates(r)) > 1 for r in rows)
    marks = _flag_rows(rows, labels, notes)
    digits_of = _digits_by_column(rows, MAIN_COLUMNS)
    display, data = [], []
    missing_base = []
    contended: list[tuple[str, float | None]] = []
    for i, (r, mark) in enumerate(zip(rows, marks)):
        method, backbone, variant = str(r["method"]), str(r["backbone"]), variant_of(r)
        base = counterpart(r, rows)
        mtype = method_type(method)
        if base is None and mtype != "Image":
            missing_base.append(labels[i])
        name = method_label(method, variant) + (f" {mark}" if mark else "")
        drow = {"Methods": name, "Backbone": backbone_label(backbone), "Type": mtype.replace("&", " & ")}
        nrow: dict[str, Any] = {
            "method": method,
            "backbone": backbone,
            "variant": variant,
            "type": mtype,
            "random_init": bool(r.get("random_init")),
            "conditions_hash": r.get("conditions_hash"),
            "flags": mark,
        }
        for header, key, scale, _ in MAIN_COLUMNS:
            digits = digits_of[key]
            ours = _value(r, key, scale)
            text = _cell(ours, digits)
            sd = _spread(r, key, scale) if key in SPREAD_KEYS else None
            if sd is not None and ours is not None:
                text += f" ±{sd:.{digits}f}"
            nrow[key] = ours
            if key == "fps":
                text = _contended_cell(text, r, labels[i], contended)
                nrow["fps_contended"] = fps_contended(r)[0]
            if key == "params":
                nrow["params_dead"] = _value(r, "params_dead", scale)
                nrow["params_inference"] = _value(r, "params_inference", scale)
            if base is not None and mtype != "Image":
                ref = _value(base, key, scale)
                if ours is not None and ref is not None:
                    delta = ours - ref
                    nrow[f"{key}_delta"] = delta
                    interval = (ci or {}).get((i, key))
                    if interval is not None:
                        text += f" ({interval.format(scale=scale, digits=digits)})"
                        nrow[f"{key}_ci_low"] = interval.low * scale
                        nrow[f"{key}_ci_high"] = interval.high * scale
                    else:
                        text += f" ({signed(delta, digits)})"
            if with_paper:
                pv = None if variant else paper.paper_value("table1", method, backbone, key)
                text = _with_paper(text, pv, digits, column=key not in NOT_IN_PAPER)
                nrow[f"{key}_paper"] = pv
            drow[header] = text
        if seeded:
            _seed_columns(nrow, r, MAIN_COLUMNS)
        display.append(drow)
        data.append(nrow)
    if missing_base:
        notes.append(
            "no SegFormer on the same backbone under the same conditions, so no delta: "
            + ", ".join(missing_base)
        )
    if contended:
        notes.append(contended_note(contended))
    params_note = _params_note(rows, labels)
    if params_note:
        notes.append(params_note)
    seeds_note = _seeds_note(rows, labels)
    if seeds_note:
        notes.append(seeds_note)
    notes.extend(efficiency_notes)
    if with_paper:
        notes.append(f"cells read 'ours | paper' (the paper's Table 1); {PAPER_MARKS_NOTE}")
        notes.append(paper.FPS_NOTE)
        notes.append(paper.PARAMS_NOTE)
    if ci and seeded:
        notes.append(
            "deltas: A - SegFormer [95% bootstrap interval over seeds (paired by train_seed), then videos]"
        )
    elif ci:
        notes.append("deltas: A - SegFormer [95% paired-bootstrap interval over videos]")
    headers = ["Methods", "Backbone", "Type"] + [c[0] for c in MAIN_COLUMNS]
    return ReportTable(
        title="Main results (TFC paper, Table 1 layout)",
        frame=pd.DataFrame(display, columns=headers),
        data=pd.DataFrame(data),
        notes=notes,
        group_column="Backbone",
        text_columns=("Methods", "Backbone", "Type"),
    )


#: Record keys that :func:`main_table`'s ``efficiency`` records supply.
EFFICIENCY_KEYS: tuple[str, ...] = (
    "params",
    "params_dead",
    "params_inference",
    "gmacs_per_frame",
    "fps",
    "fps_protocol",
)
#: How a profile record's ``profile_frames`` reads in the sizes note.
PROFILE_FRAMES = {"video": "on a rendered synthetic video", "random": "on random images"}


def profile_for(row: Mapping[str, Any], profiles: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The profile record (``kind`` "profile", no error) of a row: the same method, backbone
    and :func:`variant_of`; among several, one whose ``checkpoint_sha256`` is one of the row's
    replicates', then the latest ``created``. None when none matches."""
    candidates = [
        p
        for p in profiles
        if p.get("kind") == "profile"
        and not p.get("error")
        and p.get("method") == row.get("method")
        and p.get("backbone") == row.get("backbone")
        and variant_of(p) == variant_of(row)
    ]
    shas = {r.get("checkpoint_sha256") for r in _replicates(row)} - {None}
    pool = [p for p in candidates if p.get("checkpoint_sha256") in shas] or candidates
    return max(pool, key=lambda p: str(p.get("created") or "")) if pool else None


#: The costs a profile record gives a run record (:func:`with_profile_costs`).
COST_KEYS: tuple[str, ...] = (*EFFICIENCY_KEYS, "gmacs_keyframe", "gmacs_nonkeyframe", "input_size")


def with_profile_costs(
    records: Sequence[Mapping[str, Any]], profiles: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each record with its params, GMACs and FPS (and the size they were measured at) taken from
    its :func:`profile_for` record; a record without one keeps its own."""
    out = []
    for r in records:
        match = profile_for(r, profiles)
        out.append(dict(r) if match is None else {**r, **{k: match.get(k) for k in COST_KEYS}})
    return out


def _with_efficiency(
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    efficiency: Sequence[Mapping[str, Any]],
    notes: list[str],
) -> list[Mapping[str, Any]]:
    """Rows whose :data:`EFFICIENCY_KEYS` come from their :func:`profile_for` record (None
    without one: the cells read '-'), with notes naming rows without one and the sizes each
    group of columns was measured at."""
    out: list[Mapping[str, Any]] = []
    missing, used = [], []
    for r, label in zip(rows, labels):
        match = profile_for(r, efficiency)
        row = {**r, **{k: None if match is None else match.get(k) for k in EFFICIENCY_KEYS}}
        if "_std" in r:
            row["_std"] = {k: v for k, v in r["_std"].items() if k not in EFFICIENCY_KEYS}
        out.append(row)
        if match is None:
            missing.append(label)
        elif all(match is not u for u in used):
            used.append(match)
    if missing:
        notes.append(f"no profile record, so Params, FPS and GMACs/frame read '-': {', '.join(missing)}")
    runs = [x for r in rows for x in _replicates(r)]
    splits = sorted({str(_config_value(x, "split")) for x in runs if _config_value(x, "split")})
    accuracy = f"accuracy (mIoU, mVC8, mVC16): {'/'.join(splits) or 'evaluation'} videos" + _at(runs)
    cost = "Params, FPS, GMACs/frame: `vssbench profile`" + _at(used)
    frames = sorted({str(p["profile_frames"]) for p in used if p.get("profile_frames")})
    if frames:
        cost += " " + " / ".join(PROFILE_FRAMES.get(f, f"on {f} frames") for f in frames)
    seeds = [train_seed(p) for p in used if train_seed(p) is not None]
    if seeds:
        cost += f" (weights of train_seed {seeds_text(sorted(set(seeds)))})"
    notes.append(f"{accuracy}; {cost}")
    return out


def _config_value(record: Mapping[str, Any], key: str) -> Any:
    config = record.get("config")
    return record.get(key, config.get(key) if isinstance(config, Mapping) else None)


def _at(records: Sequence[Mapping[str, Any]]) -> str:
    """`` at 96x160`` (the records' ``input_size``s, [H, W]); empty when none says."""
    sizes = []
    for r in records:
        size = r.get("input_size")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            text = f"{size[0]}x{size[1]}"
            if text not in sizes:
                sizes.append(text)
    return f" at {', '.join(sizes)}" if sizes else ""


def counterpart(record: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """SegFormer (default options) on the record's backbone under the same conditions, or None."""
    for r in rows:
        if (
            r.get("method") == "segformer"
            and r.get("backbone") == record.get("backbone")
            and variant_of(r) == ""
            and r is not record
            and compare_records([r, record])["same"]
            and r.get("conditions_hash") == record.get("conditions_hash")
        ):
            return r
    return None


def main_table_ci(
    records: Sequence[Mapping[str, Any]], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[dict[tuple[int, str], Any], list[str]]:
    """Bootstrap intervals of every accuracy delta of :func:`main_table` (rows in its order).

    Two rows of one run each: :func:`~vssbench.reports.stats.compare_runs` (paired over
    videos). Rows of several replicates: :func:`~vssbench.reports.stats.compare_groups`
    (over seeds paired by train_seed, then videos); replicates without a partner are left out
    with a note. Returns ({(row index, metric key): Interval}, notes for rows whose run folders
    could not be compared, e.g. a missing ``videos.jsonl``).
    """
    scratch: list[str] = []
    rows = _row_groups(records, scratch)
    out: dict[tuple[int, str], Any] = {}
    notes: list[str] = []
    metrics = ("mIoU", "mVC8", "mVC16")
    for i, r in enumerate(rows):
        base = counterpart(r, rows)
        if base is None or method_type(str(r["method"])) == "Image" or r.get("kind", "run") != "run":
            continue
        runs_a, runs_b = _replicates(r), _replicates(base)
        try:
            if len(runs_a) == 1 and len(runs_b) == 1:
                intervals = compare_runs(r["_dir"], base["_dir"], metrics, samples, seed, level)
            else:
                result = compare_groups(
                    [x["_dir"] for x in runs_a], [x["_dir"] for x in runs_b], metrics, samples, seed, level
                )
                intervals = result.intervals
                if result.left_out:
                    notes.append(
                        f"interval of {r['method']}-{r['backbone']} over the train_seeds both rows have; "
                        f"left out (no partner): {', '.join(result.left_out)}"
                    )
        except (VssbenchError, KeyError) as exc:
            notes.append(f"no interval for {r['method']}-{r['backbone']}: {exc}")
            continue
        for metric, interval in intervals.items():
            out[(i, metric)] = interval
    return out, notes


# ---------------------------------------------------------------------------------------------
# Table 2


#: Setups that are the same model under another name: TFC with neither interpolation nor an
#: update is Feature Reuse.
ALIASES: dict[tuple[str, str], tuple[str, str]] = {("tfc", "interp=none,update=none"): ("feature_reuse", "")}


def ablation_table(records: Sequence[Mapping[str, Any]], with_paper: bool = False) -> ReportTable:
    """Table 2 from records: its groups (interpolation, sparse MSDA / flow, similarity level,
    focal loss, frame interval), per backbone, each with its baseline row.

    A record belongs to a row when its method and :func:`variant_of` match the row's (TFC with
    ``interp=none,update=none`` counts as Feature Reuse). Rows without a record are left out;
    a record that matches no row is not shown. Conditions are compared ignoring ``interval``
    (the interval group varies it on purpose). ``with_paper`` appends the paper's numbers
    (MiT-B0 only). A row's replicates (seeds) make one row of means, as in :func:`main_table`.
    """
    notes: list[str] = []
    usable = _row_groups(records, notes)
    seeded = any(len(_replicates(r)) > 1 for r in usable)
    index: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for r in usable:
        key = (str(r["method"]), variant_of(r))
        key = ALIASES.get(key, key)
        index.setdefault((key[0], key[1], str(r["backbone"])), r)
    backbones = sorted(
        {str(r["backbone"]) for r in usable},
        key=lambda b: (BACKBONE_ORDER.index(b) if b in BACKBONE_ORDER else 9, b),
    )
    chosen: list[tuple[str, str, str, str, str, Mapping[str, Any]]] = []
    for backbone in backbones:
        for group, rows in paper.TABLE2_GROUPS:
            for label, method, variant, *_ in rows:
                r = index.get((method, variant, backbone))
                if r is not None:
                    chosen.append((group, label, method, variant, backbone, r))
    labels = [f"{g}: {label} ({b})" for g, label, _, _, b, _ in chosen]
    unique: list[Mapping[str, Any]] = []
    for *_, r in chosen:
        if all(r is not u for u in unique):
            unique.append(r)
    marks_by_id = dict(
        zip(
            (id(u) for u in unique),
            _flag_rows(
                unique,
                [next(lab for lab, c in zip(labels, chosen) if c[5] is u) for u in unique],
                notes,
                ignore=("interval",),
            ),
        )
    )
    weights = _weights_column(unique)
    display, data = [], []
    columns: tuple[tuple[str, str, float, int | None], ...] = (
        ("mIoU", "mIoU", 100.0, 1),
        ("mVC8", "mVC8", 100.0, 1),
        ("mVC16", "mVC16", 100.0, 1),
        ("GMACs/frame", "gmacs_per_frame", 1.0, None),
    )
    digits_of = _digits_by_column(unique, columns)
    for group, label, method, variant, backbone, r in chosen:
        mark = marks_by_id[id(r)]
        drow = {
            "Group": group,
            "Methods": label + (f" {mark}" if mark else ""),
            "Backbone": backbone_label(backbone),
            "Weights": weights[id(r)],
        }
        nrow: dict[str, Any] = {
            "group": group,
            "row": label,
            "method": method,
            "variant": variant,
            "backbone": backbone,
            "flags": mark,
            "conditions_hash": r.get("conditions_hash"),
            "weights": weights[id(r)],
            "checkpoint_sha256": r.get("checkpoint_sha256"),
        }
        for header, key, scale, _ in columns:
            digits = digits_of[key]
            ours = _value(r, key, scale)
            text = _cell(ours, digits)
            sd = _spread(r, key, scale) if key in SPREAD_KEYS else None
            if sd is not None and ours is not None:
                text += f" ±{sd:.{digits}f}"
            nrow[key] = ours
            if with_paper:
                pv = (
                    paper.paper_value("table2", method, backbone, key, variant, group)
                    if backbone == "b0"
                    else None
                )
                text = _with_paper(text, pv, digits, column=key not in NOT_IN_PAPER)
                nrow[f"{key}_paper"] = pv
            drow[header] = text
        if seeded:
            _seed_columns(nrow, r, columns)
        display.append(drow)
        data.append(nrow)
    if not chosen:
        notes.append(
            "no record matches a row of Table 2 "
            "(see `vssbench table ablation --help` for the options of each row)"
        )
    if any(w.startswith("shared") for w in weights.values()):
        notes.append(
            "Weights: 'own' rows were trained with their setting; 'shared: X' rows evaluate the weights "
            "trained for X (the same checkpoint sha256) with an inference-time change, such as the frame "
            "interval"
        )
    seeds_note = _seeds_note(
        unique,
        [f"{method_label(str(u['method']), variant_of(u))} ({u['backbone']})" for u in unique],
        deltas=False,
    )
    if seeds_note:
        notes.append(seeds_note)
    if with_paper:
        notes.append(f"cells read 'ours | paper' (the paper's Table 2, MiT-B0); {PAPER_MARKS_NOTE}")
    headers = ["Group", "Methods", "Backbone", "Weights"] + [c[0] for c in columns]
    return ReportTable(
        title="Ablations (TFC paper, Table 2 layout)",
        frame=pd.DataFrame(display, columns=headers),
        data=pd.DataFrame(data),
        notes=notes,
        group_column="Group",
        text_columns=("Group", "Methods", "Backbone", "Weights"),
    )


def _weights_column(records: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Per row (by ``id``): "own", "shared: <the setup trained for these weights>", or "-"
    without a checkpoint.

    Rows with the same ``checkpoint_sha256`` (any of their replicates') evaluate one trained
    model. Its owner is the row run at the method's default interval (the setting it was trained
    for), else the first; a row owning none of its replicates' weights is "shared".
    """
    shas_of = {
        id(r): list(
            dict.fromkeys(str(x["checkpoint_sha256"]) for x in _replicates(r) if x.get("checkpoint_sha256"))
        )
        for r in records
    }
    by_sha: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        for sha in shas_of[id(r)]:
            by_sha.setdefault(sha, []).append(r)
    out: dict[int, str] = {}
    for r in records:
        if not shas_of[id(r)]:
            out[id(r)] = "-"
            continue
        owners = []
        for sha in shas_of[id(r)]:
            group = by_sha[sha]
            at_default = [g for g in group if "interval=" not in variant_of(g)]
            owners.append((at_default or group)[0])
        other = next((o for o in owners if o is not r), None)
        if other is None:
            out[id(r)] = "own"
        else:
            out[id(r)] = "shared: " + method_label(str(other["method"]), variant_of(other))
    return out


# ---------------------------------------------------------------------------------------------
# Table 3


def read_speed_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``bench_sparse_msda.py`` CSV; a missing column raises :class:`DataError` naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a readable CSV ({exc})") from None
    for column in ("what", "backbone", "share", "median_ms"):
        if rows and column not in rows[0]:
            raise DataError(path, f"missing column {column!r} (not a bench_sparse_msda.py result)")
    return rows


def speed_table(
    csv_rows: Sequence[Mapping[str, str]] = (),
    records: Sequence[Mapping[str, Any]] = (),
    with_paper: bool = False,
    core: str | None = None,
) -> ReportTable:
    """Table 3: sparse MSDA per share of points against MiT stages 3-4, and records' FPS.

    From the benchmark CSV: ``mit_stages_3_4`` rows per backbone (FPS = 1000 / median ms) and
    ``sparse_msda`` rows of one sampling ``core`` (default ``embedding_bag`` when present) per
    share, whose time includes ``msda_value_proj`` (the dense value projection of levels 1-2,
    paid once per non-keyframe whatever the share). The MSDA layer is the same for every
    backbone (d = 256), so the paper's MiT-B0 rows are its match. From records: per-interval
    FPS of each method x backbone (``vssbench profile`` or ``run``).
    """
    notes: list[str] = []
    display, data = [], []
    contended: list[tuple[str, float | None]] = []

    def add(
        section: str, label: str, ms: float | None, fps: float | None, pv: float | None, meta: dict
    ) -> None:
        fps_text = _cell(fps, 1)
        if meta.get("what") == "record":
            fps_text = _contended_cell(fps_text, meta.pop("record"), label, contended)
        drow = {"Section": section, "Methods": label, "Time (ms)": _cell(ms, 1), "FPS (f/s)": fps_text}
        if with_paper:
            drow["FPS (f/s)"] = _with_paper(drow["FPS (f/s)"], pv)
        display.append(drow)
        data.append({"section": section, "row": label, "ms": ms, "fps": fps, "fps_paper": pv, **meta})

    if csv_rows:
        cores = [r.get("core") for r in csv_rows if r.get("what") == "sparse_msda" and r.get("core")]
        use = core or ("embedding_bag" if "embedding_bag" in cores else (cores[0] if cores else None))
        proj = [float(r["median_ms"]) for r in csv_rows if r.get("what") == "msda_value_proj"]
        proj_ms = proj[0] if proj else 0.0
        stages = sorted(
            (r for r in csv_rows if r.get("what") == "mit_stages_3_4"),
            key=lambda r: BACKBONE_ORDER.index(r["backbone"]) if r["backbone"] in BACKBONE_ORDER else 9,
        )
        for r in stages:
            ms = float(r["median_ms"])
            pv = paper.paper_value("table3", "mit_stages_3_4", r["backbone"], "fps") if with_paper else None
            add(
                "SegFormer (MiT stages 3-4)",
                backbone_label(r["backbone"]),
                ms,
                1000.0 / ms,
                pv,
                {"what": "mit_stages_3_4", "backbone": r["backbone"], "share": None},
            )
        sparse = sorted(
            (r for r in csv_rows if r.get("what") == "sparse_msda" and r.get("core") == use),
            key=lambda r: float(r["share"]),
        )
        for r in sparse:
            share = float(r["share"])
            ms = float(r["median_ms"]) + proj_ms
            pv = (
                paper.paper_value("table3", "sparse_msda", "b0", "fps", f"share={share:g}")
                if with_paper
                else None
            )
            add(
                "Sparse MSDA (d=256, any backbone)",
                f"{share:.0%} of points",
                ms,
                1000.0 / ms,
                pv,
                {"what": "sparse_msda", "backbone": "any", "share": share, "core": use},
            )
        if sparse:
            notes.append(
                f"sparse MSDA times include the value projection of levels 1-2 ({proj_ms:.1f} ms); "
                f"sampling core: {use}"
            )
        first = csv_rows[0]
        machine = ", ".join(
            f"{k} {first[k]}" for k in ("device", "cpu", "threads", "torch", "size", "date") if first.get(k)
        )
        if machine:
            notes.append(
                f"benchmark machine: {machine}"
                + (f", load average {first['loadavg_1min']}" if first.get("loadavg_1min") else "")
            )
    usable = _usable(records, notes) if records else []
    for r in usable:
        fps = _value(r, "fps", 1.0)
        pv = (
            paper.paper_value("table1", str(r["method"]), str(r["backbone"]), "fps")
            if with_paper and not variant_of(r)
            else None
        )
        add(
            f"Per-interval FPS ({r.get('kind', 'run')} records)",
            f"{method_label(str(r['method']), variant_of(r))} {backbone_label(str(r['backbone']))}",
            None if fps is None else 1000.0 / fps,
            fps,
            pv,
            {
                "what": "record",
                "backbone": r["backbone"],
                "method": r["method"],
                "device": r.get("device"),
                "fps_contended": fps_contended(r)[0],
                "record": r,
            },
        )
    if contended:
        notes.append(contended_note(contended))
    if usable:
        devices = sorted({str(r.get("device")) for r in usable})
        notes.append(
            f"records measured on: {'; '.join(devices)} (time = ms per frame over one keyframe interval)"
        )
    if with_paper:
        notes.append(
            "cells read 'ours | paper' (the paper's Table 3 on one A100; records: Table 1); "
            f"'{PAPER_NO_ROW}': the paper has no such row"
        )
        notes.append(paper.FPS_NOTE)
    headers = ["Section", "Methods", "Time (ms)", "FPS (f/s)"]
    return ReportTable(
        title="Sparse MSDA inference speed (TFC paper, Table 3 layout)",
        frame=pd.DataFrame(display, columns=headers),
        data=pd.DataFrame(data),
        notes=notes,
        group_column="Section",
        text_columns=("Section", "Methods"),
    )


# ---------------------------------------------------------------------------------------------
# Renderers


def _aligned(table: ReportTable, column: str) -> str:
    return "l" if column in table.text_columns else "r"


def to_markdown(table: ReportTable) -> str:
    """GitHub-flavoured markdown: the table (``|`` in cells escaped) and the notes below it."""
    headers = list(table.frame.columns)

    def esc(text: Any) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |"]
    lines.append("|" + "|".join(":---" if _aligned(table, h) == "l" else "---:" for h in headers) + "|")
    for _, row in table.frame.iterrows():
        lines.append("| " + " | ".join(esc(row[h]) for h in headers) + " |")
    if table.notes:
        lines.append("")
        lines.extend(f"- {esc(n)}" for n in table.notes)
    return "\n".join(lines) + "\n"


def to_csv(table: ReportTable) -> str:
    """The numbers (display units: percent, M, f/s, GMACs), one row per table row; no notes."""
    return table.data.to_csv(index=False, lineterminator="\n")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "†": r"$^{\dagger}$",
    "±": r"$\pm$",
    "‡": r"$^{\ddagger}$",
    "|": r"$|$",
}


def latex_escape(text: str) -> str:
    """Escape text for LaTeX (pdfLaTeX-safe: ``x̂^l`` becomes ``$\\hat{x}^{l}$``, ``†`` a math dagger,
    ``±`` ``$\\pm$``)."""
    out = []
    i = 0
    while i < len(text):
        if text.startswith("x̂^", i) and i + 3 < len(text):
            out.append(rf"$\hat{{x}}^{{{text[i + 3]}}}$")
            i += 4
            continue
        ch = text[i]
        out.append(_LATEX_SPECIAL.get(ch, ch))
        i += 1
    return "".join(out)


def to_latex(table: ReportTable, label: str | None = None) -> str:
    """A ``booktabs`` table environment (\\toprule, \\midrule, \\bottomrule; a \\midrule between
    groups) with the title as caption and the notes below the tabular."""
    headers = list(table.frame.columns)
    spec = "".join(_aligned(table, h) for h in headers)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(table.title)}}}"]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in headers) + r" \\",
        r"\midrule",
    ]
    previous = None
    for _, row in table.frame.iterrows():
        group = row[table.group_column] if table.group_column else None
        if previous is not None and group != previous:
            lines.append(r"\midrule")
        previous = group
        lines.append(" & ".join(latex_escape(str(row[h])) for h in headers) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip\footnotesize")
        lines.append(r"\\ ".join(latex_escape(n) for n in table.notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: ReportTable) -> str:
    """An HTML ``<table>`` (escaped) with a caption and the notes as a list below."""
    body = table.frame.to_html(index=False, escape=True, border=0)
    caption = f"<caption>{html.escape(table.title)}</caption>"
    body = body.replace(">\n  <thead>", f">\n  {caption}\n  <thead>", 1)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return body + (f"\n<ul>{notes}</ul>" if notes else "") + "\n"


def render(table: ReportTable, fmt: str) -> str:
    """Render in ``fmt`` (md, csv, latex, html)."""
    renderers = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html}
    if fmt not in renderers:
        raise OptionError(f"unknown table format {fmt!r}; available: {', '.join(FORMATS)}")
    return renderers[fmt](table)


__all__ = [
    "COST_KEYS",
    "ALIASES",
    "EFFICIENCY_KEYS",
    "FORMATS",
    "MAIN_COLUMNS",
    "MEAN_KEYS",
    "PAPER_NO_COLUMN",
    "PAPER_NO_ROW",
    "ReportTable",
    "ablation_table",
    "backbone_label",
    "column_digits",
    "counterpart",
    "find_record_files",
    "latex_escape",
    "load_records",
    "main_table",
    "main_table_ci",
    "method_label",
    "method_type",
    "profile_for",
    "with_profile_costs",
    "read_speed_csv",
    "render",
    "speed_table",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
    "variant_of",
]
