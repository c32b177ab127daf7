"""Parameter counts of a method adapter, and the parameters its inference never uses (dead)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn


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
