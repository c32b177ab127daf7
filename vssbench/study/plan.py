"""``vssbench reproduce``: the paper's Table 1, Table 2 and Fig. 4 as one resumable study.

A study is a plan of ordinary ``vssbench`` commands (``data synth``, ``train``, ``run``, ``table``,
``plot``) writing into one folder ``DIR``. Each step is executed in-process through the CLI (so a
step is exactly what a user would type, and ``--dry-run`` prints those commands), is skipped when
its outputs are complete and were made by the same command (``DIR/steps/<step>.json``), and a
failed step is reported while the steps that do not depend on it go on. An interrupted study
resumes by running the same command again: training steps continue from their ``last.pth``
(``train --resume``), evaluation steps from their finished videos (``run --resume``).

What is trained and what is reused (the paper's protocol, Sec. 4.3):

* Table 1: every method of the table trained once per backbone (SegFormer, Feature Reuse, TDNet,
  TFC, CFFM, MRCFA), each evaluated on the val split under one set of conditions. Feature Reuse is
  trained with keyframe clips (``train --method feature_reuse``): the paper's row is "our method
  without linear interpolation and sparse MSDA".
* Table 2: rows that change what is learned (interpolation mode, MSDA threshold, flow warping,
  similarity level, focal loss) train their own TFC; the frame-interval rows are inference-time
  choices and reuse the trained default TFC (``run --interval N``).
* Fig. 4: the mask-accuracy curves of the TFC runs with and without the focal loss.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vssbench.errors import OptionError

TARGETS: tuple[str, ...] = ("table1", "table2", "fig4")
PRESETS: tuple[str, ...] = ("synthetic", "paper")
#: Table 1's methods in the paper's row order.
TABLE1_METHODS: tuple[str, ...] = ("segformer", "feature_reuse", "tdnet", "tfc", "cffm", "mrcfa")
#: Table 1's backbones per preset (TDNet only on B0, as in the paper).
PAPER_BACKBONES: tuple[str, ...] = ("b0", "b1", "b5")
ONLY_B0: frozenset[str] = frozenset({"tdnet"})
#: Training schedule of the synthetic study (``--iters`` overrides the iterations).
STUDY_CROP, STUDY_ITERS = "64x64", 150


@dataclass(frozen=True)
class Variant:
    """A trained TFC variant of Table 2: ``name`` (folder), the ``--set`` options it trains with."""

    name: str
    options: tuple[tuple[str, str], ...]
    group: str


#: Table 2's rows that change what is learned (each trains its own model). The default TFC
#: (soft interpolation, sparse MSDA at 0.8, x̂^2, focal loss) is the shared baseline of the
#: similarity, focal and interval groups; Feature Reuse (trained with keyframe clips) is the
#: baseline of the interpolation and MSDA groups.
TABLE2_VARIANTS: tuple[Variant, ...] = (
    Variant("tfc-interp-soft", (("update", "none"),), "linear interpolation"),
    Variant("tfc-interp-hard", (("update", "none"), ("interp", "hard")), "linear interpolation"),
    Variant("tfc-interp-fixed", (("update", "none"), ("interp", "fixed")), "linear interpolation"),
    Variant("tfc-msda-0.8", (("interp", "none"),), "sparse MSDA"),
    Variant("tfc-msda-1.0", (("interp", "none"), ("threshold", "1.0")), "sparse MSDA"),
    Variant("tfc-msda-0.5", (("interp", "none"), ("threshold", "0.5")), "sparse MSDA"),
    Variant("tfc-flow", (("interp", "none"), ("update", "flow")), "sparse MSDA"),
    Variant("tfc-sim-x1", (("similarity_level", "1"),), "cosine similarity"),
    Variant("tfc-no-focal", (("focal", "false"),), "focal loss"),
)
#: Inference-time rows of Table 2: the default TFC evaluated with these keyframe intervals.
TABLE2_INTERVALS: tuple[int, ...] = (5, 6, 7, 8, 9)


@dataclass(frozen=True)
class StudySettings:
    """Everything a study's plan depends on (saved as ``DIR/study.json``)."""

    preset: str = "synthetic"
    data: str | None = None
    backbones: tuple[str, ...] = ("b0",)
    methods: tuple[str, ...] = TABLE1_METHODS
    device: str = "cpu"
    iters: int | None = None
    seed: int = 0
    #: ``data synth`` arguments of the synthetic study dataset (preset synthetic only).
    synth_args: tuple[str, ...] = ()
    #: extra ``run`` arguments (test size etc.) shared by every evaluation.
    run_args: tuple[str, ...] = ()
    #: extra ``train`` arguments shared by every training.
    train_args: tuple[str, ...] = ()
    #: ``run --efficiency`` of Table 1's evaluations (the ablation rows report accuracy only).
    table1_efficiency: str = "full"
    #: folder of ImageNet ``mit_bX.pth`` files: each training starts from ``--init <dir>/mit_<backbone>.pth``.
    init_dir: str | None = None


