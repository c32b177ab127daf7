"""`vssbench reproduce`: the plan, skip-when-complete, failure isolation, and the whole plumbing
in miniature."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vssbench.cli import main
from vssbench.cli.reproduce import in_process
from vssbench.errors import OptionError
from vssbench.study import executor, plan


def _tiny_settings(
    methods=("segformer", "tfc"), iters=1, seeds=(0,), pretrain_iters=0, efficiency_args=()
) -> plan.StudySettings:
    return plan.StudySettings(
        preset="synthetic",
        backbones=("b0",),
        methods=methods,
        iters=iters,
        synth_args=("--videos=3", "--frames=10", "--size=64x64", "--difficulty=study"),
        run_args=("--size", "64x64"),
        seeds=seeds,
        pretrain_iters=pretrain_iters,
        efficiency_args=efficiency_args,
        train_args=(
            "--preset",
            "synthetic",
            "--crop",
            "32x32",
            "--batch-size",
            "1",
            "--val-every",
            "0",
            "--threads",
            "1",
            "--quiet",
        ),
    )


def test_plan_covers_the_paper_protocol(tmp_path: Path) -> None:
    steps = plan.build_plan(plan.synthetic_settings(), tmp_path, plan.TARGETS)
    names = [s.name for s in steps]
    trains = [n for n in names if n.startswith("train ")]
    # Table 1: six methods; Table 2: nine learned variants (the default TFC and feature reuse are shared).
    assert len(trains) == 6 + len(plan.TABLE2_VARIANTS)
    assert len(set(names)) == len(names)
    # Interval rows reuse the default TFC's weights: no training of their own.
    for interval in plan.TABLE2_INTERVALS:
        step = next(s for s in steps if s.name == f"run tfc-interval{interval}-b0 seed0")
        assert step.needs == ["train tfc-b0 seed0"]
        assert step.argv[-2:] == ["--interval", str(interval)]
        assert str(tmp_path / "train" / "tfc-b0" / "seed0" / "model.pth") in step.argv
    # Every step only needs steps that come before it.
    seen: set[str] = set()
    for step in steps:
        assert set(step.needs) <= seen, step.name
        seen.add(step.name)
    # A learned variant trains and evaluates with the same options.
    hard = [s for s in steps if s.name.endswith("tfc-interp-hard-b0 seed0")]
    assert len(hard) == 2 and all("interp=hard" in s.argv and "update=none" in s.argv for s in hard)
    fig4 = next(s for s in steps if s.name == "fig4")
    assert fig4.needs == ["train tfc-b0 seed0", "train tfc-no-focal-b0 seed0"]


def test_synthetic_study_conditions_are_identical_for_every_method(tmp_path: Path) -> None:
    """--size-divisor 32 (CFFM/MRCFA's protocol) is given to every run and changes no input size."""
    from vssbench.data.synth import STUDY_SYNTH_ARGS

    h, w = (int(v) for v in str(STUDY_SYNTH_ARGS["size"]).split("x"))
    assert h % 32 == 0 and w % 32 == 0
    runs = [s for s in plan.build_plan(plan.synthetic_settings(), tmp_path, ["table1"]) if s.kind == "run"]
    assert len(runs) == 6
    for step in runs:
        assert step.argv[step.argv.index("--size-divisor") + 1] == "32"
        assert step.argv[step.argv.index("--size") + 1] == f"{h}x{w}"


def test_plan_paper_preset_and_targets(tmp_path: Path) -> None:
    settings = plan.paper_settings(str(tmp_path), init_dir=str(tmp_path / "w"))
    steps = plan.build_plan(settings, tmp_path / "study", ["table1"])
    runs = [s.name for s in steps if s.kind == "run"]
    # TDNet only on B0 (as in Table 1); the other five on B0, B1, B5.
    assert len(runs) == 5 * 3 + 1
    assert not any(s.kind == "synth" for s in steps)
    assert all("--preset" in s.argv and "paper" in s.argv for s in steps if s.kind == "train")
    b5 = next(s for s in steps if s.name == "train tfc-b5 seed0")
    assert b5.argv[b5.argv.index("--init") + 1] == str(tmp_path / "w" / "mit_b5.pth")
    with pytest.raises(OptionError, match="table9"):
        plan.build_plan(plan.synthetic_settings(), tmp_path, ["table9"])


def test_failure_blocks_only_dependents_and_completed_steps_are_skipped(tmp_path: Path) -> None:
    steps = plan.build_plan(_tiny_settings(), tmp_path, ["table1"])
    calls: list[str] = []

    def invoke(argv: list[str]) -> None:
        calls.append(argv[0] + " " + argv[argv.index("--method") + 1] if "--method" in argv else argv[0])
        if argv[0] == "train" and "segformer" in argv:
            raise RuntimeError("boom")
        for step in steps:  # create the step's outputs, as the real command would
            if step.argv_now() == argv or step.argv == argv:
                for out in step.outputs:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.mkdir(exist_ok=True) if step.kind == "run" else out.write_text("x")

    results = {
        r.name: r.status for r in executor.execute_plan(steps, tmp_path, log=lambda m: None, invoke=invoke)
    }
    assert results["train segformer-b0 seed0"] == "failed"
    assert results["run segformer-b0 seed0"] == "blocked"
    assert results["train tfc-b0 seed0"] == results["run tfc-b0 seed0"] == "done"
    assert results["table1 md"] == "blocked"
    calls.clear()
    again = {
        r.name: r.status for r in executor.execute_plan(steps, tmp_path, log=lambda m: None, invoke=invoke)
    }
    assert again["train tfc-b0 seed0"] == again["run tfc-b0 seed0"] == "skipped"
    assert "train tfc" not in calls and "run tfc" not in calls
    # A step whose input was just remade runs again, even though its own outputs are complete.
    (tmp_path / "steps" / "train_tfc-b0_seed0.json").unlink()
    calls.clear()
    third = {
        r.name: r.status for r in executor.execute_plan(steps, tmp_path, log=lambda m: None, invoke=invoke)
    }
    assert third["train tfc-b0 seed0"] == third["run tfc-b0 seed0"] == "done"
    # A different command for the same step is not "complete".
    changed = plan.build_plan(_tiny_settings(iters=2), tmp_path, ["table1"])
    assert not plan.is_complete(tmp_path, next(s for s in changed if s.name == "train tfc-b0 seed0"))
    # An evaluation resumes unless its weights were (re)trained in this invocation.
    run_tfc = next(s for s in steps if s.name == "run tfc-b0 seed0")
    assert run_tfc.argv_now(set())[-1] == "--resume"
    assert "--resume" not in run_tfc.argv_now({"train tfc-b0 seed0"})
    assert "--efficiency" in run_tfc.argv and run_tfc.argv[run_tfc.argv.index("--efficiency") + 1] == "none"


def test_changed_inputs_never_resume_stale_weights(tmp_path: Path) -> None:
    """New data or a changed training command starts the training afresh; an interruption resumes."""
    from vssbench.data.synth import MARKER

    calls: list[list[str]] = []

    def invoke(argv: list[str]) -> None:
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        if argv[0] == "data":
            assert not out.exists(), "the old synthetic data must be gone before data synth runs"
            out.mkdir(parents=True)
            for name in (MARKER, "val.txt", "train.txt"):
                (out / name).write_text("{}")
        elif argv[0] == "train":
            assert ("--resume" in argv) == (out / "last.pth").exists()
            out.mkdir(parents=True, exist_ok=True)
            for name in ("last.pth", "model.pth", "log.jsonl"):
                (out / name).write_text(" ".join(argv))
        else:
            out.mkdir(parents=True, exist_ok=True)
            out.joinpath("x").write_text("x")

    def execute(settings: plan.StudySettings) -> dict[str, str]:
        steps = plan.build_plan(settings, tmp_path, ["table1"])
        return {
            r.name: r.status
            for r in executor.execute_plan(steps, tmp_path, log=lambda m: None, invoke=invoke)
        }

    def train_calls() -> list[list[str]]:
        return [c for c in calls if c[0] == "train"]

    base = _tiny_settings(methods=("tfc",))
    assert set(execute(base).values()) == {"done"}
    model = tmp_path / "train" / "tfc-b0" / "seed0" / "model.pth"
    # The study's data settings change: the data is made again and the training starts afresh
    # (before, the finished last.pth was "resumed" and the old weights evaluated on the new data).
    calls.clear()
    new_data = plan.StudySettings(**{**base.__dict__, "synth_args": (*base.synth_args, "--seed=1")})
    assert execute(new_data)["train tfc-b0 seed0"] == "done"
    assert [c[0] for c in calls][:2] == ["data", "train"] and "--resume" not in train_calls()[0]
    # The training command changes (more iterations): afresh, not a refused --resume.
    calls.clear()
    longer = plan.StudySettings(**{**new_data.__dict__, "iters": 2})
    assert execute(longer)["train tfc-b0 seed0"] == "done"
    assert "--resume" not in train_calls()[0] and "--iters 2" in model.read_text()
    # An interrupted training of the same command continues from its last.pth.
    (tmp_path / "steps" / "train_tfc-b0_seed0.json").unlink()
    (tmp_path / "steps" / "train_tfc-b0_seed0.started.json").write_text(
        json.dumps(
            {
                "digest": plan.command_digest(
                    next(
                        s
                        for s in plan.build_plan(longer, tmp_path, ["table1"])
                        if s.name == "train tfc-b0 seed0"
                    )
                )
            }
        )
    )
    calls.clear()
    assert execute(longer)["train tfc-b0 seed0"] == "done"
    assert "--resume" in train_calls()[0]
    # A data folder that is not ours is never removed: data synth refuses it instead.
    calls.clear()
    (tmp_path / "data" / MARKER).unlink()
    other = plan.StudySettings(**{**longer.__dict__, "synth_args": (*base.synth_args, "--seed=2")})
    statuses = execute(other)
    assert statuses["data"] == "failed" and statuses["train tfc-b0 seed0"] == "blocked"
    assert (tmp_path / "data" / "val.txt").exists()
    error = (tmp_path / "steps" / "data.error.txt").read_text()
    assert "old synthetic data must be gone" in error


@pytest.mark.slow
def test_reproduce_in_miniature(tmp_path: Path) -> None:
    """The whole plumbing: data, a pretrained encoder, two seeds of two methods, runs, the efficiency
    sweep, Table 1 (md + LaTeX) with mean ± sd over the seeds, and Fig. 4."""
    out = tmp_path / "study"
    efficiency = ("--size", "64x64", "--warmup", "0", "--repeats", "1", "--threads", "1")
    settings = _tiny_settings(seeds=(0, 1), pretrain_iters=1, efficiency_args=efficiency)
    result = executor.reproduce(["table1", "fig4"], settings, out, in_process(main), log=lambda m: None)
    statuses = {r.name: (r.status, r.error) for r in result["results"]}
    assert all(status == "done" for status, _ in statuses.values()), statuses
    for name in ("table1.md", "table1.tex", "fig4.png", "README.md", "study.json", "pretrain/mit_b0.pth"):
        assert (out / name).stat().st_size > 0, name
    # Each seed's training started from the exported encoder and wrote its seed into the weights.
    for seed in (0, 1):
        config = json.loads((out / "train" / "tfc-b0" / f"seed{seed}" / "config.json").read_text())
        assert config["init"] == str(out / "pretrain" / "mit_b0.pth") and config["seed"] == seed
    # The table's accuracy cells are the mean ± sample sd over the two seeds' records.
    table = (out / "table1.md").read_text()
    for method in ("segformer", "tfc"):
        records = [
            json.loads(p.read_text()) for p in sorted((out / "runs" / f"{method}-b0").rglob("record.json"))
        ]
        assert [r["train_seed"] for r in records] == [0, 1]
        assert records[0]["checkpoint"].endswith(f"train/{method}-b0/seed0/model.pth")
        row = next(
            line
            for line in table.splitlines()
            if line.startswith("| SegFormer + TFC |" if method == "tfc" else "| SegFormer |")
        )
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip("|"))]  # "ours \| paper" stays one cell
        values = [100 * r["mIoU"] for r in records]
        mean, sd = sum(values) / 2, abs(values[0] - values[1]) / 2**0.5
        assert cells[3].split()[:2] == [f"{mean:.1f}", f"±{sd:.1f}"], cells[3]
        # Params, GMACs and FPS from the profile sweep of the first seed's weights.
        (sweep,) = [
            r
            for r in json.loads((out / "efficiency" / "b0" / "records.json").read_text())
            if r["method"] == method
        ]
        assert sweep["train_seed"] == 0 and sweep["input_size"] == [64, 64]
        assert cells[6].split()[0] == f"{sweep['params'] / 1e6:.1f}"
    assert "64x64" in table  # the note says where the efficiency columns were measured
    readme = (out / "README.md").read_text()
    assert "table1.md" in readme and "fig4.png" in readme and "seeds 0, 1" in readme
    # A changed evaluation command replaces its run folder instead of leaving a stale record beside it.
    changed = plan.StudySettings(
        **{**settings.__dict__, "run_args": (*settings.run_args, "--max-frames", "9")}
    )
    executor.reproduce(["table1"], changed, out, in_process(main), log=lambda m: None)
    assert len(list((out / "runs" / "tfc-b0" / "seed1").rglob("record.json"))) == 1
    (record_path,) = (out / "runs" / "tfc-b0" / "seed1").rglob("record.json")
    record = json.loads(record_path.read_text())
    assert record["num_frames"] == 9 * record["num_videos"]
    # Running the same command again skips every step.
    again = executor.reproduce(["table1"], changed, out, in_process(main), log=lambda m: None)
    assert {r.status for r in again["results"]} == {"skipped"}


