"""Rows of several seeds: tables of means ± sample standard deviations, the hierarchical bootstrap
over seeds then videos, `vssbench compare` over groups of runs and `table main --ci` over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.reports.test_reports_stats import shifted, states, write_run
from tests.reports.test_reports_tables import record
from vssbench.cli import main
from vssbench.metrics.evaluator import MetricState, compute_metrics
from vssbench.reports.stats import (
    ComparisonError,
    compare_groups,
    grouped_bootstrap,
    pair_seeds,
    paired_bootstrap,
)
from vssbench.reports.tables import ablation_table, load_records, main_table, main_table_ci, render, to_latex

# ---------------------------------------------------------------------------------------------
# Tables


def seeded(method: str, seed: int, **values: Any) -> dict:
    """A record of ``method`` trained with ``--seed seed`` (its own checkpoint)."""
    return record(
        method,
        train_seed=seed,
        checkpoint=f"train/{method}/seed{seed}/model.pth",
        checkpoint_sha256=f"{method}{seed}".ljust(64, "0"),
        created=f"2026-01-0{seed + 1}T00:00:00Z",
        **values,
    )


def two_rows_by_three_seeds() -> list[dict]:
    """SegFormer and TFC on MiT-B0, seeds 0-2. By hand (percent):
    SegFormer mIoU 50/52/54 -> 52.0 ±2.0; mVC8 80/81/85 -> 82.0, sd sqrt(14/2) = 2.65; mVC16 70 x3 -> ±0.0;
    TFC mIoU 44/45/43 -> 44.0 ±1.0 (-8.0); mVC8 86/88/87 -> 87.0 ±1.0 (+5.0);
    mVC16 75/78/78 -> 77.0, sd sqrt(6/2) = 1.73 (+7.0); FPS 30/31/32 -> 31.0 and 24/25/26 -> 25.0 (-6.0)."""
    seg = [(0.50, 0.80, 0.70, 30.0), (0.52, 0.81, 0.70, 31.0), (0.54, 0.85, 0.70, 32.0)]
    tfc = [(0.44, 0.86, 0.75, 24.0), (0.45, 0.88, 0.78, 25.0), (0.43, 0.87, 0.78, 26.0)]
    records = []
    for seed, ((m1, v1, w1, f1), (m2, v2, w2, f2)) in enumerate(zip(seg, tfc)):
        records.append(
            seeded(
                "segformer", seed, mIoU=m1, mVC8=v1, mVC16=w1, fps=f1, params=3_746_012, gmacs_per_frame=14.2
            )
        )
        records.append(
            seeded("tfc", seed, mIoU=m2, mVC8=v2, mVC16=w2, fps=f2, params=4_502_876, gmacs_per_frame=9.5)
        )
    return records


def test_a_row_of_three_seeds_shows_means_and_sample_standard_deviations() -> None:
    records = two_rows_by_three_seeds()
    # an older record of seed 1's very checkpoint: a duplicate, not a fourth seed
    records.append({**records[2], "mIoU": 0.10, "created": "2025-12-31T00:00:00Z"})
    table = main_table(records)
    f = table.frame
    assert list(f["Methods"]) == ["SegFormer", "SegFormer + TFC"]  # one row per method, not six
    assert list(f.loc[0, ["mIoU", "mVC8", "mVC16"]]) == ["52.0 ±2.0", "82.0 ±2.6", "70.0 ±0.0"]
    assert list(f.loc[1, ["mIoU", "mVC8", "mVC16"]]) == [
        "44.0 ±1.0 (-8.0)",
        "87.0 ±1.0 (+5.0)",
        "77.0 ±1.7 (+7.0)",
    ]
    # efficiency columns: the mean, no spread
    assert f.loc[0, "FPS (f/s)"] == "31.0" and f.loc[1, "FPS (f/s)"] == "25.0 (-6.0)"
    assert f.loc[1, "Params (M)"] == "4.5 (+0.8)"
    d = table.data
    assert d.loc[0, "mIoU"] == pytest.approx(52.0) and d.loc[0, "mIoU_std"] == pytest.approx(2.0)
    assert d.loc[0, "mVC8_std"] == pytest.approx(math.sqrt(7.0))
    assert d.loc[1, "mVC16"] == pytest.approx(77.0) and d.loc[1, "mVC16_std"] == pytest.approx(math.sqrt(3.0))
    assert d.loc[1, "mIoU_delta"] == pytest.approx(-8.0) and d.loc[1, "fps"] == pytest.approx(25.0)
    assert d.loc[1, "fps_std"] == pytest.approx(1.0)
    assert list(d["n_runs"]) == [3, 3] and list(d.loc[0, "train_seeds"]) == [0, 1, 2]
    assert "1 older duplicate record(s) left out" in " ".join(table.notes)
    assert any(
        n.startswith("mean ± standard deviation over 3 seeds (train_seed 0, 1, 2)") for n in table.notes
    )


def test_rows_with_different_seed_counts_say_so_per_row() -> None:
    records = [r for r in two_rows_by_three_seeds() if not (r["method"] == "tfc" and r["train_seed"] == 2)]
    table = main_table(records)
    assert table.frame.loc[1, "mIoU"] == "44.5 ±0.7 (-7.5)"  # seeds 0, 1: mean 44.5, sd sqrt(0.5)
    note = next(n for n in table.notes if n.startswith("mean ± standard deviation"))
    assert (
        "SegFormer (b0) 3 seeds (train_seed 0, 1, 2); SegFormer + TFC (b0) 2 seeds (train_seed 0, 1)" in note
    )
    assert list(table.data["n_runs"]) == [3, 2]


def test_a_contended_replicate_marks_the_rows_fps() -> None:
    records = two_rows_by_three_seeds()
    records[3]["fps_protocol"] = {"contended": True, "cpu_share": 0.45}  # tfc, seed 1
    table = main_table(records)
    assert table.frame.loc[1, "FPS (f/s)"] == "25.0‡ (-6.0)" and table.frame.loc[0, "FPS (f/s)"] == "31.0"
    assert "SegFormer + TFC (b0) at cpu share 0.45" in " ".join(table.notes)


def test_one_run_per_row_is_the_table_it_always_was() -> None:
    records = [
        record(
            "segformer",
            mIoU=0.32949,
            mVC8=0.827,
            mVC16=0.773,
            params=3_746_012,
            fps=37.5,
            gmacs_per_frame=14.22,
        ),
        record(
            "tfc", mIoU=0.32921, mVC8=0.85349, mVC16=0.80049, params=4_502_876, fps=38.2, gmacs_per_frame=9.5
        ),
    ]
    table = main_table(records)
    assert render(table, "md") == (
        "| Methods | Backbone | Type | mIoU | mVC8 | mVC16 | Params (M) | FPS (f/s) | GMACs/frame |\n"
        "|:---|:---|:---|---:|---:|---:|---:|---:|---:|\n"
        "| SegFormer | MiT-B0 | Image | 32.9 | 82.7 | 77.3 | 3.7 | 37.5 | 14.22 |\n"
        "| SegFormer + TFC | MiT-B0 | E & S | 32.9 (+0.0) | 85.3 (+2.6) | 80.0 (+2.7) | 4.5 (+0.8) "
        "| 38.2 (+0.7) | 9.50 (-4.72) |\n"
    )
    assert not {"n_runs", "train_seeds", "mIoU_std"} & set(table.data.columns)
    # a second record of the same checkpoint is a duplicate (the latest counts), not a second seed
    later = {**records[1], "mVC8": 0.9, "created": "2027"}
    again = main_table([*records, later])
    assert again.frame.loc[1, "mVC8"] == "90.0 (+7.3)" and "n_runs" not in again.data.columns
    ablation = ablation_table(records)
    assert "±" not in render(ablation, "md") and "n_runs" not in ablation.data.columns


def test_ablation_rows_of_seeds_and_the_weights_they_share() -> None:
    records = []
    for seed, (m, v) in enumerate([(0.33, 0.85), (0.35, 0.86), (0.34, 0.87)]):
        base = seeded("tfc", seed, mIoU=m, mVC8=v, mVC16=0.8, gmacs_per_frame=9.0 + seed)
        records.append(base)
        # interval 6 evaluates each seed's default checkpoint
        records.append({**base, "options": {"interval": 6}, "interval": 6, "mIoU": m - 0.01})
    table = ablation_table(records)
    f = table.frame.set_index("Methods")
    assert f.loc["Interval 4", "mIoU"] == "34.0 ±1.0" and f.loc["Interval 6", "mIoU"] == "33.0 ±1.0"
    assert f.loc["Interval 4", "mVC8"] == "86.0 ±1.0" and f.loc["Interval 4", "GMACs/frame"] == "10.0"
    assert (
        f.loc["Interval 6", "Weights"] == "shared: SegFormer + TFC"
        and f.loc["Interval 4", "Weights"] == "own"
    )
    note = next(n for n in table.notes if n.startswith("mean ± standard deviation over 3 seeds"))
    assert "deltas" not in note
    assert r"34.0 $\pm$1.0" in to_latex(table)


# ---------------------------------------------------------------------------------------------
# The bootstrap over seeds, then videos


METRICS = ("mIoU", "mVC8", "mVC16")


def naive_grouped(
    a: dict, b: dict, metrics: tuple[str, ...], samples: int, seed: int, level: float
) -> dict[str, tuple[float, float]]:
    """The hierarchical bootstrap as its docstring says, one MetricState sum at a time."""
    keys = sorted(a)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        picked = [0] if len(keys) == 1 else rng.integers(0, len(keys), size=len(keys))
        va, vb = [], []
        for j in picked:
            sa, sb = a[keys[j]], b[keys[j]]
            idx = rng.integers(0, len(sa), size=len(sa))
            ma, mb = compute_metrics(sum(sa[i] for i in idx)), compute_metrics(sum(sb[i] for i in idx))
            va.append([ma[m] for m in metrics])
            vb.append([mb[m] for m in metrics])
        diffs.append(np.mean(va, axis=0) - np.mean(vb, axis=0))
    tail = 100 * (1 - level) / 2
    return {
        m: tuple(np.percentile(np.asarray(diffs)[:, j], [tail, 100 - tail])) for j, m in enumerate(metrics)
    }


def test_a_group_against_itself_is_exactly_zero() -> None:
    group = {s: states(20 + s, 5) for s in range(3)}
    for iv in grouped_bootstrap(group, group, ("mIoU", "wIoU", "mVC8", "mVC16"), samples=200).values():
        assert (iv.diff, iv.low, iv.high) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(("seed", "level"), [(0, 0.95), (7, 0.9)])
def test_one_seed_is_the_paired_bootstrap_exactly(seed: int, level: float) -> None:
    a, b = states(2, 9), states(3, 9)
    paired = paired_bootstrap(a, b, METRICS, samples=150, seed=seed, level=level)
    assert grouped_bootstrap({4: a}, {4: b}, METRICS, samples=150, seed=seed, level=level) == paired
    # two single runs pair whatever their seeds say
    assert grouped_bootstrap({None: a}, {1: b}, METRICS, samples=150, seed=seed, level=level) == paired


def test_point_estimate_is_the_difference_of_the_means_over_seeds() -> None:
    base = {s: states(30 + s, 6) for s in range(3)}
    shift = {0: 0.01, 1: 0.03, 2: 0.05}  # A's windows score higher by these on every video of the seed
    a = {s: [shifted(x, shift[s]) for x in v] for s, v in base.items()}
    result = grouped_bootstrap(a, base, METRICS, samples=100)
    assert result["mVC8"].diff == pytest.approx(0.03) and result["mVC16"].diff == pytest.approx(0.03)
    by_hand = np.mean([compute_metrics(sum(a[s]))["mVC8"] for s in range(3)])
    assert result["mVC8"].a == pytest.approx(by_hand, abs=1e-15)
    pooled_b = np.mean([compute_metrics(sum(base[s]))["mIoU"] for s in range(3)])
    assert result["mIoU"].b == pytest.approx(pooled_b, abs=1e-15) and result["mIoU"].diff == 0.0
    # every resample averages three seeds' differences from {1, 3, 5} points: inside [1, 5]
    assert 0.01 - 1e-12 <= result["mVC8"].low < 0.03 < result["mVC8"].high <= 0.05 + 1e-12


def test_vectorized_resampling_equals_a_naive_loop() -> None:
    a = {s: states(40 + s, 5) for s in range(2)}
    b = {s: states(50 + s, 5) for s in range(2)}
    fast = grouped_bootstrap(a, b, ("mIoU", "mVC16"), samples=60, seed=3, level=0.9)
    slow = naive_grouped(a, b, ("mIoU", "mVC16"), 60, 3, 0.9)
    for m, (low, high) in slow.items():
        assert fast[m].low == pytest.approx(low, abs=1e-12) and fast[m].high == pytest.approx(high, abs=1e-12)


def test_seed_variance_widens_the_interval_beyond_a_video_bootstrap_of_the_pooled_runs() -> None:
    base = {s: states(60 + s, 10) for s in range(3)}
    shift = {0: 0.0, 1: 0.1, 2: 0.2}  # the trainings disagree a lot; the videos hardly
    a = {s: [shifted(x, shift[s]) for x in v] for s, v in base.items()}
    grouped = grouped_bootstrap(a, base, ("mVC8",), samples=400)["mVC8"]
    # the same runs pooled per video (each video's states summed over the seeds): videos only
    pooled_a = [sum(a[s][i] for s in range(3)) for i in range(10)]
    pooled_b = [sum(base[s][i] for s in range(3)) for i in range(10)]
    videos_only = paired_bootstrap(pooled_a, pooled_b, ("mVC8",), samples=400)["mVC8"]
    assert grouped.diff == pytest.approx(0.1)
    assert grouped.high - grouped.low > 0.05
    assert grouped.high - grouped.low > 5 * (videos_only.high - videos_only.low)
    assert grouped.low < 0.1 < grouped.high


def test_seeds_pair_by_train_seed() -> None:
    assert pair_seeds([0, 1, 2], [1, 2, 3]) == ([(1, 1), (2, 2)], [0], [3])
    assert pair_seeds([None], [5]) == ([(None, 5)], [], [])  # two single runs
    # runs without a train_seed, or sharing one, pair with nothing in a group of several
    assert pair_seeds([None, 0, 1], [None, 0, 1]) == ([(0, 0), (1, 1)], [None], [None])
    assert pair_seeds([0, 0, 1], [0, 1]) == ([(1, 1)], [0, 0], [0])
    with pytest.raises(ComparisonError, match=r"A has train_seed \?, \?, B has \?, \?"):
        pair_seeds([None, None], [None, None])
    a = {s: states(70 + s, 4) for s in (0, 1, 2)}
    b = {s: states(70 + s, 4) for s in (1, 2, 3)}
    result = grouped_bootstrap(a, b, ("mIoU",), samples=50)
    assert result["mIoU"].diff == 0.0  # seeds 1 and 2 only, which are the same runs
    with pytest.raises(ComparisonError, match=r"nothing to pair: A has train_seed 0, 1, B has 2, 3"):
        grouped_bootstrap({0: a[0], 1: a[1]}, {2: a[2], 3: b[3]})


# ---------------------------------------------------------------------------------------------
# vssbench compare over groups, and table main --ci over seeds


def write_group(root: Path, method: str, seeds: list[int], shift: float = 0.0, **record: Any) -> list[Path]:
    """One run folder per seed: the seed's videos, A's window scores raised by ``shift`` x (seed + 1)."""
    runs = []
    for s in seeds:
        videos = [shifted(x, shift * (s + 1)) for x in states(80 + s, 6)]
        fields = {"method": method, "train_seed": s, "checkpoint": f"{method}{s}.pth"}
        fields["checkpoint_sha256"] = f"{method}{s}".ljust(64, "0")
        fields.update(record)
        runs.append(write_run(root / f"seed{s}", videos, **fields))
    return runs


def test_compare_groups_given_by_commas_or_by_a_folder(tmp_path: Path) -> None:
    tfc = write_group(tmp_path / "runs" / "tfc", "tfc", [0, 1, 2], shift=0.01)  # +1, +2, +3 points
    seg = write_group(tmp_path / "runs" / "seg", "segformer", [0, 1, 2])
    runner = CliRunner()
    args = ["--metric", "mVC8,mIoU", "--samples", "200", "--json"]
    by_commas = runner.invoke(main, ["compare", ",".join(map(str, tfc)), ",".join(map(str, seg)), *args])
    assert by_commas.exit_code == 0, by_commas.output
    data = json.loads(by_commas.stdout)
    assert data["mVC8"]["diff"] == pytest.approx(0.02) and data["mIoU"]["diff"] == 0.0
    assert 0.01 - 1e-12 <= data["mVC8"]["low"] < 0.02 < data["mVC8"]["high"] <= 0.03 + 1e-12
    assert data["mVC8"]["seeds_a"] == [0, 1, 2] and data["mVC8"]["seeds_b"] == [0, 1, 2]
    by_folder = runner.invoke(
        main, ["compare", str(tmp_path / "runs" / "tfc"), str(tmp_path / "runs" / "seg"), *args]
    )
    assert by_folder.exit_code == 0 and json.loads(by_folder.stdout) == data
    text = runner.invoke(main, ["compare", str(tmp_path / "runs" / "tfc"), str(tmp_path / "runs" / "seg")])
    assert text.exit_code == 0, text.output
    assert f"A = 3 seeds (train_seed 0, 1, 2): {tfc[0]}, {tfc[1]}, {tfc[2]}" in text.output
    assert "95% bootstrap interval over seeds, then videos" in text.output
    assert "  mVC8    +2.0 [" in text.output and "means over seeds" in text.output


def test_compare_leaves_out_seeds_without_a_partner(tmp_path: Path) -> None:
    tfc = write_group(tmp_path / "tfc", "tfc", [0, 1, 2], shift=0.01)
    seg = write_group(tmp_path / "seg", "segformer", [0, 1])
    result = compare_groups(tmp_path / "tfc", tmp_path / "seg", ("mVC8",), samples=100)
    assert result.seeds_a == (0, 1) and result.runs_a == tuple(tfc[:2]) and result.runs_b == tuple(seg)
    assert result.intervals["mVC8"].diff == pytest.approx(0.015)  # +1 and +2 points
    assert result.left_out == (f"A {tfc[2]} (train_seed 2)",)
    cli = CliRunner().invoke(main, ["compare", str(tmp_path / "tfc"), str(tmp_path / "seg"), "--json"])
    assert cli.exit_code == 0 and json.loads(cli.stdout)["mVC8"]["seeds_b"] == [0, 1]
    assert "left out (no run with the same train_seed on the other side)" in cli.stderr


def test_compare_refuses_a_group_that_is_not_one_rows_seeds(tmp_path: Path) -> None:
    write_group(tmp_path / "mixed" / "tfc", "tfc", [0, 1])
    write_group(tmp_path / "mixed" / "seg", "segformer", [0, 1])
    write_group(tmp_path / "seg", "segformer", [0, 1])
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "mixed"), str(tmp_path / "seg")])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert f"{tmp_path / 'mixed'}: {tmp_path / 'mixed' / 'tfc' / 'seed0'} is not the same row as" in line
    assert "method tfc (the first run's: segformer)" in line
    # other options are another row too
    odd = write_group(tmp_path / "odd", "segformer", [2], options={"interval": 6})
    spec = f"{tmp_path / 'seg' / 'seed0'},{odd[0]}"
    result = CliRunner().invoke(main, ["compare", spec, str(tmp_path / "seg")])
    assert result.exit_code == 2 and "is not the same row" in result.output and "options" in result.output


def test_table_main_ci_over_seeds(tmp_path: Path) -> None:
    conditions = {"conditions_hash": "c1", "config": {"resolution": [32, 32]}, "device": "cpu"}
    for method, shift in (("segformer", 0.0), ("tfc", 0.01)):
        for s in range(3):
            videos = [shifted(x, shift * (s + 1)) for x in states(80 + s, 6)]
            metrics = compute_metrics(sum(videos, MetricState.zeros(5, (8, 16))))
            fields = {k: metrics[k] for k in METRICS}
            write_run(
                tmp_path / method / f"seed{s}",
                videos,
                method=method,
                options={},
                train_seed=s,
                checkpoint=f"{method}{s}.pth",
                checkpoint_sha256=f"{method}{s}".ljust(64, "0"),
                **conditions,
                **fields,
            )
    records = load_records([tmp_path])
    intervals, notes = main_table_ci(records, samples=100)
    assert not notes
    expected = compare_groups(tmp_path / "tfc", tmp_path / "segformer", METRICS, samples=100).intervals
    assert intervals[(1, "mVC8")] == expected["mVC8"] and intervals[(1, "mVC8")].diff == pytest.approx(0.02)
    table = main_table(records, ci=intervals)
    cell = table.frame.loc[1, "mVC8"]
    assert cell.startswith(f"{expected['mVC8'].a * 100:.1f} ±") and cell.endswith(
        f"({expected['mVC8'].format()})"
    )
    assert (
        "deltas: A - SegFormer [95% bootstrap interval over seeds (paired by train_seed), then videos]"
        in (table.notes)
    )
    result = CliRunner().invoke(main, ["table", "main", str(tmp_path), "--ci", "--samples", "100"])
    assert result.exit_code == 0, result.output
    assert "over seeds (paired by train_seed), then videos" in result.output
