"""Studies: the reproduce plan (Table 1, Table 2, Fig. 4), its executor and its Slurm launcher.

:mod:`vssbench.study.plan` says what a study runs (settings, steps and their commands, the stamps
that mark a step complete); :mod:`vssbench.study.executor` runs it through the ``invoke`` its caller
hands over (``vssbench reproduce`` runs each command in-process); :mod:`vssbench.study.slurm`
submits each step that is not complete as a Slurm job instead (``--launcher slurm``).
"""

from vssbench.study.executor import (
    CommandFailed,
    Invoke,
    StepResult,
    execute_plan,
    reproduce,
    run_step,
    write_study_readme,
)
from vssbench.study.plan import (
    EFFICIENCY_SIZE,
    PRESETS,
    STUDY_PRETRAIN_ITERS,
    TABLE1_METHODS,
    TABLE2_INTERVALS,
    TABLE2_VARIANTS,
    TARGETS,
    Step,
    StudySettings,
    build_plan,
    check_machine,
    check_settings,
    describe_plan,
    is_complete,
    load_study,
    paper_settings,
    save_study,
    synthetic_settings,
)
from vssbench.study.slurm import (
    SlurmError,
    SlurmOptions,
    cancel_study,
    job_script,
    run_job_step,
    slurm_options,
    study_status,
    submit_plan,
    submit_study,
)

__all__ = [
    "EFFICIENCY_SIZE",
    "PRESETS",
    "STUDY_PRETRAIN_ITERS",
    "TABLE1_METHODS",
    "TABLE2_INTERVALS",
    "TABLE2_VARIANTS",
    "TARGETS",
    "CommandFailed",
    "Invoke",
    "Step",
    "SlurmError",
    "SlurmOptions",
    "StepResult",
    "StudySettings",
    "build_plan",
    "cancel_study",
    "check_machine",
    "check_settings",
    "describe_plan",
    "execute_plan",
    "is_complete",
    "job_script",
    "load_study",
    "paper_settings",
    "reproduce",
    "run_job_step",
    "run_step",
    "save_study",
    "slurm_options",
    "study_status",
    "submit_plan",
    "submit_study",
    "synthetic_settings",
    "write_study_readme",
]
