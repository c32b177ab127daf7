"""vssbench's own safetensors reader/writer, checked against the reference package both ways."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from vssbench.errors import CheckpointError
from vssbench.models.safetensors_io import (
    _swap_bytes,
    read_safetensors,
    read_safetensors_metadata,
    write_safetensors,
)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "i64": torch.tensor([-(2**40), 3, 0]),
        "i32": torch.arange(-3, 3, dtype=torch.int32).reshape(2, 3),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3),
        "strided": torch.randn(4, 6, generator=g)[:, ::2],  # non-contiguous input
    }


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


def test_round_trip_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_safetensors(path, _tensors(), metadata={"format": "pt", "note": "x"})
    _assert_same(read_safetensors(path), _tensors())
    assert read_safetensors_metadata(path) == {"format": "pt", "note": "x"}
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert header_len % 8 == 0  # aligned data


def test_reference_package_reads_our_files(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    safe_open = pytest.importorskip("safetensors").safe_open
    path = tmp_path / "ours.safetensors"
    write_safetensors(path, _tensors(), metadata={"k": "v"})
    _assert_same(st.load_file(str(path)), _tensors())
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"k": "v"}


def test_we_read_reference_package_files(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "theirs.safetensors"
    tensors = {k: v.contiguous() for k, v in _tensors().items()}
    st.save_file(tensors, str(path), metadata={"format": "pt"})
    _assert_same(read_safetensors(path), tensors)
    assert read_safetensors_metadata(path) == {"format": "pt"}


def test_byte_layout_worked_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "one.safetensors"
    write_safetensors(path, {"a": torch.tensor([1, 258], dtype=torch.int32)})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    assert header == {"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}
    assert raw[8 + n :] == bytes([1, 0, 0, 0, 2, 1, 0, 0])  # little-endian 1 and 258


def _write_raw(path: Path, header: dict, data: bytes) -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_malformed_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    _write_raw(bad, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*(truncated|describes)"):
        read_safetensors(bad)
    _write_raw(bad, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="needs 12 bytes"):
        read_safetensors(bad)
    _write_raw(bad, {"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(CheckpointError, match="unsupported dtype 'X9'"):
        read_safetensors(bad)
    _write_raw(
        bad,
        {
            "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        },
        b"\0" * 4,
    )
    with pytest.raises(CheckpointError, match="overlapping"):
        read_safetensors(bad)
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        read_safetensors(bad)
    bad.write_bytes(b"\x04\0\0\0\0\0\0\0nope")
    with pytest.raises(CheckpointError, match="not JSON"):
        read_safetensors(bad)


def test_swap_bytes_reverses_each_item() -> None:
    raw = torch.tensor([1, 2, 3, 4, 5, 6], dtype=torch.uint8)
    assert _swap_bytes(raw, 2).tolist() == [2, 1, 4, 3, 6, 5]
    assert torch.equal(_swap_bytes(_swap_bytes(raw, 3), 3), raw)
    assert _swap_bytes(raw, 1) is raw
