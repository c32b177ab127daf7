"""The evaluation harness: runner, results store, resume, sweeps, distributed evaluation.

``run_evaluation(config)`` evaluates one method over a split and writes its record to the results
store (``<out>/<method>-<backbone>-<config_hash>/``); ``run_sweep(configs)`` runs several, turning
failures into error rows; ``profile_method(config)`` measures params/GMACs/FPS without data;
``compare_records(records)`` says whether records were made under identical conditions.
"""

from vssbench.harness.distributed import DistContext, setup_distributed
from vssbench.results.records import (
    ACCURACY_KEYS,
    DESIGN_KEYS,
    EXTRA_KEYS,
    RECORD_KEYS,
    compare_records,
    empty_record,
    format_table,
    to_jsonable,
)
from vssbench.harness.runner import (
    METRIC_CLIPS,
    SYNTHETIC_DATASET,
    build_configs,
    effective_options,
    expand_backbones,
    expand_methods,
    normalize_config,
    profile_method,
    profile_sweep,
    run_evaluation,
    run_sweep,
)
from vssbench.results.store import RunStore, read_videos_file, run_dir_name

__all__ = [
    "ACCURACY_KEYS",
    "DESIGN_KEYS",
    "EXTRA_KEYS",
    "METRIC_CLIPS",
    "RECORD_KEYS",
    "SYNTHETIC_DATASET",
    "DistContext",
    "RunStore",
    "build_configs",
    "compare_records",
    "effective_options",
    "empty_record",
    "expand_backbones",
    "expand_methods",
    "format_table",
    "normalize_config",
    "profile_method",
    "profile_sweep",
    "read_videos_file",
    "run_dir_name",
    "run_evaluation",
    "run_sweep",
    "setup_distributed",
    "to_jsonable",
]
