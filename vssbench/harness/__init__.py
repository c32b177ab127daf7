"""The evaluation harness: configs, runner, sweeps, profile, distributed evaluation.

``build_configs(methods, backbones, ...)`` turns a request into :class:`~vssbench.config.RunConfig`
objects (:mod:`~vssbench.harness.configs`); ``run_evaluation(config)`` evaluates one method over a
split and writes its record to the results store (``<out>/<method>-<backbone>-<config_hash>/``,
:mod:`~vssbench.harness.runner`); ``run_sweep(configs)`` runs several, turning failures into error
rows (:mod:`~vssbench.harness.sweep`); ``profile_method(config)`` measures params/GMACs/FPS without
data (:mod:`~vssbench.harness.profile`, measured as in :mod:`~vssbench.harness.efficiency`).
Records and the store themselves live in :mod:`vssbench.results`.
"""

from vssbench.harness.adapters import PROFILE_FRAMES
from vssbench.harness.configs import (
    METRIC_PRESETS,
    build_configs,
    effective_options,
    expand_backbones,
    expand_methods,
    normalize_config,
    prepare_config,
    row_name,
    scope_options,
)
from vssbench.harness.distributed import DistContext, setup_distributed
from vssbench.harness.efficiency import EFFICIENCY_MODES
from vssbench.harness.evaluate import METRIC_CLIPS, evaluate_videos
from vssbench.harness.profile import profile_method
from vssbench.harness.runner import SYNTHETIC_DATASET, RunInterrupted, run_evaluation
from vssbench.harness.sweep import error_record, profile_sweep, run_sweep

# The run summary table, re-exported for vssbench.cli.run (its home is vssbench.results).
from vssbench.results.records import format_table

__all__ = [
    "EFFICIENCY_MODES",
    "METRIC_CLIPS",
    "METRIC_PRESETS",
    "PROFILE_FRAMES",
    "SYNTHETIC_DATASET",
    "DistContext",
    "RunInterrupted",
    "build_configs",
    "effective_options",
    "error_record",
    "evaluate_videos",
    "expand_backbones",
    "expand_methods",
    "format_table",
    "normalize_config",
    "prepare_config",
    "profile_method",
    "profile_sweep",
    "row_name",
    "run_evaluation",
    "run_sweep",
    "scope_options",
    "setup_distributed",
]
