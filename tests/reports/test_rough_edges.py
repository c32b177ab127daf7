"""What a new user hit in the report commands (issue #22) and the Params column (issue #20):
nested run folders, labelled condition differences, unknown plot keys, the paper's points on
the trade-off plot, the masks figure's grey and size, short help, significant digits, the paper's
marks, --out folders, contended FPS and dead parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from matplotlib.collections import PathCollection

from tests.reports.test_reports_plots import write_log
from tests.reports.test_reports_stats import shifted, states, write_run
from tests.reports.test_reports_tables import record
from vssbench import methods
from vssbench.cli import main
from vssbench.data import synthesize
from vssbench.models.checkpoint import save_checkpoint
from vssbench.reports import plots
from vssbench.reports.masks import load_mask_source, render_masks
from vssbench.reports.tables import main_table, render, speed_table

# ---------------------------------------------------------------------------------------------
# compare


def test_compare_descends_into_the_one_run_a_folder_holds(tmp_path: Path) -> None:
    # `vssbench reproduce` passes runs/<name> as --out, so each run sits one hash folder below it.
    a = states(8, 5)
    write_run(tmp_path / "runs" / "tfc-b0" / "tfc-b0-3fa2c1d0e9ab", a)
    write_run(
        tmp_path / "runs" / "segformer-b0" / "segformer-b0-77aa00bb11cc", [shifted(s, -0.02) for s in a]
    )
    result = CliRunner().invoke(
        main,
        [
            "compare",
            str(tmp_path / "runs" / "tfc-b0"),
            str(tmp_path / "runs" / "segformer-b0"),
            "--metric",
            "mVC8",
            "--samples",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mVC8    +2.0 [+2.0, +2.0]" in result.output
    assert f"A = {tmp_path / 'runs' / 'tfc-b0' / 'tfc-b0-3fa2c1d0e9ab'}" in result.output


def test_compare_a_folder_of_several_runs_names_them(tmp_path: Path) -> None:
    a = states(8, 4)
    write_run(tmp_path / "runs" / "tfc-b0-1", a)
    write_run(tmp_path / "runs" / "tfc-b0-2", a)
    result = CliRunner().invoke(
        main, ["compare", str(tmp_path / "runs"), str(tmp_path / "runs" / "tfc-b0-1")]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "holds 2 runs" in lines[0] and "tfc-b0-1" in lines[0] and "tfc-b0-2" in lines[0]


def test_compare_names_each_differing_condition_as_a_then_b(tmp_path: Path) -> None:
    a = states(8, 4)
    # sorted by value, resolution would read B first (480x853 < 96x160) and threads A first (1 < 2)
    run_a = write_run(tmp_path / "a", a, config={"resolution": [96, 160]}, threads=1)
    run_b = write_run(tmp_path / "b", a, conditions_hash="c2", config={"resolution": [480, 853]}, threads=2)
    result = CliRunner().invoke(main, ["compare", str(run_a), str(run_b)])
    assert result.exit_code == 2
    assert "resolution (A 96x160, B 480x853), threads (A 1, B 2)" in result.output


# ---------------------------------------------------------------------------------------------
# plot curves, tradeoff, masks, help


def test_curves_unknown_keys_exit_2_listing_the_keys_the_logs_have(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a", True)
    out = tmp_path / "c.png"
    result = CliRunner().invoke(
        main, ["plot", "curves", str(log), "--keys", "loss,val_bogus", "--out", str(out)]
    )
    assert result.exit_code == 2 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert "val_bogus" in line and "loss_bce, loss_seg, lr, mask_acc, val_mIoU" in line


def _tradeoff_records(contended: bool | None = None) -> list[dict]:
    rows = []
    for m, b, fps, g, vc, iou in [
        ("segformer", "b0", 31.9, 0.2222, 0.676, 0.534),
        ("tfc", "b0", 27.7, 0.2788, 0.719, 0.49),
        ("feature_reuse", "b0", 57.4, 0.1441, 0.708, 0.521),
    ]:
        r = {
            "method": m,
            "backbone": b,
            "fps": fps,
            "gmacs_per_frame": g,
            "mVC8": vc,
            "mIoU": iou,
            "options": {},
            "interval": 4,
            "device": "cpu (AMD EPYC, 2 threads of 2 cores)",
            "input_size": [96, 160],
            "resolution": [96, 160],
            "fps_protocol": {"interval": 4},
        }
        if contended is not None and m == "tfc":
            r["fps_protocol"] = {"interval": 4, "contended": contended, "cpu_share": 0.45}
        rows.append(r)
    return rows


def test_tradeoff_with_paper_on_gmacs_is_refused_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    for r in _tradeoff_records():
        (folder / r["method"]).mkdir(parents=True)
        (folder / r["method"] / "record.json").write_text(json.dumps(r))
    out = tmp_path / "t.png"
    args = ["plot", "tradeoff", str(folder), "--x", "gmacs_per_frame", "--with-paper", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert "--with-paper" in line and "no GMACs per frame" in line and "--x fps" in line


def test_tradeoff_puts_the_papers_gpu_fps_in_its_own_labelled_panel() -> None:
    fig = plots.tradeoff_figure(_tradeoff_records(), x="fps", with_paper=True)
    ours, theirs = [ax for ax in fig.axes if ax.get_visible()]
    ours_title, paper_title = (" ".join(ax.get_title().split()) for ax in (ours, theirs))  # wrapped
    assert ours_title == "ours: cpu (AMD EPYC, 2 threads of 2 cores), 96x160; all MiT-B0"
    assert "paper" in paper_title and "480x853" in paper_title and "GPU" in paper_title
    our_x = sorted(float(x) for c in ours.collections for x in c.get_offsets()[:, 0])
    assert our_x == pytest.approx([27.7, 31.9, 57.4])  # no paper point among ours
    paper_x = {round(float(x), 1) for c in theirs.collections for x in c.get_offsets()[:, 0]}
    assert {37.5, 38.2, 26.2} <= paper_x


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()] + [
        legend.get_title().get_text() for legend in fig.legends
    ]


def test_tradeoff_legend_shows_reference_marker_areas() -> None:
    fig = plots.tradeoff_figure(_tradeoff_records(), x="gmacs_per_frame")
    texts = _legend_texts(fig)
    assert "marker area: mIoU (%)" in texts
    assert [t for t in texts if t.endswith("%") and t[0].isdigit()] == ["49%", "51.2%", "53.4%"]


def test_tradeoff_promises_lines_between_backbones_only_when_there_are_several() -> None:
    fig = plots.tradeoff_figure(_tradeoff_records(), x="gmacs_per_frame")
    texts = " ".join([fig.axes[0].get_title(), fig.get_suptitle(), *_legend_texts(fig)])
    assert "lines join" not in texts and "all MiT-B0" in texts
    b1 = {**_tradeoff_records()[0], "backbone": "b1", "fps": 20.0, "gmacs_per_frame": 0.6}
    fig = plots.tradeoff_figure([*_tradeoff_records(), b1], x="gmacs_per_frame")
    assert "lines join a method's backbones" in _legend_texts(fig)
    assert "all MiT-B0" not in fig.axes[0].get_title()


def test_tradeoff_point_labels_do_not_overlap() -> None:
    # two methods at almost the same place on two backbones (a third one far away sets the scale):
    # four labels within a few pixels
    records = []
    for m, dx in (("segformer", 0.0), ("tfc", 0.002), ("cffm", 0.8)):
        for b, base in (("b0", 0.2), ("b1", 0.203)):
            records.append(
                {
                    "method": m,
                    "backbone": b,
                    "gmacs_per_frame": base + dx,
                    "mVC8": 0.7 + (0.1 if m == "cffm" else 0.0),
                    "mIoU": 0.5,
                    "options": {},
                }
            )
    fig = plots.tradeoff_figure(records, x="gmacs_per_frame")
    fig.draw_without_rendering()
    texts = fig.axes[0].texts
    boxes = [t.get_window_extent() for t in texts]
    assert sorted(t.get_text() for t in texts) == ["B0", "B0", "B0", "B1", "B1", "B1"]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())


def test_tradeoff_marks_a_contended_fps_hollow_with_a_legend() -> None:
    fig = plots.tradeoff_figure(_tradeoff_records(contended=True), x="fps")
    points = {}
    for c in fig.axes[0].collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            for (x, _), face in zip(
                c.get_offsets(), np.broadcast_to(c.get_facecolors(), (len(c.get_offsets()), 4))
            ):
                points[round(float(x), 1)] = face[3]
    assert points[27.7] == 0.0 and points[31.9] > 0.0  # tfc hollow, segformer filled
    assert any("busy" in t and "cpu share 0.45" in t for t in _legend_texts(fig))
    fig = plots.tradeoff_figure(_tradeoff_records(contended=False), x="fps")
    assert not any("busy" in t for t in _legend_texts(fig))


def test_plot_help_gives_whole_short_help() -> None:
    result = CliRunner().invoke(main, ["plot", "--help"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert "Fig. 4: binary-mask accuracy against iteration" in lines["mask-accuracy"]
    assert "Fig. 3: predicted and true label-change masks" in lines["masks"]
    top = CliRunner().invoke(main, ["--help"]).output
    (plot_line,) = [line for line in top.splitlines() if line.split()[:1] == ["plot"]]
    assert plot_line.split(None, 1)[1] == "Figures: Fig. 4 mask accuracy, Fig. 3 masks, trade-off, curves."


def test_masks_true_mask_grey_is_void_and_the_legend_says_so() -> None:
    changed = np.zeros((4, 6), dtype=bool)
    changed[0, :3] = True
    valid = np.ones((4, 6), dtype=bool)
    valid[3, :] = False  # label 255 in the keyframe or the frame
    image = np.zeros((16, 24, 3), dtype=np.uint8)
    panel = plots.MaskPanel("v", 1, 0, image, image, np.ones((4, 6)), changed, valid, 0.8)
    fig = plots.masks_figure([panel])
    true = np.asarray(fig.axes[3].images[0].get_array())
    assert (true[3] == 0.5).all() and true[0, 0] == 1.0 and true[1, 0] == 0.0
    texts = _legend_texts(fig)
    assert "grey: void (label 255 in keyframe or frame), not scored" in texts
    assert any(t.startswith("white:") for t in texts) and any(t.startswith("black:") for t in texts)


def test_masks_source_descends_into_the_one_run_a_folder_holds(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tfc-b0" / "tfc-b0-3fa2c1d0e9ab"
    run.mkdir(parents=True)
    config = {"method": "tfc", "backbone": "b0", "options": {}, "resolution": [96, 160], "split": "val"}
    (run / "config.json").write_text(json.dumps(config))
    (run / "record.json").write_text(json.dumps({"method": "tfc", "backbone": "b0"}))
    source = load_mask_source(tmp_path / "runs" / "tfc-b0")
    assert (source.path, source.resolution) == (run, (96, 160))


def test_masks_from_a_training_folder_run_at_the_frames_own_size(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "data", videos=2, frames=5, size=(32, 48), seed=0)
    folder = tmp_path / "train" / "tfc-b0"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(methods.create("tfc", "b0"), folder / "model.pth")
    config = {"method": "tfc", "backbone": "b0", "options": {}, "data": str(root), "val_size": [96, 160]}
    (folder / "config.json").write_text(json.dumps(config))
    fig = render_masks(load_mask_source(folder), frames=[1])
    assert np.asarray(fig.axes[2].images[0].get_array()).shape == (8, 12)  # 1/4 of 32x48, not of 480x720
    assert fig.get_suptitle().endswith("model input 32x48")


# ---------------------------------------------------------------------------------------------
# tables


def test_gmacs_column_keeps_three_significant_digits() -> None:
    records = [
        record("segformer", gmacs_per_frame=0.2222, mIoU=0.5, mVC8=0.6, mVC16=0.7),
        record("tfc", gmacs_per_frame=0.2788, mIoU=0.5, mVC8=0.6, mVC16=0.7),
        record("feature_reuse", gmacs_per_frame=0.1441, mIoU=0.5, mVC8=0.6, mVC16=0.7),
        record("segformer", "b5", gmacs_per_frame=183.44, mIoU=0.5, mVC8=0.6, mVC16=0.7),
    ]
    f = main_table(records).frame
    assert list(f["GMACs/frame"]) == ["0.222", "0.279 (+0.057)", "0.144 (-0.078)", "183.440"]


def test_paper_cells_are_printed_in_our_columns_decimals() -> None:
    table = main_table([record("tdnet", mIoU=0.3, mVC8=0.8, mVC16=0.75, fps=2.5)], with_paper=True)
    f = table.frame.set_index("Methods")
    assert f.loc["SegFormer + TDNet", "mIoU"] == "30.0 | 31.7"  # the paper prints 31.74
    assert f.loc["SegFormer + TDNet", "FPS (f/s)"] == "2.50 | 14.10"  # our FPS column has two decimals
    assert table.data.loc[0, "mIoU_paper"] == 31.74  # the CSV keeps the printed value


def test_missing_paper_values_are_told_apart_and_explained() -> None:
    records = [
        record("tdnet", mIoU=0.3, mVC8=0.8, mVC16=0.75, gmacs_per_frame=0.27),
        record("tfc", options={"threshold": 0.5}, mIoU=0.4, mVC8=0.9, mVC16=0.85),
    ]
    table = main_table(records, with_paper=True)
    f = table.frame.set_index("Methods")
    assert f.loc["SegFormer + TFC [threshold=0.5]", "mVC8"] == "90.0 | n/r"  # no such row
    assert f.loc["SegFormer + TDNet", "GMACs/frame"] == "0.270 | n/c"  # no such column
    assert f.loc["SegFormer + TFC [threshold=0.5]", "GMACs/frame"] == "- | n/c"  # and no value of ours
    notes = " ".join(table.notes)
    assert "'n/r': the paper has no such row" in notes and "'n/c': the paper has no such column" in notes
    assert "'-': we have no value" in notes


def test_contended_fps_is_marked_in_the_table_with_a_note() -> None:
    records = [
        record("segformer", fps=31.9, mIoU=0.5, mVC8=0.6, mVC16=0.7, fps_protocol={"interval": 4}),
        record(
            "tfc",
            fps=27.7,
            mIoU=0.5,
            mVC8=0.6,
            mVC16=0.7,
            fps_protocol={"interval": 4, "contended": True, "cpu_share": 0.45},
        ),
        record("feature_reuse", fps=57.4, mIoU=0.5, mVC8=0.6, mVC16=0.7, fps_protocol={"contended": False}),
    ]
    table = main_table(records)
    assert list(table.frame["FPS (f/s)"]) == ["31.9", "27.7‡ (-4.2)", "57.4 (+25.5)"]
    (note,) = [n for n in table.notes if n.startswith("‡")]
    assert "timed while the machine was busy" in note and "SegFormer + TFC (b0) at cpu share 0.45" in note
    assert r"$^{\ddagger}$" in render(table, "latex")
    speed = speed_table(records=records)
    assert "27.7‡" in list(speed.frame["FPS (f/s)"])
    assert any(n.startswith("‡") for n in speed.notes)


def test_params_note_says_what_is_counted_and_the_dead_count_per_row() -> None:
    records = [
        record("segformer", params=3_746_012, params_dead=0, params_inference=3_746_012, mIoU=0.5),
        record("mrcfa", params=5_281_992, params_dead=95_604, params_inference=5_186_388, mIoU=0.5),
    ]
    table = main_table(records)
    (note,) = [n for n in table.notes if n.startswith("Params")]
    assert "every parameter" in note and "SegFormer + MRCFA (b0): 0.096 M dead, 5.19 M at inference" in note
    assert "SegFormer (b0)" not in note
    assert table.data.loc[1, "params_inference"] == pytest.approx(5.186388)
    notes = " ".join(main_table(records, with_paper=True).notes)
    assert "5.19/16.23/84.52" in notes and "TDNet" in notes and "this table counts every parameter" in notes


def test_out_in_a_missing_folder_fails_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps(record("segformer", mIoU=0.3, mVC8=0.8, mVC16=0.7, fps=3.0)))
    csv_path = tmp_path / "bench.csv"
    csv_path.write_text("what,core,backbone,share,median_ms\nmit_stages_3_4,,b0,1.0,100.0\n")
    log = write_log(tmp_path / "log", True)
    missing = tmp_path / "missing"
    commands = [
        ["table", "main", str(run)],
        ["table", "ablation", str(run)],
        ["table", "speed", str(csv_path)],
        ["plot", "curves", str(log)],
        ["plot", "mask-accuracy", str(log), "--trivial", "none"],
        ["plot", "tradeoff", str(run), "--x", "fps", "--y", "mVC8"],
        ["plot", "masks", str(tmp_path / "nothing.pth"), "--method", "tfc", "--backbone", "b0"],
    ]
    for args in commands:
        suffix = ".md" if args[0] == "table" else ".png"
        result = CliRunner().invoke(main, [*args, "--out", str(missing / f"x{suffix}")])
        assert result.exit_code == 2, (args, result.output)
        (line,) = result.output.strip().splitlines()
        assert f"folder {missing} does not exist" in line, (args, line)
        assert not missing.exists()
