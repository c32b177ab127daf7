"""The TFC paper's published numbers as data (Lin et al., AAAI 2024, Tables 1-3 and Sec. 4.2).

Every number is one :class:`PaperValue`: the source table, the row as printed, the row as
vssbench names it (method, backbone, variant), the column and the value as printed (accuracy
in percent, parameters in millions, FPS in frames/s, GFLOPs per non-keyframe). Tables show them
beside measured values (``--with-paper``), the harness's paper profile puts Sec. 4.2's GFLOPs
beside measured GMACs, and tests check which rows they belong to. Pure data: it imports nothing
of vssbench, so any layer may read it.

A *variant* is a canonical string of the options that differ from the method's defaults
(``""`` for the default setup; e.g. ``"interp=hard,update=none"``, ``"interval=6"``); see
:func:`vssbench.reports.tables.variant_of`. Table 2's rows are all MiT-B0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: Paper Table 1's method names, in its row order within a backbone group.
METHOD_LABELS: dict[str, str] = {
    "segformer": "SegFormer",
    "tfc": "SegFormer + TFC",
    "feature_reuse": "SegFormer + Feature Reuse",
    "tdnet": "SegFormer + TDNet",
    "mrcfa": "SegFormer + MRCFA",
    "cffm": "SegFormer + CFFM",
}

#: Table 1's "Type" column, for methods that are not (yet) registered in this installation.
#: Registered methods take theirs from ``vssbench.methods.method_info(name).type``.
FALLBACK_TYPES: dict[str, str] = {
    "segformer": "Image",
    "tfc": "E&S",
    "feature_reuse": "E",
    "tdnet": "E",
    "mrcfa": "S",
    "cffm": "S",
}

#: Where the paper's FPS were measured. Table 1 does not name its GPU; Table 3 says A100.
FPS_NOTE = (
    "the paper's FPS were measured on its own GPU (Table 1 does not name it; Table 3: one A100) "
    "and are not comparable with FPS measured here"
)


#: What the paper's Params column counts, against ours (every parameter the model holds).
PARAMS_NOTE = (
    "the paper's Params count inconsistently: its MRCFA 5.2/16.2/84.5 are exactly our totals minus "
    "MRCFA's deco1..3 (three auxiliary classifiers, 95,604 parameters, dead at inference: "
    "5.19/16.23/84.52), while its TDNet 5.8 counts auxiliary heads that are dead at inference; "
    "this table counts every parameter, dead or not"
)


@dataclass(frozen=True)
class PaperValue:
    """One published number: ``table`` ("table1", "table2", "table3", "text"), ``group`` (Table 2's
    group or Table 3's section, else ""), ``row`` as printed, ``method``/``backbone``/``variant``
    in vssbench's names, ``column`` (a record key: mIoU, mVC8, mVC16, params, fps,
    gmacs_nonkeyframe; Table 3: fps) and ``value`` as printed (percent, M, f/s, GFLOPs)."""

    table: str
    group: str
    row: str
    method: str
    backbone: str
    variant: str
    column: str
    value: float


def _table1() -> list[PaperValue]:
    # Methods, Backbone, mIoU, mVC8, mVC16, Params (M), FPS  (Table 1, as printed)
    rows = [
        ("SegFormer", "segformer", "b0", 32.9, 82.7, 77.3, 3.8, 37.5),
        ("Segformer + TFC", "tfc", "b0", 32.9, 85.3, 80.0, 4.5, 38.2),
        ("SegFormer + Feature Reuse", "feature_reuse", "b0", 31.5, 84.3, 78.7, 3.8, 39.9),
        ("SegFormer + TDNet", "tdnet", "b0", 31.74, 83.4, 78.8, 5.8, 14.1),
        ("SegFormer + MRCFA", "mrcfa", "b0", 35.2, 88.0, 83.2, 5.2, 27.3),
        ("SegFormer + CFFM", "cffm", "b0", 35.4, 87.7, 82.9, 4.7, 30.3),
        ("SegFormer", "segformer", "b1", 36.5, 84.7, 79.9, 13.8, 34.9),
        ("Segformer + TFC", "tfc", "b1", 36.7, 86.8, 81.5, 14.5, 37.1),
        ("SegFormer + MRCFA", "mrcfa", "b1", 38.9, 88.8, 84.4, 16.2, 22.1),
        ("SegFormer + CFFM", "cffm", "b1", 38.5, 88.6, 84.1, 15.5, 21.5),
        ("SegFormer", "segformer", "b5", 48.2, 87.8, 83.7, 82.1, 26.2),
        ("Segformer + TFC", "tfc", "b5", 48.3, 90.5, 86.7, 82.8, 37.8),
        ("SegFormer + CFFM", "cffm", "b5", 49.3, 90.8, 87.1, 85.5, 20.0),
        ("SegFormer + MRCFA", "mrcfa", "b5", 49.9, 90.9, 87.4, 84.5, 23.0),
    ]
    out = []
    for row, method, backbone, *values in rows:
        for column, value in zip(("mIoU", "mVC8", "mVC16", "params", "fps"), values):
            out.append(PaperValue("table1", "", row, method, backbone, "", column, float(value)))
    # The differences to SegFormer that Table 1 prints in parentheses (TFC rows only). They come
    # from unrounded values: B1's mVC16 reads 81.5 (+1.5) against SegFormer's 79.9.
    deltas = [("b0", 2.6, 2.7, 0.7, 0.7), ("b1", 2.1, 1.5, 0.7, 2.2), ("b5", 2.7, 3.0, 0.7, 11.6)]
    for backbone, *values in deltas:
        for column, value in zip(("mVC8_delta", "mVC16_delta", "params_delta", "fps_delta"), values):
            out.append(PaperValue("table1", "", "Segformer + TFC", "tfc", backbone, "", column, float(value)))
    return out


#: Table 2's groups in printed order: (group, [(row, method, variant, mIoU, mVC8, mVC16)]).
#: The first row of each group is its baseline.
TABLE2_GROUPS: tuple[tuple[str, tuple[tuple[str, str, str, float, float, float], ...]], ...] = (
    (
        "Linear Interp.",
        (
            ("Feature reuse", "feature_reuse", "", 31.5, 84.3, 78.7),
            ("+ Linear interp.", "tfc", "update=none", 32.0, 85.0, 79.3),
            ("+ Hard interp.", "tfc", "interp=hard,update=none", 32.0, 83.7, 78.0),
            ("+ Fixed interp.", "tfc", "interp=fixed,update=none", 31.0, 85.9, 80.5),
        ),
    ),
    (
        "Sparse MSDA",
        (
            ("Feature reuse", "feature_reuse", "", 31.5, 84.3, 78.7),
            ("+ Sparse MSDA (0.8)", "tfc", "interp=none", 32.7, 84.2, 78.7),
            ("+ Sparse MSDA (1.0)", "tfc", "interp=none,threshold=1.0", 33.8, 79.0, 74.3),
            ("+ Sparse MSDA (0.5)", "tfc", "interp=none,threshold=0.5", 31.9, 84.3, 79.0),
            ("+ Flow-guided Warping", "tfc", "interp=none,update=flow", 32.7, 81.0, 75.0),
        ),
    ),
    (
        "Cosine Similarity",
        (
            ("x̂^2", "tfc", "", 32.9, 85.3, 80.0),
            ("x̂^1", "tfc", "similarity_level=1", 31.6, 84.5, 79.0),
        ),
    ),
    (
        "Focal Loss",
        (
            ("With Focal Loss", "tfc", "", 32.9, 85.3, 80.0),
            ("Without Focal Loss", "tfc", "focal=false", 32.1, 83.1, 77.7),
        ),
    ),
    (
        "Frame Interval",
        (
            ("Interval 4", "tfc", "", 32.9, 85.3, 80.0),
            ("Interval 5", "tfc", "interval=5", 32.9, 85.8, 80.1),
            ("Interval 6", "tfc", "interval=6", 32.8, 85.8, 80.4),
            ("Interval 7", "tfc", "interval=7", 32.7, 86.0, 80.7),
            ("Interval 8", "tfc", "interval=8", 32.6, 86.4, 80.9),
            ("Interval 9", "tfc", "interval=9", 32.4, 86.6, 81.1),
        ),
    ),
)


def _table2() -> list[PaperValue]:
    out = []
    for group, rows in TABLE2_GROUPS:
        for row, method, variant, *values in rows:
            for column, value in zip(("mIoU", "mVC8", "mVC16"), values):
                out.append(PaperValue("table2", group, row, method, "b0", variant, column, float(value)))
    return out


#: Table 3 (A100): SegFormer's last two MiT stages per backbone, sparse MSDA per share of points.
TABLE3_ROWS: tuple[tuple[str, str, str, float | None, float], ...] = (
    # (group, row, backbone, share of points updated (None: stages 3-4), FPS)
    ("SegFormer", "MiT-B0", "b0", None, 342.3),
    ("SegFormer", "MiT-B1", "b1", None, 319.1),
    ("SegFormer", "MiT-B5", "b5", None, 31.7),
    ("Sparse MSDA", "MiT-B0 (20%)", "b0", 0.2, 522.9),
    ("Sparse MSDA", "MiT-B0 (40%)", "b0", 0.4, 455.5),
    ("Sparse MSDA", "MiT-B0 (100%)", "b0", 1.0, 302.6),
)


def _table3() -> list[PaperValue]:
    out = []
    for group, row, backbone, share, fps in TABLE3_ROWS:
        method = "mit_stages_3_4" if share is None else "sparse_msda"
        variant = "" if share is None else f"share={share:g}"
        out.append(PaperValue("table3", group, row, method, backbone, variant, "fps", fps))
    return out


def _text() -> list[PaperValue]:
    # Sec. 4.2: "our method's GFLOPs with B0 vs MiT-B0 at non-keyframes is: 6.4 vs 6.8 ...
    # B5 vs MiT-B5 at non-keyframes is: 53.2 vs 95.7" (the paper's GFLOPs; TFC vs SegFormer).
    rows = [("tfc", "b0", 6.4), ("segformer", "b0", 6.8), ("tfc", "b5", 53.2), ("segformer", "b5", 95.7)]
    return [
        PaperValue(
            "text", "Sec. 4.2", f"{METHOD_LABELS[m]} MiT-{b.upper()}", m, b, "", "gmacs_nonkeyframe", v
        )
        for m, b, v in rows
    ]


#: Every published number of Tables 1-3 and the GFLOPs of Sec. 4.2.
PAPER_VALUES: tuple[PaperValue, ...] = tuple(_table1() + _table2() + _table3() + _text())


def paper_value(
    table: str, method: str, backbone: str, column: str, variant: str = "", group: str | None = None
) -> float | None:
    """The paper's number for a row and column, or ``None`` when the paper has no such row.

    ``table`` is "table1", "table2", "table3" or "text"; ``group`` narrows Table 2 to one group
    (the same setup appears in several groups with the same numbers).
    """
    for v in PAPER_VALUES:
        if (
            v.table == table
            and v.method == method
            and v.backbone == backbone
            and v.variant == variant
            and v.column == column
            and (group is None or v.group == group)
        ):
            return v.value
    return None


def paper_frame():  # -> pandas.DataFrame
    """All published numbers as a tidy DataFrame (one row per :class:`PaperValue`)."""
    # pandas only here: the harness reads these numbers without loading it.
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(v) for v in PAPER_VALUES])


__all__ = [
    "FALLBACK_TYPES",
    "FPS_NOTE",
    "METHOD_LABELS",
    "PARAMS_NOTE",
    "PAPER_VALUES",
    "TABLE2_GROUPS",
    "TABLE3_ROWS",
    "PaperValue",
    "paper_frame",
    "paper_value",
]
