"""Efficiency measurements of method adapters: parameters, GMACs and per-interval FPS.

Conventions (recorded in every result): GMACs count one multiply-add as one (fvcore's
convention, the SegFormer paper's "GFLOPs"), op by op on a traced ``adapter.step``; FPS is
frames of one keyframe interval divided by the median model time of that interval, with
the device synchronized around the timed region. Data loading is timed by the harness,
never here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

MACS_CONVENTION = "one multiply-add = one"

# Ops that cost nothing meaningful next to the convolutions and matmuls, ignored on purpose:
# activations and normalizing exponentials (softmax, gelu, ...), additions/subtractions and
# divisions (residual adds; the add half of every counted multiply-add is already in the
# mul), reductions whose multiplications are counted elsewhere (the MSDA weighted sum is
# counted on its aten::mul; a sum or mean alone is additions), comparisons, and gather/
# scatter/index/copy ops that move data without arithmetic. Anything else that fvcore
# cannot count stays in the record's ``unsupported_ops``.
FREE_OPS: tuple[str, ...] = (
    "aten::softmax",
    "aten::log_softmax",
    "aten::_softmax",
    "aten::gelu",
    "aten::silu",
    "aten::sigmoid",
    "aten::sigmoid_",
    "aten::tanh",
    "aten::hardswish",
    "aten::hardsigmoid",
    "aten::leaky_relu",
    "aten::elu",
    "aten::relu6",
    "aten::hardtanh",
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::sub_",
    "aten::rsub",
    "aten::div",
    "aten::div_",
    "aten::neg",
    "aten::exp",
    "aten::log",
    "aten::sin",
    "aten::cos",
    "aten::sqrt",
    "aten::rsqrt",
    "aten::pow",
    "aten::abs",
    "aten::numel",
    "aten::resolve_conj",
    "aten::resolve_neg",
    "aten::reciprocal",
    "aten::erf",
    "aten::round",
    "aten::sign",
    "aten::sum",
    "aten::mean",
    "aten::amax",
    "aten::amin",
    "aten::argmax",
    "aten::argmin",
    "aten::cumsum",
    "aten::clamp_min",
    "aten::clamp_max",
    "aten::minimum",
    "aten::maximum",
    "aten::where",
    "aten::ne",
    "aten::lt",
    "aten::le",
    "aten::logical_and",
    "aten::logical_or",
    "aten::logical_not",
    "aten::scatter",
    "aten::scatter_",
    "aten::scatter_add",
    "aten::scatter_add_",
    "aten::index_select",
    "aten::index_add",
    "aten::index_add_",
    "aten::masked_select",
    "aten::masked_scatter",
    "aten::take",
    "aten::take_along_dim",
    "aten::topk",
    "aten::sort",
    "aten::argsort",
    "aten::repeat",
    "aten::repeat_interleave",
    "aten::expand_as",
    "aten::flip",
    "aten::fill_",
    "aten::zero_",
    "aten::ones_like",
    "aten::linspace",
    "aten::meshgrid",
    "aten::pad",
    "aten::clone",
    "aten::view_as",
    "aten::unflatten",
    "aten::movedim",
    "aten::feature_dropout",
    "aten::max_pool2d",
    "aten::one_hot",
    # unfold (gathers neighbourhoods, e.g. CFFM's pooled-window keys) and a tensor made from a constant
    "aten::im2col",
    "aten::lift_fresh",
)


def _shape(value: Any) -> list[int] | None:
    return value.type().sizes() if value.isCompleteTensor() else None


def _numel(value: Any) -> int:
    shape = _shape(value)
    return math.prod(shape) if shape is not None else 0


def _constant(value: Any) -> Any:
    return value.toIValue() if value.node().kind() == "prim::Constant" else None


def _sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # softmax(Q K^T) V: QK^T is Nq·Nk·d_qk multiply-adds per (batch, head), AV is Nq·Nk·d_v
    q, k, v = (_shape(x) for x in inputs[:3])
    out = _shape(outputs[0])
    if q is None or k is None or v is None or out is None:
        return 0
    return math.prod(out[:-1]) * k[-2] * (q[-1] + v[-1])


def _grid_sampler_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # Overrides fvcore's "4 per output element, assume bilinear": reads the mode instead.
    # Bilinear blends 4 corners (trilinear 8 for 5-D input), bicubic 16; nearest is a gather.
    rank = len(_shape(inputs[0]) or [0, 0, 0, 0])
    mode = _constant(inputs[2])
    per_element = {0: 4 if rank == 4 else 8, 1: 0, 2: 16}.get(mode, 4)
    return per_element * _numel(outputs[0])


def _is_floating(value: Any) -> bool:
    try:
        return value.type().scalarType() in ("Float", "Double", "Half", "BFloat16")
    except RuntimeError:  # not a tensor, or no dtype recorded
        return True


def _per_output(macs_per_element: int) -> Callable[[list[Any], list[Any]], int]:
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        # Integer arithmetic (index computations, e.g. MSDA's corner positions) is not model work.
        if not _is_floating(outputs[0]):
            return 0
        return macs_per_element * _numel(outputs[0])

    return handle


def _per_input(macs_per_element: int) -> Callable[[list[Any], list[Any]], int]:
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        return macs_per_element * _numel(inputs[0])

    return handle


def _cosine_similarity_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # x·y, |x|^2 and |y|^2: three multiply-adds per element of the broadcast inputs
    a, b = _shape(inputs[0]), _shape(inputs[1])
    if a is None or b is None:
        return 0
    return 3 * math.prod(torch.broadcast_shapes(tuple(a), tuple(b)))


def _embedding_bag_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # Weighted bag sums (MSDA's sampling core): one multiply-add per bag entry and channel when
    # per-sample weights are given (bilinear corner weight x attention weight), else one add.
    indices, table = _shape(inputs[1]), _shape(inputs[0])
    weighted = len(inputs) > 6 and _shape(inputs[6]) is not None  # per_sample_weights
    if indices is None or table is None or not weighted:
        return 0
    return math.prod(indices) * table[-1]


def _baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    b1, b2 = _shape(inputs[1]), _shape(inputs[2])
    if b1 is None or b2 is None:
        return 0
    return b1[0] * b1[1] * b1[2] * b2[2]


# Our handles on top of fvcore's defaults (conv, linear, matmul, bmm, einsum, norms,
# upsample_bilinear2d at 4 per output element, adaptive_avg_pool2d):
#  - scaled_dot_product_attention: B·heads·Nq·Nk·(d_qk + d_v) (unsupported in fvcore);
#  - grid_sampler: by interpolation mode (fvcore assumes bilinear);
#  - upsample_nearest*: 0 (a copy; fvcore counts 1 per output element); bicubic 16, linear 2,
#    trilinear 8 per output element;
#  - elementwise multiplications (MSDA weighted sum, TFC's similarity and soft blending):
#    aten::mul, mul_, addcmul, lerp: one MAC per output element; vector norms one per input
#    element; cosine_similarity three per input element; baddbmm as a batched matmul;
#    integer-valued multiplications (index arithmetic) count 0;
#  - embedding_bag with per-sample weights (MSDA's bilinear sampling and weighted sum in one
#    op): one MAC per bag entry and channel, i.e. 4 corners x L x P x Dh per query and head.
OP_HANDLES: dict[str, Callable[[list[Any], list[Any]], int]] = {
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::grid_sampler": _grid_sampler_macs,
    "aten::upsample_nearest1d": _per_output(0),
    "aten::upsample_nearest2d": _per_output(0),
    "aten::upsample_nearest3d": _per_output(0),
    "aten::upsample_linear1d": _per_output(2),
    "aten::upsample_bicubic2d": _per_output(16),
    "aten::upsample_trilinear3d": _per_output(8),
    "aten::mul": _per_output(1),
    "aten::mul_": _per_output(1),
    "aten::addcmul": _per_output(1),
    "aten::lerp": _per_output(1),
    "aten::lerp_": _per_output(1),
    "aten::linalg_vector_norm": _per_input(1),
    "aten::norm": _per_input(1),
    "aten::frobenius_norm": _per_input(1),
    "aten::cosine_similarity": _cosine_similarity_macs,
    "aten::baddbmm": _baddbmm_macs,
    "aten::embedding_bag": _embedding_bag_macs,
}


def count_parameters(model: nn.Module, dead: Iterable[str] = ()) -> dict[str, Any]:
    """Parameter counts of ``model``: total, per group, and what inference never uses.

    Returns ``{'total', 'groups': {name: count} from model.parameter_groups() (if defined),
    'other': parameters in no group, 'dead': parameters named in ``dead`` (see
    :func:`find_dead_parameters`), 'total_inference': total - dead}``. Shared parameters count once.
    """
    named = dict(model.named_parameters())
    dead = list(dead)
    unknown = [name for name in dead if name not in named]
    if unknown:
        raise ValueError(f"dead parameter name(s) not in the model: {unknown}")
    total = sum(p.numel() for p in named.values())
    groups: dict[str, int] = {}
    grouped: set[int] = set()
    group_fn = getattr(model, "parameter_groups", None)
    if callable(group_fn):
        for name, module in group_fn().items():
            params = list(module.parameters())
            groups[name] = sum(p.numel() for p in params)
            grouped.update(id(p) for p in params)
    other = sum(p.numel() for p in named.values() if id(p) not in grouped)
    dead_count = sum(named[name].numel() for name in set(dead))
    return {
        "total": total,
        "groups": groups,
        "other": other,
        "dead": dead_count,
        "total_inference": total - dead_count,
    }


def _output_tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _output_tensors(item)]
    return []


def find_dead_parameters(adapter: nn.Module, images: Sequence[torch.Tensor]) -> list[str]:
    """Names of parameters that no output of ``reset(); step(img)`` over ``images`` depends on.

    Runs the steps once with autograd recording the graph but *keeping no activations* (every
    tensor autograd would save for a backward pass is dropped on the spot), then walks the graph
    from the outputs back to the parameters (``grad_fn.next_functions`` down to each
    ``AccumulateGrad`` leaf). A parameter no walk reaches never influences an output: it is dead
    (e.g. the official SegFormer head's unused ``conv_seg``, TFC's training-only modules). Cached
    state carried from one step to the next (a keyframe's features) keeps its graph, so a
    parameter that acts through a later frame counts as alive. No gradient is computed: the cost
    is one forward pass per frame with inference-like memory, about a third of the backward-based
    search (:func:`find_dead_parameters_by_gradient`), which gives the same set on the built-in
    methods. ``requires_grad`` flags are restored afterwards.
    """
    params = dict(adapter.named_parameters())
    saved = {name: p.requires_grad for name, p in params.items()}
    outputs: list[torch.Tensor] = []
    try:
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_drop_saved, _no_backward):
            adapter.reset()
            for image in images:
                outputs.extend(t for t in _output_tensors(adapter.step(image)) if t.requires_grad)
            if not outputs:
                raise ValueError("the adapter produced no output that depends on a parameter")
            reached = _reached_leaves(outputs)
        dead = [name for name, p in params.items() if id(p) not in reached]
    finally:
        outputs.clear()
        for name, p in params.items():
            p.requires_grad_(saved[name])
        adapter.reset()
    return dead


def _drop_saved(tensor: torch.Tensor) -> None:
    """saved_tensors_hooks pack: keep nothing (the graph is walked, never differentiated)."""


def _no_backward(packed: None) -> torch.Tensor:
    raise RuntimeError(
        "find_dead_parameters records a graph without activations; it cannot be differentiated"
    )


def _reached_leaves(outputs: Sequence[torch.Tensor]) -> set[int]:
    """ids of the leaf tensors (parameters) that the autograd graph of ``outputs`` reaches."""
    reached: set[int] = set()
    seen: set[Any] = set()
    stack: list[Any] = []
    for out in outputs:
        if out.grad_fn is None:  # a parameter returned as is
            reached.add(id(out))
        else:
            stack.append(out.grad_fn)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: the leaf it accumulates into
        if variable is not None:
            reached.add(id(variable))
        stack.extend(child for child, _ in node.next_functions if child is not None and child not in seen)
    return reached


def find_dead_parameters_by_gradient(adapter: nn.Module, images: Sequence[torch.Tensor]) -> list[str]:
    """The reference search: parameters whose gradient of a random projection of the outputs is zero.

    Runs the steps with autograd and back-propagates a fixed random projection of all outputs
    (a plain sum is blind to parameters whose effect on the outputs sums to zero, e.g.
    everything before a softmax over classes); parameters left without a gradient, or with an
    all-zero one, are dead. Costs a forward and a backward pass per frame and holds every
    activation; kept to check :func:`find_dead_parameters` against. Gradients and
    ``requires_grad`` flags are restored afterwards.
    """
    params = dict(adapter.named_parameters())
    saved = {name: (p.requires_grad, p.grad) for name, p in params.items()}
    generator = torch.Generator().manual_seed(0)
    try:
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            adapter.reset()
            objective = None
            for image in images:
                for out in _output_tensors(adapter.step(image)):
                    if not out.is_floating_point():
                        continue
                    weights = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
                    term = (out * weights).sum()
                    objective = term if objective is None else objective + term
            if objective is None:
                raise ValueError("the adapter produced no floating point output to differentiate")
            if objective.requires_grad:
                objective.backward()
        dead = [name for name, p in params.items() if p.grad is None or not bool(p.grad.any())]
    finally:
        for name, p in params.items():
            requires_grad, grad = saved[name]
            p.requires_grad_(requires_grad)
            p.grad = grad
        adapter.reset()
    return dead


class _StepModule(nn.Module):
    """Makes one ``adapter.step(image)`` the forward that fvcore traces (and thereby runs once)."""

    def __init__(self, adapter: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, image: torch.Tensor) -> Any:
        # The tracer keeps only ops that reach an output: return what this step newly cached for
        # later frames too, or a keyframe's caching work (e.g. TFC's value projection) goes
        # uncounted. Tensors cached by earlier steps are left out (they do not depend on this
        # input); holding them in `before` keeps their ids from being reused meanwhile.
        state = getattr(self.adapter, "state_tensors", None)
        before = list(state()) if state is not None else []
        logits = self.adapter.step(image)
        known = {id(t) for t in before}
        cached = [t for t in (state() if state is not None else []) if id(t) not in known]
        return (logits, *cached) if cached else logits


def _lead_and_interval(
    image: torch.Tensor | Sequence[torch.Tensor], interval: int, lead_in: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The ``lead_in`` frames run before the measured interval, and the ``interval`` measured ones."""
    if isinstance(lead_in, bool) or int(lead_in) != lead_in or lead_in < 0:
        raise ValueError(f"lead_in must be a non-negative integer, got {lead_in!r}")
    if isinstance(interval, bool) or int(interval) != interval or interval < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    frames = _frames_for_interval(image, lead_in + interval)
    return frames[:lead_in], frames[lead_in:]


def _frames_for_interval(image: torch.Tensor | Sequence[torch.Tensor], interval: int) -> list[torch.Tensor]:
    if isinstance(interval, bool) or int(interval) != interval or interval < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    if isinstance(image, torch.Tensor):
        return [image] * interval
    frames = list(image)
    if len(frames) < interval:
        raise ValueError(f"need {interval} frames for one interval, got {len(frames)}")
    return frames[:interval]


def count_gmacs(
    adapter: nn.Module, image: torch.Tensor | Sequence[torch.Tensor], interval: int, lead_in: int = 0
) -> dict[str, Any]:
    """GMACs of each step of one keyframe interval, counted op by op with fvcore.

    ``reset()``, run ``lead_in`` frames uncounted (a method's start-of-video fallback, see
    ``VideoSegmenter.steady_state_after``), then for the next ``interval`` frames trace and count
    ``adapter.step(image_t)`` (the trace runs the step once, so the adapter's caches update as in
    inference). ``image`` is one N×3×H×W frame reused for every step or a sequence of
    ``lead_in + interval`` frames. Returns
    ``gmacs_keyframe`` (step 0), ``gmacs_nonkeyframe`` (mean of steps 1.., = keyframe when
    interval is 1), ``gmacs_per_frame`` (mean over the interval), ``gmacs_per_step``,
    ``gmacs_by_operator`` (mean per frame over the interval), ``input_shape``,
    ``unsupported_ops`` ({op: occurrences} over the interval, after :data:`OP_HANDLES` and
    :data:`FREE_OPS`) and ``macs_convention``.
    """
    with warnings.catch_warnings():  # fvcore.nn scripts a loss at import, which torch flags as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

    lead, frames = _lead_and_interval(image, interval, lead_in)
    wrapper = _StepModule(adapter)
    per_step: list[float] = []
    by_operator: Counter[str] = Counter()
    unsupported: Counter[str] = Counter()
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # the record carries the unsupported list
    adapter.reset()
    with torch.no_grad():
        for frame in lead:
            adapter.step(frame)
        for frame in frames:
            analysis = FlopCountAnalysis(wrapper, (frame,))
            analysis.set_op_handle(**OP_HANDLES)
            analysis.set_op_handle(**{name: None for name in FREE_OPS})
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            per_step.append(analysis.total() / 1e9)
            by_operator.update({op: n / 1e9 for op, n in analysis.by_operator().items()})
            unsupported.update(analysis.unsupported_ops())
    adapter.reset()
    n = len(per_step)
    return {
        "gmacs_keyframe": per_step[0],
        "gmacs_nonkeyframe": float(np.mean(per_step[1:])) if n > 1 else per_step[0],
        "gmacs_per_frame": float(np.mean(per_step)),
        "gmacs_per_step": per_step,
        "gmacs_by_operator": {op: v / n for op, v in sorted(by_operator.items())},
        "input_shape": list(frames[0].shape),
        "lead_in": int(lead_in),
        "unsupported_ops": dict(sorted(unsupported.items())),
        "macs_convention": MACS_CONVENTION,
    }


def _synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


#: ``measure_fps(repeats=None)``: time intervals until about this many seconds are timed ...
FPS_BUDGET_S = 10.0
#: ... but at least / at most this many repeats.
FPS_MIN_REPEATS, FPS_MAX_REPEATS = 3, 30


def auto_repeats(interval_time_s: float, budget_s: float = FPS_BUDGET_S) -> int:
    """Timed repeats for an interval that takes ``interval_time_s``: enough for ``budget_s`` seconds.

    Clamped to [FPS_MIN_REPEATS, FPS_MAX_REPEATS]: a fast model (B0, ~0.5 s per interval on a CPU)
    gets 20 repeats, whose min-max spread stays small; a slow one (B5, ~10 s) gets 3, each long
    enough to average its noise out, so that a B5 profile stays within minutes.
    """
    if not interval_time_s > 0:
        return FPS_MAX_REPEATS
    return int(min(FPS_MAX_REPEATS, max(FPS_MIN_REPEATS, math.ceil(budget_s / interval_time_s))))


def measure_fps(
    adapter: nn.Module,
    frames: Sequence[torch.Tensor],
    interval: int,
    warmup: int = 1,
    repeats: int | None = 3,
    device: str | torch.device = "cpu",
    lead_in: int = 0,
) -> dict[str, Any]:
    """Model-only FPS over one keyframe interval (fixed protocol, recorded with the result).

    ``frames`` holds at least ``lead_in + interval`` images already on ``device`` (or one image,
    reused). After every ``reset()`` the ``lead_in`` frames run untimed (a method's
    start-of-video fallback). ``warmup`` whole intervals are run untimed; then each of
    ``repeats`` runs calls ``reset()`` and times the ``interval`` steps with the device
    synchronized before and after, under ``torch.inference_mode()``: on CUDA with CUDA events
    recorded on the current stream around the interval (``timer: "cuda_event"``), elsewhere with
    ``time.perf_counter`` (``timer: "perf_counter"``). FPS = interval / median interval time
    (seconds). Data loading is not included: the harness times it apart. ``repeats=None`` picks
    the count from the last warm-up interval's time (:func:`auto_repeats`; with no warm-up, from
    the first timed interval); the count used is returned as ``repeats``.

    The result also says whether the timing was contended (:class:`CpuMeter`,
    :func:`assess_contention`): ``cpu_share``, ``others_runnable``, ``load_before``,
    ``load_after``, ``contended`` and ``contention``. :func:`time_interleaved` runs the same
    protocol for several adapters, their timed intervals taking turns.
    """
    result = time_interleaved([IntervalTimer(adapter, frames, interval, warmup, repeats, device, lead_in)])[0]
    if isinstance(result, BaseException):
        raise result
    return result


# --- contention: did the timed process get the CPU it asked for? --------------------------------------

#: A timing in which the process's threads got less than this share of the CPU time they asked for
#: is contended. Measured on 2 cores (docs/efficiency.md#contention): idle 0.99-1.00 at every size
#: and thread count, 0.37-0.65 with two busy-loop processes beside it.
CONTENTION_SHARE = 0.8
#: A timing is also contended when, on average, more other tasks were runnable than the cores our
#: threads leave free, plus this margin (half of the samples saw one more task than fits).
CONTENTION_LOAD_MARGIN = 0.5
#: Load readings before and after a timing: this many samples of :func:`runnable_others`, this far apart.
LOAD_SAMPLES, LOAD_SPACING_S = 5, 0.01

#: How ``cpu_share`` was computed (recorded as ``cpu_share_source``).
SHARE_SCHEDSTAT = "schedstat: on-CPU / (on-CPU + waiting on a run queue), summed over the process's threads"
SHARE_PROCESS_TIME = "process_time / (wall time x torch threads)"


def _sched_times() -> dict[str, tuple[int, int]] | None:
    """{thread id: (ns on a CPU, ns runnable but waiting for a CPU)} of this process's threads.

    Read from ``/proc/self/task/<tid>/schedstat`` (Linux with scheduler statistics). ``None``
    where unreadable or switched off (the kernel then writes ``0 0 0``).
    """
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    times: dict[str, tuple[int, int]] = {}
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                fields = f.read().split()
            times[tid] = (int(fields[0]), int(fields[1]))
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile, or no such file
            continue
    if not times or not any(run for run, _ in times.values()):
        return None
    return times


def _own_running_threads() -> int:
    """This process's threads in state R (running or runnable) now, from ``/proc/self/task/*/stat``."""
    count = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the state follows the command name, which is in parentheses and may hold spaces
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"R":
            count += 1
    return count


def runnable_others() -> int | None:
    """Tasks runnable on the machine at this instant besides this process's own threads.

    ``procs_running`` of ``/proc/stat`` (tasks running or waiting for a CPU, machine-wide, an
    instantaneous count) minus this process's threads in state R; ``None`` off Linux. Chosen over
    the load average, whose 1-minute figure trails a change by tens of seconds.
    """
    try:
        with open("/proc/stat", "rb") as f:
            running = next((int(line.split()[1]) for line in f if line.startswith(b"procs_running")), None)
    except (OSError, ValueError, IndexError):
        return None
    if running is None:
        return None
    return max(0, running - _own_running_threads())


def load_reading(samples: int = LOAD_SAMPLES, spacing_s: float = LOAD_SPACING_S) -> float | None:
    """Mean of ``samples`` readings of :func:`runnable_others`, ``spacing_s`` apart (None off Linux)."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(spacing_s)
        value = runnable_others()
        if value is None:
            return None
        values.append(value)
    return sum(values) / len(values)


def cpu_cores() -> tuple[int, bool]:
    """(cores this process may run on, whether they are all of the machine's online cores).

    Machine-wide load readings describe our cores only when the second is true (a container
    pinned to 2 of 64 cores sees the whole host's runnable tasks).
    """
    online = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = online
    return allowed, allowed >= online


def gpu_other_processes(device: str | torch.device) -> int | None:
    """Processes on the CUDA ``device`` other than this one, where the driver tells (else ``None``).

    From ``torch.cuda.list_gpu_processes`` (needs ``pynvml``), falling back to ``nvidia-smi``. In a
    container the driver lists host pids, so this process is recognized by its pid or, when no
    listed pid is ours, assumed to be one of them (it holds a context on the device).
    """
    pids: list[int] | None = None
    try:
        text = torch.cuda.list_gpu_processes(device)
        if "no processes are running" in text:
            pids = []
        elif "process" in text and "uses" in text:
            pids = [int(line.split()[1]) for line in text.splitlines() if line.strip().startswith("process")]
    except Exception:  # noqa: BLE001 - an optional reading: whatever fails, there is none
        pids = None
    if pids is None:
        pids = _nvidia_smi_pids(device)
    if pids is None:
        return None
    # ours is among them: by its pid, or (a container's pid namespace) as one of the unknown ones
    return max(0, len(pids) - 1)


def _nvidia_smi_pids(device: str | torch.device) -> list[int] | None:
    """pids of the compute processes on ``device`` by ``nvidia-smi`` (by the device's UUID), or None."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        uuid = str(torch.cuda.get_device_properties(torch.device(device)).uuid)
        uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        out = subprocess.run(
            [executable, "--query-compute-apps=pid", "--format=csv,noheader", "-i", uuid],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return [int(line) for line in out.split() if line.strip().isdigit()]
    except Exception:  # noqa: BLE001 - an optional reading: whatever fails, there is none
        return None


def assess_contention(
    cpu_share: float | None,
    others_runnable: float | None,
    threads: int,
    cores: int,
    load_covers_cores: bool = True,
    gpu_others: int | None = None,
    share_threshold: float = CONTENTION_SHARE,
    load_margin: float = CONTENTION_LOAD_MARGIN,
) -> tuple[bool, str | None]:
    """(contended, why): was a timing contended? Pure; the rule of docs/efficiency.md#contention.

    Contended when the process's threads got less than ``share_threshold`` of the CPU they asked
    for (``cpu_share``); or, where the load reading describes our cores (``load_covers_cores``),
    when on average ``others_runnable`` >= the cores our threads leave free (``cores - threads``,
    at least 0) + ``load_margin``; or when ``gpu_others`` > 0 processes share the GPU. ``why``
    names each reason met (None when not contended).
    """
    reasons = []
    if cpu_share is not None and cpu_share < share_threshold:
        reasons.append(f"its threads waited for a CPU: cpu_share below {share_threshold:.2f}")
    free = max(0, cores - threads)
    if load_covers_cores and others_runnable is not None and others_runnable >= free + load_margin:
        reasons.append(
            f"{others_runnable:.1f} other runnable tasks on average for {free} free core(s) "
            f"({cores} cores, {threads} threads)"
        )
    if gpu_others:
        reasons.append(f"{gpu_others} other process(es) on the GPU")
    return bool(reasons), "; ".join(reasons) or None


class CpuMeter:
    """What this process got of the CPU over timed intervals (:meth:`start`/:meth:`stop` around each).

    Sums wall time, process CPU time (``time.process_time``: every thread of the process) and,
    where Linux scheduler statistics exist, each thread's time on a CPU and time spent runnable but
    waiting for one; samples :func:`runnable_others` at every start and stop.
    """

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.run_s = 0.0
        self.wait_s = 0.0
        self.schedstat = True
        self.samples: list[int] = []
        self._start: tuple[float, float, dict[str, tuple[int, int]] | None] | None = None

    def _sample(self) -> None:
        value = runnable_others()
        if value is not None:
            self.samples.append(value)

    def start(self) -> None:
        """Begin a timed interval (call right before its timer starts)."""
        self._sample()
        self._start = (time.perf_counter(), time.process_time(), _sched_times())

    def stop(self) -> None:
        """End the timed interval begun by :meth:`start` (call right after its timer stops)."""
        wall, cpu, sched = time.perf_counter(), time.process_time(), _sched_times()
        if self._start is None:
            raise RuntimeError("CpuMeter.stop() without start()")
        wall0, cpu0, sched0 = self._start
        self._start = None
        self.wall_s += wall - wall0
        self.cpu_s += cpu - cpu0
        if sched is None or sched0 is None:
            self.schedstat = False
        else:
            # per thread: a thread born in the interval counts from 0, one that ended is dropped
            for tid, (run, wait) in sched.items():
                run0, wait0 = sched0.get(tid, (0, 0))
                self.run_s += (run - run0) / 1e9
                self.wait_s += (wait - wait0) / 1e9
        self._sample()

    def share(self, threads: int) -> tuple[float | None, str, float | None]:
        """(cpu_share, its source, cpu_utilization) over the intervals so far.

        ``cpu_share`` is on-CPU / (on-CPU + run-queue wait) from the scheduler's statistics: the
        share of the CPU time our threads asked for that they got, whatever the number of threads
        the work kept busy. Without them: ``cpu_utilization`` = process CPU time / (wall x
        ``threads``), capped at 1, which also drops on an idle machine when small ops leave
        threads idle (and spin-waiting OpenMP threads count as busy).
        """
        utilization = self.cpu_s / (self.wall_s * threads) if self.wall_s > 0 and threads > 0 else None
        if self.schedstat and self.run_s + self.wait_s > 0:
            return self.run_s / (self.run_s + self.wait_s), SHARE_SCHEDSTAT, utilization
        share = None if utilization is None else min(1.0, utilization)
        return share, SHARE_PROCESS_TIME, utilization


class IntervalTimer:
    """The protocol of :func:`measure_fps` for one adapter, one interval at a time.

    :meth:`warm` runs the warm-up intervals (and fixes an automatic repeat count), :meth:`time_one`
    times one interval, :meth:`result` gives :func:`measure_fps`' dict: several timers can take
    turns (:func:`time_interleaved`). ``threads`` (optional) is the intra-op thread count set
    around this timer's own work (outside the timed region).
    """

    def __init__(
        self,
        adapter: nn.Module,
        frames: Sequence[torch.Tensor] | torch.Tensor,
        interval: int,
        warmup: int = 1,
        repeats: int | None = 3,
        device: str | torch.device = "cpu",
        lead_in: int = 0,
        threads: int | None = None,
    ) -> None:
        self.auto = repeats is None
        if isinstance(repeats, bool) or (repeats is not None and (int(repeats) != repeats or repeats < 1)):
            raise ValueError(f"repeats must be a positive integer or None (auto), got {repeats!r}")
        if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
        self.adapter = adapter
        self.lead, self.clip = _lead_and_interval(frames, interval, lead_in)  # one tensor: reused per step
        self.interval, self.warmup, self.lead_in = int(interval), int(warmup), int(lead_in)
        self.repeats = FPS_MIN_REPEATS if repeats is None else int(repeats)
        self.count_known = not self.auto
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.threads = threads
        self.times: list[float] = []
        self.meter = CpuMeter()

    @property
    def remaining(self) -> int:
        """Timed intervals still to run (with an automatic count not fixed yet: at least one)."""
        return max(0, self.repeats - len(self.times))

    def _restart(self) -> None:
        self.adapter.reset()
        for frame in self.lead:
            self.adapter.step(frame)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        if self.threads is None or self.threads == previous:
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def warm(self) -> None:
        """Run the untimed warm-up intervals; with ``repeats=None`` the last one fixes the count."""
        warm_time = 0.0
        with self._threads(), torch.inference_mode():
            for _ in range(self.warmup):
                self._restart()
                _synchronize(self.device)
                start = time.perf_counter()
                for frame in self.clip:
                    self.adapter.step(frame)
                _synchronize(self.device)
                warm_time = time.perf_counter() - start
        if self.auto and self.warmup:
            self.repeats = auto_repeats(warm_time)
            self.count_known = True

    def time_one(self, release: bool = False) -> float:
        """Time one interval (reset, lead-in untimed, then the interval's steps, device synchronized).

        ``release`` resets the adapter afterwards (untimed), dropping its caches while other
        timers take their turns.
        """
        with self._threads(), torch.inference_mode():
            self._restart()
            _synchronize(self.device)
            self.meter.start()
            if self.cuda:
                stream = torch.cuda.current_stream(self.device)
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record(stream)
            start = time.perf_counter()
            for frame in self.clip:
                self.adapter.step(frame)
            if self.cuda:
                end.record(stream)
            _synchronize(self.device)
            elapsed = begin.elapsed_time(end) / 1e3 if self.cuda else time.perf_counter() - start
            self.meter.stop()
            if release:
                self.adapter.reset()
        self.times.append(elapsed)
        if not self.count_known:  # automatic count without warm-up: the first interval decides
            self.repeats = auto_repeats(elapsed)
            self.count_known = True
        return elapsed

    def result(
        self, load_before: float | None = None, load_after: float | None = None, gpu_others: int | None = None
    ) -> dict[str, Any]:
        """:func:`measure_fps`' dict over the intervals timed so far, with the contention fields."""
        if not self.times:
            raise RuntimeError("no interval was timed")
        median = statistics.median(self.times)
        threads = self.threads or torch.get_num_threads()
        share, source, utilization = self.meter.share(threads)
        cores, covers = cpu_cores()
        readings = [v for v in (load_before, load_after) if v is not None]
        pooled = [*self.meter.samples, *readings]
        others = sum(pooled) / len(pooled) if pooled else None
        contended, why = assess_contention(
            share, others, threads, cores, load_covers_cores=covers, gpu_others=gpu_others
        )
        result = {
            "fps": self.interval / median,
            "interval_time_s": median,
            "interval_times_s": list(self.times),
            "repeats": int(self.repeats),
            "warmup": self.warmup,
            "interval": self.interval,
            "lead_in": self.lead_in,
            "timer": "cuda_event" if self.cuda else "perf_counter",
            "cpu_share": share,
            "cpu_share_source": source,
            "cpu_utilization": utilization,
            "threads": threads,
            "cores": cores,
            "others_runnable": others,
            "load_before": load_before,
            "load_after": load_after,
            "load_covers_cores": covers,
            "contended": contended,
            "contention": why,
        }
        if self.cuda:
            result["gpu_other_processes"] = gpu_others
        return result


def interleaved_order(counts: Sequence[int]) -> list[int]:
    """The order in which timers with ``counts`` timed intervals each take turns (timer indices).

    Rounds of a round robin: with ``M = max(counts)`` rounds, timer ``i``'s ``j``-th interval
    goes in round ``floor((j + 1/2) * M / counts[i])``, so a timer with fewer repeats is spread
    evenly over the whole phase instead of finishing early; within round ``r`` the timers go in
    index order starting from ``r mod N`` (no timer always follows the same one). With equal
    counts this is a plain round robin, rotated each round.
    """
    if any(isinstance(c, bool) or int(c) != c or c < 0 for c in counts):
        raise ValueError(f"counts must be non-negative integers, got {list(counts)}")
    rounds = max(counts, default=0)
    slots: list[list[int]] = [[] for _ in range(rounds)]
    for i, count in enumerate(counts):
        for j in range(count):
            slots[int((j + 0.5) * rounds / count)].append(i)
    n = len(counts)
    order = []
    for r, members in enumerate(slots):
        order.extend(sorted(members, key=lambda i: (i - r) % n))
    return order


def time_interleaved(timers: Sequence[IntervalTimer]) -> list[dict[str, Any] | Exception]:
    """Run several timers' protocols with their timed intervals taking turns (:func:`interleaved_order`).

    Every timer warms up first; then the load is read (:func:`load_reading`), the intervals run
    in turns, and the load is read again, so a change of load during the phase falls on every
    timer alike and the ratios of their FPS hold. Returns each timer's :meth:`IntervalTimer.result`,
    or the exception it raised (it leaves the turns; the others go on).
    """
    failed: dict[int, Exception] = {}

    def attempt(i: int, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a failing timer leaves the rotation; the others go on
            failed[i] = exc

    for i, timer in enumerate(timers):
        attempt(i, timer.warm)
    before = load_reading()
    for i, timer in enumerate(timers):  # an automatic count without warm-up: the first interval fixes it
        if i not in failed and not timer.count_known:
            attempt(i, timer.time_one)
    release = len(timers) > 1
    for i in interleaved_order([0 if i in failed else t.remaining for i, t in enumerate(timers)]):
        if i not in failed:
            attempt(i, functools.partial(timers[i].time_one, release=release))
    after = load_reading()
    gpu: dict[torch.device, int | None] = {}
    for t in timers:
        if t.cuda and t.device not in gpu:
            gpu[t.device] = gpu_other_processes(t.device)
    results: list[dict[str, Any] | Exception] = []
    for i, timer in enumerate(timers):
        if i in failed:
            results.append(failed[i])
            continue
        try:
            results.append(timer.result(before, after, gpu.get(timer.device)))
        except Exception as exc:  # noqa: BLE001 - e.g. no interval timed
            results.append(exc)
    return results


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what ``platform`` knows), for timing records."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Where a measurement ran: device description, torch version, threads, Python, platform, CUDA.

    ``device`` is e.g. ``"cpu (AMD EPYC, 2 threads)"`` or the CUDA device's name.
    """
    dev = torch.device(device)
    threads = torch.get_num_threads()
    if dev.type == "cuda":
        description = torch.cuda.get_device_name(dev)
    else:
        description = f"cpu ({cpu_model()}, {threads} threads of {os.cpu_count()} cores)"
    return {
        "device": description,
        "torch": torch.__version__,
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }
