"""RunConfig: the one frozen description of an evaluation run's conditions.

Everything that decides a number in a result record lives here, so two records are comparable
exactly when their ``conditions_hash`` values are equal (method and options aside), and a run can
be reproduced from the JSON saved beside its record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vssbench.errors import OptionError

#: Fields that describe *what* is evaluated rather than the conditions it is evaluated under.
SUBJECT_FIELDS = (
    "method",
    "backbone",
    "options",
    "checkpoint",
    "checkpoint_format",
    "checkpoint_sha256",
    "checkpoint_size",
    "non_strict",
)

#: Fields added after results existed, left out of the hashes while they hold these defaults, so that a
#: config that does not use them (no checkpoint, strict loading) keeps the hash and run folder it had.
HASH_OMITTED_AT_DEFAULT: dict[str, Any] = {
    "checkpoint_sha256": None,
    "checkpoint_size": None,
    "non_strict": False,
}
# ``decoder`` is left out at "reference", the decoder every result before the field existed was made with.
HASH_OMITTED_AT_DEFAULT["decoder"] = "reference"


def check_known_keys(cls: type, d: dict[str, Any], what: str) -> None:
    """Raise :class:`OptionError` naming the keys of ``d`` that are not fields of dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise OptionError(f"unknown {what} {unknown}; known: {sorted(names)}")


@dataclass(frozen=True)
class RunConfig:
    """Conditions of one evaluation run (all fields JSON-serializable).

    ``data`` is a dataset root, or ``None`` for the embedded synthetic VSPW-mini. ``resolution``
    is the test-time (H, W) target of the keep-ratio resize; ``size_divisor`` optionally rounds
    both sides up to a multiple (CFFM/MRCFA use 32). ``interval`` is the keyframe interval and
    the window over which GMACs and FPS are averaged; ``None`` takes the method's default.
    ``checkpoint_sha256``/``checkpoint_size`` identify the checkpoint's *content* (filled in by the
    harness, once per run), so a config hash never stands for two different sets of weights;
    ``non_strict`` loads only the checkpoint keys that fit (a partial load, marked in the record).
    ``decoder`` is the decoder mode of every method (``vssbench.models.decoder.set_decoder_mode``):
    ``folded`` (default; exact, cheaper) or ``reference`` (the literal architecture's cost).
    """

    method: str = "tfc"
    backbone: str = "b0"
    options: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    checkpoint_format: str = "auto"
    num_classes: int = 124
    data: str | None = None
    split: str = "val"
    max_videos: int | None = None
    max_frames: int | None = None
    resolution: tuple[int, int] = (480, 853)
    size_divisor: int | None = None
    interval: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None
    warmup: int = 1
    repeats: int | None = None  # FPS timed intervals; None: enough for ~10 s (3..30), see measure_fps
    seed: int = 0
    metric_preset: str = "vspw"
    checkpoint_sha256: str | None = None
    checkpoint_size: int | None = None
    non_strict: bool = False
    decoder: str = "folded"

    def __post_init__(self) -> None:
        # Normalize containers so equality, hashing and JSON round-trips are exact.
        object.__setattr__(self, "options", dict(sorted(dict(self.options).items())))
        object.__setattr__(self, "resolution", tuple(int(v) for v in self.resolution))
        if len(self.resolution) != 2 or min(self.resolution) <= 0:
            raise OptionError(f"resolution must be two positive sides (H, W), got {self.resolution}")
        if self.interval is not None and self.interval < 1:
            raise OptionError(f"interval must be >= 1, got {self.interval}")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise OptionError(f"dtype must be float32, float16 or bfloat16, got {self.dtype!r}")
        if self.decoder not in ("folded", "reference"):
            raise OptionError(f"decoder must be folded or reference, got {self.decoder!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        check_known_keys(cls, d, "RunConfig keys")
        d = dict(d)
        if "resolution" in d:
            d["resolution"] = tuple(d["resolution"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def config_hash(self) -> str:
        """Stable hash of the whole config (12 hex digits); checkpoint content included when known."""
        return _hash(_hashed(self.to_dict()))

    @property
    def conditions_hash(self) -> str:
        """Hash of the conditions only (dataset, split, resolution, device, ...), not the subject."""
        d = _hashed(self.to_dict())
        for k in SUBJECT_FIELDS:
            d.pop(k, None)
        return _hash(d)


def _hashed(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without the late-added fields that still hold their defaults (see HASH_OMITTED_AT_DEFAULT)."""
    return {
        k: v for k, v in d.items() if not (k in HASH_OMITTED_AT_DEFAULT and v == HASH_OMITTED_AT_DEFAULT[k])
    }


def _hash(d: dict[str, Any]) -> str:
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
