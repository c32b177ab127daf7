"""The record helpers a user reads directly: the labelled "conditions differ" note, and the
console summary of `vssbench run` (units in its headers, contended FPS, dead parameters)."""

from __future__ import annotations

from typing import Any

from vssbench.config import RunConfig
from vssbench.harness import normalize_config
from vssbench.results.records import RECORD_KEYS, compare_records, empty_record, format_table


def _env(record: dict[str, Any], threads: int) -> dict[str, Any]:
    record.update(device="cpu (x)", torch="2", threads=threads, dtype="float32", world_size=1)
    return record


def test_conditions_note_lists_every_field_in_record_order_with_labels() -> None:
    # Sorted values would read B first for the resolution (240x427 < 480x853) and A first for
    # the threads (1 < 2); the note keeps the records' order and says which value is whose.
    a = _env(empty_record(normalize_config(RunConfig(method="segformer", resolution=(480, 853)))), 1)
    b = _env(empty_record(normalize_config(RunConfig(method="segformer", resolution=(240, 427)))), 2)
    assert compare_records([a, b])["note"] == (
        "conditions differ: resolution (A 480x853, B 240x427), threads (A 1, B 2)"
    )
    c = _env(empty_record(normalize_config(RunConfig(method="tfc", resolution=(480, 853)))), 1)
    assert compare_records([a, b, c])["note"] == (
        "conditions differ: resolution (A/C 480x853, B 240x427), threads (A/C 1, B 2)"
    )
    assert compare_records([a, b], labels=["tfc-b0", "segformer-b0"])["note"] == (
        "conditions differ: resolution (tfc-b0 480x853, segformer-b0 240x427), "
        "threads (tfc-b0 1, segformer-b0 2)"
    )


def _row(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(
        kind="run",
        method="segformer",
        backbone="b0",
        mIoU=0.0009,
        wIoU=0.5,
        mVC8=0.9,
        mVC16=0.8,
        params=3_746_012,
        gmacs_per_frame=0.2222,
        fps=31.9,
        options_tag="",
        fps_protocol={"interval": 4},
    )
    record.update(fields)
    return record


def test_console_summary_headers_carry_units_and_marks_contended_fps_and_dead_parameters() -> None:
    rows = [
        _row(),
        _row(
            method="mrcfa",
            params=5_281_992,
            params_dead=95_604,
            fps=21.5,
            fps_protocol={"interval": 4, "contended": True, "cpu_share": 0.45},
        ),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == [
        "method",
        "backbone",
        "mIoU(%)",
        "wIoU(%)",
        "mVC8(%)",
        "mVC16(%)",
        "params(M)",
        "GMACs/frame",
        "FPS",
    ]
    assert lines[2].split()[2] == "0.09"  # 0.0009 is 0.09 %
    assert lines[2].split()[-1] == "31.90" and lines[3].split()[-1] == "21.50‡"
    assert "note: ‡ FPS timed while the machine was busy: mrcfa-b0 at cpu share 0.45" in lines
    assert (
        "note: params(M) counts every parameter, including those unused at inference: "
        "mrcfa-b0 has 0.096 M dead (5.19 M at inference)" in lines
    )
