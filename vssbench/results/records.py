"""Result records: their keys, JSON hygiene, the one-row summary table, conditions comparison.

A record is one flat JSON object per method x backbone x setting. Tables are pure functions of
records and never recompute metrics.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vssbench.config import SUBJECT_FIELDS, RunConfig
from vssbench.methods.base import available, describe, method_origin

#: The benchmark's core record keys (names and meanings are a contract).
DESIGN_KEYS: tuple[str, ...] = (
    "method",
    "backbone",
    "options",
    "dataset",
    "split",
    "num_videos",
    "num_frames",
    "interval",
    "resolution",
    "mIoU",
    "wIoU",
    "mIoU_mmseg",
    "mVC8",
    "mVC16",
    "params",
    "gmacs_keyframe",
    "gmacs_nonkeyframe",
    "gmacs_per_frame",
    "fps",
    "device",
    "torch",
    "threads",
    "dtype",
    "checkpoint",
    "config_hash",
    "created",
)

#: Keys the harness adds beyond the core ones (all always present; ``None`` where not applicable).
EXTRA_KEYS: tuple[str, ...] = (
    "kind",  # "run" (evaluated on data) or "profile" (random frames, no accuracy)
    "decoder",  # decoder mode of the run: "folded" (exact, cheaper) or "reference" (literal architecture)
    "conditions_hash",
    "aAcc",
    "mAcc",
    "vc_windows",  # {"mVC8": windows scored, "mVC16": ...}
    "mVC_video_mean",  # {"mVC8": mean over videos of each video's NaN-mean, ...}: the non-official average
    "profile_frames",  # profile only: "video" (rendered synthetic video) or "random" images
    "skipped_videos",  # videos the metric preset dropped (cffm: T <= 16)
    "num_classes",
    "input_size",  # [h, w] of the frames fed to the model (after the keep-ratio resize)
    "params_groups",
    "params_dead",
    "params_inference",
    "gmacs_input_shape",
    "gmacs_unsupported",
    "gmacs_convention",
    "gmacs_per_step",
    "gmacs_by_operator",
    "fps_protocol",
    "data_time_per_frame",
    "model_time_per_frame",
    "diagnostics",
    "random_init",
    "metric_preset",
    "world_size",
    "resumed_videos",
    "error",
    "vssbench_version",
    "python",
    "platform",
    "cuda",
    "data_root",
    "run_dir",
    "config",
    "options_tag",  # the options that differ from the method's defaults, e.g. "threshold=0.5" ("" if none)
    "efficiency",  # what was measured besides accuracy: "full", "fast" (no dead-parameter search), "none"
    "checkpoint_sha256",  # content digest of the checkpoint file (None without a checkpoint)
    "checkpoint_size",  # its size in bytes
    "non_strict",  # True when --non-strict allowed a partial checkpoint load
    "checkpoint_load",  # non-strict only: {"format", "loaded", "missing", "unexpected", "mismatched", ...}
    "train_seed",  # the --seed of the `vssbench train` that wrote the checkpoint (None when it does not say)
    "fps_spread",  # {"min", "median", "max", "relative": (max - min) / median} of FPS over the timed repeats
    "method_origin",  # "builtin", the distribution of an installed plugin, or "module M" (--plugin)
    "method_version",  # vssbench's version for built-ins, the distribution's for installed plugins
)

RECORD_KEYS: tuple[str, ...] = DESIGN_KEYS + EXTRA_KEYS

#: Accuracy keys: null in profile records and in error rows.
ACCURACY_KEYS: tuple[str, ...] = ("mIoU", "wIoU", "mIoU_mmseg", "mVC8", "mVC16", "aAcc", "mAcc")

#: Record fields outside RunConfig that still change what a number means (the environment).
ENVIRONMENT_FIELDS: tuple[str, ...] = ("device", "torch", "threads", "dtype", "world_size")


def empty_record(config: RunConfig | None = None) -> dict[str, Any]:
    """A record with every key present and ``None`` values, filled from ``config`` where it can be."""
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    if config is not None:
        record.update(
            method=config.method,
            backbone=config.backbone,
            options=dict(config.options),
            split=config.split,
            interval=config.interval,
            resolution=list(config.resolution),
            dtype=config.dtype,
            checkpoint=config.checkpoint,
            config_hash=config.config_hash,
            conditions_hash=config.conditions_hash,
            metric_preset=config.metric_preset,
            decoder=config.decoder,
            num_classes=config.num_classes,
            random_init=config.checkpoint is None,
            config=config.to_dict(),
            options_tag=options_tag(config),
            checkpoint_sha256=config.checkpoint_sha256,
            checkpoint_size=config.checkpoint_size,
            non_strict=config.non_strict,
        )
        if config.method in available():
            origin = method_origin(config.method)
            record.update(method_origin=origin["origin"], method_version=origin["version"])
    return record


def options_tag(config: RunConfig, limit: int = 48) -> str:
    """A short readable name for the options that differ from the method's defaults.

    ``interval=6,interp=hard,threshold=0.5`` (interval first, then the options sorted by name);
    ``""`` when every option is the default. Characters outside ``[A-Za-z0-9._=,+-]`` become ``_``
    and a tag longer than ``limit`` is cut (ending in ``~``): it names a run folder beside the
    config hash, which alone decides identity.
    """
    try:
        described = describe(config.method)
    except Exception:  # noqa: BLE001 - an unknown method (an error row): every given option counts
        described = {"options": {}, "default_interval": None}
    defaults: dict[str, Any] = dict(described["options"])
    default_interval = described["default_interval"]
    parts = []
    interval = config.interval if config.interval is not None else config.options.get("interval")
    if interval is not None and str(interval) != str(default_interval):
        parts.append(f"interval={interval}")
    for key, value in sorted(config.options.items()):
        if key == "interval" or (key in defaults and _same(defaults[key], value)):
            continue
        parts.append(f"{key}={_tag_value(value)}")
    tag = re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts))
    return tag if len(tag) <= limit else tag[: limit - 1] + "~"


def _same(default: Any, value: Any) -> bool:
    if isinstance(value, str) and not isinstance(default, str):
        return _tag_value(default) == value.strip().lower() or str(default) == value.strip()
    return default == value


def _tag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def utc_timestamp() -> str:
    """Now in UTC, ISO 8601 to the second (a record's ``created``, a log line's time)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def to_jsonable(value: Any) -> Any:
    """Plain-JSON copy of ``value``: numpy scalars/arrays to Python, NaN/inf to ``None``.

    Records must parse with any strict JSON reader, so non-finite floats become null (a missing
    number, never a silently wrong one).
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


# ---------------------------------------------------------------------------------------------
# Conditions comparison


def _conditions(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a record that define its conditions (RunConfig minus the subject + environment)."""
    cond: dict[str, Any] = {}
    config = record.get("config")
    if isinstance(config, Mapping):
        cond.update({k: v for k, v in config.items() if k not in SUBJECT_FIELDS})
    for key in ENVIRONMENT_FIELDS:
        cond[key] = record.get(key)
    return cond


