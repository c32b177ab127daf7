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

Parameter groups follow a named rule (``TrainConfig.param_rule``, recorded in ``config.json``):
``"mmcv"`` (default) is the released configs' ``paramwise_cfg.custom_keys`` as mmcv applies them,
``"timm"`` the rule-by-type of timm's ``param_groups_weight_decay`` that vssbench used before; see
:func:`parameter_groups`.

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

#: The value a field had in runs saved before the field existed (a resume compares against it).
LEGACY_VALUES: dict[str, Any] = {"param_rule": "timm"}

#: Parameter-group rules (:func:`parameter_groups`).
PARAM_RULES: tuple[str, ...] = ("mmcv", "timm")

#: The released configs' ``paramwise_cfg.custom_keys`` (SegFormer, CFFM, MRCFA): key -> (lr_mult,
#: decay_mult). ``"head"``'s lr_mult is the run's ``head_lr_mult`` (10 as released).
MMCV_CUSTOM_KEYS: dict[str, tuple[float | None, float]] = {
    "pos_block": (1.0, 0.0),
    "norm": (1.0, 0.0),
    "head": (None, 1.0),
}

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
    ``param_rule`` the parameter-group rule (:data:`PARAM_RULES`, see :func:`parameter_groups`);
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
    param_rule: str = "mmcv"
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
        if self.param_rule not in PARAM_RULES:
            raise OptionError(f"unknown param_rule {self.param_rule!r}; rules: {', '.join(PARAM_RULES)}")
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
    """Fields (other than :data:`RESUME_MAY_DIFFER`) whose values differ, as ``name: saved -> now``.

    A field missing from ``saved`` (a run made before the field existed) takes its
    :data:`LEGACY_VALUES` value, the behaviour that run had.
    """
    saved = {**{k: v for k, v in LEGACY_VALUES.items() if k in current}, **saved}
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


def mmcv_multipliers(
    name: str, custom_keys: dict[str, tuple[float | None, float]], head_lr_mult: float
) -> tuple[float, float]:
    """(lr_mult, decay_mult) of the parameter ``name`` under mmcv's ``paramwise_cfg.custom_keys``.

    mmcv's ``DefaultOptimizerConstructor`` tries the keys longest first (ties alphabetically)
    and applies only the first one that is a substring of the full parameter name; a parameter
    no key matches gets (1, 1). A key's lr_mult ``None`` stands for ``head_lr_mult``.
    """
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in name:
            lr_mult, decay_mult = custom_keys[key]
            return (head_lr_mult if lr_mult is None else lr_mult), decay_mult
    return 1.0, 1.0


def released_name(name: str, is_encoder: bool, encoder_prefix: str) -> str:
    """The mmseg name of adapter parameter ``name``: ``backbone.<name in the encoder>`` for the
    encoder's parameters, ``decode_head.<name>`` for every other (its own ``decode_head.`` kept)."""
    if is_encoder:
        return "backbone." + name[len(encoder_prefix) :]
    return name if name.startswith("decode_head.") else "decode_head." + name


def parameter_groups(
    adapter: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float | None = None,
    rule: str = "mmcv",
) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``adapter`` under ``rule`` (:data:`PARAM_RULES`).

    The adapter's ``parameter_groups()`` group named ``"encoder"`` is the encoder; every other
    parameter is the head's (decoder and method modules). ``head_lr_mult`` defaults to the
    adapter's own (10 for SegFormer's recipe).

    * ``"mmcv"`` (the released SegFormer/CFFM/MRCFA configs): :data:`MMCV_CUSTOM_KEYS` applied by
      :func:`mmcv_multipliers` to each parameter's mmseg name (:func:`released_name`: every
      non-encoder module counts as ``decode_head``, where CFFM's and MRCFA's temporal modules sit
      and where the paper's "every method module at 10x" puts TFC's and TDNet's). So the whole
      head, its norms and biases included, gets lr x ``head_lr_mult`` and the full decay
      (``"head"`` precedes ``"norm"``); in the encoder only ``*norm*`` parameters get no decay,
      its biases and depthwise convolutions are decayed.
    * ``"timm"``: lr x 1 for the encoder and x ``head_lr_mult`` for the head; no decay for the
      parameters of :func:`no_decay_names` (norms, depthwise convolutions, every 1-D parameter).

    Groups are named ``encoder|head`` / ``decay|no_decay`` (plus ``/lr_x<mult>`` for a parameter
    a custom key moves to another lr, e.g. an encoder parameter named ``*head*``); each carries
    ``name``, ``lr``, ``lr_mult`` and ``weight_decay``; empty groups are left out; the encoder's
    groups come first.
    """
    if rule not in PARAM_RULES:
        raise OptionError(f"unknown param_rule {rule!r}; rules: {', '.join(PARAM_RULES)}")
    mult = float(getattr(adapter, "head_lr_mult", 10.0) if head_lr_mult is None else head_lr_mult)
    declared = getattr(adapter, "parameter_groups", dict)()
    encoder = declared.get("encoder")
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    encoder_prefix = next(
        (f"{n}." for n, m in adapter.named_modules() if encoder is not None and m is encoder), ""
    )
    skip = no_decay_names(adapter) if rule == "timm" else set()
    buckets: dict[tuple[bool, float, float], list[torch.nn.Parameter]] = {}
    for name, param in adapter.named_parameters():
        if not param.requires_grad:
            continue
        is_encoder = id(param) in encoder_ids
        if rule == "mmcv":
            mults = mmcv_multipliers(released_name(name, is_encoder, encoder_prefix), MMCV_CUSTOM_KEYS, mult)
        else:
            mults = (1.0 if is_encoder else mult, 0.0 if name in skip else 1.0)
        buckets.setdefault((is_encoder, *mults), []).append(param)
    groups = []
    for is_encoder, lr_mult, decay_mult in sorted(buckets, key=lambda k: (not k[0], k[1], -k[2])):
        name = f"{'encoder' if is_encoder else 'head'}/{'decay' if decay_mult else 'no_decay'}"
        if lr_mult != (1.0 if is_encoder else mult):  # a custom key moved it to another lr
            name += f"/lr_x{lr_mult:g}"
        groups.append(
            {
                "name": name,
                "params": buckets[(is_encoder, lr_mult, decay_mult)],
                "lr": lr * lr_mult,
                "lr_mult": lr_mult,
                "weight_decay": weight_decay * decay_mult,
            }
        )
    return groups


def build_optimizer(adapter: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over :func:`parameter_groups` (the config's ``param_rule``) with its lr, betas and decay."""
    groups = parameter_groups(adapter, config.lr, config.weight_decay, config.head_lr_mult, config.param_rule)
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
    "LEGACY_VALUES",
    "MMCV_CUSTOM_KEYS",
    "PARAM_RULES",
    "PRESETS",
    "RESUME_MAY_DIFFER",
    "TrainConfig",
    "build_config",
    "build_optimizer",
    "build_scheduler",
    "config_differences",
    "lr_factor",
    "mmcv_multipliers",
    "no_decay_names",
    "parameter_groups",
    "released_name",
]
