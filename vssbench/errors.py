"""Error types that the command line turns into one clear message (no traceback unless --debug)."""

from __future__ import annotations

from pathlib import Path


class VssbenchError(Exception):
    """Base class for every error caused by the user's input (data, checkpoint, option, config)."""


class DataError(VssbenchError):
    """A problem with a dataset file; the message always names the file at fault."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        self.reason = message
        super().__init__(f"{path}: {message}")


class CheckpointError(VssbenchError):
    """A checkpoint that cannot be loaded: the message lists the missing/unexpected/mismatched keys."""


class OptionError(VssbenchError, ValueError):
    """An unknown method, backbone or option, or an option value of the wrong type."""