def compare_records(
    records: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Check that records were produced under identical conditions.

    Compares ``conditions_hash`` and the environment fields (device, torch, threads, dtype,
    world_size); rows that failed before running (an ``error`` and no environment) are left
    out. Returns ``{"same": bool, "differing": {field: [value of each compared record]},
    "note": "conditions differ: ..." or None}``. The note names every differing field with its
    values in the records' order, each after the labels of the records holding it (``labels``,
    one per record of ``records``; default A, B, C, ...): ``resolution (A 96x160, B 480x853)``,
    ``threads (A/B 2, C 1)``.
    """
    if labels is None:
        labels = [_letter(i) for i in range(len(records))]
    if len(labels) != len(records):
        raise ValueError(f"{len(labels)} labels for {len(records)} records")
    pairs = [
        (r, label)
        for r, label in zip(records, labels)
        if r.get("conditions_hash") is not None and not (r.get("error") and r.get("device") is None)
    ]
    if len(pairs) < 2:
        return {"same": True, "differing": {}, "note": None}
    compared = [r for r, _ in pairs]
    conds = [_conditions(r) for r in compared]
    keys = sorted(set().union(*conds))
    differing = {k: [c.get(k) for c in conds] for k in keys if len({_key(c.get(k)) for c in conds}) > 1}
    hashes = {r["conditions_hash"] for r in compared}
    if len(hashes) > 1 and not differing:
        differing = {"conditions_hash": [r["conditions_hash"] for r in compared]}
    note = None
    if differing:
        parts = []
        for k, vals in differing.items():
            groups: dict[str, list[str]] = {}  # value -> labels of the records holding it, in order
            for (_, label), v in zip(pairs, vals):
                groups.setdefault(_key(v), [_show(v)]).append(label)
            parts.append(f"{k} ({', '.join('/'.join(g[1:]) + ' ' + g[0] for g in groups.values())})")
        note = "conditions differ: " + ", ".join(parts)
    return {"same": not differing, "differing": differing, "note": note}


def _letter(index: int) -> str:
    """A, B, ..., Z, then #27, #28, ... (default labels of compared records)."""
    return chr(ord("A") + index) if index < 26 else f"#{index + 1}"


