"""The plan of ``vssbench reproduce``: the paper's Table 1, Table 2 and Fig. 4 as one resumable study.

A study is a plan of ordinary ``vssbench`` commands (``data synth``, ``train``, ``run``, ``table``,
``plot``) writing into one folder ``DIR``: each :class:`Step` is exactly what a user would type
(``--dry-run`` prints those commands). This module checks the settings (every flag, before
anything is written), builds the plan and reads the stamps that say whether a step is complete
(its outputs present and made by the same command, ``DIR/steps/<step>.json``);
:mod:`vssbench.study.executor` runs it, skipping complete steps and going on past a failed one
with the steps that do not depend on it. An interrupted study resumes by running the same command
again: training steps continue from their ``last.pth`` (``train --resume``), evaluation steps
from their finished videos (``run --resume``). ``DIR/study.json`` (:func:`save_study`) holds the
targets and settings the plan is rebuilt from (:func:`load_study`: each job of the Slurm launcher,
:mod:`vssbench.study.slurm`, rebuilds it to run its one step).

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
import hashlib
import json
import os
import shlex
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vssbench.data.synth import STUDY_SYNTH_ARGS
from vssbench.data.vspw import read_split_file
from vssbench.errors import DataError, OptionError
from vssbench.harness.distributed import resolve_device
from vssbench.methods.base import check_backbone, method_info

TARGETS: tuple[str, ...] = ("table1", "table2", "fig4")
PRESETS: tuple[str, ...] = ("synthetic", "paper")
#: Table 1's methods in the paper's row order.
TABLE1_METHODS: tuple[str, ...] = ("segformer", "feature_reuse", "tdnet", "tfc", "cffm", "mrcfa")
#: Table 1's backbones per preset (TDNet only on B0, as in the paper).
PAPER_BACKBONES: tuple[str, ...] = ("b0", "b1", "b5")
ONLY_B0: frozenset[str] = frozenset({"tdnet"})
#: Training schedule of the synthetic study (``--iters`` overrides the iterations).
STUDY_CROP, STUDY_ITERS = "64x64", 150
#: Iterations of the synthetic study's encoder pretraining (``--pretrain-iters``), chosen on
#: SegFormer's learning curve (docs/reproduce.md).
STUDY_PRETRAIN_ITERS = 600
#: Seed of the pretraining: one encoder file for every seed of the study, as ImageNet weights are.
PRETRAIN_SEED = 0
#: Where Table 1's params, GMACs and FPS are measured: the paper's test size, rendered frames.
EFFICIENCY_SIZE = "480x853"
#: What each kind of step makes, for the counts a study states (:func:`describe_plan`).
KIND_NOUNS: dict[str, tuple[str, str]] = {
    "synth": ("dataset", "datasets"),
    "pretrain": ("pretraining", "pretrainings"),
    "convert": ("encoder export", "encoder exports"),
    "train": ("training", "trainings"),
    "run": ("evaluation", "evaluations"),
    "profile": ("efficiency sweep", "efficiency sweeps"),
    "table": ("table", "tables"),
    "plot": ("figure", "figures"),
}


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
    #: Every training of the study runs once per seed (``train --seed``), into its own folders.
    seeds: tuple[int, ...] = (0,)
    #: Iterations of the per-frame SegFormer pretraining that stands in for ImageNet (synthetic
    #: preset; 0: every training starts from random init).
    pretrain_iters: int = 0
    #: ``data synth`` arguments of the synthetic study dataset (preset synthetic only).
    synth_args: tuple[str, ...] = ()
    #: extra ``run`` arguments (test size etc.) shared by every evaluation.
    run_args: tuple[str, ...] = ()
    #: extra ``train`` arguments shared by every training.
    train_args: tuple[str, ...] = ()
    #: ``vssbench profile`` arguments of Table 1's efficiency sweep (params, GMACs, FPS of all its
    #: rows, one sweep per backbone; the evaluations measure accuracy only).
    efficiency_args: tuple[str, ...] = ()
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
    seeds: Sequence[int] = (0,),
    pretrain_iters: int | None = None,
) -> StudySettings:
    """The laptop study: B0 on a synthetic dataset made for it (see the README), every training
    starting from an encoder pretrained on the study's training videos (the stand-in for ImageNet).

    ``iters`` replaces the study's 150 iterations (validation stays halfway and at the end);
    ``pretrain_iters`` the pretraining's :data:`STUDY_PRETRAIN_ITERS` (0: random init).
    """
    size = STUDY_SYNTH_ARGS["size"]
    schedule = STUDY_ITERS if iters is None or iters < 1 else iters  # a bad value: check_settings says so
    synth = tuple(f"--{k.replace('_', '-')}={v}" for k, v in STUDY_SYNTH_ARGS.items())
    return StudySettings(
        preset="synthetic",
        data=None,
        backbones=tuple(backbones or ("b0",)),
        methods=tuple(methods or TABLE1_METHODS),
        device=device,
        iters=iters,
        seeds=tuple(seeds),
        pretrain_iters=STUDY_PRETRAIN_ITERS if pretrain_iters is None else pretrain_iters,
        synth_args=synth,
        # Accuracy at the frames' own size (no upscaling to 480x853). The study's frames are multiples
        # of 32, so CFFM/MRCFA's --size-divisor 32 changes no input size; giving it to every method
        # keeps the conditions identical (Table 1 deltas for all rows).
        run_args=("--size", size, "--size-divisor", "32"),
        # Params, GMACs and FPS do not depend on the training data: measured at the paper's size.
        # (three timed intervals per row, in turns: the sweep takes ~3 minutes on 2 CPU cores).
        efficiency_args=("--size", EFFICIENCY_SIZE, "--repeats", "3"),
        # The synthetic preset scaled to a ~30-minute study on 2 CPU cores (`reproduce all`): 64x64 crops
        # and 150 iterations (SegFormer-B0 ~0.5 s/iteration there), validation at the frames' size.
        train_args=(
            "--preset",
            "synthetic",
            "--crop",
            STUDY_CROP,
            "--iters",
            str(schedule),
            "--val-size",
            size,
            "--val-every",
            str(max(1, schedule // 2)),
            "--val-videos",
            "2",
        ),
    )


def paper_settings(
    data: str,
    backbones: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    device: str = "cuda",
    iters: int | None = None,
    seeds: Sequence[int] = (0,),
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
        seeds=tuple(seeds),
        run_args=("--size", EFFICIENCY_SIZE),
        efficiency_args=("--size", EFFICIENCY_SIZE),
        train_args=("--preset", "paper"),
    )


def check_settings(settings: StudySettings) -> None:
    """Refuse a value no step could run with, naming the ``reproduce`` flag and its value
    (:class:`OptionError`, ``--iters 0: must be >= 1``). Checks values only: the machine
    (paths, CUDA) is :func:`check_machine`'s."""
    if settings.preset not in PRESETS:
        raise OptionError(f"--preset {settings.preset}: must be one of {', '.join(PRESETS)}")
    if settings.preset == "paper" and not settings.data:
        raise OptionError("--preset paper needs --data (the VSPW_480p root)")
    if settings.iters is not None and settings.iters < 1:
        raise OptionError(f"--iters {settings.iters}: must be >= 1")
    seeds = list(settings.seeds)
    shown = ",".join(str(s) for s in seeds)
    if not seeds:
        raise OptionError("--seeds: at least one seed")
    for seed in seeds:
        if not 0 <= seed < 2**32:  # numpy's seed range (each rank seeds with seed + rank)
            raise OptionError(f"--seeds {shown}: {seed} must be >= 0 and < {2**32}")
    if len(set(seeds)) != len(seeds):
        raise OptionError(f"--seeds {shown}: each seed once")
    if settings.pretrain_iters < 0:
        raise OptionError(f"--pretrain-iters {settings.pretrain_iters}: must be >= 0 (0: no pretraining)")
    if settings.pretrain_iters and settings.preset != "synthetic":
        raise OptionError(
            f"--pretrain-iters {settings.pretrain_iters}: for --preset synthetic only "
            "(the paper preset starts from the ImageNet files of --init-dir)"
        )
    if settings.pretrain_iters and settings.init_dir is not None:
        raise OptionError("--pretrain-iters and --init-dir exclude each other (both give the encoder)")
    device = settings.device
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise OptionError(f"--device {device}: must be cpu, cuda or cuda:N")
    methods = list(settings.methods)
    for method in methods:
        try:
            method_info(method)
        except OptionError as exc:
            raise OptionError(f"--methods {','.join(methods)}: {exc}") from None
    if not settings.backbones:
        raise OptionError("--backbones: at least one backbone")
    # Each planned (method, backbone) pair is checked by build_plan, which knows the targets.


