"""A minimal reader and writer for the safetensors format (no dependency on the package).

Layout: 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON mapping each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the byte buffer
that follows the header) plus an optional ``"__metadata__"`` string-to-string map; then the raw
little-endian tensor bytes. Files written here pad the header with spaces to a multiple of 8 and
order tensors by item size, so every tensor is aligned, as the reference writer does.

Reading is safe by construction: no code runs, every offset is checked against the header and
the file size, and the tensors must tile the byte buffer exactly (so a truncated or padded file
is an error, not a silently shifted tensor).
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from vssbench.errors import CheckpointError

#: safetensors dtype names -> torch dtypes (only those the running torch has).
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, attr)
    for name, attr in [
        ("F64", "float64"),
        ("F32", "float32"),
        ("F16", "float16"),
        ("BF16", "bfloat16"),
        ("I64", "int64"),
        ("I32", "int32"),
        ("I16", "int16"),
        ("I8", "int8"),
        ("U64", "uint64"),
        ("U32", "uint32"),
        ("U16", "uint16"),
        ("U8", "uint8"),
        ("BOOL", "bool"),
        ("F8_E4M3", "float8_e4m3fn"),
        ("F8_E5M2", "float8_e5m2"),
    ]
    if hasattr(torch, attr)
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
#: The reference implementation refuses headers above 100 MB; so do we (a corrupt length field
#: would otherwise make us allocate gigabytes).
MAX_HEADER_BYTES = 100_000_000


def _swap_bytes(raw: Tensor, itemsize: int) -> Tensor:
    """Reverse the byte order of each item in a flat uint8 buffer (big-endian hosts only)."""
    if itemsize == 1 or raw.numel() == 0:
        return raw
    return raw.reshape(-1, itemsize).flip(1).reshape(-1)


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str], int]:
    """Parse the header of a safetensors file: (tensor entries, metadata, byte-buffer start offset)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(
                    f"{path}: not a safetensors file (shorter than its 8-byte header length)"
                )
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path}: not a safetensors file (header length {length} is implausible)"
                )
            raw = f.read(length)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) < length:
        raise CheckpointError(f"{path}: truncated safetensors header ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header must be a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: safetensors __metadata__ must map strings to strings")
    return header, metadata, 8 + length


def _check_entries(
    path: Path, header: dict[str, dict], buffer_size: int
) -> list[tuple[str, torch.dtype, list[int], int, int]]:
    """Validate every header entry against the dtype table and the byte buffer's size."""
    entries = []
    for name, entry in header.items():
        try:
            dtype_name, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(
                f"{path}: malformed safetensors entry for tensor {name!r}: {entry!r}"
            ) from None
        if dtype_name not in DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}; "
                f"supported: {', '.join(DTYPES)}"
            )
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
        dtype = DTYPES[dtype_name]
        numel = 1
        for d in shape:
            numel *= d
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if not (isinstance(begin, int) and isinstance(end, int)) or end - begin != nbytes:
            raise CheckpointError(
                f"{path}: tensor {name!r} ({dtype_name} {shape}) needs {nbytes} bytes "
                f"but its data_offsets are [{begin}, {end}]"
            )
        entries.append((name, dtype, list(shape), begin, end))
    position = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != position:
            raise CheckpointError(
                f"{path}: safetensors data of tensor {name!r} starts at byte {begin}, expected {position} "
                "(overlapping or missing bytes)"
            )
        position = end
    if position != buffer_size:
        raise CheckpointError(
            f"{path}: safetensors byte buffer is {buffer_size} bytes but the header describes {position} "
            "(truncated or padded file)"
        )
    return entries


def read_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read every tensor of a safetensors file into CPU memory (name -> tensor, header order).

    Raises :class:`CheckpointError` naming the file for anything malformed.
    """
    path = Path(path)
    header, _, start = read_safetensors_header(path)
    size = path.stat().st_size
    entries = _check_entries(path, header, size - start)
    buffer = bytearray(size - start)
    with path.open("rb") as f:
        f.seek(start)
        if f.readinto(buffer) != len(buffer):
            raise CheckpointError(f"{path}: file changed while reading")
    raw = torch.frombuffer(buffer, dtype=torch.uint8) if buffer else torch.empty(0, dtype=torch.uint8)
    tensors: dict[str, Tensor] = {}
    for name, dtype, shape, begin, end in entries:
        chunk = raw[begin:end]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if sys.byteorder != "little":
            chunk = _swap_bytes(chunk, itemsize)
        # clone() gives each tensor its own aligned storage and lets the file buffer be freed.
        tensors[name] = chunk.clone().view(dtype).reshape(shape)
    return tensors


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors file (empty when it has none)."""
    return read_safetensors_header(path)[1]


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (any device, any layout; stored contiguous on CPU) as a safetensors file.

    ``metadata`` must map strings to strings. Tensors are ordered by item size (largest first),
    then name, and the header is space-padded to a multiple of 8 bytes so all data is aligned.
    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, Tensor):
            raise TypeError(f"safetensors maps str names to tensors, got {name!r}: {type(tensor).__name__}")
        if tensor.dtype not in _NAMES:
            raise TypeError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store here")
    if metadata is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError("safetensors metadata must map str to str")
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in order:
        tensor = tensors[name]
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name in order:
            tensor = tensors[name].detach().to("cpu").contiguous()
            raw = tensor.reshape(-1).view(torch.uint8)
            if sys.byteorder != "little":
                raw = _swap_bytes(raw, tensor.element_size())
            f.write(raw.numpy().data)
    os.replace(tmp, path)