def test_seeds_pretraining_and_the_efficiency_sweep_in_the_plan(tmp_path: Path) -> None:
    settings = plan.synthetic_settings(methods=["segformer", "tfc"], seeds=[0, 1], pretrain_iters=7)
    steps = {s.name: s for s in plan.build_plan(settings, tmp_path, ["table1"])}
    # One pretraining (seed 0, no validation, the study's other training flags), one export.
    pretrain = steps["pretrain b0"]
    argv = pretrain.argv
    assert argv[argv.index("--iters") + 1] == "7" and argv[argv.index("--val-every") + 1] == "0"
    assert argv[argv.index("--seed") + 1] == "0" and "--val-videos" not in argv
    assert argv[argv.index("--crop") + 1] == plan.STUDY_CROP and argv.count("--iters") == 1
    encoder = steps["encoder b0"]
    mit = str(tmp_path / "pretrain" / "mit_b0.pth")
    assert encoder.argv == [
        "convert",
        str(tmp_path / "pretrain" / "segformer-b0" / "model.pth"),
        "--to",
        "mit",
        "--out",
        mit,
    ]
    # Every training, of every seed, starts from the exported encoder and has its own folder.
    trains = [s for s in steps.values() if s.kind == "train"]
    assert sorted(s.name for s in trains) == [
        "train segformer-b0 seed0",
        "train segformer-b0 seed1",
        "train tfc-b0 seed0",
        "train tfc-b0 seed1",
    ]
    for step in trains:
        seed = step.name[-1]
        assert step.argv[step.argv.index("--init") + 1] == mit and "encoder b0" in step.needs
        assert step.argv[step.argv.index("--seed") + 1] == seed and step.argv.count("--seed") == 1
        assert step.argv[step.argv.index("--out") + 1].endswith(f"seed{seed}")
    # Evaluations measure accuracy only; one profile sweep measures the first seed's weights at 480x853.
    assert all(s.argv[s.argv.index("--efficiency") + 1] == "none" for s in steps.values() if s.kind == "run")
    sweep = steps["efficiency b0"]
    assert sweep.argv[:5] == ["profile", "--method", "segformer,tfc", "--backbone", "b0"]
    assert sweep.argv[sweep.argv.index("--size") + 1] == plan.EFFICIENCY_SIZE == "480x853"
    ckpts = [sweep.argv[i + 1] for i, a in enumerate(sweep.argv) if a == "--checkpoint"]
    assert ckpts == [
        f"segformer:b0={tmp_path}/train/segformer-b0/seed0/model.pth",
        f"tfc:b0={tmp_path}/train/tfc-b0/seed0/model.pth",
    ]
    assert sweep.needs == ["train segformer-b0 seed0", "train tfc-b0 seed0"]
    # The tables read each row's folder (all its seeds) and the sweep's records.
    table = steps["table1 md"]
    assert str(tmp_path / "runs" / "tfc-b0") in table.argv and "--ci" in table.argv
    assert table.argv[table.argv.index("--efficiency-from") + 1] == str(tmp_path / "efficiency")
    assert set(table.needs) == {
        "run segformer-b0 seed0",
        "run segformer-b0 seed1",
        "run tfc-b0 seed0",
        "run tfc-b0 seed1",
        "efficiency b0",
    }
    # Without pretraining every training starts from random init; the paper preset from --init-dir.
    bare = plan.build_plan(plan.synthetic_settings(methods=["tfc"], pretrain_iters=0), tmp_path, ["table1"])
    assert not any(s.kind in ("pretrain", "convert") for s in bare)
    assert all("--init" not in s.argv for s in bare)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": ()}, "--seeds: at least one seed"),
        ({"seeds": (0, 0)}, "--seeds 0,0: each seed once"),
        ({"seeds": (0, -1)}, "--seeds 0,-1: -1 must be >= 0"),
        ({"pretrain_iters": -1}, "--pretrain-iters -1: must be >= 0"),
    ],
)
def test_bad_seeds_and_pretraining_are_refused(changes: dict, message: str) -> None:
    settings = plan.StudySettings(**{**plan.synthetic_settings().__dict__, **changes})
    with pytest.raises(OptionError, match=re.escape(message)):
        plan.check_settings(settings)
