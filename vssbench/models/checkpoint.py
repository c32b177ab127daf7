"""Checkpoint I/O: vssbench's own format and the three public SegFormer weight layouts.

Formats:

* ``"vssbench"`` -- written by :func:`save_checkpoint`: ``{"format": "vssbench", "version": 1,
  "method", "backbone", "num_classes", "options", "state_dict"}``; keys are the adapter's own.
* ``"mmseg"`` -- official NVlabs SegFormer (and CFFM/MRCFA) files: ``backbone.*`` and
  ``decode_head.*``, usually inside ``"state_dict"``. vssbench's SegFormer uses the same names, so
  the mapping only drops the head's dead ``conv_seg``.
* ``"mit"`` -- ImageNet ``mit_bX.pth``: bare backbone keys plus the classifier ``head.*`` (dropped).
  It loads the encoder only; the decoder stays as initialized and the report says so.
* ``"hf"`` -- HF transformers Segformer state dicts under their on-disk (4.x) names
  (``segformer.encoder.patch_embeddings.{s-1}...``, split ``key``/``value``), from ``.bin``/``.pth``
  or ``.safetensors``; the transformers-5 in-memory names (``segformer.stages...``) are read too.
  A file without a decode head (``SegformerModel``, ``nvidia/mit-bX``) loads the encoder only.

Loading is strict by default: every key the model needs must be present with its exact shape,
and nothing may be left over, otherwise a :class:`~vssbench.errors.CheckpointError` names the
file and lists the bad keys. Files are read with ``torch.load(weights_only=True)`` or the
safetensors reader in :mod:`vssbench.models.safetensors_io`, so loading never runs code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vssbench.errors import CheckpointError
from vssbench.models.mit import MIT_CONFIGS
from vssbench.models.safetensors_io import read_safetensors, read_safetensors_header

logger = logging.getLogger(__name__)

FORMATS = ("vssbench", "mmseg", "mit", "hf")
CHECKPOINT_VERSION = 1
#: How many missing/unexpected keys an error message lists before giving a count.
MAX_LISTED_KEYS = 3
#: Files tried, in order, when a checkpoint path is a directory (HF ``save_pretrained`` output).
_DIRECTORY_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did.

    ``missing``: model keys the file lacks; ``unexpected``: file keys (after renaming) the model
    does not have; ``mismatched``: (key, model shape, file shape); ``dropped``: file keys
    discarded on purpose (the dead ``conv_seg``, an ImageNet ``head.*``); ``untouched``: model
    keys an encoder-only file is not meant to provide, left as initialized; ``loaded``: number of
    tensors copied into the model.
    """

    path: str
    format: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    #: The file's plain top-level entries beside the weights (a vssbench file's ``iteration``,
    #: ``train_seed``, ...; empty for a bare state dict).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def train_seed(self) -> int | None:
        """The ``--seed`` of the ``vssbench train`` that wrote the file, when it says so."""
        seed = self.meta.get("train_seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    @property
    def ok(self) -> bool:
        """True when every required key was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line for logs: counts of each category."""
        parts = [f"loaded {self.loaded} tensors from {self.path} (format {self.format})"]
        for name in ("missing", "unexpected", "mismatched", "dropped", "untouched"):
            count = len(getattr(self, name))
            if count:
                parts.append(f"{count} {name}")
        return "; ".join(parts)


# ----------------------------------------------------------------------------- reading


def _resolve(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in _DIRECTORY_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(
            f"{path}: directory holds no checkpoint (looked for {', '.join(_DIRECTORY_FILES)}; "
            "sharded HF checkpoints are not supported)"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def _looks_like_safetensors(path: Path) -> bool:
    try:
        read_safetensors_header(path)
    except CheckpointError:
        return False
    return True


def _load_raw(path: Path) -> Any:
    """The top-level object of a checkpoint file, read without running code."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a non-checkpoint file
        if _looks_like_safetensors(path):
            return read_safetensors(path)
        raise CheckpointError(
            f"{path}: not a readable checkpoint "
            f"(torch.load with weights_only=True failed: {_load_failure(exc)})"
        ) from None


def _load_failure(exc: Exception) -> str:
    """The informative sentence of a torch.load error (its weights-only refusals are paragraphs)."""
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        reason = lines[0].split(" Please use", 1)[0] if lines else "refused"
        if "Unsupported global" in reason:
            reason += " (only tensors and plain Python values load safely; re-save the state dict alone)"
        return reason
    first = text.splitlines()[0] if text else ""
    # Some failures (e.g. a text file read as a legacy pickle) carry only a bare number.
    return (
        f"{type(exc).__name__}: {first}"
        if first and not first.isdigit()
        else f"{type(exc).__name__} {first}".strip()
    )


def _plain(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``meta`` that are plain scalars (numbers, strings, booleans, None)."""
    return {str(k): v for k, v in meta.items() if v is None or isinstance(v, (bool, int, float, str))}


def _unwrap(obj: Any, source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split a loaded object into (state dict, metadata), unwrapping ``state_dict``/``model``."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: not a checkpoint (top level is {type(obj).__name__}, not a dict)")
    meta: dict[str, Any] = {}
    state: Mapping[str, Any] = obj
    for wrapper in ("state_dict", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping):
            meta = {k: v for k, v in obj.items() if k != wrapper}
            state = inner
            break
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        listing = ", ".join(repr(k) for k in bad[:5]) + (
            f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        )
        raise CheckpointError(f"{source}: not a state dict (entries that are not named tensors: {listing})")
    if not state:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors")
    keys = list(state)
    if all(k.startswith("module.") for k in keys):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state), meta


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict of a checkpoint file (keys as stored, wrappers removed).

    ``.safetensors`` files go through vssbench's own reader; anything else through
    ``torch.load(weights_only=True)``. A ``"state_dict"`` or ``"model"`` wrapper and a DDP
    ``module.`` prefix are removed. A directory is searched for ``model.safetensors`` or
    ``pytorch_model.bin``. Anything else raises :class:`CheckpointError` naming the file.
    """
    resolved = _resolve(path)
    return _unwrap(_load_raw(resolved), str(resolved))[0]


def detect_format(state: Mapping[str, Any]) -> str:
    """Which of :data:`FORMATS` a loaded checkpoint (raw object or bare state dict) is in.

    Decided by the ``"format"`` marker of vssbench files, otherwise by key names. Raises
    :class:`CheckpointError` for an unknown layout (and for open-mmlab mmsegmentation 1.x
    SegFormer files, whose head does not map onto the NVlabs/HF head).
    """
    if state.get("format") == "vssbench":
        return "vssbench"
    sd, _ = _unwrap(state, "checkpoint")
    keys = list(sd)
    if any(k.startswith("backbone.layers.") for k in keys):
        raise CheckpointError(
            "checkpoint is in open-mmlab mmsegmentation 1.x layout (backbone.layers.*): "
            "its SegFormer head is structurally different from the NVlabs/HF head and cannot be loaded; "
            "use an NVlabs or HF checkpoint"
        )
    if any(_HF_DETECT.match(k) for k in keys):
        return "hf"
    if any(k.startswith(("backbone.", "decode_head.")) for k in keys):
        return "mmseg"
    if any(re.match(r"^(patch_embed[1-4]|block[1-4]|norm[1-4])\.", k) for k in keys):
        return "mit"
    sample = ", ".join(keys[:5])
    raise CheckpointError(
        f"checkpoint has an unknown key layout (first keys: {sample}); formats: {', '.join(FORMATS)}"
    )


# ----------------------------------------------------------------------------- key mappings


def mmseg_to_vssbench(sd: Mapping[str, Tensor], dropped: list[str] | None = None) -> dict[str, Tensor]:
    """Official NVlabs (mmseg 0.x) SegFormer keys -> vssbench keys.

    The names are the same; only the head's unused ``decode_head.conv_seg.*`` is dropped
    (appended to ``dropped`` when given). Other keys pass through unchanged, so a file's extra
    modules (e.g. CFFM's head) surface as unexpected keys when loading.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.startswith("decode_head.conv_seg."):
            if dropped is not None:
                dropped.append(key)
            continue
        out[key] = value
    return out


def vssbench_to_mmseg(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """vssbench keys -> NVlabs mmseg keys (the same names; no ``conv_seg``, which mmcv loads without).

    Wrap the result as ``{"state_dict": ...}`` to get the official file layout.
    """
    return dict(sd)


def mit_to_vssbench(sd: Mapping[str, Tensor], dropped: list[str] | None = None) -> dict[str, Tensor]:
    """ImageNet ``mit_bX.pth`` keys -> vssbench keys: prefix ``backbone.``, drop ``head.*``."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.startswith("head."):
            if dropped is not None:
                dropped.append(key)
            continue
        out[f"backbone.{key}"] = value
    return out


# Inside one block: HF 4.x on-disk module path -> ours, and the transformers-5 in-memory names.
_HF_BLOCK = {
    "layer_norm_1": "norm1",
    "attention.self.query": "attn.q",
    "attention.output.dense": "attn.proj",
    "attention.self.sr": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "layer_norm_2": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
    "mlp.dense2": "mlp.fc2",
}
_HF5_BLOCK = {
    "layernorm_before": "norm1",
    "attention.q_proj": "attn.q",
    "attention.o_proj": "attn.proj",
    "attention.sequence_reduction.sequence_reduction": "attn.sr",
    "attention.sequence_reduction.layer_norm": "attn.norm",
    "layernorm_after": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
    "mlp.fc2": "mlp.fc2",
}
# Which half of our fused kv (rows [k; v]) each HF projection is.
_HF_KV = {"attention.self.key": 0, "attention.self.value": 1, "attention.k_proj": 0, "attention.v_proj": 1}
_OURS_TO_HF_BLOCK = {ours: hf for hf, ours in _HF_BLOCK.items()}

# Regexes over HF keys; each has a 4.x on-disk alternative and a transformers-5 in-memory one.
_HF_PATCH = re.compile(
    r"^(?:segformer\.)?(?:encoder\.patch_embeddings\.(\d+)|stages\.(\d+)\.patch_embeddings)\.(proj|layer_norm)\.(\w+)$"
)
_HF_BLOCK_KEY = re.compile(
    r"^(?:segformer\.)?(?:encoder\.block\.(\d+)\.(\d+)|stages\.(\d+)\.blocks\.(\d+))\.(.+)\.(\w+)$"
)
_HF_STAGE_NORM = re.compile(
    r"^(?:segformer\.)?(?:encoder\.layer_norm\.(\d+)|stages\.(\d+)\.layer_norm)\.(\w+)$"
)
_HF_LINEAR_C = re.compile(r"^decode_head\.(?:linear_c|linear_projections)\.(\d+)\.proj\.(\w+)$")
_HF_HEAD = {
    "decode_head.linear_fuse.": "decode_head.linear_fuse.conv.",
    "decode_head.batch_norm.": "decode_head.linear_fuse.bn.",
    "decode_head.classifier.": "decode_head.linear_pred.",
}
# Any of these prefixes marks an HF file (names that NVlabs/mmseg files never use).
_HF_DETECT = re.compile(
    r"^(segformer\.|encoder\.(patch_embeddings|block|layer_norm)\.|stages\.\d"
    r"|decode_head\.(linear_c\.\d|linear_projections\.|classifier\.|batch_norm\.))"
)


def hf_to_vssbench(sd: Mapping[str, Tensor], dropped: list[str] | None = None) -> dict[str, Tensor]:
    """HF transformers Segformer keys -> vssbench keys (the HF converter's renaming, undone).

    HF counts stages and decoder inputs from 0, NVlabs/mmseg (and vssbench) from 1:
    ``segformer.encoder.block.{s-1}.{j}`` -> ``backbone.block{s}.{j}``,
    ``decode_head.linear_c.{i-1}`` -> ``decode_head.linear_c{i}``; ``decode_head.batch_norm`` and
    ``classifier`` are our ``linear_fuse.bn`` and ``linear_pred``. Accepts the on-disk 4.x names
    (with or without the ``segformer.`` prefix of the task models) and the transformers-5
    in-memory names. Split ``key``/``value`` projections are fused into
    our ``kv`` (rows ``[k; v]``). A top-level image-classification ``classifier.*`` is dropped.
    Keys that match no rule pass through unchanged (and are reported as unexpected on load).
    """
    out: dict[str, Tensor] = {}
    kv_parts: dict[str, dict[int, tuple[str, Tensor]]] = {}
    for key, value in sd.items():
        if re.match(r"^classifier\.\w+$", key):
            if dropped is not None:
                dropped.append(key)
            continue
        if m := _HF_PATCH.match(key):
            stage = int(m.group(1) or m.group(2)) + 1
            module = "proj" if m.group(3) == "proj" else "norm"
            out[f"backbone.patch_embed{stage}.{module}.{m.group(4)}"] = value
        elif m := _HF_BLOCK_KEY.match(key):
            stage = int(m.group(1) or m.group(3)) + 1
            block = int(m.group(2) or m.group(4))
            module, param = m.group(5), m.group(6)
            prefix = f"backbone.block{stage}.{block}"
            table = _HF_BLOCK if m.group(1) is not None else _HF5_BLOCK
            if module in _HF_KV:
                kv_parts.setdefault(f"{prefix}.attn.kv.{param}", {})[_HF_KV[module]] = (key, value)
            elif module in table:
                out[f"{prefix}.{table[module]}.{param}"] = value
            else:
                out[key] = value
        elif m := _HF_STAGE_NORM.match(key):
            out[f"backbone.norm{int(m.group(1) or m.group(2)) + 1}.{m.group(3)}"] = value
        elif m := _HF_LINEAR_C.match(key):
            out[f"decode_head.linear_c{int(m.group(1)) + 1}.proj.{m.group(2)}"] = value
        else:
            for hf_prefix, ours in _HF_HEAD.items():
                if key.startswith(hf_prefix):
                    out[ours + key[len(hf_prefix) :]] = value
                    break
            else:
                out[key] = value
    for fused, parts in kv_parts.items():
        if set(parts) == {0, 1}:
            out[fused] = torch.cat([parts[0][1], parts[1][1]], dim=0)
        else:  # half a pair cannot be loaded: keep it under its own name so it is reported
            for original, value in parts.values():
                out[original] = value
    return out


def vssbench_to_hf(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """vssbench SegFormer keys -> HF ``SegformerForSemanticSegmentation`` on-disk (4.x) keys.

    Our fused ``kv`` is split into ``key`` (first C rows) and ``value`` (last C rows). Keys with
    no HF counterpart (modules beyond SegFormer's) raise :class:`CheckpointError`.
    """
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in sd.items():
        if m := re.match(r"^backbone\.patch_embed(\d)\.(proj|norm)\.(\w+)$", key):
            module = "proj" if m.group(2) == "proj" else "layer_norm"
            out[f"segformer.encoder.patch_embeddings.{int(m.group(1)) - 1}.{module}.{m.group(3)}"] = value
        elif m := re.match(r"^backbone\.block(\d)\.(\d+)\.(.+)\.(\w+)$", key):
            prefix = f"segformer.encoder.block.{int(m.group(1)) - 1}.{m.group(2)}"
            module, param = m.group(3), m.group(4)
            if module == "attn.kv":
                half = value.shape[0] // 2
                out[f"{prefix}.attention.self.key.{param}"] = value[:half]
                out[f"{prefix}.attention.self.value.{param}"] = value[half:]
            elif module in _OURS_TO_HF_BLOCK:
                out[f"{prefix}.{_OURS_TO_HF_BLOCK[module]}.{param}"] = value
            else:
                unmapped.append(key)
        elif m := re.match(r"^backbone\.norm(\d)\.(\w+)$", key):
            out[f"segformer.encoder.layer_norm.{int(m.group(1)) - 1}.{m.group(2)}"] = value
        elif m := re.match(r"^decode_head\.linear_c(\d)\.proj\.(\w+)$", key):
            out[f"decode_head.linear_c.{int(m.group(1)) - 1}.proj.{m.group(2)}"] = value
        else:
            for hf_prefix, ours in _HF_HEAD.items():
                if key.startswith(ours):
                    out[hf_prefix + key[len(ours) :]] = value
                    break
            else:
                unmapped.append(key)
    if unmapped:
        raise CheckpointError(f"keys with no HF Segformer counterpart: {_listing(unmapped)}")
    return out


def vssbench_to_mit(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """vssbench keys -> ImageNet ``mit_bX.pth`` keys: the encoder's ``backbone.*`` without the prefix.

    Everything else (decoder, a method's own modules) is left out; the file has no ImageNet
    classifier ``head.*``, which loading drops anyway. Raises :class:`CheckpointError` when
    there is no encoder key.
    """
    out = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    if not out:
        raise CheckpointError("no encoder keys (backbone.*) to export")
    return out


#: Layouts :func:`export_checkpoint` writes, from vssbench keys.
EXPORT_FORMATS: dict[str, Any] = {
    "mit": vssbench_to_mit,
    "mmseg": lambda sd: {"state_dict": vssbench_to_mmseg(sd)},
    "hf": vssbench_to_hf,
}


def export_checkpoint(
    path: str | os.PathLike, out: str | os.PathLike, to: str, format: str = "auto"
) -> dict[str, Any]:
    """Write the checkpoint ``path`` (any of :data:`FORMATS`) as ``out`` in layout ``to``
    (:data:`EXPORT_FORMATS`): ``mit`` is the ImageNet encoder file that ``train --init`` reads.

    The file is written with ``torch.save`` to a temporary name and renamed. Returns
    ``{"path", "format" (of the input), "to", "tensors"}``. Raises :class:`CheckpointError` naming
    the file for an unreadable input or a layout that cannot hold its keys.
    """
    if to not in EXPORT_FORMATS:
        raise CheckpointError(f"unknown export layout {to!r}; layouts: {', '.join(EXPORT_FORMATS)}")
    resolved = _resolve(path)
    raw = _load_raw(resolved)
    try:
        source = detect_format(raw) if format == "auto" else format
        state, _ = _unwrap(raw, str(resolved))
        exported = EXPORT_FORMATS[to](convert_state_dict(state, source))
    except CheckpointError as exc:
        raise CheckpointError(f"{resolved}: {exc}") from None
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(exported, tmp)
    os.replace(tmp, out)
    tensors = exported["state_dict"] if to == "mmseg" else exported
    return {"path": str(out), "format": source, "to": to, "tensors": len(tensors)}


_TO_VSSBENCH = {
    "vssbench": lambda sd, dropped: dict(sd),
    "mmseg": mmseg_to_vssbench,
    "mit": mit_to_vssbench,
    "hf": hf_to_vssbench,
}


def convert_state_dict(
    sd: Mapping[str, Tensor], format: str, dropped: list[str] | None = None
) -> dict[str, Tensor]:
    """Rename a state dict in ``format`` (one of :data:`FORMATS`) to vssbench keys."""
    if format not in _TO_VSSBENCH:
        raise CheckpointError(f"unknown checkpoint format {format!r}; formats: auto, {', '.join(FORMATS)}")
    return _TO_VSSBENCH[format](sd, dropped)


# ----------------------------------------------------------------------------- save / load


def _describe(model: nn.Module) -> dict[str, Any]:
    info = getattr(model, "info", None)
    backbone = getattr(model, "backbone", None)
    options = getattr(model, "options", None)
    return {
        "method": getattr(info, "name", type(model).__name__),
        "backbone": getattr(backbone, "variant", None),
        "num_classes": getattr(model, "num_classes", None),
        "options": dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {},
    }


def save_checkpoint(model: nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Save ``model`` in vssbench's own format (``torch.save``; loadable with ``weights_only=True``).

    The file records the method name, backbone, class count and options beside the state dict
    (tensors moved to CPU). ``extra`` adds top-level entries (epoch, iteration, ...); it must
    hold only plain Python values and tensors and may not reuse the standard keys. The file is
    written to a temporary name and renamed, so an interrupted save never leaves half a file.
    """
    payload: dict[str, Any] = {"format": "vssbench", "version": CHECKPOINT_VERSION, **_describe(model)}
    payload["state_dict"] = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    if extra:
        clash = sorted(set(extra) & set(payload))
        if clash:
            raise ValueError(f"extra checkpoint entries may not replace standard keys: {', '.join(clash)}")
        payload.update(extra)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _listing(keys: list[str], limit: int = MAX_LISTED_KEYS) -> str:
    shown = ", ".join(keys[:limit])
    more = len(keys) - limit
    return shown + (f" ... and {more} more" if more > 0 else "")


def file_digest(path: str | os.PathLike, chunk_size: int = 4 << 20) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of a checkpoint's weights file, read in ``chunk_size`` chunks.

    A directory is resolved as :func:`load_checkpoint` resolves it (``model.safetensors`` or
    ``pytorch_model.bin``). Streaming keeps memory flat; a 300 MB file takes a fraction of a second.
    A missing or unreadable file raises :class:`CheckpointError` naming it.
    """
    resolved = _resolve(path)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(resolved, "rb") as f:
            while chunk := f.read(chunk_size):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise CheckpointError(f"{resolved}: cannot read the checkpoint ({exc.strerror or exc})") from None
    return digest.hexdigest(), size


def _variant_of(state: Mapping[str, Tensor]) -> tuple[int | None, tuple[int, ...]]:
    """(stage-1 width, blocks per stage) of the MiT encoder held in a vssbench-keyed state dict."""
    proj = state.get("backbone.patch_embed1.proj.weight")
    width = int(proj.shape[0]) if isinstance(proj, Tensor) and proj.dim() > 0 else None
    blocks: dict[int, set[int]] = {}
    for key in state:
        if m := re.match(r"^backbone\.block(\d)\.(\d+)\.", key):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    depths = tuple(len(blocks.get(s, ())) for s in range(1, 5))
    return width, depths


def _first_dim(state: Mapping[str, Tensor], key: str) -> int | None:
    value = state.get(key)
    return int(value.shape[0]) if isinstance(value, Tensor) and value.dim() > 0 else None


def diagnose_mismatch(model: nn.Module, converted: Mapping[str, Tensor]) -> list[str]:
    """Plain-language causes of a checkpoint/model mismatch, where one is evident from the shapes.

    Recognizes another MiT variant (stage-1 width and blocks per stage, e.g. "this looks like a b1
    checkpoint ..., the model is b0: pass --backbone b1"), another decoder width ("decoder dim 768
    in the file, 256 in the model: pass --decoder-dim 768"), another class count, and whole modules
    that one side lacks (a checkpoint of another method).
    """
    expected = model.state_dict()
    found: list[str] = []
    file_width, file_depths = _variant_of(converted)
    model_width, model_depths = _variant_of(expected)
    if (
        file_width is not None
        and any(file_depths)
        and (file_width, file_depths) != (model_width, model_depths)
    ):
        model_variant = getattr(getattr(model, "backbone", None), "variant", None) or "?"
        match = [
            v for v, c in MIT_CONFIGS.items() if (c.embed_dims[0], c.depths) == (file_width, file_depths)
        ]
        shape = f"stage-1 width {file_width}, blocks {'-'.join(map(str, file_depths))}"
        if match:
            found.append(
                f"this looks like a {match[0]} checkpoint ({shape}), the model is {model_variant}: "
                f"pass --backbone {match[0]}"
            )
        else:
            found.append(
                f"the file's encoder ({shape}) is no MiT variant the model ({model_variant}) matches"
            )
    for key, what, flag in (
        ("decode_head.linear_c1.proj.weight", "decoder dim", "--decoder-dim"),
        ("decode_head.linear_pred.weight", "classes:", "--num-classes"),
    ):
        in_file, in_model = _first_dim(converted, key), _first_dim(expected, key)
        if in_file is not None and in_model is not None and in_file != in_model:
            if flag == "--num-classes":
                found.append(
                    f"{in_file} classes in the file, {in_model} in the model: pass --num-classes {in_file}"
                )
            else:
                found.append(f"{what} {in_file} in the file, {in_model} in the model: pass {flag} {in_file}")
    modules_model = {k.split(".")[0] for k in expected}
    modules_file = {k.split(".")[0] for k in converted}
    only_model = sorted(modules_model - modules_file)
    only_file = sorted(modules_file - modules_model)
    if only_model or only_file:
        parts = []
        if only_model:
            parts.append(f"the model's module(s) {', '.join(only_model)} are not in the file")
        if only_file:
            parts.append(f"the file's module(s) {', '.join(only_file)} are not in the model")
        found.append("; ".join(parts) + " (a checkpoint of another method?)")
    return found


def _error_message(
    report: LoadReport, model: nn.Module, meta: dict[str, Any], converted: Mapping[str, Tensor]
) -> str:
    """At most ~10 lines: counts, the first few keys of each kind, a diagnosis, the way out."""
    described = _describe(model)
    counts = ", ".join(
        f"{n} {what}"
        for n, what in (
            (len(report.missing), "missing"),
            (len(report.unexpected), "unexpected"),
            (len(report.mismatched), "mismatched"),
        )
        if n
    )
    lines = [
        (
            f"cannot load checkpoint {report.path} (format {report.format}) into {described['method']} "
            f"(backbone {described['backbone']}, {described['num_classes']} classes): {counts} keys"
        )
    ]
    lines.extend(f"  diagnosis: {d}" for d in diagnose_mismatch(model, converted)[:3])
    if meta.get("format") == "vssbench":
        lines.append(
            f"  the file was saved from method {meta.get('method')} (backbone {meta.get('backbone')}, "
            f"{meta.get('num_classes')} classes)"
        )
    if report.missing:
        lines.append(f"  {len(report.missing)} missing key(s): {_listing(report.missing)}")
    if report.unexpected:
        lines.append(f"  {len(report.unexpected)} unexpected key(s): {_listing(report.unexpected)}")
    if report.mismatched:
        shown = "; ".join(
            f"{k}: model {list(want)} vs file {list(got)}" for k, want, got in report.mismatched[:2]
        )
        more = len(report.mismatched) - 2
        lines.append(
            f"  {len(report.mismatched)} shape mismatch(es): {shown}"
            + (f" ... and {more} more" if more > 0 else "")
        )
    lines.append("  --non-strict loads only the keys that fit (a partial load; the record marks it)")
    return "\n".join(lines)


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike, format: str = "auto", strict: bool = True
) -> LoadReport:
    """Load a checkpoint in any of :data:`FORMATS` (``"auto"`` detects it) into ``model``.

    Strict (the default): a missing key, an unexpected key or a shape mismatch raises
    :class:`CheckpointError` of at most ~10 lines: the file, counts of each kind, the first few
    keys with shapes, and a diagnosis where one is evident (another backbone, decoder width or
    class count; see :func:`diagnose_mismatch`); nothing is copied then. Encoder-only files
    (ImageNet ``mit_bX``, an HF file without a decode head) are checked strictly on the
    ``backbone.*`` keys and leave the rest ``untouched``. BatchNorm ``num_batches_tracked``
    counters are never required. With ``strict=False`` every key that matches in name and shape
    is loaded and the rest is only reported.
    """
    resolved = _resolve(path)
    raw = _load_raw(resolved)
    if format == "auto":
        try:
            format = detect_format(raw)
        except CheckpointError as exc:
            raise CheckpointError(f"{resolved}: {exc}") from None
    elif format not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {format!r}; formats: auto, {', '.join(FORMATS)}")
    state, meta = _unwrap(raw, str(resolved))
    report = LoadReport(path=str(resolved), format=format, meta=_plain(meta))
    converted = convert_state_dict(state, format, report.dropped)

    expected = model.state_dict()
    encoder_only = format in ("mit", "hf") and not any(k.startswith("decode_head.") for k in converted)
    required = [k for k in expected if not encoder_only or k.startswith("backbone.")]
    report.untouched = [k for k in expected if encoder_only and not k.startswith("backbone.")]
    report.missing = [k for k in required if k not in converted and not k.endswith(".num_batches_tracked")]
    report.unexpected = [k for k in converted if k not in expected]
    report.mismatched = [
        (k, tuple(expected[k].shape), tuple(v.shape))
        for k, v in converted.items()
        if k in expected and expected[k].shape != v.shape
    ]
    if strict and not report.ok:
        raise CheckpointError(_error_message(report, model, meta, converted))

    bad_shapes = {k for k, _, _ in report.mismatched}
    to_load = {k: v for k, v in converted.items() if k in expected and k not in bad_shapes}
    result = model.load_state_dict(to_load, strict=False)
    if result.unexpected_keys:  # cannot happen: to_load only holds model keys
        raise RuntimeError(f"internal error: load_state_dict reported {result.unexpected_keys}")
    report.loaded = len(to_load)
    if encoder_only:
        logger.warning("%s holds an encoder only; the decoder keeps its initial weights", resolved)
    if not report.ok:
        logger.warning("non-strict load: %s", report.summary())
    else:
        logger.info("%s", report.summary())
    return report
