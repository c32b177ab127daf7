"""From what a user asks for to the :class:`~vssbench.config.RunConfig` of each run.

``build_configs("tfc,seg*", "b0,b1", options={"tfc.threshold": 0.5})`` expands method and backbone
globs (:func:`expand_methods`, :func:`expand_backbones`), gives each method its own options
(:func:`scope_options`) and each row its checkpoint (:func:`parse_checkpoints`: one path for every
row, or ``METHOD=PATH`` / ``METHOD:BACKBONE=PATH`` for some). :func:`normalize_config` validates a
config and makes equal conditions hash equally; :func:`prepare_config` adds the checkpoint's
content digest. Both run before anything is written, so bad input leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vssbench.config import RunConfig
from vssbench.errors import CheckpointError, OptionError
from vssbench.methods.base import (
    all_backbones,
    available,
    check_backbone,
    coerce,
    method_info,
    method_options,
    parse_options,
)
from vssbench.models.checkpoint import FORMATS, file_digest
from vssbench.results.records import options_tag

#: Metric conventions of a run (``RunConfig.metric_preset``): the official VSPW one, or CFFM's.
METRIC_PRESETS: tuple[str, ...] = ("vspw", "cffm")


def expand_methods(spec: str | Sequence[str]) -> list[str]:
    """Method names from a name, a comma list or globs over ``available()`` (e.g. ``'tfc,seg*'``, ``'*'``).

    Order follows the spec (a glob's matches sorted), duplicates dropped; an unknown name or a
    glob matching nothing raises :class:`OptionError` listing the available methods (and naming a
    plugin that failed to load, when the name is one of its methods).
    """
    names = available()
    for item in spec.split(",") if isinstance(spec, str) else spec:
        item = item.strip()
        if item and item not in names and not any(c in item for c in "*?["):
            method_info(item)  # raises the registry's error: unknown, or the plugin's failure
    return _expand(spec, names, "method")


def expand_backbones(spec: str | Sequence[str]) -> list[str]:
    """Backbone names from a name, a comma list or globs over ``b0``..``b5``."""
    return _expand(spec, all_backbones(), "backbone")


def _expand(spec: str | Sequence[str], names: Sequence[str], what: str) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if any(c in item for c in "*?["):
            matched = sorted(fnmatch.filter(names, item))
            if not matched:
                raise OptionError(f"{what} pattern {item!r} matches nothing; available: {', '.join(names)}")
        elif item in names:
            matched = [item]
        else:
            raise OptionError(f"unknown {what} {item!r}; available: {', '.join(names)}")
        out.extend(m for m in matched if m not in out)
    if not out:
        raise OptionError(f"no {what} given; available: {', '.join(names)}")
    return out


def build_configs(
    methods: str | Sequence[str], backbones: str | Sequence[str] = "b0", **fields: Any
) -> list[RunConfig]:
    """One :class:`RunConfig` per method x backbone (methods outer), the other fields shared.

    ``options`` may hold scoped keys (``"tfc.threshold"``) next to plain ones; see
    :func:`scope_options` for how they are given to each method. ``checkpoint`` is a path for
    every row, or ``--checkpoint`` values keyed by row (``"segformer=seg.pth"``, a list of them);
    see :func:`parse_checkpoints`. When some rows get a checkpoint, ``non_strict`` applies to those
    rows only (a row without one has nothing to load).
    """
    names = expand_methods(methods)
    backbone_names = expand_backbones(backbones)
    per_method = scope_options(fields.pop("options", None) or {}, names)
    checkpoints = parse_checkpoints(fields.pop("checkpoint", None), names, backbone_names)
    configs = []
    for m in names:
        for b in backbone_names:
            checkpoint = checkpoint_for(checkpoints, m, b)
            row = dict(fields)
            if checkpoints and checkpoint is None:
                row["non_strict"] = False
            configs.append(
                RunConfig(method=m, backbone=b, options=per_method[m], checkpoint=checkpoint, **row)
            )
    return configs


def parse_checkpoints(
    values: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
    methods: Sequence[str],
    backbones: Sequence[str] | None = None,
) -> dict[str, str]:
    """``--checkpoint`` values as ``{key: path}``; key ``""`` (every row), ``METHOD`` or ``METHOD:BACKBONE``.

    A value is keyed when the part before its first ``=`` is a registered method name, optionally
    with ``:b0``..``:b5`` (``segformer=runs/seg/model.pth``, ``tfc:b0=runs/tfc/model.pth``); any
    other value (and any ``os.PathLike``) is a plain path, the default of every row.
    :func:`checkpoint_for` picks a row's. Raises :class:`OptionError` naming the values for two
    plain paths, a key given twice, a key without a path, or a key whose method (backbone) is not one of
    ``methods`` (``backbones``, when given): such a checkpoint would load into no row.
    """
    if values is None:
        return {}
    if isinstance(values, (str, os.PathLike)):
        values = [values]  # type: ignore[list-item]
    names = set(available())
    given: dict[str, str] = {}  # key -> the value as given, for the error messages
    table: dict[str, str] = {}
    for value in values:
        if isinstance(value, os.PathLike):
            key, path = "", os.fspath(value)
        else:
            key, path = _checkpoint_key(value, names)
        if key in given:
            what = "every row" if key == "" else key
            raise OptionError(
                f"--checkpoint {given[key]} and --checkpoint {value}: two checkpoints for {what}"
            )
        if key and not path:
            raise OptionError(f"--checkpoint {value}: no path after '='")
        method, _, backbone = key.partition(":")
        if method and method not in methods:
            raise OptionError(
                f"--checkpoint {value}: {method} is not one of the --method rows ({', '.join(methods)})"
            )
        if backbone and backbones is not None and backbone not in backbones:
            raise OptionError(
                f"--checkpoint {value}: {backbone} is not one of the --backbone rows ({', '.join(backbones)})"
            )
        given[key] = str(value)
        table[key] = path
    return table


def _checkpoint_key(value: str, methods: set[str]) -> tuple[str, str]:
    """(key, path) of one ``--checkpoint`` value; key ``""`` when the value is a plain path."""
    head, sep, path = value.partition("=")
    method, colon, backbone = head.partition(":")
    if sep and method in methods and (not colon or backbone in all_backbones()):
        return head, path
    return "", value


def checkpoint_for(checkpoints: Mapping[str, str], method: str, backbone: str) -> str | None:
    """The checkpoint of one row from :func:`parse_checkpoints`' table: the most specific key wins
    (``METHOD:BACKBONE``, then ``METHOD``, then the plain default); ``None``: random init."""
    for key in (f"{method}:{backbone}", method, ""):
        if key in checkpoints:
            return checkpoints[key]
    return None


def scope_options(options: dict[str, Any], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each method's own options from ``--set`` keys, plain (``threshold``) or scoped (``tfc.threshold``).

    A scoped key goes to its method only (and wins over a plain key of the same option); a plain
    key goes to every method of the sweep that has that option (``interval`` to all). A plain key
    that no method has, a scoped key whose method is not in the sweep, or a scoped option the
    method lacks raise :class:`OptionError` naming the methods and their options.
    """
    per: dict[str, dict[str, Any]] = {m: {} for m in methods}
    fields = {m: {f.name for f in dataclasses.fields(method_options(m))} | {"interval"} for m in methods}
    scoped = {k: v for k, v in options.items() if "." in k}
    for key, value in options.items():
        if key in scoped:
            continue
        holders = [m for m in methods if key in fields[m]]
        if not holders:
            listing = "; ".join(f"{m}: {', '.join(sorted(fields[m]))}" for m in methods)
            raise OptionError(f"--set {key}: no method of this run has option {key!r} ({listing})")
        for m in holders:
            per[m][key] = value
    for key, value in scoped.items():
        method, _, option = key.partition(".")
        if method not in per:
            raise OptionError(f"--set {key}: method {method!r} is not in this run ({', '.join(methods)})")
        if option not in fields[method]:
            raise OptionError(
                f"--set {key}: {method} has no option {option!r}; "
                f"its options: {', '.join(sorted(fields[method]))}"
            )
        per[method][option] = value
    return per


def normalize_config(config: RunConfig) -> RunConfig:
    """Validate a config and make equal conditions hash equally.

    Method options are coerced to their declared types (``"0.5"`` from ``--set`` and ``0.5``
    from Python become the same value); the keyframe interval lives in ``config.interval`` only
    (``--set interval=N`` is moved there; a conflicting ``--interval`` is an error) and ``None``
    becomes the method's default; an unset ``size_divisor`` becomes the method's declared one
    (``MethodInfo.size_divisor``, e.g. 32 for CFFM/MRCFA); data and checkpoint paths become absolute.
    """
    _check_fields(config)
    options = dict(config.options)
    interval = _interval(config, options)
    parsed = parse_options(config.method, {**options, "interval": interval})
    coerced = {k: getattr(parsed, k) for k in options}
    size_divisor = config.size_divisor
    if size_divisor is None:
        size_divisor = method_info(config.method).size_divisor
    return config.replace(
        options=coerced,
        interval=interval,
        size_divisor=size_divisor,
        data=_absolute(config.data),
        checkpoint=_absolute(config.checkpoint),
    )


def _check_fields(config: RunConfig) -> None:
    """Raise :class:`OptionError` for a run-wide field out of its range (method, backbone, device, ...)."""
    method_info(config.method)  # unknown method -> OptionError listing the available ones
    check_backbone(config.method, config.backbone)
    if config.metric_preset not in METRIC_PRESETS:
        raise OptionError(
            f"metric preset must be one of {', '.join(METRIC_PRESETS)}, got {config.metric_preset!r}"
        )
    if config.device != "cpu" and config.device != "cuda" and not config.device.startswith("cuda:"):
        raise OptionError(f"device must be cpu, cuda or cuda:N, got {config.device!r}")
    for name in ("max_videos", "max_frames", "threads", "size_divisor"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise OptionError(f"{name} must be >= 1, got {value}")
    if config.checkpoint_format not in ("auto", *FORMATS):
        raise OptionError(
            f"checkpoint format must be one of auto, {', '.join(FORMATS)}, got {config.checkpoint_format!r}"
        )
    if config.non_strict and config.checkpoint is None:
        raise OptionError("--non-strict needs a --checkpoint to load")
    if config.warmup < 0 or (config.repeats is not None and config.repeats < 1):
        raise OptionError(
            f"warmup must be >= 0 and repeats >= 1, got warmup={config.warmup}, repeats={config.repeats}"
        )


def _interval(config: RunConfig, options: dict[str, Any]) -> int:
    """The run's keyframe interval; pops ``interval`` from ``options`` (``--set interval=N``)."""
    interval = config.interval
    if "interval" in options:
        given = coerce(options.pop("interval"), int, f"{config.method}.interval")
        if interval is not None and given != interval:
            raise OptionError(
                f"interval given twice with different values: --interval {interval} "
                f"and --set interval={given}"
            )
        interval = given
    if interval is None:
        interval = method_info(config.method).default_interval
    if interval < 1:
        raise OptionError(f"interval must be >= 1, got {interval}")
    return interval


def prepare_config(config: RunConfig) -> RunConfig:
    """:func:`normalize_config` plus the checkpoint's content digest (sha256 and size, streamed once).

    A config that already carries a digest (e.g. read back from a run's ``config.json``) must
    match the file: a changed checkpoint raises :class:`CheckpointError` naming the file and both
    digests. A missing or unreadable checkpoint raises before anything is written.
    """
    config = normalize_config(config)
    if config.checkpoint is None:
        return config
    sha, size = _digest(config.checkpoint)
    if config.checkpoint_sha256 is not None and config.checkpoint_sha256 != sha:
        raise CheckpointError(
            f"{config.checkpoint}: checkpoint content changed "
            f"(sha256 {config.checkpoint_sha256} in the config, {sha} in the file)"
        )
    return config.replace(checkpoint_sha256=sha, checkpoint_size=size)


#: (path, size, mtime_ns) -> (sha256, size): a sweep hashes its shared checkpoint once.
_DIGESTS: dict[tuple[str, int, int], tuple[str, int]] = {}


def _digest(path: str) -> tuple[str, int]:
    try:
        stat = Path(path).stat()
    except OSError:
        return file_digest(path)  # raises CheckpointError naming the file
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


def effective_options(config: RunConfig) -> dict[str, Any]:
    """Every option of the method as it runs (defaults filled in, interval included)."""
    parsed = parse_options(config.method, {**config.options, "interval": config.interval})
    return dataclasses.asdict(parsed)


def row_name(config: RunConfig) -> str:
    """``<method>-<backbone>[-<options tag>]``: a row's readable name (its --save-preds folder in a sweep)."""
    tag = options_tag(config)
    return f"{config.method}-{config.backbone}" + (f"-{tag}" if tag else "")


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


__all__ = [
    "METRIC_PRESETS",
    "build_configs",
    "checkpoint_for",
    "effective_options",
    "expand_backbones",
    "expand_methods",
    "normalize_config",
    "parse_checkpoints",
    "prepare_config",
    "row_name",
    "scope_options",
]
