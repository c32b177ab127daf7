"""The number of trainings and evaluations a study states comes from its plan."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from vssbench.cli import main
from vssbench.study import executor, plan

ROOT = Path(__file__).resolve().parents[2]
FULL = (
    "44 steps (1 dataset, 1 pretraining, 1 encoder export, 15 trainings, 20 evaluations, "
    "1 efficiency sweep, 4 tables, 1 figure)"
)


def test_the_full_synthetic_plan_counts(tmp_path: Path) -> None:
    steps = plan.build_plan(plan.synthetic_settings(), tmp_path, plan.TARGETS)
    kinds = [s.kind for s in steps]
    # 6 Table 1 trainings + 9 learned Table 2 variants (the default TFC and Feature Reuse shared);
    # 6 Table 1 evaluations + 9 variants + 5 inference-time intervals.
    assert (kinds.count("train"), kinds.count("run")) == (6 + 9, 6 + 9 + 5) == (15, 20)
    assert plan.describe_plan(steps) == FULL
    one = plan.build_plan(plan.synthetic_settings(methods=["tfc"], pretrain_iters=0), tmp_path, ["table1"])
    assert (
        plan.describe_plan(one)
        == "6 steps (1 dataset, 1 training, 1 evaluation, 1 efficiency sweep, 2 tables)"
    )
    three = plan.build_plan(plan.synthetic_settings(seeds=[0, 1, 2]), tmp_path, plan.TARGETS)
    assert plan.describe_plan(three) == (
        "114 steps (1 dataset, 1 pretraining, 1 encoder export, 45 trainings, 60 evaluations, "
        "1 efficiency sweep, 4 tables, 1 figure)"
    )


def test_the_study_readme_and_the_dry_run_state_the_plan_s_counts(tmp_path: Path) -> None:
    settings = plan.synthetic_settings()
    steps = plan.build_plan(settings, tmp_path, plan.TARGETS)
    readme = executor.write_study_readme(tmp_path, settings, steps, [], 0.0).read_text()
    assert f"The plan: {FULL}." in readme
    assert "16 trainings" not in readme
    result = CliRunner().invoke(main, ["reproduce", "all", "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"# {FULL} into {tmp_path}\n"


def _counts(settings: plan.StudySettings, out: Path) -> dict[str, int]:
    steps = plan.build_plan(settings, out, plan.TARGETS)
    kinds = [s.kind for s in steps]
    return {"steps": len(steps), "trainings": kinds.count("train"), "evaluations": kinds.count("run")}


def test_the_docs_state_the_plan_s_counts(tmp_path: Path) -> None:
    """The docs state the default study's counts and the committed 3-seed study's, nothing else."""
    default = _counts(plan.synthetic_settings(), tmp_path)
    three = _counts(plan.synthetic_settings(seeds=[0, 1, 2]), tmp_path)
    assert three == {"steps": 114, "trainings": 45, "evaluations": 60}
    for doc, allowed in (
        ("docs/reproduce.md", (default, three)),
        ("benchmarks/results/study/README.md", (default, three)),  # the FPS re-measurement ran the default
    ):
        text = " ".join((ROOT / doc).read_text().split())
        for word in default:
            stated = {int(n) for n in re.findall(rf"(\d+) {word}\b", text)}
            assert stated and stated <= {c[word] for c in allowed}, (doc, word, stated)
