"""The method adapter protocol and the method registry.

Every method is one file in ``vssbench/methods/`` that defines a :class:`VideoSegmenter`
subclass with an ``Options`` dataclass and registers a factory with :func:`register`. The harness
only ever calls :func:`create`, ``reset()`` and ``step()``; it never special-cases a method.

Protocol (online and causal):

* ``reset()`` at the start of each video;
* ``step(image) -> logits``: ``image`` is N×3×H×W, ImageNet-normalized RGB float; the logits are
  N×num_classes×H×W at the input resolution. Keyframe methods decide keyframes themselves
  (``t % interval == 0`` by default);
* ``forward_train(images, labels) -> dict`` of named scalar losses (key ``"loss"`` is the total)
  for a clip: images N×T×3×H×W, labels N×T×H×W int64 with 255 ignored;
* ``last_step_info``: diagnostics of the last ``step`` (``keyframe`` and method-specific values);
* ``state_tensors()``: the tensors cached for later frames (counted by the GMAC counter);
* ``parameter_groups()``: named sub-modules for grouped parameter counts and for the trainer's
  learning-rate rule: the group named ``"encoder"`` (the MiT backbone) trains at the base lr,
  every other group (decoder, method modules) at ``head_lr_mult`` times it (SegFormer's recipe);
* ``train_sampler()``: the :class:`~vssbench.data.samplers.ClipSampler` that draws this method's
  training clips (frame indices, target last); ``forward_train`` receives clips drawn by it.

The trainer never names a method: everything it needs is one of these calls.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from vssbench.errors import OptionError

BACKBONES = ("b0", "b1", "b2", "b3", "b4", "b5")
METHOD_TYPES = ("Image", "E", "S", "E&S")


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of a method: the paper it comes from and what it is for.

    ``type`` follows the TFC paper's Table 1: Image (per-frame), E (efficiency), S (stability)
    or E&S. ``default_interval`` is the keyframe interval, and for every method the window over
    which GMACs and FPS are averaged. ``size_divisor`` is the test-time alignment the method's
    own protocol uses (CFFM/MRCFA: 32); the harness applies it when ``--size-divisor`` is not
    given, and records it in the config like any other condition.
    """

    name: str
    paper: str
    type: str
    default_interval: int = 4
    description: str = ""
    size_divisor: int | None = None

    def __post_init__(self) -> None:
        if self.type not in METHOD_TYPES:
            raise ValueError(f"method type must be one of {METHOD_TYPES}, got {self.type!r}")


