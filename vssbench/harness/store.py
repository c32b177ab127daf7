"""The results store: one folder per run, written so that nothing is lost and nothing is wrong.

Layout: ``<out>/<method>-<backbone>-<config_hash>/`` holding

* ``config.json``: the full :class:`~vssbench.config.RunConfig` (written first);
* ``videos.jsonl`` (``videos.rank{r}.jsonl`` per rank in a distributed run): one line per
  finished video with its additive metric state, frame count, timing and diagnostics, appended
  and flushed + fsynced as each video finishes, so a killed run loses at most the video in flight;
* ``log.txt`` (``log.rank{r}.txt`` for ranks > 0): what happened, tracebacks of failures;
* ``record.json`` (the result record) and ``per_class.csv`` (per-class IoU), written atomically
  at the end.

Without resume an existing folder of the same config is **replaced** (deleted, then created
afresh): its config is identical, so only a re-run's numbers would be lost, and the store never
holds two records for one config. With resume, the folder's ``config.json`` must equal the current
config (an error names the differing fields); completed videos are read from every
``videos*.jsonl`` and skipped.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from vssbench.config import RunConfig
from vssbench.errors import DataError, OptionError


def run_dir_name(config: RunConfig) -> str:
    """Folder name of a run: ``<method>-<backbone>-<config_hash>``."""
    return f"{config.method}-{config.backbone}-{config.config_hash}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunLog:
    """Append-only run log (``log.txt``); warnings are also echoed to stderr."""

    def __init__(self, path: Path | None, echo: bool = True) -> None:
        self.path = path
        self.echo = echo
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def info(self, message: str) -> None:
        """Write one line to the log file."""
        if self._file is not None:
            self._file.write(f"{_now()} {message}\n")
            self._file.flush()

    def warning(self, message: str) -> None:
        """Write a WARNING line to the log and to stderr (unless this rank is silent)."""
        self.info(f"WARNING: {message}")
        if self.echo:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Close the log file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class RunStore:
    """One run folder of the results store (see the module docstring for its files).

    ``rank``/``world_size`` choose the per-rank file names in a distributed run: rank 0 alone
    prepares the folder and writes the record; every rank appends to its own videos file.
    """

    def __init__(self, out: str | Path, config: RunConfig, rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.dir = Path(out) / run_dir_name(config)
        self.rank = rank
        self.world_size = world_size
        self._videos: TextIO | None = None

    # -- paths ------------------------------------------------------------------------------
    @property
    def videos_path(self) -> Path:
        name = "videos.jsonl" if self.world_size == 1 else f"videos.rank{self.rank}.jsonl"
        return self.dir / name

    @property
    def log_path(self) -> Path:
        return self.dir / ("log.txt" if self.rank == 0 else f"log.rank{self.rank}.txt")

    @property
    def record_path(self) -> Path:
        return self.dir / "record.json"

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    # -- lifecycle --------------------------------------------------------------------------
    def prepare(self, resume: bool) -> str:
        """Create, replace or (with ``resume``) check the folder; returns what was done.

        Called by rank 0 only. Returns "created", "replaced" or "resumed". Resuming into a
        folder whose ``config.json`` differs raises :class:`OptionError` naming the fields.
        """
        action = "created"
        if self.dir.exists():
            if resume:
                self.check_config()
                action = "resumed"
            else:
                shutil.rmtree(self.dir)
                action = "replaced"
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, self.config.to_dict())
        return action

    def check_config(self) -> None:
        """Raise :class:`OptionError` if the folder's saved config differs from this run's."""
        if not self.config_path.exists():
            return  # killed before config.json was written: nothing was evaluated yet
        try:
            saved = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(self.config_path, f"cannot read the saved run config ({exc})") from None
        now = self.config.to_dict()
        fields = sorted(k for k in set(saved) | set(now) if saved.get(k, "<absent>") != now.get(k, "<absent>"))
        if fields:
            detail = "; ".join(f"{k}: saved {saved.get(k, '<absent>')!r}, now {now.get(k, '<absent>')!r}" for k in fields)
            raise OptionError(
                f"cannot resume into {self.dir}: its config differs in {', '.join(fields)} ({detail}); "
                "run without --resume to replace it, or use another --out"
            )

    def open_videos(self, resume: bool) -> None:
        """Open this rank's videos file for appending (truncating a partial last line first)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.videos_path
        if not resume and path.exists():
            path.unlink()
        if path.exists():
            _truncate_partial_line(path)
        self._videos = open(path, "a", encoding="utf-8")

    def append_video(self, entry: dict[str, Any]) -> None:
        """Append one finished video's entry; flushed and fsynced before returning."""
        if self._videos is None:
            raise RuntimeError("open_videos() must be called before append_video()")
        self._videos.write(json.dumps(entry, allow_nan=False, separators=(",", ":")) + "\n")
        self._videos.flush()
        os.fsync(self._videos.fileno())

    def close(self) -> None:
        """Close this rank's videos file."""
        if self._videos is not None:
            self._videos.close()
            self._videos = None

    # -- reading ----------------------------------------------------------------------------
    def read_completed(self) -> dict[str, dict[str, Any]]:
        """Entries of every completed video in all ``videos*.jsonl`` files of the folder, by video.

        A truncated last line (a process killed mid-write) is ignored; an unparseable line
        elsewhere is corruption and raises :class:`DataError` naming the file and line.
        """
        done: dict[str, dict[str, Any]] = {}
        if not self.dir.exists():
            return done
        for path in sorted(self.dir.glob("videos*.jsonl")):
            for entry in read_videos_file(path):
                done.setdefault(entry["video"], entry)
        return done

    # -- final outputs ----------------------------------------------------------------------
    def write_record(self, record: dict[str, Any]) -> None:
        """Write ``record.json`` atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.record_path, record)

    def write_per_class(self, iou: Sequence[float | None], names: Sequence[str]) -> Path:
        """Write ``per_class.csv``: index, class name, IoU (fraction; empty where undefined)."""
        path = self.dir / "per_class.csv"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "name", "iou"])
            for i, value in enumerate(iou):
                name = names[i] if i < len(names) else f"class{i}"
                writer.writerow([i, name, "" if value is None else repr(float(value))])
        os.replace(tmp, path)
        return path


def read_videos_file(path: Path) -> list[dict[str, Any]]:
    """Parse one ``videos*.jsonl`` file, tolerating only a truncated final line."""
    # The piece after the last newline is empty, or a line cut off mid-write: that video is
    # not complete and is evaluated again.
    complete = path.read_bytes().split(b"\n")[:-1]
    entries = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(path, f"line {number} is not valid JSON (corrupt results file)") from None
        if not isinstance(entry, dict) or "video" not in entry or "state" not in entry:
            raise DataError(path, f"line {number} is not a video entry (needs 'video' and 'state')")
        entries.append(entry)
    return entries


def _truncate_partial_line(path: Path) -> None:
    """Cut a file back to its last newline so appends never extend a partial line."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