def check_machine(settings: StudySettings, check_device: bool = True) -> None:
    """Refuse, naming the flag, what this machine lacks for the study: the ``--data`` folder and its
    train/val split files, every ``--init-dir/mit_<backbone>.pth``, CUDA for ``--device cuda``
    (unless ``check_device`` is False: a Slurm submission's steps run on other machines).

    Called before a study writes anything; ``--dry-run`` skips it (a plan may be shown anywhere).
    """
    if check_device:
        try:
            resolve_device(settings.device)
        except OptionError as exc:
            raise OptionError(f"--device {settings.device}: {exc}") from None
    if settings.data is not None:
        root = Path(settings.data)
        if not root.is_dir():
            raise OptionError(f"--data {settings.data}: no such folder")
        for split in ("train", "val"):
            try:
                read_split_file(root / f"{split}.txt")
            except DataError as exc:
                raise OptionError(f"--data {settings.data}: {exc}") from None
    if settings.init_dir is not None:
        folder = Path(settings.init_dir)
        if not folder.is_dir():
            raise OptionError(f"--init-dir {settings.init_dir}: no such folder")
        for backbone in settings.backbones:
            path = folder / f"mit_{backbone}.pth"
            if not path.is_file():
                raise OptionError(f"--init-dir {settings.init_dir}: {path} does not exist")


