"""The results store: one folder per run, written so that nothing is lost and nothing is wrong.

Layout: ``<out>/<method>-<backbone>[-<options tag>]-<config_hash>/`` (the tag names the options
that differ from the method's defaults, e.g. ``tfc-b0-threshold=0.5-3fa2c1d0e9ab``) holding

* ``config.json``: the full :class:`~vssbench.config.RunConfig` (written first);
* ``videos.jsonl`` (``videos.rank{r}.jsonl`` per rank in a distributed run): one line per
  finished video with its additive metric state, frame count, timing and diagnostics, appended
  and flushed + fsynced as each video finishes, so a killed run loses at most the video in flight;
* ``log.txt`` (``log.rank{r}.txt`` for ranks > 0): what happened, tracebacks of failures;
* ``record.json`` (the result record) and ``per_class.csv`` (per-class IoU), written atomically
  at the end.

The folder is created only once the run has been checked and its model built, so a run that
fails before its first video leaves nothing. Without resume an existing folder of the same config
is **replaced** (deleted, then created afresh; a warning on stderr counts the finished videos it
held): its config is identical, so only a re-run's numbers would be lost, and the store never
holds two records for one config. With resume, the folder's ``config.json`` must equal the current
config (an error names the differing fields; a checkpoint whose content changed since the run
began is refused naming both sha256 digests); completed videos are read from every
``videos*.jsonl`` and skipped.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from vssbench.config import RunConfig
from vssbench.errors import DataError, OptionError
from vssbench.results.records import options_tag, utc_timestamp


def run_dir_name(config: RunConfig) -> str:
    """Folder name of a run: ``<method>-<backbone>[-<options tag>]-<config_hash>``.

    The tag (:func:`~vssbench.results.records.options_tag`) makes rows that differ only by
    options tell apart at a glance; the hash alone decides identity.
    """
    tag = options_tag(config)
    return f"{config.method}-{config.backbone}-" + (f"{tag}-" if tag else "") + config.config_hash


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
    """Append-only run log (``log.txt``); warnings are also echoed to stderr.

    A log made with :meth:`deferred` keeps its lines in memory until :meth:`attach` names the
    file (so nothing is written before the run folder exists).
    """

    def __init__(self, path: Path | None, echo: bool = True) -> None:
        self.path = path
        self.echo = echo
        self._file: TextIO | None = None
        self._pending: list[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run's lifetime; close()

    @classmethod
    def deferred(cls, echo: bool = True) -> RunLog:
        """A log without a file yet: lines wait in memory until :meth:`attach`."""
        log = cls(None, echo=echo)
        log._pending = []
        return log

    @property
    def attached(self) -> bool:
        """True once lines go to a file."""
        return self._file is not None

    def attach(self, path: Path) -> None:
        """Start writing to ``path`` (appending), beginning with the lines held so far."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run's lifetime; close()
        for line in self._pending or []:
            self._file.write(line)
        self._pending = None
        self._file.flush()

    def info(self, message: str) -> None:
        """Write one line to the log file (or hold it until :meth:`attach`)."""
        line = f"{utc_timestamp()} {message}\n"
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        elif self._pending is not None:
            self._pending.append(line)

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
        self.replaced_videos = 0  # finished videos of a folder that prepare() replaced
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

        Called by rank 0 only. Returns "created", "replaced" or "resumed" (``replaced_videos``
        then counts the finished videos the old folder held). Resuming into a folder whose
        ``config.json`` differs raises :class:`OptionError` naming the fields.
        """
        action = "created"
        self.replaced_videos = 0
        if resume:
            self.check_resume()
        if self.dir.exists():
            if resume:
                action = "resumed"
            else:
                try:
                    self.replaced_videos = len(self.read_completed())
                except DataError:
                    self.replaced_videos = 0
                shutil.rmtree(self.dir)
                action = "replaced"
        self.dir.mkdir(parents=True, exist_ok=True)
        if action != "resumed" or not self.config_path.exists():
            write_json_atomic(self.config_path, self.config.to_dict())
        return action

    def check_resume(self) -> None:
        """Raise :class:`OptionError` if ``--resume`` may not continue this run (read-only check).

        The folder's config must equal this run's (:meth:`check_config`). When the folder does
        not exist but a sibling holds the same config with another checkpoint digest, the
        checkpoint file was replaced since that run began: resuming would mix two models, so it
        is refused in one line naming the file and both sha256 digests.
        """
        if self.dir.exists():
            self.check_config()
            return
        sha = self.config.checkpoint_sha256
        if sha is None or not self.dir.parent.is_dir():
            return
        now = json.loads(json.dumps(self.config.to_dict()))
        ignored = ("checkpoint_sha256", "checkpoint_size")
        for path in sorted(
            self.dir.parent.glob(f"{self.config.method}-{self.config.backbone}-*/config.json")
        ):
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(saved, dict) or saved.get("checkpoint_sha256") in (None, sha):
                continue
            if all(saved.get(k) == v for k, v in now.items() if k not in ignored):
                raise OptionError(
                    f"cannot resume {path.parent}: checkpoint {self.config.checkpoint} "
                    f"changed since that run began (sha256 {saved['checkpoint_sha256']} then, {sha} now); "
                    "run without --resume to evaluate the new weights in a new folder"
                )

    def finished_record(
        self, frame_counts: dict[str, int], level: int, levels: dict[str, int]
    ) -> dict[str, Any] | None:
        """The saved record when the run is complete and nothing is left to do, else ``None``.

        Complete means: the folder's config equals this run's, ``record.json`` has no error,
        every video of ``frame_counts`` is finished on that many frames, and the record's
        ``efficiency`` level (``levels[...]``; records without the key were ``full``) is at
        least ``level``.
        """
        if not self.record_path.exists():
            return None
        self.check_config()
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if (
            not isinstance(record, dict)
            or record.get("error")
            or record.get("num_videos") != len(frame_counts)
        ):
            return None
        if levels.get(record.get("efficiency") or "full", 0) < level:
            return None
        done = self.read_completed()
        if any(v not in done or done[v].get("num_frames") != n for v, n in frame_counts.items()):
            return None
        return record

    def check_config(self) -> None:
        """Raise :class:`OptionError` if the folder's saved config differs from this run's."""
        if not self.config_path.exists():
            return  # killed before config.json was written: nothing was evaluated yet
        try:
            saved = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(self.config_path, f"cannot read the saved run config ({exc})") from None
        now = self.config.to_dict()
        fields = sorted(
            k for k in set(saved) | set(now) if saved.get(k, "<absent>") != now.get(k, "<absent>")
        )
        if fields:
            detail = "; ".join(
                f"{k}: saved {saved.get(k, '<absent>')!r}, now {now.get(k, '<absent>')!r}" for k in fields
            )
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
        self._videos = open(path, "a", encoding="utf-8")  # noqa: SIM115 - appended per video; close() closes it

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


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a run folder: it holds ``record.json`` or a ``videos*.jsonl``."""
    return (path / "record.json").is_file() or any(path.glob("videos*.jsonl"))


def find_run_dir(path: str | Path, limit: int = 20) -> Path:
    """The run folder that ``path`` names: a run folder, its ``record.json``, or a folder holding
    exactly one run folder at any depth (``vssbench reproduce`` gives each run its own ``--out``,
    so ``runs/tfc-b0`` holds ``runs/tfc-b0/tfc-b0-<hash>``).

    Raises :class:`DataError` naming ``path`` when it does not exist, holds no run, or holds
    several (listing up to ``limit`` of them, relative to ``path``).
    """
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise DataError(path, "no such run folder (expected a folder with record.json and videos.jsonl)")
    if is_run_dir(p):
        return p
    found = sorted({f.parent for f in p.rglob("record.json")} | {f.parent for f in p.rglob("videos*.jsonl")})
    if not found:
        raise DataError(p, "no run in this folder or below it (no record.json or videos.jsonl)")
    if len(found) > 1:
        names = [str(f.relative_to(p)) for f in found[:limit]]
        more = f" and {len(found) - limit} more" if len(found) > limit else ""
        raise DataError(p, f"holds {len(found)} runs, name one of them: {', '.join(names)}{more}")
    return found[0]


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
