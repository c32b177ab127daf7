"""Result records (flat, JSON-ready rows) and the results store (one folder per config)."""

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
from vssbench.results.store import RunStore, read_videos_file, run_dir_name

__all__ = [
    "ACCURACY_KEYS",
    "DESIGN_KEYS",
    "EXTRA_KEYS",
    "RECORD_KEYS",
    "RunStore",
    "compare_records",
    "empty_record",
    "format_table",
    "read_videos_file",
    "run_dir_name",
    "to_jsonable",
]