class VideoSegmenter(nn.Module):
    """Base class of every method adapter (see the module docstring for the protocol)."""

    info: ClassVar[MethodInfo]

    def __init__(self) -> None:
        super().__init__()
        self.last_step_info: dict[str, Any] = {}

    def reset(self) -> None:
        """Forget every cached state; called at the start of each video."""
        raise NotImplementedError

    def step(self, image: torch.Tensor) -> torch.Tensor:
        """Segment the next frame of the current video; returns logits at the input resolution."""
        raise NotImplementedError

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named losses for a training clip (``"loss"`` is the one to back-propagate)."""
        raise NotImplementedError

    def state_tensors(self) -> list[torch.Tensor]:
        """Tensors the adapter keeps for later frames (keyframe caches); empty for per-frame methods.

        Complexity counting returns them beside the logits so that the work done to cache them
        is counted at the step that does it.
        """
        return []

    def parameter_groups(self) -> dict[str, nn.Module]:
        """Named sub-modules whose parameters are counted separately (encoder, decoder, ...).

        The trainer trains the group named ``"encoder"`` at the base learning rate and every
        other group at ``head_lr_mult`` x it; parameters in no group count as "other" (head lr).
        """
        return {"model": self}

    @property
    def steady_state_after(self) -> int:
        """Frames after ``reset()`` before every step does its steady-state work (0 for most methods).

        The harness measures GMACs and FPS on the ``interval`` frames that follow these lead-in
        frames (run, untimed and uncounted, after each ``reset()``), so a method whose first frames
        take a cheaper fallback (CFFM/MRCFA before their references exist, TDNet before its frame
        FIFO is full) is measured at the cost it has on the rest of a video.
        """
        return 0

    #: Learning-rate multiplier of every parameter group except ``"encoder"`` (SegFormer: 10).
    head_lr_mult: ClassVar[float] = 10.0

    def train_sampler(self) -> Any:
        """The clip sampler of training (a :class:`vssbench.data.samplers.ClipSampler`).

        Its clips (frame indices in the order ``forward_train`` consumes them, target last) are
        what ``forward_train(images, labels)`` receives, N x T x ... with T the clip length.
        """
        raise NotImplementedError(f"{type(self).__name__} does not declare a training clip sampler")

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # nn.Module entry point = one step
        return self.step(image)


def check_training_clip(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Validate a training clip: images N x T x 3 x H x W and labels N x T x H' x W' (clear errors)."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"forward_train expects images N x T x 3 x H x W, got {tuple(images.shape)}")
    if labels.ndim != 4 or labels.shape[:2] != images.shape[:2]:
        raise ValueError(
            f"forward_train expects labels N x T x H x W matching images {tuple(images.shape[:2])}, "
            f"got {tuple(labels.shape)}"
        )


Factory = Callable[..., VideoSegmenter]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    options: type
    info: MethodInfo


_REGISTRY: dict[str, _Entry] = {}


def register(info: MethodInfo, options: type) -> Callable[[Factory], Factory]:
    """Register ``factory(backbone=..., num_classes=..., options=<options instance>)`` under ``info.name``.

    ``options`` is the method's frozen ``Options`` dataclass; :func:`create` validates and
    coerces user options against its fields. A duplicate name is an error.
    """

    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options for {info.name!r} must be a dataclass, got {options!r}")

    def decorator(factory: Factory) -> Factory:
        if info.name in _REGISTRY:
            raise ValueError(f"method {info.name!r} is already registered")
        _REGISTRY[info.name] = _Entry(factory=factory, options=options, info=info)
        return factory

    return decorator


def available() -> list[str]:
    """Names of every registered method, sorted."""
    return sorted(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    return _entry(name).info


def method_options(name: str) -> type:
    """The ``Options`` dataclass of a method (its fields are the valid ``--set`` keys)."""
    return _entry(name).options


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise OptionError(f"unknown method {name!r}; available: {', '.join(available())}") from None


def describe(name: str) -> dict[str, Any]:
    """A method's metadata and options as plain data: name, paper, type, default interval,
    description, and ``options`` mapping each option to its default (what ``--set`` accepts)."""
    entry = _entry(name)
    return {
        "name": entry.info.name,
        "paper": entry.info.paper,
        "type": entry.info.type,
        "default_interval": entry.info.default_interval,
        "size_divisor": entry.info.size_divisor,
        "description": entry.info.description,
        "options": {f.name: _default(f) for f in dataclasses.fields(entry.options)},
    }


def parse_options(name: str, options: dict[str, Any]) -> Any:
    """Validate ``options`` against method ``name``'s Options dataclass and build an instance.

    String values (from ``--set key=value``) are coerced to the field's type; an unknown key or
    a bad value raises :class:`OptionError` listing the valid options.
    """
    cls = method_options(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            listing = ", ".join(f"{k} (default {_default(f)!r})" for k, f in fields.items())
            raise OptionError(f"unknown option {key!r} for method {name!r}; options: {listing}")
        values[key] = coerce(value, hints[key], f"{name}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"bad options for method {name!r}: {exc}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Coerce a (possibly string) value to a type hint: bool, int, float, str, Literal, Optional."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise OptionError(f"{where} must be one of {list(args)}, got {value!r}")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except OptionError as exc:
                errors.append(str(exc))
        raise OptionError("; ".join(errors) or f"{where}: bad value {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise OptionError(f"{where} must be a boolean (true/false), got {value!r}")
    if hint in (int, float):
        try:
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return hint(value) if not isinstance(value, str) else hint(float(value) if hint is float else int(value))
        except (TypeError, ValueError):
            raise OptionError(f"{where} must be {hint.__name__}, got {value!r}") from None
    if hint is str:
        return str(value)
    return value


def create(
    name: str,
    backbone: str = "b0",
    num_classes: int = 124,
    checkpoint: str | None = None,
    checkpoint_format: str = "auto",
    **options: Any,
) -> VideoSegmenter:
    """Build method ``name`` on MiT ``backbone`` and optionally load ``checkpoint`` (strict).

    ``options`` are the method's ``Options`` fields (``vssbench.methods.method_options(name)``);
    strings are coerced to the field type. The returned adapter is in eval mode.
    """
    entry = _entry(name)
    if backbone not in BACKBONES:
        raise OptionError(f"unknown backbone {backbone!r}; available: {', '.join(BACKBONES)}")
    parsed = parse_options(name, options)
    model = entry.factory(backbone=backbone, num_classes=num_classes, options=parsed)
    if checkpoint is not None:
        from vssbench.models.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint, format=checkpoint_format)
    return model.eval()
