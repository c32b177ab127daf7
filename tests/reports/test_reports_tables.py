"""Tables from hand-made records: values, deltas, rounding, grouping, missing rows, paper numbers,
condition flags, and the four output formats."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vssbench import paper
from vssbench.cli import main
from vssbench.reports.tables import (
    ablation_table,
    load_records,
    main_table,
    read_speed_csv,
    render,
    speed_table,
    to_latex,
    variant_of,
)

CONFIG = {
    "data": None,
    "split": "val",
    "max_videos": None,
    "resolution": [480, 853],
    "interval": 4,
    "device": "cpu",
}


def record(
    method: str, backbone: str = "b0", options: dict | None = None, interval: int = 4, **values: Any
) -> dict:
    """A minimal result record (fractions, params in units, the harness's condition fields)."""
    config = {**CONFIG, "interval": interval, **values.pop("config", {})}
    conditions = json.dumps(config, sort_keys=True)
    r = {
        "method": method,
        "backbone": backbone,
        "options": {"interval": interval, **(options or {})},
        "interval": interval,
        "kind": "run",
        "config": {**config, "method": method, "backbone": backbone},
        "conditions_hash": str(abs(hash(conditions)) % 10**12),
        "device": "cpu",
        "torch": "2.13",
        "threads": 2,
        "dtype": "float32",
        "world_size": 1,
        "random_init": False,
        "error": None,
        "mIoU": None,
        "mVC8": None,
        "mVC16": None,
        "params": None,
        "fps": None,
        "gmacs_per_frame": None,
    }
    r.update(values)
    return r


def test_main_table_values_deltas_rounding_and_grouping() -> None:
    records = [
        record(
            "tfc",
            "b1",
            mIoU=0.367,
            mVC8=0.868,
            mVC16=0.815,
            params=14_470_000,
            fps=37.1,
            gmacs_per_frame=20.0,
        ),
        record(
            "segformer",
            "b0",
            mIoU=0.32949,
            mVC8=0.82700,
            mVC16=0.7730,
            params=3_746_012,
            fps=37.5,
            gmacs_per_frame=14.22,
        ),
        record(
            "tfc",
            "b0",
            mIoU=0.32921,
            mVC8=0.85349,
            mVC16=0.80049,
            params=4_502_876,
            fps=38.2,
            gmacs_per_frame=9.5,
        ),
        record(
            "segformer",
            "b1",
            mIoU=0.365,
            mVC8=0.847,
            mVC16=0.799,
            params=13_710_000,
            fps=34.9,
            gmacs_per_frame=30.0,
        ),
        record(
            "feature_reuse",
            "b0",
            mIoU=0.315,
            mVC8=0.843,
            mVC16=0.787,
            params=3_746_012,
            fps=39.9,
            gmacs_per_frame=9.0,
        ),
    ]
    table = main_table(records)
    f = table.frame
    # grouped by backbone, Table 1's method order inside a group
    assert list(zip(f["Methods"], f["Backbone"])) == [
        ("SegFormer", "MiT-B0"),
        ("SegFormer + TFC", "MiT-B0"),
        ("SegFormer + Feature Reuse", "MiT-B0"),
        ("SegFormer", "MiT-B1"),
        ("SegFormer + TFC", "MiT-B1"),
    ]
    assert list(f["Type"]) == ["Image", "E & S", "E", "Image", "E & S"]
    # one decimal of percent; deltas from the unrounded values: 85.349 - 82.700 = 2.649 -> +2.6
    assert f.loc[0, "mIoU"] == "32.9" and f.loc[0, "mVC8"] == "82.7" and f.loc[0, "Params (M)"] == "3.7"
    assert f.loc[1, "mVC8"] == "85.3 (+2.6)"
    assert f.loc[1, "mVC16"] == "80.0 (+2.7)"  # 80.049 - 77.300 = 2.749
    assert f.loc[1, "mIoU"] == "32.9 (+0.0)"  # -0.028 rounds to zero: never "-0.0"
    assert f.loc[1, "Params (M)"] == "4.5 (+0.8)"  # 4.503 - 3.746 = 0.757
    assert f.loc[1, "FPS (f/s)"] == "38.2 (+0.7)"
    assert f.loc[2, "mVC8"] == "84.3 (+1.6)"
    assert f.loc[4, "mVC8"] == "86.8 (+2.1)" and f.loc[4, "FPS (f/s)"] == "37.1 (+2.2)"
    # numbers for CSV: percent, unrounded
    assert table.data.loc[1, "mVC8_delta"] == pytest.approx(2.649)
    assert not table.notes  # same conditions, trained rows: nothing to say


def test_main_table_missing_counterpart_and_rows_left_out() -> None:
    records = [
        record("tfc", "b5", mIoU=0.483, mVC8=0.905, mVC16=0.867),
        record("segformer", "b0", mIoU=0.33, mVC8=0.83, mVC16=0.77, config={"max_videos": 2}),
        record("tfc", "b0", mIoU=0.33, mVC8=0.85, mVC16=0.80),
        record("cffm", "b0", error="boom"),
    ]
    table = main_table(records)
    f = table.frame
    assert len(f) == 3  # the failed row is left out, nothing is invented
    assert "SegFormer + CFFM" not in set(f["Methods"])
    tfc_b0 = f[(f["Backbone"] == "MiT-B0") & f["Methods"].str.startswith("SegFormer + TFC")].iloc[0]
    assert tfc_b0["mVC8"].startswith("85.0") and "(" not in tfc_b0["mVC8"]  # other conditions: no delta
    assert any("left out (the run failed): cffm-b0" in n for n in table.notes)
    assert any("no SegFormer on the same backbone" in n and "(b5)" in n for n in table.notes)


def test_conditions_flagged_with_fields_and_random_init_marked() -> None:
    records = [
        record("segformer", mIoU=0.3, mVC8=0.8, mVC16=0.7),
        record("tfc", mIoU=0.3, mVC8=0.8, mVC16=0.7),
        record(
            "feature_reuse",
            mIoU=0.3,
            mVC8=0.8,
            mVC16=0.7,
            random_init=True,
            config={"resolution": [240, 427]},
        ),
    ]
    table = main_table(records)
    methods = list(table.frame["Methods"])
    assert methods == ["SegFormer", "SegFormer + TFC", "SegFormer + Feature Reuse *†"]
    flagged = [n for n in table.notes if n.startswith("†")]
    assert len(flagged) == 1 and "resolution (this row 240x427, the others 480x853)" in flagged[0]
    assert any(n.startswith("* randomly initialized") for n in table.notes)
    # a different device is a differing condition too (the environment is part of a row's conditions)
    records[1]["device"] = "cuda"
    assert "device (this row cuda, the others cpu)" in " ".join(main_table(records).notes)


def test_with_paper_puts_the_papers_numbers_on_the_right_rows() -> None:
    records = [
        record("segformer", "b5", mIoU=0.5, mVC8=0.9, mVC16=0.85, fps=10.0),
        record("tfc", "b1", mIoU=0.4, mVC8=0.9, mVC16=0.85),
        record("tfc", "b1", options={"threshold": 0.5}, mIoU=0.4, mVC8=0.9, mVC16=0.85),
        record("tdnet", "b0", mIoU=0.3, mVC8=0.8, mVC16=0.75),
    ]
    f = main_table(records, with_paper=True).frame.set_index("Methods")
    assert f.loc["SegFormer", "mIoU"] == "50.0 | 48.2"
    assert f.loc["SegFormer", "mVC16"] == "85.0 | 83.7"
    assert f.loc["SegFormer", "FPS (f/s)"] == "10.0 | 26.2"
    assert f.loc["SegFormer + TFC", "mVC8"] == "90.0 | 86.8"
    assert f.loc["SegFormer + TFC [threshold=0.5]", "mVC8"] == "90.0 | n/r"  # a variant is not Table 1's row
    assert f.loc["SegFormer + TDNet", "mIoU"] == "30.0 | 31.7"  # 31.74 in our column's one decimal
    assert f.loc["SegFormer + TDNet", "Type"] == "E"  # not registered here: the paper's fallback type
    notes = " ".join(main_table(records, with_paper=True).notes)
    assert "measured on its own GPU" in notes


def test_paper_data_is_complete_and_consistent() -> None:
    t1 = [v for v in paper.PAPER_VALUES if v.table == "table1"]
    assert len(t1) == 14 * 5 + 3 * 4  # 14 rows x 5 columns, and the TFC rows' 4 printed deltas
    assert paper.paper_value("table1", "tfc", "b0", "mVC8") == 85.3
    assert paper.paper_value("table1", "mrcfa", "b5", "params") == 84.5
    # Table 1's printed deltas agree with its values to within the rounding of both operands
    for b in ("b0", "b1", "b5"):
        for column in ("mVC8", "mVC16", "params", "fps"):
            printed = paper.paper_value("table1", "tfc", b, f"{column}_delta")
            diff = paper.paper_value("table1", "tfc", b, column) - paper.paper_value(
                "table1", "segformer", b, column
            )
            assert abs(printed - diff) <= 0.1 + 1e-9, (b, column)
    assert paper.paper_value("table2", "tfc", "b0", "mIoU", "interval=9") == 32.4
    assert paper.paper_value("table2", "tfc", "b0", "mVC8", "interp=none,threshold=1.0") == 79.0
    assert paper.paper_value("table3", "sparse_msda", "b0", "fps", "share=0.2") == 522.9
    assert paper.paper_value("text", "tfc", "b5", "gmacs_nonkeyframe") == 53.2
    assert len(paper.paper_frame()) == len(paper.PAPER_VALUES)


def test_variant_recognition() -> None:
    assert variant_of(record("tfc", options={"threshold": 0.8, "interp": "soft", "cache_fuse": False})) == ""
    assert (
        variant_of(record("tfc", options={"interp": "hard", "update": "none"})) == "interp=hard,update=none"
    )
    assert variant_of(record("tfc", options={"threshold": 1})) == "threshold=1.0"
    assert variant_of(record("tfc", options={"focal": "false"})) == "focal=false"
    assert variant_of(record("tfc", interval=7)) == "interval=7"
    assert (
        variant_of(record("not_registered", options={"anything": 1})) == ""
    )  # unknown defaults: only the interval
    assert variant_of(record("not_registered", options={"anything": 1}, interval=6)) == "interval=6"


def test_ablation_groups_rows_and_missing_variants() -> None:
    records = [
        record("feature_reuse", mIoU=0.315, mVC8=0.843, mVC16=0.787),
        record("tfc", mIoU=0.329, mVC8=0.853, mVC16=0.800),
        record("tfc", options={"interp": "hard", "update": "none"}, mIoU=0.32, mVC8=0.837, mVC16=0.78),
        record("tfc", options={"interp": "none", "threshold": 0.5}, mIoU=0.319, mVC8=0.843, mVC16=0.79),
        record("tfc", options={"focal": False}, mIoU=0.321, mVC8=0.831, mVC16=0.777),
        record("tfc", interval=6, mIoU=0.328, mVC8=0.858, mVC16=0.804),
        record("tfc", options={"keyframe": "adaptive"}, mIoU=0.3, mVC8=0.8, mVC16=0.7),  # in no group
    ]
    table = ablation_table(records, with_paper=True)
    rows = list(zip(table.frame["Group"], table.frame["Methods"]))
    assert rows == [
        ("Linear Interp.", "Feature reuse"),
        ("Linear Interp.", "+ Hard interp."),
        ("Sparse MSDA", "Feature reuse"),
        ("Sparse MSDA", "+ Sparse MSDA (0.5)"),
        ("Cosine Similarity", "x̂^2"),
        ("Focal Loss", "With Focal Loss"),
        ("Focal Loss", "Without Focal Loss"),
        ("Frame Interval", "Interval 4"),
        ("Frame Interval", "Interval 6"),
    ]
    f = table.frame
    assert f.loc[1, "mVC8"] == "83.7 | 83.7"
    assert f.loc[3, "mIoU"] == "31.9 | 31.9"
    assert f.loc[6, "mVC16"] == "77.7 | 77.7"
    assert f.loc[8, "mVC8"] == "85.8 | 85.8"
    # the interval group differs in `interval` on purpose: not flagged
    assert not any(n.startswith("†") for n in table.notes)


def test_ablation_says_which_rows_share_trained_weights() -> None:
    # The interval rows evaluate the default TFC's checkpoint; every learned variant has its own.
    records = [
        record("feature_reuse", checkpoint_sha256="f" * 64, mIoU=0.315, mVC8=0.843, mVC16=0.787),
        record("tfc", interval=6, checkpoint_sha256="a" * 64, mIoU=0.328, mVC8=0.858, mVC16=0.804),
        record("tfc", checkpoint_sha256="a" * 64, mIoU=0.329, mVC8=0.853, mVC16=0.800),
        record(
            "tfc", options={"focal": False}, checkpoint_sha256="b" * 64, mIoU=0.321, mVC8=0.831, mVC16=0.777
        ),
        record("tfc", interval=5, mIoU=0.3, mVC8=0.8, mVC16=0.7),  # no checkpoint (random init)
    ]
    table = ablation_table(records)
    weights = dict(zip(table.frame["Methods"], table.frame["Weights"]))
    assert weights["Interval 6"] == "shared: SegFormer + TFC"
    assert weights["Interval 4"] == weights["With Focal Loss"] == weights["Without Focal Loss"] == "own"
    assert weights["Feature reuse"] == "own" and weights["Interval 5"] == "-"
    assert any(note.startswith("Weights: 'own' rows") for note in table.notes)
    assert not any(n.startswith("Weights:") for n in ablation_table(records[2:4]).notes)  # nothing shared


def test_ablation_alias_tfc_without_modules_is_feature_reuse() -> None:
    table = ablation_table(
        [record("tfc", options={"interp": "none", "update": "none"}, mIoU=0.3, mVC8=0.8, mVC16=0.7)]
    )
    assert list(table.frame["Methods"]) == ["Feature reuse", "Feature reuse"]


def test_speed_table_from_benchmark_csv(tmp_path: Path) -> None:
    csv_path = tmp_path / "bench.csv"
    csv_path.write_text(
        "what,core,backbone,share,median_ms,device,cpu,threads\n"
        "msda_value_proj,,any,nan,10.0,cpu,X,2\n"
        "sparse_msda,embedding_bag,any,0.2,40.0,cpu,X,2\n"
        "sparse_msda,grid_sample,any,0.2,90.0,cpu,X,2\n"
        "sparse_msda,embedding_bag,any,1.0,190.0,cpu,X,2\n"
        "mit_stages_3_4,,b0,1.0,100.0,cpu,X,2\n"
    )
    table = speed_table(read_speed_csv(csv_path), with_paper=True)
    f = table.frame
    assert list(f["Methods"]) == ["MiT-B0", "20% of points", "100% of points"]
    assert list(f["Time (ms)"]) == ["100.0", "50.0", "200.0"]  # value projection added to each share
    assert list(f["FPS (f/s)"]) == ["10.0 | 342.3", "20.0 | 522.9", "5.0 | 302.6"]
    bad = tmp_path / "bad.csv"
    bad.write_text("what,share\nx,1\n")
    with pytest.raises(Exception, match="missing column 'backbone'"):
        read_speed_csv(bad)


def test_renderers_markdown_latex_html_csv() -> None:
    records = [
        record("segformer", mIoU=0.33, mVC8=0.827, mVC16=0.773, random_init=True),
        record("tfc", mIoU=0.33, mVC8=0.853, mVC16=0.80, random_init=True),
        record("segformer", "b1", mIoU=0.365, mVC8=0.847, mVC16=0.799),
    ]
    table = main_table(records, with_paper=True)
    md = render(table, "md")
    lines = md.splitlines()
    assert lines[0].startswith("| Methods | Backbone | Type | mIoU |")
    assert lines[1].startswith("|:---|:---|:---|---:|")
    assert all(
        len(re.findall(r"(?<!\\)\|", line)) == 10 for line in lines[2:5]
    )  # 9 cells; pipes in cells escaped
    assert "\\|" in lines[2]
    latex = to_latex(table)
    for word in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lllrrrrrr}", r"\end{tabular}"):
        assert word in latex
    assert _balanced(latex)
    body = latex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    assert body.count(r"\midrule") == 1  # one rule between the B0 and B1 groups
    rows = [line for line in latex.splitlines() if line.endswith(r"\\") and "&" in line]
    assert all(len(re.findall(r"(?<!\\)&", row)) == 8 for row in rows)  # 9 columns in every row
    assert r"E \& S" in latex and "$|$" in latex
    html = render(table, "html")
    assert html.count("<tr") == 4 and html.count("<td>") == 3 * 9 and "<caption>" in html and "<li>" in html
    csv_text = render(table, "csv")
    assert csv_text.splitlines()[0].startswith("method,backbone,variant,type")
    assert len(csv_text.splitlines()) == 4


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{}" and i > 0 and text[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", text)
    stack = []
    for kind, name in envs:
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return depth == 0 and not stack


