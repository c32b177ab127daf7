"""The method adapter protocol, the base class that does its bookkeeping, and the method registry.

Every method is one file in ``vssbench/methods/`` holding a :class:`VideoSegmenter` subclass with
an ``info`` (:class:`MethodInfo`) and an ``Options`` dataclass (a :class:`BaseOptions` subclass),
registered with the class decorator :func:`register`. The harness only ever calls :func:`create`,
``reset()`` and ``step()``; it never special-cases a method.

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

What the base class does, so that a method file holds only what is new about the method:
``step`` checks the input, guards against a frame of another size while state from earlier
frames is held ("call reset() between videos"), restarts the video when the decoder mode was
switched since the last frame (no state crosses a mode switch), calls the method's
:meth:`VideoSegmenter.segment`, records its diagnostics, advances the frame counter ``t`` and
resizes the logits to the input size; ``reset`` clears that bookkeeping and calls the method's
:meth:`VideoSegmenter.reset_state`; ``forward_train`` checks the clip and calls
:meth:`VideoSegmenter.train_losses`. The trainer never names a method: everything it needs is
one of these calls.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from vssbench import __version__
from vssbench.data.samplers import ClipSampler
from vssbench.errors import OptionError
from vssbench.models.checkpoint import load_checkpoint
from vssbench.models.decoder import resize_logits

BACKBONES = ("b0", "b1", "b2", "b3", "b4", "b5")
METHOD_TYPES = ("Image", "E", "S", "E&S")


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of a method: the paper it comes from and what it is for.

    ``type`` follows the TFC paper's Table 1: Image (per-frame), E (efficiency), S (stability)
    or E&S. ``default_interval`` is the keyframe interval, and for every method the window over
    which GMACs and FPS are averaged. ``size_divisor`` is the test-time alignment the method's
    own protocol uses (CFFM/MRCFA: 32); the harness applies it when ``--size-divisor`` is not
    given, and records it in the config like any other condition. ``backbones`` are the
    backbone names the method accepts (default: MiT b0..b5); ``--backbone`` is checked against
    them, so a plugin may bring a backbone of its own.
    """

    name: str
    paper: str
    type: str
    default_interval: int = 4
    description: str = ""
    size_divisor: int | None = None
    backbones: tuple[str, ...] = BACKBONES

    def __post_init__(self) -> None:
        if self.type not in METHOD_TYPES:
            raise ValueError(f"method type must be one of {METHOD_TYPES}, got {self.type!r}")
        if isinstance(self.backbones, str) or not self.backbones:
            raise ValueError(f"backbones must be a non-empty tuple of names, got {self.backbones!r}")


@dataclass(frozen=True)
class BaseOptions:
    """The options every method has (a method's ``Options`` dataclass subclasses this one).

    ``interval``: the keyframe interval of a keyframe method, and for every method the window
    over which the harness averages GMACs and FPS. ``decoder_dim``: the decoder width E (256 in
    every VSPW config; ``--decoder-dim``). ``drop_path_rate``: stochastic depth of the encoder
    (training only).
    """

    interval: int = 4
    decoder_dim: int = 256
    drop_path_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")
        if self.decoder_dim < 1:
            raise ValueError(f"decoder_dim must be >= 1, got {self.decoder_dim}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")


