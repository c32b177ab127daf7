"""Table 1's Params, FPS and GMACs/frame from `vssbench profile` records (`--efficiency-from`):
the replaced cells, deltas from the replaced values, the choice among several profile records,
'-' for a row without one, and the note on the sizes each column was measured at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.reports.test_reports_tables import record
from vssbench.cli import main
from vssbench.reports.tables import main_table, render


def run(method: str, backbone: str = "b0", **values: Any) -> dict:
    """An evaluation at 96x160 with its own (small-input) efficiency numbers."""
    fields = {"mIoU": 0.3, "mVC8": 0.8, "mVC16": 0.7, "params": 1_000_000, "fps": 500.0}
    fields.update(gmacs_per_frame=0.5, input_size=[96, 160])
    return record(method, backbone, **{**fields, **values})


def profile(method: str, backbone: str = "b0", **values: Any) -> dict:
    """A `vssbench profile` record at 480x853 on the rendered video, weights of seed 0."""
    r = {
        "method": method,
        "backbone": backbone,
        "kind": "profile",
        "options": {"interval": 4},
        "interval": 4,
        "input_size": [480, 853],
        "profile_frames": "video",
        "train_seed": 0,
        "created": "2026-02-01T00:00:00Z",
        "params_dead": 0,
        "fps_protocol": {"interval": 4},
    }
    r.update(values)
    return r


SIZES = (
    "accuracy (mIoU, mVC8, mVC16): val videos at 96x160; Params, FPS, GMACs/frame: `vssbench profile` "
    "at 480x853 on a rendered synthetic video (weights of train_seed 0)"
)


def test_profile_records_replace_the_efficiency_cells_and_their_deltas() -> None:
    runs = [run("segformer"), run("tfc", mVC8=0.85)]
    profiles = [
        profile("segformer", params=3_746_012, params_inference=3_746_012, fps=31.9, gmacs_per_frame=14.22),
        profile("tfc", params=4_502_876, params_dead=96_000, fps=27.7, gmacs_per_frame=9.5),
    ]
    table = main_table(runs, efficiency=profiles)
    f = table.frame
    assert list(f.loc[0, ["Params (M)", "FPS (f/s)", "GMACs/frame"]]) == ["3.7", "31.9", "14.22"]
    # deltas from the replaced values: 4.503 - 3.746 = 0.757, 27.7 - 31.9 = -4.2, 9.5 - 14.22 = -4.72
    assert list(f.loc[1, ["Params (M)", "FPS (f/s)", "GMACs/frame"]]) == [
        "4.5 (+0.8)",
        "27.7 (-4.2)",
        "9.50 (-4.72)",
    ]
    assert f.loc[1, "mVC8"] == "85.0 (+5.0)"  # accuracy stays the runs'
    d = table.data
    assert d.loc[1, "fps_delta"] == pytest.approx(-4.2) and d.loc[1, "params_dead"] == pytest.approx(0.096)
    assert d.loc[0, "params_inference"] == pytest.approx(3.746012)
    assert SIZES in table.notes
    assert "SegFormer + TFC (b0): 0.096 M dead, 4.41 M at inference" in " ".join(table.notes)
    # without profile records: the runs' own numbers and no size note
    plain = main_table(runs)
    assert plain.frame.loc[1, "FPS (f/s)"] == "500.0 (+0.0)" and not plain.notes


def test_a_row_without_a_profile_record_reads_dash_with_a_note() -> None:
    runs = [run("segformer"), run("tfc"), run("tfc", "b1")]
    table = main_table(
        runs, efficiency=[profile("segformer", params=3_746_012, fps=31.9, gmacs_per_frame=14.22)]
    )
    f = table.frame
    assert list(f.loc[1, ["Params (M)", "FPS (f/s)", "GMACs/frame"]]) == ["-", "-", "-"]
    assert f.loc[1, "mIoU"] == "30.0 (+0.0)"  # its accuracy and delta are still there
    assert "no profile record, so Params, FPS and GMACs/frame read '-': SegFormer + TFC (b0), " in " ".join(
        table.notes
    )
    assert "SegFormer + TFC (b1)" in next(n for n in table.notes if n.startswith("no profile record"))
    # a variant is another row: the default's profile record does not serve it
    variant = main_table(
        [run("tfc", options={"threshold": 0.5})],
        efficiency=[profile("tfc", params=1, fps=1.0, gmacs_per_frame=1.0)],
    )
    assert variant.frame.loc[0, "FPS (f/s)"] == "-"


def test_profile_of_the_rows_checkpoint_wins_then_the_latest() -> None:
    runs = [
        run("tfc", train_seed=0, checkpoint="s0.pth", checkpoint_sha256="a" * 64),
        run("tfc", train_seed=1, checkpoint="s1.pth", checkpoint_sha256="b" * 64),
    ]
    profiles = [
        profile("tfc", fps=10.0, checkpoint_sha256="b" * 64, created="2026-01-01", train_seed=1),
        profile("tfc", fps=20.0, checkpoint_sha256="c" * 64, created="2026-03-01"),  # latest, other weights
        profile(
            "tfc", fps=30.0, checkpoint_sha256="a" * 64, created="2026-02-01"
        ),  # the row's, latest of those
        profile("tfc", fps=99.0, checkpoint_sha256="a" * 64, error="boom", created="2026-04-01"),  # failed
    ]
    table = main_table(runs, efficiency=profiles)
    assert table.frame.loc[0, "FPS (f/s)"] == "30.0"
    assert table.frame.loc[0, "mIoU"] == "30.0 ±0.0"  # two seeds of the row
    assert main_table(runs, efficiency=profiles[1:2]).frame.loc[0, "FPS (f/s)"] == "20.0"
    # a profile record with a contended FPS marks the cell
    busy = profile("tfc", fps=30.0, fps_protocol={"interval": 4, "contended": True, "cpu_share": 0.5})
    assert main_table(runs, efficiency=[busy]).frame.loc[0, "FPS (f/s)"] == "30.0‡"


def test_table_main_efficiency_from_a_folder_of_profile_lists(tmp_path: Path) -> None:
    for i, r in enumerate([run("segformer"), run("tfc")]):
        folder = tmp_path / "runs" / f"run{i}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(r))
    (tmp_path / "efficiency" / "b0").mkdir(parents=True)
    (tmp_path / "efficiency" / "b0" / "records.json").write_text(
        json.dumps(
            [
                profile("segformer", params=3_746_012, fps=31.9, gmacs_per_frame=14.22),
                profile("tfc", params=4_502_876, fps=27.7, gmacs_per_frame=9.5),
            ]
        )
    )
    runner = CliRunner()
    args = ["table", "main", str(tmp_path / "runs"), "--efficiency-from"]
    result = runner.invoke(main, [*args, str(tmp_path / "efficiency")])
    assert result.exit_code == 0, result.output
    assert "| 4.5 (+0.8) | 27.7 (-4.2) | 9.50 (-4.72) |" in result.output and SIZES in result.output
    # the list file named directly does the same
    direct = runner.invoke(main, [*args, str(tmp_path / "efficiency" / "b0" / "records.json")])
    assert direct.output == result.output
    # a folder of run records holds no profile record: refused in one line
    refused = runner.invoke(main, [*args, str(tmp_path / "runs")])
    assert refused.exit_code == 2 and "no profile record (kind 'profile')" in refused.output
    csv_text = render_csv(runner, [*args, str(tmp_path / "efficiency"), "--format", "csv"])
    assert "fps" in csv_text.splitlines()[0] and ",27.7," in csv_text.splitlines()[2]


def render_csv(runner: CliRunner, argv: list[str]) -> str:
    result = runner.invoke(main, argv)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_render_keeps_the_size_note_in_every_format() -> None:
    table = main_table([run("segformer")], efficiency=[profile("segformer", params=1_000_000, fps=2.0)])
    assert SIZES in render(table, "md") and "480x853" in render(table, "latex")


def test_the_trade_off_plot_takes_its_costs_from_the_profile_records(tmp_path: Path) -> None:
    from vssbench.reports.tables import with_profile_costs

    runs = [run("segformer"), run("tfc"), run("cffm")]
    profiles = [
        profile("segformer", gmacs_per_frame=7.52, fps=2.1),
        profile("tfc", gmacs_per_frame=8.18, fps=1.9),
    ]
    merged = with_profile_costs(runs, profiles)
    assert [r["gmacs_per_frame"] for r in merged] == [7.52, 8.18, 0.5]  # cffm has no profile: its own
    assert [r["input_size"] for r in merged] == [[480, 853], [480, 853], [96, 160]]
    assert [r["mVC8"] for r in merged] == [0.8, 0.8, 0.8] and runs[0]["gmacs_per_frame"] == 0.5
    runs_file, profiles_file = tmp_path / "runs.json", tmp_path / "records.json"
    runs_file.write_text(json.dumps(runs[:2]))
    profiles_file.write_text(json.dumps(profiles))
    out = tmp_path / "t.png"
    args = ["plot", "tradeoff", str(runs_file), "--x", "gmacs_per_frame", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--efficiency-from", str(profiles_file)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    result = CliRunner().invoke(main, [*args, "--efficiency-from", str(runs_file)])
    assert result.exit_code == 2
    assert (
        result.stderr == f"error: --efficiency-from {runs_file}: no profile record (kind 'profile') in it\n"
    )
