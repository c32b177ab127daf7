"""Sweeps: many configs in one call, where a failing one becomes an error row and the sweep goes on.

:func:`run_sweep` runs :func:`~vssbench.harness.runner.run_evaluation` per config and
:func:`profile_sweep` runs :func:`~vssbench.harness.profile.profile_method`; both check every
config before the first one runs. :func:`error_record` is the row of a failed config: every
record key present, metrics null, ``error`` set.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

import vssbench
from vssbench.config import RunConfig
from vssbench.errors import DataError, VssbenchError
from vssbench.harness.configs import normalize_config, prepare_config, row_name
from vssbench.harness.efficiency import check_efficiency_mode
from vssbench.harness.profile import profile_method
from vssbench.harness.runner import run_evaluation
from vssbench.results.records import empty_record, to_jsonable, utc_timestamp
from vssbench.results.store import RunLog, RunStore

#: Warnings already given in this process (each is given once).
_WARNED: set[str] = set()


def warn_slow_dtype(configs: Sequence[RunConfig]) -> None:
    """Warn once (stderr) when float16 runs on the CPU, where it is about 10x slower than float32."""
    if "float16-cpu" in _WARNED:
        return
    if any(c.dtype == "float16" and c.device == "cpu" for c in configs):
        _WARNED.add("float16-cpu")
        print(
            "WARNING: --dtype float16 on the CPU is about 10x slower than float32 (few half-precision CPU "
            "kernels); its FPS says nothing about a GPU. Use float32 or bfloat16 on the CPU.",
            file=sys.stderr,
            flush=True,
        )


def run_sweep(
    configs: Sequence[RunConfig],
    out: str | Path = "runs",
    resume: bool = False,
    save_preds: str | Path | None = None,
    progress: bool = True,
    efficiency: str = "full",
) -> list[dict[str, Any]]:
    """Run each config; a failing one becomes a record with an ``error`` field and the sweep goes on.

    Every config is checked before anything runs (options, run-wide flags, the checkpoint's
    digest, and with ``resume`` that each folder may be continued): bad input raises
    :class:`VssbenchError` and leaves nothing behind. Bad data (:class:`DataError`) stops the
    sweep (every method would hit it). A single config's input error raises too; in a sweep of
    several it becomes that row's error. The traceback of a failure is in the run folder's
    ``log.txt``; its record (all keys, metrics null) in ``record.json``.

    With several configs, ``save_preds`` gets one folder per row,
    ``<save_preds>/<method>-<backbone>[-<options tag>]/<video>/<stem>.png``; a single config
    writes ``<save_preds>/<video>/<stem>.png`` (the VSPW submission layout).
    """
    check_efficiency_mode(efficiency)
    configs = [prepare_config(c) for c in configs]
    warn_slow_dtype(configs)
    if resume:
        for config in configs:
            RunStore(out, config).check_resume()
    several = len(configs) > 1
    records = []
    for config in configs:
        preds = (
            None
            if save_preds is None
            else Path(save_preds) / row_name(config)
            if several
            else Path(save_preds)
        )
        try:
            records.append(
                run_evaluation(
                    config, out=out, resume=resume, save_preds=preds, progress=progress, efficiency=efficiency
                )
            )
        except DataError:
            raise
        except VssbenchError as exc:
            if not several:
                raise
            records.append(error_record(config, exc, out))
        except Exception as exc:  # noqa: BLE001 - whatever a method raises becomes its error row
            # A single run keeps a folder only if it got as far as creating one (its log.txt).
            records.append(
                error_record(config, exc, out if several or RunStore(out, config).dir.exists() else None)
            )
    return records


def profile_sweep(configs: Sequence[RunConfig], frames: str = "video") -> list[dict[str, Any]]:
    """:func:`profile_method` for each config; a failure becomes an error row and the sweep goes on.

    Every config is checked first (bad input raises :class:`VssbenchError`); a single config's
    input error (e.g. a checkpoint that does not fit) raises too.
    """
    configs = [prepare_config(c) for c in configs]
    warn_slow_dtype(configs)
    records = []
    for config in configs:
        try:
            records.append(profile_method(config, frames=frames))
        except VssbenchError as exc:
            if len(configs) == 1:
                raise
            records.append(error_record(config, exc, None, kind="profile"))
        except Exception as exc:  # noqa: BLE001 - whatever a method raises becomes its error row
            records.append(error_record(config, exc, None, kind="profile"))
    return records


def error_record(
    config: RunConfig, exc: BaseException, out: str | Path | None, kind: str = "run"
) -> dict[str, Any]:
    """A record for a failed run (metrics null, ``error`` set); written to the store when ``out`` is given.

    Rank 0 alone writes it and prints the one-line error on stderr.
    """
    try:
        config = normalize_config(config)
    except VssbenchError:
        pass
    record = empty_record(config)
    initialized = dist.is_available() and dist.is_initialized()
    is_main = not initialized or dist.get_rank() == 0
    record.update(
        kind=kind,
        error=f"{type(exc).__name__}: {exc}",
        created=utc_timestamp(),
        vssbench_version=vssbench.__version__,
        world_size=dist.get_world_size() if initialized else 1,
    )
    where = ""
    if out is not None and is_main:
        store = _write_error_row(RunStore(out, config), config, exc, record)
        where = f" (traceback in {store.log_path})"
    if is_main:
        print(
            f"error: {config.method}-{config.backbone}: {type(exc).__name__}: {exc}{where}",
            file=sys.stderr,
            flush=True,
        )
    return to_jsonable(record)


def _write_error_row(
    store: RunStore, config: RunConfig, exc: BaseException, record: dict[str, Any]
) -> RunStore:
    """The failed run's folder: its config (if not there yet), the traceback in ``log.txt``,
    ``record.json``."""
    store.dir.mkdir(parents=True, exist_ok=True)
    if not store.config_path.exists():
        store.config_path.write_text(config.to_json() + "\n", encoding="utf-8")
    record["run_dir"] = str(store.dir)
    log = RunLog(store.log_path, echo=False)
    if not getattr(exc, "vssbench_logged", False):
        log.info(f"FAILED: {type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}")
    log.info("error row written to record.json; the sweep goes on")
    log.close()
    store.write_record(to_jsonable(record))
    return store


__all__ = ["error_record", "profile_sweep", "run_sweep", "warn_slow_dtype"]