class VideoSegmenter(nn.Module):
    """Base class of every method adapter (see the module docstring for the protocol).

    A subclass sets ``info`` and ``Options``, builds its modules in ``__init__`` (calling
    ``super().__init__(options)`` first, which stores ``self.options``), and implements
    :meth:`segment` (one frame), :meth:`reset_state` (if it caches anything), :meth:`state_tensors`,
    :meth:`train_losses`, :meth:`parameter_groups` and :meth:`train_sampler`.
    """

    info: ClassVar[MethodInfo]
    Options: ClassVar[type[BaseOptions]] = BaseOptions

    def __init__(self, options: BaseOptions | None = None) -> None:
        super().__init__()
        self.options = options if options is not None else type(self).Options()
        #: Index of the next frame within the current video (0 after ``reset()``).
        self.t = 0
        self.last_step_info: dict[str, Any] = {}
        self._frame_shape: tuple[int, ...] | None = None
        self._mode_holders: list[nn.Module] | None = None
        self._decoder_modes: tuple[str, ...] | None = None

    # ----------------------------------------------------------------------------- bookkeeping

    def reset(self) -> None:
        """Start a new video: frame counter to 0, diagnostics cleared, the method's state forgotten."""
        self.t = 0
        self.last_step_info = {}
        self._frame_shape = None
        self._mode_holders = None  # found again: a module may have been replaced between videos
        self._decoder_modes = None
        self.reset_state()

    def step(self, image: torch.Tensor) -> torch.Tensor:
        """Segment the next frame: N x 3 x H x W normalized image -> N x num_classes x H x W logits."""
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"step expects one frame batch N x 3 x H x W, got shape {shape}")
        modes = self._current_decoder_modes()
        if self._decoder_modes is not None and modes != self._decoder_modes:
            self.reset()  # state cached under one decoder mode is never reused under the other
        shape = tuple(image.shape)
        if self._frame_shape is not None and shape != self._frame_shape and self.state_tensors():
            raise ValueError(
                f"frame {self.t} has shape {shape} but the frames before it had {self._frame_shape}; "
                "call reset() between videos"
            )
        logits, info = self.segment(image)
        self.last_step_info = info
        self._frame_shape = shape
        self._decoder_modes = modes
        self.t += 1
        return resize_logits(logits, shape[-2:])

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named losses for a training clip (``"loss"`` is the one to back-propagate).

        images N x T x 3 x H x W, labels N x T x H' x W' (checked here), then :meth:`train_losses`.
        """
        check_training_clip(images, labels)
        return self.train_losses(images, labels)

    def _current_decoder_modes(self) -> tuple[str, ...]:
        if self._mode_holders is None:
            self._mode_holders = [m for m in self.modules() if m is not self and hasattr(m, "decoder_mode")]
        return tuple(m.decoder_mode for m in self._mode_holders)

    # ----------------------------------------------------------------------------- what a method implements

    def segment(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Logits of frame ``self.t`` (any resolution: ``step`` resizes them) and its diagnostics.

        ``image`` is N x 3 x H x W; the input checks, the frame counter and the video guard are
        done by ``step``. The diagnostics become ``last_step_info`` (``keyframe`` for a method
        that has keyframes).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement segment()")

    def reset_state(self) -> None:
        """Forget what the method caches between frames (called by ``reset()``); nothing by default."""

    def train_losses(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named losses of a checked training clip (``"loss"`` is the total)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement train_losses()")

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

    #: 0-based iteration being trained; the trainer sets it before each ``forward_train`` (a
    #: resumed run sets the restored iteration). A method whose training depends on the iteration
    #: reads it (TDNet trains path ``(iteration + 1) mod N``); the others ignore it.
    train_iteration: int = 0

    def train_sampler(self) -> ClipSampler:
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


@dataclass(frozen=True)
class _Entry:
    cls: type[VideoSegmenter]
    options: type[BaseOptions]
    info: MethodInfo
    origin: str  # "builtin", a distribution name (entry point) or "module NAME" (--plugin, direct)
    version: str | None  # vssbench's for built-ins, the distribution's for entry points


_REGISTRY: dict[str, _Entry] = {}

#: The entry-point group through which installed packages provide methods.
ENTRY_POINT_GROUP = "vssbench.methods"
#: Environment variable naming plugin modules to import (comma list), like ``--plugin``.
PLUGINS_ENV = "VSSBENCH_PLUGINS"
#: Plugins that failed to load: entry-point or module name -> the reason (one line).
_FAILED: dict[str, str] = {}
#: The exceptions behind :data:`_FAILED` (``vssbench --debug`` prints their tracebacks).
_FAILED_EXC: dict[str, BaseException] = {}
#: Plugin modules imported so far (each once).
_LOADED_MODULES: set[str] = set()
_DISCOVERED = False
#: Origin and version given to methods registered while a plugin is being imported.
_LOADING: tuple[str, str | None] | None = None

M = TypeVar("M", bound=type[VideoSegmenter])


def register(cls: M) -> M:
    """Class decorator: register a :class:`VideoSegmenter` subclass under ``cls.info.name``.

    The class declares ``info`` (:class:`MethodInfo`) and ``Options`` (a frozen
    :class:`BaseOptions` dataclass; :func:`create` validates and coerces user options against its
    fields) and is built as ``cls(backbone=..., num_classes=..., options=<Options instance>)``.
    A duplicate name is an error.
    """
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, VideoSegmenter)):
        raise TypeError(f"register expects a VideoSegmenter subclass, got {cls!r}")
    info = cls.__dict__.get("info")
    if not isinstance(info, MethodInfo):
        raise TypeError(f"{where} must set info = MethodInfo(...) in its own class body")
    options = cls.Options
    if not (dataclasses.is_dataclass(options) and issubclass(options, BaseOptions)):
        raise TypeError(f"{where}.Options must be a dataclass subclassing BaseOptions, got {options!r}")
    if info.name in _REGISTRY:
        other = _REGISTRY[info.name].cls
        raise ValueError(
            f"method {info.name!r} is already registered (by {other.__module__}.{other.__qualname__})"
        )
    _REGISTRY[info.name] = _Entry(cls=cls, options=options, info=info, **_origin_of(cls))
    return cls


def _origin_of(cls: type) -> dict[str, str | None]:
    if _LOADING is not None:
        return {"origin": _LOADING[0], "version": _LOADING[1]}
    if cls.__module__.split(".")[0] == "vssbench":
        return {"origin": "builtin", "version": __version__}
    return {"origin": f"module {cls.__module__}", "version": None}


@contextmanager
def _loading(origin: str, version: str | None) -> Iterator[None]:
    global _LOADING
    previous, _LOADING = _LOADING, (origin, version)
    try:
        yield
    finally:
        _LOADING = previous


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _fail(key: str, what: str, exc: BaseException) -> None:
    reason = f"{what} failed to load: {type(exc).__name__}: {exc}".replace("\n", " ")
    _FAILED[key] = reason
    _FAILED_EXC[key] = exc
    _warn(reason)


def _load_entry_points() -> None:
    """Import every installed ``vssbench.methods`` entry point (each failure: one warning line)."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        name, version = (dist.name, dist.version) if dist is not None else (ep.value.split(":")[0], None)
        what = f"plugin entry point {ep.name!r} ({ep.value}, from {name} {version or ''})".replace(" )", ")")
        try:
            with _loading(name, version):
                obj = ep.load()
                if isinstance(obj, type) and issubclass(obj, VideoSegmenter) and not _registered(obj):
                    register(obj)
        except Exception as exc:  # a broken plugin must not take the other methods down
            _fail(ep.name, what, exc)


def _registered(cls: type) -> bool:
    return any(entry.cls is cls for entry in _REGISTRY.values())


def load_plugins(modules: Sequence[str] = ()) -> None:
    """Load the installed entry points (once) and import plugin ``modules`` (each once).

    Each module registers its methods with :func:`register` on import. A module that fails to
    import, or registers a name that exists, is one warning line on stderr; the other methods keep
    working, and asking for a method of a failed plugin names the failure.
    """
    _discover()
    for module in modules:
        module = module.strip()
        if not module or module in _LOADED_MODULES:
            continue
        _LOADED_MODULES.add(module)
        try:
            with _loading(f"module {module}", None):
                importlib.import_module(module)
        except Exception as exc:
            _fail(module, f"plugin module {module!r}", exc)


def _discover() -> None:
    """On first use of the registry: the installed entry points and ``$VSSBENCH_PLUGINS``."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    _load_entry_points()
    load_plugins(os.environ.get(PLUGINS_ENV, "").split(","))


def plugin_failures() -> dict[str, str]:
    """Plugins that failed to load so far: entry-point or module name -> the reason."""
    _discover()
    return dict(_FAILED)


def plugin_exceptions() -> dict[str, BaseException]:
    """The exceptions of the plugins that failed to load (for a traceback under ``--debug``)."""
    _discover()
    return dict(_FAILED_EXC)


def method_origin(name: str) -> dict[str, str | None]:
    """Where method ``name`` comes from: ``{"origin": "builtin" | distribution | "module M", "version"}``."""
    entry = _entry(name)
    return {"origin": entry.origin, "version": entry.version}


def available() -> list[str]:
    """Names of every registered method (built-ins and loaded plugins), sorted."""
    _discover()
    return sorted(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    return _entry(name).info


def check_backbone(name: str, backbone: str) -> str:
    """``backbone`` itself if method ``name`` declares it, else an :class:`OptionError` listing them."""
    declared = method_info(name).backbones
    if backbone not in declared:
        raise OptionError(
            f"unknown backbone {backbone!r} for method {name!r}; available: {', '.join(declared)}"
        )
    return backbone


def all_backbones() -> list[str]:
    """Every backbone some registered method declares (MiT b0..b5 first)."""
    names = list(BACKBONES)
    for name in available():
        names.extend(b for b in method_info(name).backbones if b not in names)
    return names


def method_options(name: str) -> type:
    """The ``Options`` dataclass of a method (its fields are the valid ``--set`` keys)."""
    return _entry(name).options


def _entry(name: str) -> _Entry:
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _FAILED:
        raise OptionError(f"method {name!r}: {_FAILED[name]}")
    failed = f" (plugins that failed to load: {'; '.join(_FAILED.values())})" if _FAILED else ""
    raise OptionError(f"unknown method {name!r}; available: {', '.join(available())}{failed}")


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
        "backbones": list(entry.info.backbones),
        "description": entry.info.description,
        "origin": entry.origin,
        "version": entry.version,
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
    if origin in (typing.Union, types.UnionType):
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
            return (
                hint(value)
                if not isinstance(value, str)
                else hint(float(value) if hint is float else int(value))
            )
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
    """Build method ``name`` on ``backbone`` (one it declares) and optionally load ``checkpoint`` (strict).

    ``options`` are the method's ``Options`` fields (``vssbench.methods.method_options(name)``);
    strings are coerced to the field type. The returned adapter is in eval mode.
    """
    entry = _entry(name)
    check_backbone(name, backbone)
    parsed = parse_options(name, options)
    model = entry.cls(backbone=backbone, num_classes=num_classes, options=parsed)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, format=checkpoint_format)
    return model.eval()