@dataclass
class Step:
    """One command of the plan.

    ``argv`` are the ``vssbench`` arguments; ``outputs`` the files whose existence (with an equal
    command in the step's stamp) marks the step complete; ``needs`` the names of the steps whose
    outputs it reads; ``targets`` which of table1/table2/fig4 it serves.
    """

    name: str
    kind: str
    argv: list[str]
    outputs: list[Path]
    needs: list[str] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)
    rank0_only: bool = False
    #: ``--resume`` is added when this file exists (a training interrupted earlier continues).
    resume_marker: Path | None = None
    #: ``--resume`` is added unless a step it needs ran in this invocation (an evaluation
    #: interrupted earlier continues; one whose weights were just (re)trained starts afresh).
    resume_unless_needs_ran: bool = False
    #: A folder only this step writes (a training's, the synthetic data's). It is removed before the
    #: step starts afresh: when its command changed since its last start, or when a step it needs
    #: ran in this invocation (old weights must not be resumed on new data).
    owned: Path | None = None

    def command(self) -> str:
        """The shell command a user would type for this step."""
        resume = " [--resume]" if self.resume_marker is not None or self.resume_unless_needs_ran else ""
        return "vssbench " + shlex.join(self.argv) + resume

    def argv_now(self, ran: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """The arguments to execute now, given the names of the steps that ran in this invocation."""
        if self.resume_marker is not None and self.resume_marker.exists():
            return [*self.argv, "--resume"]
        if self.resume_unless_needs_ran and not set(self.needs) & set(ran):
            return [*self.argv, "--resume"]
        return list(self.argv)


def synthetic_settings(
    backbones: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    device: str = "cpu",
    iters: int | None = None,
    seed: int = 0,
) -> StudySettings:
    """The laptop study: B0 from random init on a synthetic dataset made for it (see the README)."""
    from vssbench.data.synth import STUDY_SYNTH_ARGS

    size = STUDY_SYNTH_ARGS["size"]
    synth = tuple(f"--{k.replace('_', '-')}={v}" for k, v in STUDY_SYNTH_ARGS.items())
    return StudySettings(
        preset="synthetic",
        data=None,
        backbones=tuple(backbones or ("b0",)),
        methods=tuple(methods or TABLE1_METHODS),
        device=device,
        iters=iters,
        seed=seed,
        synth_args=synth,
        # Evaluate at the frames' own size (no upscaling to 480x853), timing with a short protocol.
        # The study's frames are multiples of 32, so CFFM/MRCFA's --size-divisor 32 changes no input
        # size; giving it to every method keeps the conditions identical (Table 1 deltas for all rows).
        run_args=("--size", size, "--size-divisor", "32", "--warmup", "1", "--repeats", "3"),
        # The synthetic preset scaled to a 30-minute study on 2 CPU cores (16 trainings): 64x64 crops
        # and 150 iterations (SegFormer-B0 ~0.5 s/iteration there), validation at the frames' size.
        train_args=("--preset", "synthetic", "--crop", STUDY_CROP, "--iters", str(STUDY_ITERS), "--val-size", size,
                    "--val-every", str(STUDY_ITERS // 2), "--val-videos", "2"),
    )


def paper_settings(
    data: str,
    backbones: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    device: str = "cuda",
    iters: int | None = None,
    seed: int = 0,
    init_dir: str | None = None,
) -> StudySettings:
    """The paper's study on VSPW_480p: B0/B1/B5, the paper training recipe, 480x853 evaluation.

    ``init_dir`` holds the ImageNet ``mit_b0.pth``.. files the paper's trainings start from.
    """
    return StudySettings(
        init_dir=None if init_dir is None else str(Path(init_dir).expanduser().resolve()),
        preset="paper",
        data=str(Path(data).expanduser().resolve()),
        backbones=tuple(backbones or PAPER_BACKBONES),
        methods=tuple(methods or TABLE1_METHODS),
        device=device,
        iters=iters,
        seed=seed,
        run_args=("--size", "480x853"),
        train_args=("--preset", "paper"),
    )


def build_plan(settings: StudySettings, out: str | Path, targets: Sequence[str]) -> list[Step]:
    """The steps of a study into ``out`` for ``targets`` (a subset of table1, table2, fig4), in order."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise OptionError(f"unknown reproduce target {unknown[0]!r}; targets: {', '.join(TARGETS)}, all")
    out = Path(out)
    wanted = set(targets)
    steps: list[Step] = []
    names: dict[str, Step] = {}

    def add(step: Step) -> Step:
        if step.name in names:
            names[step.name].targets |= step.targets
            return names[step.name]
        names[step.name] = step
        steps.append(step)
        return step

    data = settings.data
    needs_data: list[str] = []
    if data is None:
        data_dir = out / "data"
        add(Step(
            "data", "synth",
            ["data", "synth", "--out", str(data_dir), *settings.synth_args],
            [data_dir / "val.txt", data_dir / "train.txt"],
            targets=set(wanted), rank0_only=True, owned=data_dir,
        ))
        data = str(data_dir)
        needs_data = ["data"]

    common_train = ["--data", data, "--device", settings.device, "--seed", str(settings.seed), *settings.train_args]
    if settings.iters is not None:
        common_train += ["--iters", str(settings.iters)]
    common_run = ["--data", data, "--device", settings.device, "--quiet", *settings.run_args]

    def train(name: str, method: str, backbone: str, sets: Sequence[tuple[str, str]], targets: set[str]) -> str:
        folder = out / "train" / name
        argv = ["train", "--method", method, "--backbone", backbone, *common_train, "--out", str(folder)]
        if settings.init_dir is not None:
            argv += ["--init", str(Path(settings.init_dir) / f"mit_{backbone}.pth")]
        for key, value in sets:
            argv += ["--set", f"{key}={value}"]
        add(Step(f"train {name}", "train", argv, [folder / "model.pth", folder / "log.jsonl"], list(needs_data), targets,
                 resume_marker=folder / "last.pth", owned=folder))
        return str(folder / "model.pth")

    def run(name: str, method: str, backbone: str, checkpoint: str, trained: str, sets: Sequence[tuple[str, str]],
            targets: set[str], extra: Sequence[str] = ()) -> None:
        folder = out / "runs" / name
        # Table 1 reports params, GMACs and FPS; the ablation rows only accuracy and stability.
        efficiency = settings.table1_efficiency if "table1" in targets else "none"
        argv = ["run", "--method", method, "--backbone", backbone, *common_run, "--checkpoint", checkpoint,
                "--out", str(folder), "--efficiency", efficiency, *extra]
        for key, value in sets:
            argv += ["--set", f"{key}={value}"]
        add(Step(f"run {name}", "run", argv, [folder], [f"train {trained}"], targets, resume_unless_needs_ran=True))

    # Table 1 (and the shared baselines of Table 2 and Fig. 4).
    table1_runs: list[str] = []
    table1_methods = list(settings.methods) if "table1" in wanted else []
    for backbone in settings.backbones:
        for method in table1_methods:
            if method in ONLY_B0 and backbone != "b0":
                continue
            name = f"{method}-{backbone}"
            ckpt = train(name, method, backbone, (), {"table1"})
            run(name, method, backbone, ckpt, name, (), {"table1"})
            table1_runs.append(name)

    table2_runs: list[str] = []
    if "table2" in wanted or "fig4" in wanted:
        backbone = settings.backbones[0]
        base = f"tfc-{backbone}"
        base_ckpt = train(base, "tfc", backbone, (), {"table2", "fig4"} & wanted)
        if "table2" in wanted:
            run(base, "tfc", backbone, base_ckpt, base, (), {"table2"})
            fr = f"feature_reuse-{backbone}"
            fr_ckpt = train(fr, "feature_reuse", backbone, (), {"table2"})
            run(fr, "feature_reuse", backbone, fr_ckpt, fr, (), {"table2"})
            table2_runs += [base, fr]
            for variant in TABLE2_VARIANTS:
                name = f"{variant.name}-{backbone}"
                ckpt = train(name, "tfc", backbone, variant.options, {"table2"})
                run(name, "tfc", backbone, ckpt, name, variant.options, {"table2"})
                table2_runs.append(name)
            for interval in TABLE2_INTERVALS:
                name = f"tfc-interval{interval}-{backbone}"
                run(name, "tfc", backbone, base_ckpt, base, (), {"table2"}, extra=["--interval", str(interval)])
                table2_runs.append(name)
        if "fig4" in wanted:
            train(f"tfc-no-focal-{backbone}", "tfc", backbone, (("focal", "false"),), {"fig4"})

    for target, layout, runs in (("table1", "main", table1_runs), ("table2", "ablation", table2_runs)):
        if target not in wanted or not runs:
            continue
        for fmt, suffix in (("md", "md"), ("latex", "tex")):
            path = out / f"{target}.{suffix}"
            add(Step(
                f"{target} {fmt}", "table",
                ["table", layout, *[str(out / "runs" / r) for r in runs], "--with-paper",
                 "--format", fmt, "--out", str(path)],
                [path], [f"run {r}" for r in runs], {target}, rank0_only=True,
            ))
    if "fig4" in wanted:
        backbone = settings.backbones[0]
        logs = [out / "train" / f"tfc-{backbone}" / "log.jsonl", out / "train" / f"tfc-no-focal-{backbone}" / "log.jsonl"]
        path = out / "fig4.png"
        add(Step(
            "fig4", "plot",
            ["plot", "mask-accuracy", *map(str, logs), "--smooth", "10", "--out", str(path)],
            [path], [f"train tfc-{backbone}", f"train tfc-no-focal-{backbone}"], {"fig4"}, rank0_only=True,
        ))
    return steps


# ---------------------------------------------------------------------------------------------
# Execution


@dataclass
class StepResult:
    """How a step ended: ``status`` is done, skipped (complete already), failed or blocked."""

    name: str
    status: str
    seconds: float = 0.0
    error: str | None = None


def _stamp_path(out: Path, step: Step) -> Path:
    return out / "steps" / (step.name.replace(" ", "_").replace("/", "_") + ".json")


def _command_digest(step: Step) -> str:
    return hashlib.sha256(json.dumps(step.argv).encode()).hexdigest()[:16]


def _started_path(out: Path, step: Step) -> Path:
    return _stamp_path(out, step).with_suffix(".started.json")


def _previous_digest(out: Path, step: Step) -> str | None:
    """The command digest of the step's last start (its done stamp, else its started stamp), or None."""
    for path in (_stamp_path(out, step), _started_path(out, step)):
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("digest")
        except (OSError, ValueError):
            continue
    return None


def _discard_owned(step: Step, reason: str, log: Callable[[str], None], prefix: str) -> None:
    """Remove the step's own folder before a fresh start (a data folder only if it is synthetic)."""
    import shutil

    from vssbench.data.synth import read_marker

    folder = step.owned
    if folder is None or not folder.exists():
        return
    if step.kind == "synth" and read_marker(folder) is None:
        return  # not a dataset we made: `data synth` refuses it with a clear error
    log(f"{prefix}: removing {folder} ({reason})")
    shutil.rmtree(folder)


def is_complete(out: Path, step: Step) -> bool:
    """Outputs present and made by this very command (its stamp records the same argv)."""
    stamp = _stamp_path(out, step)
    if not stamp.is_file() or not all(p.exists() for p in step.outputs):
        return False
    try:
        return json.loads(stamp.read_text(encoding="utf-8")).get("digest") == _command_digest(step)
    except (OSError, ValueError):
        return False


def _invoke(argv: list[str]) -> None:
    """Run one ``vssbench`` command in this process; a non-zero exit raises RuntimeError."""
    from vssbench.cli import main

    try:
        main.main(args=list(argv), prog_name="vssbench", standalone_mode=False)
    except SystemExit as exc:  # commands signal a failed row with sys.exit(1)
        if exc.code not in (0, None):
            raise RuntimeError(f"exit status {exc.code}") from None


def execute_plan(
    steps: Sequence[Step],
    out: str | Path,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    invoke: Callable[[list[str]], None] = _invoke,
) -> list[StepResult]:
    """Run the steps in order: complete ones are skipped, a failure blocks only its dependents.

    A complete step runs again when a step it needs ran in this invocation (new weights are
    evaluated again, new records tabulated again).

    Steps marked ``rank0_only`` run on rank 0 while the other ranks wait (under torchrun); every
    other step runs on every rank, as its command expects.
    """
    from vssbench.harness.distributed import env_world_size

    out = Path(out)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    rank, world = _rank_world()
    results: list[StepResult] = []
    failed: set[str] = set()
    ran: set[str] = set()
    for index, step in enumerate(steps, start=1):
        prefix = f"[{index}/{len(steps)}] {step.name}"
        blocked = [n for n in step.needs if n in failed]
        if blocked:
            failed.add(step.name)
            results.append(StepResult(step.name, "blocked", error=f"needs {', '.join(blocked)}"))
            log(f"{prefix}: blocked (needs {', '.join(blocked)})")
            continue
        if is_complete(out, step) and not set(step.needs) & ran:
            results.append(StepResult(step.name, "skipped"))
            log(f"{prefix}: complete, skipped")
            continue
        log(f"{prefix}: {step.command()}")
        start = time.perf_counter()
        error = None
        try:
            if rank == 0:
                previous = _previous_digest(out, step)
                if set(step.needs) & ran:
                    _discard_owned(step, "a step it needs ran now", log, prefix)
                elif previous is not None and previous != _command_digest(step):
                    _discard_owned(step, "its command changed", log, prefix)
                elif step.kind == "synth":
                    _discard_owned(step, "incomplete or without a stamp", log, prefix)
                _stamp_path(out, step).unlink(missing_ok=True)
                _started_path(out, step).write_text(
                    json.dumps({"step": step.name, "digest": _command_digest(step), "started": _now()}) + "\n",
                    encoding="utf-8",
                )
            if world > 1 and env_world_size() > 1:
                _barrier()  # every rank sees the folder removed before the command starts
            if not step.rank0_only or rank == 0:
                invoke(step.argv_now(ran))
        except Exception as exc:  # a failed step is reported; the others go on
            error = f"{type(exc).__name__}: {exc}"
            log(f"{prefix}: FAILED: {error}")
            (out / "steps").mkdir(parents=True, exist_ok=True)
            _stamp_path(out, step).with_suffix(".error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        if world > 1 and env_world_size() > 1:
            _barrier()
        seconds = time.perf_counter() - start
        if error is None:
            if rank == 0:
                if step.kind == "run":
                    _prune_stale_runs(step.outputs[0])
                _stamp_path(out, step).write_text(
                    json.dumps({"step": step.name, "command": step.command(), "digest": _command_digest(step),
                                "seconds": round(seconds, 1), "finished": _now()}, indent=1) + "\n",
                    encoding="utf-8",
                )
                _started_path(out, step).unlink(missing_ok=True)
            ran.add(step.name)
            results.append(StepResult(step.name, "done", seconds))
            log(f"{prefix}: done in {seconds:.0f} s")
        else:
            failed.add(step.name)
            results.append(StepResult(step.name, "failed", seconds, error))
    return results


def _prune_stale_runs(folder: Path) -> None:
    """Keep only the newest run folder (by its record) of a run step's ``--out``.

    A step whose command changed writes a new ``<method>-<backbone>-<hash>`` folder beside the old
    one; the tables read the step's folder recursively, so the stale record must go.
    """
    import shutil

    runs = sorted((p.stat().st_mtime, p.parent) for p in Path(folder).glob("*/record.json"))
    for _, stale in runs[:-1]:
        shutil.rmtree(stale)


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_study_readme(out: Path, settings: StudySettings, steps: Sequence[Step], results: Sequence[StepResult],
                       wall_s: float) -> Path:
    """``DIR/README.md``: what ran with which command, how long, and links to tables and figures."""
    by_name = {r.name: r for r in results}
    lines = [
        "# vssbench reproduce",
        "",
        f"Preset `{settings.preset}`, backbones {', '.join(settings.backbones)}, device `{settings.device}`, "
        f"seed {settings.seed}; this invocation took {wall_s / 60:.1f} min. Settings: `study.json`.",
        "",
    ]
    outputs = [("Table 1", "table1.md"), ("Table 2", "table2.md"), ("Fig. 4", "fig4.png")]
    for title, name in outputs:
        path = out / name
        if path.exists():
            lines.append(f"- {title}: [{name}]({name})" + (f" (LaTeX: [{name[:-3]}.tex]({name[:-3]}.tex))" if name.endswith(".md") else ""))
    lines += ["", "| step | status | seconds | command |", "|---|---|---|---|"]
    for step in steps:
        r = by_name.get(step.name)
        status = r.status if r else "not run"
        if r is not None and r.error:
            status += f": {r.error}"
        seconds = f"{r.seconds:.0f}" if r and r.seconds else ""
        lines.append(f"| {step.name} | {status} | {seconds} | `{step.command()}` |")
    lines += [
        "",
        "Rows of Table 2 that change what is learned (interpolation mode, MSDA threshold, flow warping,",
        "similarity level, focal loss) were each trained; the frame-interval rows reuse the default TFC",
        "(`run --interval N`). Feature Reuse is trained with keyframe clips (`train --method feature_reuse`).",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def reproduce(
    targets: Sequence[str],
    settings: StudySettings,
    out: str | Path,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Plan and (unless ``dry_run``) execute a study; returns ``{"steps", "results", "out", "wall_s"}``."""
    out = Path(out)
    steps = build_plan(settings, out, targets)
    if dry_run:
        return {"steps": steps, "results": [], "out": str(out), "wall_s": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(dataclasses.asdict(settings), indent=1) + "\n", encoding="utf-8")
    start = time.perf_counter()
    results = execute_plan(steps, out, log=log)
    wall = time.perf_counter() - start
    rank, _ = _rank_world()
    if rank == 0:
        readme = write_study_readme(out, settings, steps, results, wall)
        log(f"study written to {out} (summary: {readme})")
    return {"steps": steps, "results": results, "out": str(out), "wall_s": wall}


__all__ = [
    "PRESETS",
    "TABLE1_METHODS",
    "TABLE2_INTERVALS",
    "TABLE2_VARIANTS",
    "TARGETS",
    "Step",
    "StepResult",
    "StudySettings",
    "build_plan",
    "execute_plan",
    "is_complete",
    "paper_settings",
    "reproduce",
    "synthetic_settings",
]
