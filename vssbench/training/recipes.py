"""Training recipes: the config of a training run, its two presets, parameter groups and schedule.

The paper trains every method with SegFormer's recipe (NVlabs ``segformer.*.640x640.ade.160k``
configs, adapted to VSPW by CFFM): AdamW (lr 6e-5, betas (0.9, 0.999), weight decay 0.01), the
decoder and every method module at 10x the lr, a 1500-iteration linear warm-up from 1e-6 of the
lr, then poly decay (power 1.0, min lr 0) to 160k iterations, crop 480x480 of the VSPW 480p
frames (random resize of 853x480 by 0.5-2.0, cat-max-ratio 0.75 crop, flip, photometric
distortion), one clip per GPU. That is :data:`PRESETS` ``"paper"``.

``"synthetic"`` is the same recipe scaled to the embedded synthetic VSPW-mini (2 train videos of
20 frames of 180x320) so that a random-init B0 learns it in minutes on a 2-core CPU: 96x96 crops,
batch 4, 300 iterations, a 30-iteration (10%) warm-up, and lr 6e-4, which learned fastest of
6e-5, 6e-4 and 2e-3 without losing temporal stability (``benchmarks/results/train_cpu.csv``).

Everything that decides a number is a field of :class:`TrainConfig` (frozen, JSON round-trip),
saved as ``DIR/config.json``; a resume with a different config is refused naming the fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vssbench.config import check_known_keys
from vssbench.errors import OptionError

#: Fields that may change between a run and its resume: they do not change any trained number.
RESUME_MAY_DIFFER: tuple[str, ...] = ("workers", "checkpoint_every")

#: Values of each preset; explicit arguments override them.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "iters": 160_000,
        "batch_size": 1,
        "crop": (480, 480),
        "scale": (853, 480),
        "lr": 6e-5,
        "warmup_iters": 1500,
        "val_every": 16_000,
        "val_videos": None,
        "val_size": (480, 853),
        "checkpoint_every": 4000,
        "log_every": 50,
    },
    "synthetic": {
        "iters": 300,
        "batch_size": 4,
        "crop": (96, 96),
        "scale": (320, 180),
        "lr": 6e-4,
        "warmup_iters": 30,
        "val_every": 100,
        "val_videos": 3,
        "val_size": (180, 320),
        "checkpoint_every": 100,
        "log_every": 1,
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the numbers of a training run (all fields JSON-serializable).

    ``data`` is a VSPW root or ``None`` for the embedded synthetic VSPW-mini; ``crop`` (H, W) is
    the training crop and ``scale`` the (W, H) base size of the random resize (ratio_range
    times it); ``batch_size`` is per process (the global batch is ``batch_size * world_size``);
    ``lr`` the base (encoder) lr, other groups at ``head_lr_mult`` x it (``None``: the adapter's
    ``head_lr_mult``); ``val_size`` is the (H, W) keep-ratio test resolution of validation;
    ``val_videos`` the first N videos of ``val_split`` (``None``: all); ``val_every = 0`` turns
    validation off; ``threads`` sets torch's intra-op threads (``None``: torch's default;
    bit-exact resume needs the same count, so it is part of the config).
    """

    method: str = "tfc"
    backbone: str = "b0"
    options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 124
    preset: str = "synthetic"
    data: str | None = None
    split: str = "train"
    val_split: str = "val"
    iters: int = 300
    batch_size: int = 4
    crop: tuple[int, int] = (96, 96)
    scale: tuple[int, int] = (320, 180)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    lr: float = 6e-4
    head_lr_mult: float | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 30
    warmup_ratio: float = 1e-6
    power: float = 1.0
    min_lr: float = 0.0
    init: str | None = None
    init_format: str = "auto"
    val_every: int = 100
    val_videos: int | None = 3
    val_size: tuple[int, int] = (180, 320)
    log_every: int = 1
    checkpoint_every: int = 100
    device: str = "cpu"
    amp: bool = False
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    world_size: int = 1

    def __post_init__(self) -> None:
        for name in ("crop", "scale", "val_size"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 2 or min(value) <= 0:
                raise OptionError(f"{name} must be two positive sides, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "ratio_range", tuple(float(v) for v in self.ratio_range))
        object.__setattr__(self, "betas", tuple(float(v) for v in self.betas))
        object.__setattr__(self, "options", dict(sorted(dict(self.options).items())))
        if self.preset not in PRESETS:
            raise OptionError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESETS)}")
        for name in ("iters", "batch_size", "log_every", "checkpoint_every", "world_size"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_iters", "val_every", "workers"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise OptionError(f"threads must be >= 1, got {self.threads}")
        if self.val_videos is not None and self.val_videos < 1:
            raise OptionError(f"val_videos must be >= 1, got {self.val_videos}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise OptionError(f"lr must be a positive number, got {self.lr}")
        if not 0 < self.warmup_ratio <= 1:
            raise OptionError(f"warmup_ratio must be in (0, 1], got {self.warmup_ratio}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        check_known_keys(cls, d, "training config keys")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def build_config(preset: str | None = None, **fields: Any) -> TrainConfig:
    """A :class:`TrainConfig` from ``preset`` (default: ``paper`` with ``data``, else ``synthetic``)
    with every non-``None`` keyword overriding it (``val_videos=None`` keeps the preset's)."""
    if preset is None:
        preset = "paper" if fields.get("data") else "synthetic"
    if preset not in PRESETS:
        raise OptionError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in fields.items() if v is not None})
    return TrainConfig(preset=preset, **values)


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields (other than :data:`RESUME_MAY_DIFFER`) whose values differ, as ``name: saved -> now``."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_MAY_DIFFER:
            continue
        if saved.get(key) != current.get(key):
            out.append(f"{key}: {saved.get(key)!r} -> {current.get(key)!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Parameter groups, optimizer, schedule

_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def _is_positional_conv(module: nn.Module) -> bool:
    """A depthwise convolution (groups == in == out channels > 1): Mix-FFN's positional encoding in MiT."""
    return (
        isinstance(module, nn.Conv2d)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters that get no weight decay, by rule: those of normalization layers and of depthwise
    (positional) convolutions, and every 1-D parameter (biases, scales, offsets)."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, _NORMS) or _is_positional_conv(module) or param.ndim <= 1:
                names.add(full)
    return names


def parameter_groups(
    adapter: nn.Module, lr: float, weight_decay: float, head_lr_mult: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``adapter`` by rule (timm ``param_groups_weight_decay`` style).

    The adapter's ``parameter_groups()`` group named ``"encoder"`` trains at ``lr``; every other
    group and any parameter in no group at ``head_lr_mult`` x ``lr`` (default: the adapter's own
    ``head_lr_mult``, 10 for SegFormer's recipe). Weight decay is ``weight_decay`` except for the
    parameters of :func:`no_decay_names`. Each group carries ``name``, ``lr_mult`` and
    ``initial_lr``-free ``lr``; empty groups are left out; the encoder's groups come first.
    """
    mult = float(getattr(adapter, "head_lr_mult", 10.0) if head_lr_mult is None else head_lr_mult)
    declared = getattr(adapter, "parameter_groups", dict)()
    encoder_ids = {id(p) for p in declared["encoder"].parameters()} if "encoder" in declared else set()
    skip = no_decay_names(adapter)
    buckets: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in adapter.named_parameters():
        if not param.requires_grad:
            continue
        key = (id(param) in encoder_ids, name not in skip)
        buckets.setdefault(key, []).append(param)
    groups = []
    for is_encoder in (True, False):
        for decay in (True, False):
            params = buckets.get((is_encoder, decay))
            if not params:
                continue
            lr_mult = 1.0 if is_encoder else mult
            groups.append(
                {
                    "name": f"{'encoder' if is_encoder else 'head'}/{'decay' if decay else 'no_decay'}",
                    "params": params,
                    "lr": lr * lr_mult,
                    "lr_mult": lr_mult,
                    "weight_decay": weight_decay if decay else 0.0,
                }
            )
    return groups


def build_optimizer(adapter: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over :func:`parameter_groups` with the config's lr, betas and weight decay."""
    groups = parameter_groups(adapter, config.lr, config.weight_decay, config.head_lr_mult)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def lr_factor(
    iteration: int,
    iters: int,
    warmup_iters: int,
    warmup_ratio: float = 1e-6,
    power: float = 1.0,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the base lr at 0-based ``iteration`` (mmcv ``PolyLrUpdaterHook`` with linear warm-up).

    Poly: ``(1 - min) * (1 - i / iters) ** power + min``; during the first ``warmup_iters``
    iterations it is further multiplied by ``1 - (1 - i / warmup_iters) * (1 - warmup_ratio)``,
    which rises linearly from ``warmup_ratio`` to 1 (mmcv's "linear" warm-up).
    """
    progress = min(iteration, iters) / iters
    factor = (1.0 - min_lr_ratio) * (1.0 - progress) ** power + min_lr_ratio
    if iteration < warmup_iters:
        factor *= 1.0 - (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor` to every group (stepped once per iteration)."""
    min_ratio = config.min_lr / config.lr

    def factor(i: int) -> float:
        return lr_factor(i, config.iters, config.warmup_iters, config.warmup_ratio, config.power, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = [
    "PRESETS",
    "RESUME_MAY_DIFFER",
    "TrainConfig",
    "build_config",
    "build_optimizer",
    "build_scheduler",
    "config_differences",
    "lr_factor",
    "no_decay_names",
    "parameter_groups",
]