def _set_flag(args: Sequence[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value replaced (appended when absent): a command holds each flag once."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


def _drop_flag(args: Sequence[str], flag: str) -> list[str]:
    """``args`` without ``flag`` and its value."""
    args = list(args)
    if flag in args:
        i = args.index(flag)
        del args[i : i + 2]
    return args


def describe_plan(steps: Sequence[Step]) -> str:
    """What a plan makes, counted from its steps: ``43 steps (1 dataset, 1 pretraining, ...)``."""
    kinds = [step.kind for step in steps]
    parts = []
    for kind, (one, many) in KIND_NOUNS.items():
        count = kinds.count(kind)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return f"{len(steps)} step{'' if len(steps) == 1 else 's'} ({', '.join(parts)})"


def build_plan(settings: StudySettings, out: str | Path, targets: Sequence[str]) -> list[Step]:
    """The steps of a study into ``out`` for ``targets`` (a subset of table1, table2, fig4), in order.

    Every training and evaluation runs once per seed of ``settings.seeds``, into
    ``train/<row>/seed<k>`` and ``runs/<row>/seed<k>``; the tables read ``runs/<row>`` (all its
    seeds: mean ± spread). With ``pretrain_iters`` a per-frame SegFormer pretrained on the
    training videos is exported as ``pretrain/mit_<backbone>.pth``, every training's ``--init``.
    Table 1's params, GMACs and FPS come from one ``profile`` sweep per backbone over the first
    seed's weights (``efficiency/<backbone>/records.json``).

    Raises :class:`OptionError` for an unknown target, for settings :func:`check_settings` refuses,
    and for a backbone that a method it trains does not have (naming ``--backbones``).
    """
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise OptionError(f"unknown reproduce target {unknown[0]!r}; targets: {', '.join(TARGETS)}, all")
    check_settings(settings)
    out = Path(out)
    wanted = set(targets)
    steps: list[Step] = []
    names: dict[str, Step] = {}
    seeds = list(settings.seeds)

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
        add(
            Step(
                "data",
                "synth",
                ["data", "synth", "--out", str(data_dir), *settings.synth_args],
                [data_dir / "val.txt", data_dir / "train.txt"],
                targets=set(wanted),
                rank0_only=True,
                owned=data_dir,
            )
        )
        data = str(data_dir)
        needs_data = ["data"]

    common_train = ["--data", data, "--device", settings.device, *settings.train_args]
    if settings.iters is not None:  # the user's value replaces the preset's
        common_train = _set_flag(common_train, "--iters", str(settings.iters))
    common_run = ["--data", data, "--device", settings.device, "--quiet", *settings.run_args]

    # The encoder every training starts from: ImageNet files (--init-dir) or the pretraining's export.
    init: dict[str, tuple[str, list[str]]] = {}  # backbone -> (mit file, steps it needs)
    for backbone in settings.backbones:
        if settings.init_dir is not None:
            init[backbone] = (str(Path(settings.init_dir) / f"mit_{backbone}.pth"), [])
        elif settings.pretrain_iters:
            folder = out / "pretrain" / f"segformer-{backbone}"
            pretrain = _set_flag(common_train, "--iters", str(settings.pretrain_iters))
            for flag in ("--val-size", "--val-videos"):
                pretrain = _drop_flag(pretrain, flag)
            argv = [
                "train",
                "--method",
                "segformer",
                "--backbone",
                backbone,
                *_set_flag(pretrain, "--val-every", "0"),
                "--seed",
                str(PRETRAIN_SEED),
                "--out",
                str(folder),
            ]
            add(
                Step(
                    f"pretrain {backbone}",
                    "pretrain",
                    argv,
                    [folder / "model.pth", folder / "log.jsonl"],
                    list(needs_data),
                    set(wanted),
                    resume_marker=folder / "last.pth",
                    owned=folder,
                )
            )
            mit = out / "pretrain" / f"mit_{backbone}.pth"
            add(
                Step(
                    f"encoder {backbone}",
                    "convert",
                    ["convert", str(folder / "model.pth"), "--to", "mit", "--out", str(mit)],
                    [mit],
                    [f"pretrain {backbone}"],
                    set(wanted),
                    rank0_only=True,
                )
            )
            init[backbone] = (str(mit), [f"encoder {backbone}"])

    def train(
        name: str, method: str, backbone: str, sets: Sequence[tuple[str, str]], targets: set[str], seed: int
    ) -> tuple[str, str]:
        """Add the training of row ``name`` with ``seed``; returns (step name, its model.pth)."""
        try:
            check_backbone(method, backbone)
        except OptionError as exc:
            raise OptionError(f"--backbones {','.join(settings.backbones)}: {exc}") from None
        folder = out / "train" / name / f"seed{seed}"
        argv = ["train", "--method", method, "--backbone", backbone, *common_train, "--seed", str(seed)]
        argv += ["--out", str(folder)]
        needs = list(needs_data)
        if backbone in init:
            argv += ["--init", init[backbone][0]]
            needs += init[backbone][1]
        for key, value in sets:
            argv += ["--set", f"{key}={value}"]
        step = add(
            Step(
                f"train {name} seed{seed}",
                "train",
                argv,
                [folder / "model.pth", folder / "log.jsonl"],
                needs,
                targets,
                resume_marker=folder / "last.pth",
                owned=folder,
            )
        )
        return step.name, str(folder / "model.pth")

    def run(
        name: str,
        method: str,
        backbone: str,
        trained: tuple[str, str],
        sets: Sequence[tuple[str, str]],
        targets: set[str],
        seed: int,
        extra: Sequence[str] = (),
    ) -> str:
        """Add the evaluation of row ``name`` with the weights of ``trained`` (step, model.pth)."""
        folder = out / "runs" / name / f"seed{seed}"
        argv = ["run", "--method", method, "--backbone", backbone, *common_run, "--checkpoint", trained[1]]
        argv += ["--out", str(folder), "--efficiency", "none", *extra]
        for key, value in sets:
            argv += ["--set", f"{key}={value}"]
        step = add(
            Step(
                f"run {name} seed{seed}",
                "run",
                argv,
                [folder],
                [trained[0]],
                targets,
                resume_unless_needs_ran=True,
            )
        )
        return step.name

    # Table 1 (and the shared baselines of Table 2 and Fig. 4).
    table1_rows: list[str] = []
    table1_steps: list[str] = []
    table1_methods = list(settings.methods) if "table1" in wanted else []
    first_weights: dict[str, list[tuple[str, tuple[str, str]]]] = {}  # backbone -> (method, trained)
    for backbone in settings.backbones:
        for method in table1_methods:
            if method in ONLY_B0 and backbone != "b0":
                continue
            name = f"{method}-{backbone}"
            for seed in seeds:
                trained = train(name, method, backbone, (), {"table1"}, seed)
                table1_steps.append(run(name, method, backbone, trained, (), {"table1"}, seed))
                if seed == seeds[0]:
                    first_weights.setdefault(backbone, []).append((method, trained))
            table1_rows.append(name)

    # Table 1's efficiency: every row of a backbone in one profile sweep (its FPS timed in turns).
    efficiency_steps: list[str] = []
    if settings.efficiency_args:
        for backbone, rows in first_weights.items():
            folder = out / "efficiency" / backbone
            argv = ["profile", "--method", ",".join(m for m, _ in rows), "--backbone", backbone]
            argv += ["--device", settings.device, *settings.efficiency_args]
            for method, trained in rows:
                argv += ["--checkpoint", f"{method}:{backbone}={trained[1]}"]
            argv += ["--out", str(folder)]
            step = add(
                Step(
                    f"efficiency {backbone}",
                    "profile",
                    argv,
                    [folder / "records.json"],
                    [trained[0] for _, trained in rows],
                    {"table1"},
                    rank0_only=True,
                )
            )
            efficiency_steps.append(step.name)

    table2_rows: list[str] = []
    table2_steps: list[str] = []
    if "table2" in wanted or "fig4" in wanted:
        backbone = settings.backbones[0]
        base = f"tfc-{backbone}"
        for seed in seeds:
            base_trained = train(base, "tfc", backbone, (), {"table2", "fig4"} & wanted, seed)
            if "table2" in wanted:
                table2_steps.append(run(base, "tfc", backbone, base_trained, (), {"table2"}, seed))
                fr = f"feature_reuse-{backbone}"
                fr_trained = train(fr, "feature_reuse", backbone, (), {"table2"}, seed)
                table2_steps.append(run(fr, "feature_reuse", backbone, fr_trained, (), {"table2"}, seed))
                for variant in TABLE2_VARIANTS:
                    name = f"{variant.name}-{backbone}"
                    trained = train(name, "tfc", backbone, variant.options, {"table2"}, seed)
                    table2_steps.append(
                        run(name, "tfc", backbone, trained, variant.options, {"table2"}, seed)
                    )
                for interval in TABLE2_INTERVALS:
                    name = f"tfc-interval{interval}-{backbone}"
                    extra = ["--interval", str(interval)]
                    table2_steps.append(run(name, "tfc", backbone, base_trained, (), {"table2"}, seed, extra))
            if "fig4" in wanted:
                train(f"tfc-no-focal-{backbone}", "tfc", backbone, (("focal", "false"),), {"fig4"}, seed)
        if "table2" in wanted:
            table2_rows = [base, f"feature_reuse-{backbone}"]
            table2_rows += [f"{v.name}-{backbone}" for v in TABLE2_VARIANTS]
            table2_rows += [f"tfc-interval{i}-{backbone}" for i in TABLE2_INTERVALS]

    tables = (
        ("table1", "main", table1_rows, table1_steps + efficiency_steps),
        ("table2", "ablation", table2_rows, table2_steps),
    )
    for target, layout, rows, needs in tables:
        if target not in wanted or not rows:
            continue
        extra: list[str] = []
        if target == "table1":
            extra = ["--ci"]  # intervals over seeds, then videos (over videos alone with one seed)
            if efficiency_steps:
                extra += ["--efficiency-from", str(out / "efficiency")]
        for fmt, suffix in (("md", "md"), ("latex", "tex")):
            path = out / f"{target}.{suffix}"
            add(
                Step(
                    f"{target} {fmt}",
                    "table",
                    [
                        "table",
                        layout,
                        *[str(out / "runs" / r) for r in rows],
                        "--with-paper",
                        *extra,
                        "--format",
                        fmt,
                        "--out",
                        str(path),
                    ],
                    [path],
                    list(needs),
                    {target},
                    rank0_only=True,
                )
            )
    if "fig4" in wanted:
        backbone, seed = settings.backbones[0], seeds[0]
        runs = [f"tfc-{backbone}", f"tfc-no-focal-{backbone}"]
        logs = [out / "train" / r / f"seed{seed}" / "log.jsonl" for r in runs]
        path = out / "fig4.png"
        add(
            Step(
                "fig4",
                "plot",
                ["plot", "mask-accuracy", *map(str, logs), "--smooth", "10", "--out", str(path)],
                [path],
                [f"train {r} seed{seed}" for r in runs],
                {"fig4"},
                rank0_only=True,
            )
        )
    return steps


def save_study(out: str | Path, settings: StudySettings, targets: Sequence[str]) -> Path:
    """``DIR/study.json``: the targets and the settings, from which :func:`load_study` rebuilds the
    plan (each Slurm job runs one of its steps), and where and from which folder ``out`` was given
    (``out``, ``cwd``: the plan's commands hold its spelling)."""
    path = Path(out) / "study.json"
    record = {"targets": list(targets), **dataclasses.asdict(settings), "out": str(out), "cwd": os.getcwd()}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def load_study(out: str | Path) -> tuple[StudySettings, list[str]]:
    """The settings and targets saved in ``DIR/study.json`` (lists back to tuples; a study.json
    written before targets were saved means every target). :class:`OptionError` when it is missing."""
    path = Path(out) / "study.json"
    if not path.is_file():
        raise OptionError(f"{out}: not a study folder (no study.json)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptionError(f"{path}: {exc}") from None
    fields = {f.name for f in dataclasses.fields(StudySettings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in fields}
    return StudySettings(**values), list(record.get("targets") or TARGETS)


# ---------------------------------------------------------------------------------------------
# Stamps: DIR/steps/<step>.json (done) and <step>.started.json (started, not finished)


def step_slug(step: Step) -> str:
    """The step's name as a file name (spaces and slashes as ``_``): ``train_tfc-b0_seed0``."""
    return step.name.replace(" ", "_").replace("/", "_")


def stamp_path(out: Path, step: Step) -> Path:
    """The step's done stamp: its command, digest, seconds and end time, written when it succeeded."""
    return out / "steps" / (step_slug(step) + ".json")


def started_path(out: Path, step: Step) -> Path:
    """The step's started stamp: its digest, written when it starts, removed when it succeeds."""
    return stamp_path(out, step).with_suffix(".started.json")


def command_digest(step: Step) -> str:
    """A short hash of the step's arguments (without ``--resume``): equal digests, the same command."""
    return hashlib.sha256(json.dumps(step.argv).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_stamp(out: Path, step: Step) -> dict | None:
    """The step's done stamp (``step``, ``command``, ``digest``, ``seconds``: how long the invocation
    that made it took over it, ``finished``: UTC time), or None when there is none."""
    return _read_json(stamp_path(out, step))


def read_started(out: Path, step: Step) -> dict | None:
    """The step's started stamp (``step``, ``digest``, ``started``: UTC time, and the process that
    started it: ``host``, ``pid``, ``pid_start``, or ``job`` in a Slurm job), or None."""
    return _read_json(started_path(out, step))


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """``host``, ``pid`` and ``pid_start`` of this process, for a started stamp (pids are reused:
    the start time tells a later process with the same pid apart, where ``/proc`` exists)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _proc_start(os.getpid())}


def process_alive(started: Mapping[str, Any]) -> bool | None:
    """Is the process named by a started stamp (:func:`this_process`) still running? None when it
    cannot be told from here: another host, or no process recorded."""
    pid = started.get("pid")
    if not isinstance(pid, int) or started.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    recorded = started.get("pid_start")
    return recorded is None or _proc_start(pid) in (None, recorded)


def previous_digest(out: Path, step: Step) -> str | None:
    """The command digest of the step's last start (its done stamp, else its started stamp), or None."""
    for path in (stamp_path(out, step), started_path(out, step)):
        stamp = _read_json(path)
        if stamp is not None:
            return stamp.get("digest")
    return None


def is_complete(out: Path, step: Step) -> bool:
    """Outputs present and made by this very command (its stamp records the same argv)."""
    if not all(p.exists() for p in step.outputs):
        return False
    stamp = read_stamp(out, step)
    return stamp is not None and stamp.get("digest") == command_digest(step)


__all__ = [
    "EFFICIENCY_SIZE",
    "KIND_NOUNS",
    "PRETRAIN_SEED",
    "STUDY_PRETRAIN_ITERS",
    "PRESETS",
    "TABLE1_METHODS",
    "TABLE2_INTERVALS",
    "TABLE2_VARIANTS",
    "TARGETS",
    "Step",
    "StudySettings",
    "Variant",
    "build_plan",
    "check_machine",
    "check_settings",
    "command_digest",
    "describe_plan",
    "is_complete",
    "load_study",
    "paper_settings",
    "previous_digest",
    "process_alive",
    "read_stamp",
    "read_started",
    "save_study",
    "stamp_path",
    "started_path",
    "this_process",
    "step_slug",
    "synthetic_settings",
]