def test_latex_escape_of_special_cells() -> None:
    table = ablation_table([record("tfc", mIoU=0.3, mVC8=0.8, mVC16=0.7)])
    latex = to_latex(table)
    assert r"$\hat{x}^{2}$" in latex and _balanced(latex)


def test_load_records_and_cli(tmp_path: Path) -> None:
    for i, r in enumerate(
        [
            record("segformer", mIoU=0.33, mVC8=0.827, mVC16=0.773),
            record("tfc", mIoU=0.33, mVC8=0.853, mVC16=0.8),
        ]
    ):
        d = tmp_path / "runs" / f"run{i}"
        d.mkdir(parents=True)
        (d / "record.json").write_text(json.dumps(r))
    records = load_records([tmp_path / "runs"])
    assert [r["method"] for r in records] == ["segformer", "tfc"] and records[0]["_dir"].endswith("run0")
    runner = CliRunner()
    out = tmp_path / "t.tex"
    result = runner.invoke(main, ["table", "main", str(tmp_path / "runs"), "--with-paper", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert r"\toprule" in out.read_text() and f"wrote {out}" in result.output
    result = runner.invoke(main, ["table", "ablation", str(tmp_path / "runs")])
    assert result.exit_code == 0 and "| Frame Interval | Interval 4 |" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "record.json").write_text("{not json")
    result = runner.invoke(main, ["table", "main", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "record.json: not a readable result record" in result.output
    (tmp_path / "bad" / "record.json").write_text(json.dumps({"backbone": "b0"}))
    result = runner.invoke(main, ["table", "main", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "record has no 'method'" in result.output