def _key(value: Any) -> str:
    return repr(to_jsonable(value))


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# What a number needs said beside it

#: The mark of an FPS timed while the machine was busy (tables, the run summary).
CONTENDED_MARK = "‡"


def fps_contended(record: Mapping[str, Any]) -> tuple[bool, float | None]:
    """(contended, cpu share) of a record's FPS measurement.

    ``fps_protocol.contended`` is True when the timing ran while other processes held the CPU
    (``cpu_share``: the share of the machine the timed process got). Records written before
    the field existed have no ``contended``: not marked, ``(False, None)``.
    """
    protocol = record.get("fps_protocol")
    if not isinstance(protocol, Mapping) or protocol.get("contended") is not True:
        return False, None
    share = protocol.get("cpu_share")
    ok = isinstance(share, (int, float)) and not isinstance(share, bool) and math.isfinite(share)
    return True, float(share) if ok else None


def contended_note(labelled: Sequence[tuple[str, float | None]]) -> str:
    """The note of contended FPS, one (label, cpu share) per marked row:
    ``‡ FPS timed while the machine was busy: tfc-b0 at cpu share 0.45; ...``."""
    parts = [label + (f" at cpu share {share:.2f}" if share is not None else "") for label, share in labelled]
    return f"{CONTENDED_MARK} FPS timed while the machine was busy: " + "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# The summary table


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The run summary: one row per record, accuracy as percentages with 2 decimals.

    Columns: method, backbone, ``options`` (only when rows differ in their options tag: the
    options each row sets away from the method's defaults), mIoU(%), wIoU(%), mVC8(%), mVC16(%),
    params(M) (every parameter, including those unused at inference), GMACs per frame, FPS, and
    an ``error`` column when a row failed. An mVC that a run could not score shows ``n/a`` with a
    footnote saying why (e.g. no 16-frame window). An FPS timed while the machine was busy
    (:func:`fps_contended`) ends in ``‡``. Footnotes also say which FPS were contended, which rows
    hold parameters dead at inference, when conditions differ between rows, when GMACs/FPS were
    measured at an input size other than the requested ``resolution`` (the keep-ratio resize of
    the data), and when a model was randomly initialized (its accuracy then means nothing).
    """
    tags = [str(r.get("options_tag") or "") for r in records]
    show_options = len(set(tags)) > 1
    header = (
        ["method", "backbone"]
        + (["options"] if show_options else [])
        + [
            "mIoU(%)",
            "wIoU(%)",
            "mVC8(%)",
            "mVC16(%)",
            "params(M)",
            "GMACs/frame",
            "FPS",
        ]
    )
    notes: list[str] = []
    rows = []
    names = [
        f"{r.get('method')}-{r.get('backbone')}" + (f"[{tag}]" if show_options and tag else "")
        for r, tag in zip(records, tags)
    ]
    contended: list[tuple[str, float | None]] = []
    dead: list[str] = []
    for r, tag, name in zip(records, tags, names):
        params = r.get("params")
        busy, share = fps_contended(r) if r.get("fps") is not None else (False, None)
        if busy:
            contended.append((name, share))
        if _positive(r.get("params_dead")) and _positive(params):
            used = (params - r["params_dead"]) / 1e6
            dead.append(f"{name} has {r['params_dead'] / 1e6:.3f} M dead ({used:.2f} M at inference)")
        vc = []
        for clip in (8, 16):
            value = r.get(f"mVC{clip}")
            reason = (
                None
                if value is not None or r.get("error") or r.get("kind") != "run"
                else _no_vc_reason(r, clip)
            )
            if reason is not None:
                note = f"n/a: mVC{clip}: {reason}"
                if note not in notes:
                    notes.append(note)
            vc.append("n/a" if reason is not None else _pct(value))
        rows.append(
            [str(r.get("method")), str(r.get("backbone"))]
            + ([tag or "-"] if show_options else [])
            + [
                _pct(r.get("mIoU")),
                _pct(r.get("wIoU")),
                *vc,
                "-" if params is None else f"{params / 1e6:.2f}",
                _num(r.get("gmacs_per_frame"), ".2f"),
                _num(r.get("fps"), ".2f") + (CONTENDED_MARK if busy else ""),
            ]
        )
    errors = [r.get("error") for r in records]
    if any(errors):
        header.append("error")
        for row, err in zip(rows, errors):
            row.append(_first_line(err) if err else "")
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    first_number = header.index("mIoU(%)")
    numeric = set(range(first_number, first_number + 7))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]
    out.extend(f"note: {n}" for n in notes)
    if contended:
        out.append(f"note: {contended_note(contended)}")
    if dead:
        out.append(
            "note: params(M) counts every parameter, including those unused at inference: " + "; ".join(dead)
        )
    measured = _measured_sizes(records)
    if measured:
        out.append(f"note: GMACs and FPS measured at {measured} (the data's aspect ratio at the resize)")
    note = compare_records(records, labels=_unique(names))["note"]
    if note:
        out.append(f"note: {note}")
    random_rows = [
        f"{r.get('method')}-{r.get('backbone')}"
        for r in records
        if r.get("random_init") and not r.get("error")
    ]
    if random_rows and any(r.get("kind") == "run" for r in records):
        out.append(
            f"note: randomly initialized (no checkpoint), accuracy is meaningless: {', '.join(random_rows)}"
        )
    return "\n".join(out)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _unique(labels: Sequence[str]) -> list[str]:
    """``labels`` with a repeated one numbered by its row (``segformer-b0 #3``)."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [label if counts[label] == 1 else f"{label} #{i + 1}" for i, label in enumerate(labels)]


def _no_vc_reason(record: Mapping[str, Any], clip: int) -> str | None:
    """Why a run record has no mVC{clip}: no window of that length, or only empty ones."""
    windows = record.get("vc_windows")
    count = windows.get(f"mVC{clip}", windows.get(str(clip))) if isinstance(windows, Mapping) else None
    if count == 0:
        return f"no {clip}-frame window (every video has at most {clip} frames)"
    if count:
        return f"every {clip}-frame window has an empty ground-truth common area"
    return None


def _measured_sizes(records: Sequence[Mapping[str, Any]]) -> str | None:
    """'480x720 instead of --size 480x853' when a row's GMACs/FPS input size differs from its resolution."""
    found = []
    for r in records:
        size, resolution = r.get("input_size"), r.get("resolution")
        if r.get("fps") is None or not size or not resolution or list(size) == list(resolution):
            continue
        text = f"{size[0]}x{size[1]} instead of --size {resolution[0]}x{resolution[1]}"
        if text not in found:
            found.append(text)
    return "; ".join(found) or None


def _first_line(text: str, limit: int = 100) -> str:
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
