"""Studies: the reproduce plan (Table 1, Table 2, Fig. 4) and its executor.

:mod:`vssbench.study.plan` says what a study runs (settings, steps and their commands, the stamps
that mark a step complete); :mod:`vssbench.study.executor` runs it through the ``invoke`` its caller
hands over (``vssbench reproduce`` runs each command in-process).
"""

from vssbench.study.executor import (
    CommandFailed,
    Invoke,
    StepResult,
    execute_plan,
    reproduce,
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
    paper_settings,
    synthetic_settings,
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
    "StepResult",
    "StudySettings",
    "build_plan",
    "check_machine",
    "check_settings",
    "describe_plan",
    "execute_plan",
    "is_complete",
    "paper_settings",
    "reproduce",
    "synthetic_settings",
    "write_study_readme",
]
