"""GMACs of a method adapter's steps over one keyframe interval, counted op by op with fvcore.

One multiply-add counts as one (fvcore's convention, the SegFormer paper's "GFLOPs"), on a traced
``adapter.step``. Our op handles (:data:`OP_HANDLES`) cover what fvcore does not count or counts
otherwise; :data:`FREE_OPS` are ignored on purpose; anything else is reported as unsupported.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vssbench.profiling.interval import lead_and_interval

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

    lead, frames = lead_and_interval(image, interval, lead_in)
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
