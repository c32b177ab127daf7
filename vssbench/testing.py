"""The method contract kit: the rules every registered method keeps, checkable on any method.

Run it on a method of your own (registered with :func:`vssbench.methods.register`)::

    from vssbench.testing import check_method
    check_method("my_method")                        # every rule, MiT-B0, 5 classes, 64x64 frames
    check_method("my_method", checks=["reset"], interval=2)   # one rule, with a method option

or parametrize a test over :data:`CHECKS` (rule name -> check function). A broken rule raises
:class:`ContractError` (an ``AssertionError``) whose message starts with
``contract rule '<rule>' broken by method '<name>': ``, says what was observed and ends with
``Fix:`` and what to change. An exception raised by the method itself during a check is reported
the same way, with the original exception chained.

Inputs are tiny so that every rule runs in seconds on a CPU: MiT-B0 at random init (seeded; the
caller's torch RNG is left as it was), 5 classes, 64x64 frames and one size that is not a
multiple of 32 (both rounded up to the method's ``size_divisor`` when it declares one, as the
harness does), a few frames past the method's ``steady_state_after`` lead-in. The video is a
fixed noise background with a moving block of fresh noise, so every frame differs from the last.

The rules (one ``check_<rule>`` function each):

``step_output``
    ``step`` returns N x num_classes x H x W float32 finite logits at both sizes (N = 2).
``reset``
    a video gives identical logits after ``reset()``, also when another video (other content and
    size) ran in between; ``state_tensors()`` is empty after ``reset()``.
``batch``
    the logits of a batch of two videos equal each video's own, within 1e-5 relative.
``decoder_modes``
    the ``"reference"`` and ``"folded"`` decoder modes give the same keyframes and logits within
    1e-4 relative (nothing to compare for a method without a ``decoder_mode`` holder).
``steady_state``
    from ``steady_state_after`` on, the cached tensors' shapes and the keyframe schedule repeat
    with the keyframe interval (what makes the harness's one measured interval representative).
``state_declared``
    every tensor the method keeps for later frames and computes with MACs is declared by
    ``state_tensors()``, so the GMAC counter counts the work that made it.
``training``
    ``forward_train`` on a clip from ``train_sampler()`` returns named scalars with a finite
    ``loss`` whose gradient reaches every parameter that inference uses.
``sampler``
    ``train_sampler().sample`` gives in-range indices, one clip length, for videos of 1, 2, the
    clip length and 30 frames, or the protocol's ``ValueError`` for a video too short.
``checkpoint``
    ``save_checkpoint`` then ``create(..., checkpoint=path)`` gives identical logits.
``options``
    every option's value round-trips through its string form (what ``--set key=value`` does).
``gmacs``
    one steady-state step's GMACs are countable: positive and finite (the record, with its
    ``unsupported_ops``, is returned).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from vssbench.methods.base import VideoSegmenter, create, method_info, method_options, parse_options
from vssbench.models.checkpoint import save_checkpoint
from vssbench.models.decoder import set_decoder_mode
from vssbench.profiling import count_gmacs, find_dead_parameters

#: Frame sizes of the checks: a small square and one whose sides are not multiples of 32.
SIZE: tuple[int, int] = (64, 64)
ODD_SIZE: tuple[int, int] = (72, 100)
#: Tolerances: a batch against its videos alone (float32 reductions over another batch size),
#: and the folded decoder against the reference one (docs: ~1e-6 relative in float32).
BATCH_RTOL = 1e-5
DECODER_RTOL = 1e-4
#: Video lengths the training sampler is asked for (besides its own clip length).
SAMPLER_LENGTHS: tuple[int, ...] = (1, 2, 30)
#: Training steps the ``training`` rule may take to reach every parameter inference uses.
TRAIN_STEPS = 16
#: At most this many names (parameters, attributes) in a message, then a count.
MAX_LISTED = 8

T = TypeVar("T")


class ContractError(AssertionError):
    """A broken contract rule: ``rule``, the ``method``, what was ``observed`` and the ``fix``."""

    def __init__(self, rule: str, method: str, observed: str, fix: str) -> None:
        super().__init__(f"contract rule '{rule}' broken by method '{method}': {observed}\nFix: {fix}")
        self.rule, self.method, self.observed, self.fix = rule, method, observed, fix


@dataclasses.dataclass(frozen=True)
class _Case:
    """One check's inputs: the method, how to build it, and the (aligned) frame sizes."""

    rule: str
    name: str
    backbone: str
    num_classes: int
    size: tuple[int, int]
    odd_size: tuple[int, int]
    options: dict[str, Any]

    def build(self, seed: int = 0, **extra: Any) -> VideoSegmenter:
        """The method in eval mode, random init from ``seed`` (the caller's RNG state is kept)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return create(self.name, self.backbone, num_classes=self.num_classes, **self.options, **extra)

    def broken(self, observed: str, fix: str) -> ContractError:
        return ContractError(self.rule, self.name, observed, fix)

    def video(self, frames: int, size: tuple[int, int] | None = None, seed: int = 0) -> list[torch.Tensor]:
        """``frames`` frames 1 x 3 x H x W: a noise background and a moving block of fresh noise."""
        g = torch.Generator().manual_seed(seed)
        h, w = size or self.size
        block = max(1, min(16, h // 2, w // 2))
        base = torch.randn(1, 3, h, w, generator=g)
        out = []
        for t in range(frames):
            frame = base.clone()
            top, left = (4 + 8 * t) % (h - block), (8 + 6 * t) % (w - block)
            noise = torch.randn(1, 3, block, block, generator=g)
            frame[:, :, top : top + block, left : left + block] = 2.0 * noise
            out.append(frame)
        return out

    def two_videos(self, frames: int, size: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """Two different videos as one batch: ``frames`` frames 2 x 3 x H x W."""
        return [torch.cat(pair) for pair in zip(self.video(frames, size, 1), self.video(frames, size, 2))]


def _aligned(name: str, size: Sequence[int]) -> tuple[int, int]:
    """``size`` rounded up to the method's ``size_divisor``, as the harness does (else unchanged)."""
    d = method_info(name).size_divisor or 1
    return -(-int(size[0]) // d) * d, -(-int(size[1]) // d) * d


def _interval(model: VideoSegmenter) -> int:
    return int(getattr(model.options, "interval", model.info.default_interval))


def run_video(model: VideoSegmenter, frames: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Logits of every frame of one video, from a ``reset()``, under inference mode."""
    model.reset()
    with torch.inference_mode():
        return [model.step(frame) for frame in frames]


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference over the larger of the two largest magnitudes."""
    scale = max(float(expected.abs().max()), float(actual.abs().max()), 1e-12)
    return float((actual - expected).abs().max()) / scale


def _first_difference(
    actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor], rtol: float = 0.0
) -> str | None:
    """``None`` when the logits agree frame by frame (exactly, or within ``rtol`` relative), else
    which frame differs first and by how much."""
    for t, (a, e) in enumerate(zip(actual, expected)):
        if a.shape != e.shape:
            return f"frame {t} has shape {tuple(a.shape)} instead of {tuple(e.shape)}"
        same = torch.equal(a, e) if rtol == 0 else _relative(a, e) <= rtol
        if not same:
            largest = float((a - e).abs().max())
            return f"frame {t} differs by up to {largest:.3g} ({_relative(a, e):.3g} relative)"
    return None


def _listing(names: Sequence[str]) -> str:
    more = len(names) - MAX_LISTED
    return ", ".join(names[:MAX_LISTED]) + (f" ... and {more} more" if more > 0 else "")


# ----------------------------------------------------------------------------- the rules

CHECKS: dict[str, Callable[..., Any]] = {}


def _rule(check: Callable[[_Case], T]) -> Callable[..., T]:
    """Make ``check_<rule>(case)`` the public ``check_<rule>(name, backbone, **kw)`` and list it in CHECKS.

    The public function takes what :func:`check_method` takes and turns an exception raised by
    the method during the check into a :class:`ContractError` naming the rule (an unknown method
    or option is the caller's mistake: its OptionError passes through).
    """
    rule = check.__name__.removeprefix("check_")

    def public(
        name: str,
        backbone: str = "b0",
        *,
        num_classes: int = 5,
        size: Sequence[int] = SIZE,
        odd_size: Sequence[int] = ODD_SIZE,
        **options: Any,
    ) -> T:
        parse_options(name, options)
        case = _Case(
            rule, name, backbone, num_classes, _aligned(name, size), _aligned(name, odd_size), options
        )
        try:
            return check(case)
        except ContractError:
            raise
        except Exception as exc:
            raise case.broken(
                f"{type(exc).__name__}: {exc}",
                "the method must run the calls of this rule on the kit's inputs (see the exception "
                "chained above for where it failed)",
            ) from exc

    public.__name__ = public.__qualname__ = check.__name__
    public.__doc__ = check.__doc__
    CHECKS[rule] = public
    return public


@_rule
def check_step_output(case: _Case) -> None:
    """Logits N x num_classes x H x W, float32 and finite, at both sizes (N = 2), every frame up to
    two past the lead-in."""
    for size in (case.size, case.odd_size):
        h, w = size
        model = case.build()  # a fresh model per video wherever reset() is not what is checked
        for t, logits in enumerate(run_video(model, case.two_videos(model.steady_state_after + 2, size))):
            expected = (2, case.num_classes, h, w)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise case.broken(
                    f"step() on 2 x 3 x {h} x {w} frames returned {got} at frame {t}, expected {expected}",
                    "segment() must return N x num_classes x h x w logits (any h, w: step() resizes them)",
                )
            if logits.dtype != torch.float32:
                raise case.broken(
                    f"step() returned {logits.dtype} logits at frame {t}", "return float32 logits"
                )
            if not torch.isfinite(logits).all():
                raise case.broken(
                    f"step() returned non-finite logits at frame {t} ({h}x{w})",
                    "guard the divisions, logs and normalizations of segment() against zero",
                )


@_rule
def check_reset(case: _Case) -> None:
    """Video B gives identical logits from a fresh model, again after reset(), and after another
    video A (other content and size) and reset(); ``state_tensors()`` is empty after reset()."""
    model = case.build()
    length = model.steady_state_after + 2
    b = case.video(length, seed=1)
    first = run_video(model, b)
    fix = (
        "reset_state() must forget every cached tensor and counter, so that nothing from an "
        "earlier video reaches the logits"
    )
    difference = _first_difference(run_video(model, b), first)
    if difference:
        raise case.broken(f"the same video run twice, reset() between: {difference}", fix)
    run_video(model, case.video(length, case.odd_size, seed=2))
    difference = _first_difference(run_video(model, b), first)
    if difference:
        raise case.broken(f"video B after video A and reset() differs from B alone: {difference}", fix)
    model.reset()
    state = model.state_tensors()
    if not isinstance(state, list) or state:
        raise case.broken(
            f"state_tensors() after reset() returned {len(state)} tensors ({type(state).__name__})",
            fix + " (state_tensors() must then return [])",
        )


@_rule
def check_batch(case: _Case) -> None:
    """The logits of two videos run as one batch (N = 2) equal each video run alone (N = 1),
    within 1e-5 relative: no state or statistic is shared across the videos of a batch."""
    model = case.build()
    length = model.steady_state_after + 2
    together = run_video(model, case.two_videos(length))
    for index, seed in enumerate((1, 2)):
        alone = run_video(case.build(), case.video(length, seed=seed))
        difference = _first_difference([x[index : index + 1] for x in together], alone, BATCH_RTOL)
        if difference:
            raise case.broken(
                f"video {index} of a batch of two differs from the same video alone: {difference}",
                "compute every statistic, decision and cache per video (per batch element): no mean, "
                "norm or branch over the batch dimension",
            )


@_rule
def check_decoder_modes(case: _Case) -> None:
    """The ``"reference"`` and ``"folded"`` decoder modes give the same keyframes and logits
    (within 1e-4 relative) over the lead-in, one keyframe interval and the next keyframe."""
    logits: dict[str, list[torch.Tensor]] = {}
    keyframes: dict[str, list[Any]] = {}
    for mode in ("reference", "folded"):
        model = case.build()
        frames = case.video(model.steady_state_after + _interval(model) + 1)
        if set_decoder_mode(model, mode) == 0:
            return  # no decoder_mode holder: one mode only
        model.reset()
        logits[mode], keyframes[mode] = [], []
        with torch.inference_mode():
            for frame in frames:
                logits[mode].append(model.step(frame))
                keyframes[mode].append(model.last_step_info.get("keyframe"))
    fix = (
        "ask the head for a frame's DecoderInputs (vssbench/models/decoder.py) instead of calling "
        "its reference layers directly; never branch on the decoder mode"
    )
    if keyframes["folded"] != keyframes["reference"]:
        raise case.broken(
            f"keyframes {keyframes['folded']} (folded) vs {keyframes['reference']} (reference)", fix
        )
    difference = _first_difference(logits["folded"], logits["reference"], DECODER_RTOL)
    if difference:
        raise case.broken(f"folded vs reference decoder: {difference}", fix)


@_rule
def check_steady_state(case: _Case) -> None:
    """From ``steady_state_after`` on, each step leaves the cache shapes and keyframe flag it
    leaves one interval later.

    The harness measures GMACs and FPS over the one keyframe interval after the lead-in; that
    interval stands for the rest of the video only if the caches (``state_tensors()``: the work
    they save or cost) and the keyframe schedule have stopped changing by then.
    """
    model = case.build()
    lead = model.steady_state_after
    if isinstance(lead, bool) or not isinstance(lead, int) or lead < 0:
        raise case.broken(f"steady_state_after is {lead!r}", "return a non-negative int")
    interval = _interval(model)
    cached: list[list[tuple[int, ...]]] = []  # per step: shapes of the caches it leaves
    keyframes: list[Any] = []
    model.reset()
    with torch.inference_mode():
        for t, frame in enumerate(case.video(lead + 2 * interval)):
            model.step(frame)
            state = model.state_tensors()
            if not isinstance(state, list) or not all(isinstance(x, torch.Tensor) for x in state):
                raise case.broken(
                    f"state_tensors() after frame {t} returned {type(state).__name__} "
                    f"of {sorted({type(x).__name__ for x in state})}",
                    "return a list of tensors",
                )
            cached.append([tuple(x.shape) for x in state])
            keyframes.append(model.last_step_info.get("keyframe"))
    fix = (
        "make steady_state_after the number of frames after reset() until every step does the work "
        "it does for the rest of the video (e.g. until the reference frames or the FIFO are full)"
    )
    steady, later = cached[lead : lead + interval], cached[lead + interval :]
    if steady != later:
        raise case.broken(
            f"after a lead-in of {lead} frames the caches still change: steps {lead}.. leave "
            f"{steady}, one interval later {later}",
            fix,
        )
    if keyframes[lead : lead + interval] != keyframes[lead + interval :]:
        raise case.broken(f"keyframe flags per step {keyframes} are not periodic after step {lead}", fix)
    if model.steady_state_after != lead:
        raise case.broken(
            f"steady_state_after went from {lead} to {model.steady_state_after} while frames ran",
            "derive steady_state_after from the options only",
        )


# Attributes every nn.Module has, and the diagnostics of the last step: not caches.
_NOT_STATE = frozenset(vars(nn.Module())) | {"last_step_info"}


def _held(value: Any, where: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if isinstance(value, torch.Tensor):
        out.setdefault(where, value)
    elif depth > 4 or isinstance(value, (nn.Module, str, bytes)):
        return  # sub-modules are visited on their own
    elif isinstance(value, dict):
        for key, item in value.items():
            _held(item, f"{where}[{key!r}]", out, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _held(item, f"{where}[{i}]", out, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _held(getattr(value, f.name), f"{where}.{f.name}", out, depth + 1)


def held_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor ``model`` and its sub-modules hold in plain attributes (not parameters or
    buffers, not ``last_step_info``), looking into lists, tuples, dicts and dataclasses; keyed by
    where it is held (``"_key_feats[0]"``, ``"head._cache.z"``)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr not in _NOT_STATE:
                _held(value, f"{prefix}.{attr}" if prefix else attr, out)
    return out


class _EveryHeldTensorDeclared(nn.Module):
    """``adapter`` as :func:`count_gmacs` sees it, except that its state is every tensor it holds."""

    def __init__(self, adapter: VideoSegmenter) -> None:
        super().__init__()
        self.adapter = adapter

    def reset(self) -> None:
        self.adapter.reset()

    def step(self, image: torch.Tensor) -> torch.Tensor:
        return self.adapter.step(image)

    def state_tensors(self) -> list[torch.Tensor]:
        return list(held_tensors(self.adapter).values())


def _undeclared(model: VideoSegmenter, frames: Sequence[torch.Tensor]) -> list[str]:
    """Where ``model`` holds tensors made by its steps after the lead-in that ``state_tensors()``
    does not return (:func:`held_tensors` names)."""
    found: dict[str, None] = {}
    model.reset()
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            before = list(held_tensors(model).values())  # kept alive, so that no id is reused
            model.step(frame)
            if t >= model.steady_state_after:
                known = {id(x) for x in [*before, *model.state_tensors()]}
                found.update({where: None for where, x in held_tensors(model).items() if id(x) not in known})
    model.reset()
    return list(found)


@_rule
def check_state_declared(case: _Case) -> None:
    """The work cached for later frames is declared: counting one steady-state interval with
    every tensor the method holds declared gives the GMACs the harness counts.

    :func:`count_gmacs` traces each step and keeps only the operations that reach an output: the
    logits and the tensors newly returned by ``state_tensors()``. A tensor cached for a later frame
    but not declared is computed and then pruned from the trace, so its work goes uncounted. The
    tensors of earlier steps enter a trace as constants whether those steps were traced or not,
    so counting a frame after a traced vs an untraced lead-in gives the same number (unless a
    method branches on tracing) and cannot show this. What does show it: count the same interval
    (after the same untraced lead-in) a second time with ``state_tensors()`` replaced by every
    tensor the adapter holds in its attributes (:func:`held_tensors`); any GMACs more are work
    that went into an undeclared cache. Held tensors that cost nothing more (a diagnostic
    computed on the way to the logits, a coordinate grid) are harmless and not reported. When the
    steady-state steps leave no new tensor that ``state_tensors()`` does not return, the two
    counts are equal by construction and are not computed.
    """
    model = case.build()
    lead, interval = model.steady_state_after, _interval(model)
    frames = case.video(lead + interval)
    undeclared = _undeclared(model, frames)
    if not undeclared:
        return
    declared = count_gmacs(model, frames, interval, lead_in=lead)["gmacs_per_step"]
    held = count_gmacs(_EveryHeldTensorDeclared(model), frames, interval, lead_in=lead)["gmacs_per_step"]
    if max(h - d for h, d in zip(held, declared)) <= 1e-6 * max(max(declared), 1e-9):
        return
    steps = ", ".join(f"{d:.4g} -> {h:.4g}" for d, h in zip(declared, held))
    raise case.broken(
        f"the GMACs of steps {lead}..{lead + interval - 1} rise when every held tensor is counted "
        f"({steps}); held but not in state_tensors(): {_listing(undeclared)}",
        "return every tensor kept for later frames from state_tensors(), so that the GMAC counter "
        "counts the work that made it",
    )


def _named_scalars(case: _Case, losses: Any) -> torch.Tensor:
    """``losses["loss"]``, after checking that ``losses`` is a dict of 0-d tensors with a finite
    ``loss`` that depends on the parameters."""
    if not isinstance(losses, dict) or "loss" not in losses:
        got = sorted(losses) if isinstance(losses, dict) else type(losses).__name__
        raise case.broken(
            f"forward_train returned {got}", "return a dict of named scalars with 'loss' the total"
        )
    shapes = {
        k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        for k, v in losses.items()
        if not isinstance(v, torch.Tensor) or v.ndim
    }
    if shapes:
        raise case.broken(
            f"forward_train returned non-scalars {shapes}", "return 0-d tensors (the trainer logs them)"
        )
    loss = losses["loss"]
    if not torch.isfinite(loss) or not loss.requires_grad:
        raise case.broken(
            f"loss is {float(loss)} (requires_grad={loss.requires_grad})",
            "the loss must be finite and computed from the parameters",
        )
    return loss


@_rule
def check_training(case: _Case) -> None:
    """``forward_train`` on a batch of 2 clips of the length ``train_sampler()`` draws returns
    named scalars with a finite ``loss``, whose gradient reaches every parameter that inference
    uses and is finite.

    The inference-used parameters are those the autograd graph of the logits reaches over the
    lead-in and one keyframe interval (:func:`vssbench.profiling.find_dead_parameters`, the
    harness's dead-parameter search, names the others). A method that trains a random part of
    itself per step (TDNet: one path per clip, the iteration mod N) gets up to ``TRAIN_STEPS``
    steps, seeded, with ``train_iteration`` set per step as the trainer does and gradients
    accumulating, until every such parameter has been reached.
    """
    model = case.build()
    frames = case.video(model.steady_state_after + _interval(model))
    dead = set(find_dead_parameters(model, frames))
    params = dict(model.named_parameters())
    sampler = model.train_sampler()
    length = len(sampler.sample(max(30, int(getattr(sampler, "min_frames", 0))), np.random.default_rng(0)))
    images = torch.stack(case.two_videos(length), dim=1)  # 2 x T x 3 x H x W
    labels = torch.randint(
        0, case.num_classes, (2, length, *case.size), generator=torch.Generator().manual_seed(0)
    )
    missing = [n for n in params if n not in dead]
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for step in range(TRAIN_STEPS):
            model.train_iteration = step
            _named_scalars(case, model.forward_train(images, labels)).backward()
            missing = [n for n in missing if params[n].grad is None]
            if not missing:
                break
    if missing:
        raise case.broken(
            f"{len(missing)} of the {len(params) - len(dead)} parameters inference uses get no gradient "
            f"from the loss in {TRAIN_STEPS} training steps: {_listing(missing)}",
            "train every module the inference path uses (or leave it out of the inference path)",
        )
    bad = [n for n, p in params.items() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise case.broken(f"non-finite gradients in {_listing(bad)}", "keep every loss term finite")


@_rule
def check_sampler(case: _Case) -> None:
    """``train_sampler().sample(T, rng)`` for videos of 1, 2, the clip length, ``min_frames`` (if
    the sampler declares it) and 30 frames, 8 draws each: in-range int indices, the same clip
    length every time, or the :class:`~vssbench.data.samplers.ClipSampler` protocol's
    ``ValueError`` for a video too short (below ``min_frames`` when declared, else below 30)."""
    sampler = case.build().train_sampler()
    min_frames = getattr(sampler, "min_frames", None)
    rng = np.random.default_rng(0)
    clip = sampler.sample(max(SAMPLER_LENGTHS[-1], int(min_frames or 0)), rng)
    lengths = sorted({*SAMPLER_LENGTHS, len(clip), *([int(min_frames)] if min_frames else [])})
    fix = (
        "sample() must return indices in [0, num_frames), one clip length for every video, and raise "
        "ValueError (saying how many frames it needs) only for a video shorter than min_frames"
    )
    for frames in lengths:
        for _ in range(8):
            try:
                indices = sampler.sample(frames, rng)
            except ValueError:
                if frames >= (min_frames if min_frames is not None else SAMPLER_LENGTHS[-1]):
                    raise case.broken(
                        f"sample({frames}) raised ValueError although min_frames is {min_frames}", fix
                    ) from None
                break
            except Exception as exc:
                raise case.broken(f"sample({frames}) raised {type(exc).__name__}: {exc}", fix) from exc
            integers = all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in indices)
            valid = integers and all(0 <= i < frames for i in indices)
            if not valid or len(indices) != len(clip):
                raise case.broken(
                    f"sample({frames}) returned {list(indices)} (clip length {len(clip)} expected)", fix
                )


@_rule
def check_checkpoint(case: _Case) -> None:
    """``save_checkpoint(model)`` then ``create(..., checkpoint=path)`` on another random init
    gives identical logits."""
    model = case.build(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{case.name}.pt"
        save_checkpoint(model, path)
        loaded = case.build(seed=1, checkpoint=str(path))
    frames = case.video(model.steady_state_after + 2)
    difference = _first_difference(run_video(loaded, frames), run_video(model, frames))
    if difference:
        raise case.broken(
            f"the model loaded from its own checkpoint differs: {difference}",
            "keep every weight the logits depend on in a parameter or a persistent buffer, and "
            "derive everything else from them or from the options",
        )


@_rule
def check_options(case: _Case) -> None:
    """Every option's value round-trips through its string form: ``parse_options(name,
    {key: str(value)})`` gives the value back (what ``--set key=value`` relies on)."""
    values = parse_options(case.name, case.options)
    for field in dataclasses.fields(method_options(case.name)):
        if not field.init:
            continue
        value = getattr(values, field.name)
        text = str(value)
        try:
            back = getattr(parse_options(case.name, {**case.options, field.name: text}), field.name)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is the finding
            back, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = None
        if error or back != value:
            raise case.broken(
                f"option {field.name}={value!r} given as --set {field.name}={text} "
                + (f"fails: {error}" if error else f"gives {back!r}"),
                "type the field with what vssbench.methods.base.coerce understands (bool, int, float, "
                "str, Literal, Optional) and give it a default whose str() parses back",
            )


@_rule
def check_gmacs(case: _Case) -> dict[str, Any]:
    """One steady-state step's GMACs are countable: positive and finite.

    Returns the :func:`~vssbench.profiling.count_gmacs` record: ``unsupported_ops`` lists the
    operators the counter could not count (worth a handle in ``profiling.OP_HANDLES`` if they
    are arithmetic), which this rule reports but does not fail on.
    """
    model = case.build()
    lead = model.steady_state_after
    record = count_gmacs(model, case.video(lead + 1), 1, lead_in=lead)
    gmacs = record["gmacs_per_step"][0]
    if not (math.isfinite(gmacs) and gmacs > 0):
        raise case.broken(
            f"one steady-state step counts {gmacs} GMACs (unsupported ops: {record['unsupported_ops']})",
            "compute the logits with torch operators the tracer sees (no .item()/numpy round trip, "
            "no custom autograd Function without a handle)",
        )
    return record


def check_method(
    name: str,
    backbone: str = "b0",
    *,
    num_classes: int = 5,
    size: Sequence[int] = SIZE,
    odd_size: Sequence[int] = ODD_SIZE,
    checks: Sequence[str] | None = None,
    **options: Any,
) -> None:
    """Check method ``name`` against every contract rule (or the rules named in ``checks``).

    The method is built with ``vssbench.methods.create(name, backbone, num_classes=...,
    **options)``, seeded, afresh for each rule; frames are ``size`` and ``odd_size`` (rounded up
    to the method's ``size_divisor``). Raises :class:`ContractError` (an ``AssertionError``)
    for the first broken rule, its message starting ``contract rule '<rule>' broken by method
    '<name>': ``; the other broken rules' messages follow it.
    """
    rules = list(CHECKS) if checks is None else list(checks)
    unknown = [rule for rule in rules if rule not in CHECKS]
    if unknown:
        raise ValueError(f"unknown contract rule(s) {unknown}; rules: {', '.join(sorted(CHECKS))}")
    broken: list[ContractError] = []
    for rule in rules:
        try:
            CHECKS[rule](name, backbone, num_classes=num_classes, size=size, odd_size=odd_size, **options)
        except ContractError as exc:
            broken.append(exc)
    if len(broken) == 1:
        raise broken[0]
    if broken:
        also = "\n\n".join(str(exc) for exc in broken[1:])
        first = broken[0]
        raise ContractError(first.rule, first.method, first.observed, f"{first.fix}\n\nAlso broken:\n{also}")


__all__ = [
    "CHECKS",
    "ContractError",
    "check_batch",
    "check_checkpoint",
    "check_decoder_modes",
    "check_gmacs",
    "check_method",
    "check_options",
    "check_reset",
    "check_sampler",
    "check_state_declared",
    "check_steady_state",
    "check_step_output",
    "check_training",
    "held_tensors",
    "run_video",
]
