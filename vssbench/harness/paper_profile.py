"""Paper-comparable cost figures: GMACs at the paper's 480x480 crop, both decoder widths, next to its text.

The TFC paper states GFLOPs per non-keyframe in Sec. 4.2: "B0 vs MiT-B0 at non-keyframes is:
6.4 vs 6.8. Similarly with B5 vs MiT-B5 at non-keyframes is: 53.2 vs 95.7". Its numbers fit
multiply-adds (fvcore's convention, the SegFormer paper's "GFLOPs") at the 480x480 training crop;
its B5 figure only fits a 768-wide decoder (the ADE20K/Cityscapes B5 head), while Table 1's
82.1M parameters fit the 256-wide decoder of the VSPW configs. :func:`paper_profile` measures
SegFormer and TFC on B0 and B5 at 480x480 with the *reference* decoder (the literal architecture,
as the paper counted it) at decoder widths 256 and 768, and puts the paper's value beside each,
so a reader sees where the numbers agree and where the paper is inconsistent.

Cheap on purpose: GMACs (and parameter counts) only, no FPS, no dead-parameter search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vssbench.config import RunConfig
from vssbench.harness.adapters import build_adapter, profile_frames
from vssbench.harness.configs import normalize_config
from vssbench.harness.evaluate import accumulate_diagnostics
from vssbench.paper import paper_value
from vssbench.profiling import count_gmacs, count_parameters

#: The paper's training crop, at which its GFLOPs fit.
PAPER_SIZE: tuple[int, int] = (480, 480)
PAPER_BACKBONES: tuple[str, ...] = ("b0", "b5")
PAPER_METHODS: tuple[str, ...] = ("segformer", "tfc")
PAPER_DECODER_DIMS: tuple[int, ...] = (256, 768)


def paper_profile(
    backbones: Sequence[str] = PAPER_BACKBONES,
    decoder_dims: Sequence[int] = PAPER_DECODER_DIMS,
    methods: Sequence[str] = PAPER_METHODS,
    size: tuple[int, int] = PAPER_SIZE,
    decoder: str = "reference",
    num_classes: int = 124,
    interval: int = 4,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per backbone x decoder width x method: measured GMACs next to the paper's Sec. 4.2 value.

    Each model is random-init (costs do not depend on the weights, except TFC's share of updated
    points, which the rendered synthetic video decides), measured with :func:`count_gmacs` over one
    keyframe interval of a synthetic video at ``size``. Row keys: ``method``, ``backbone``,
    ``decoder_dim``, ``decoder``, ``size``, ``params`` (M), ``gmacs_keyframe``,
    ``gmacs_nonkeyframe``, ``gmacs_per_frame``, ``updated_fraction`` (TFC, mean over non-keyframes),
    ``paper_gflops_nonkeyframe`` (None where the paper states nothing) and ``ratio`` (measured /
    paper, non-keyframe).
    """
    rows = []
    for backbone in backbones:
        for dim in decoder_dims:
            for method in methods:
                config = normalize_config(
                    RunConfig(
                        method=method,
                        backbone=backbone,
                        options={"decoder_dim": dim},
                        num_classes=num_classes,
                        resolution=tuple(size),
                        interval=interval,
                        seed=seed,
                        decoder=decoder,
                    )
                )
                rows.append(_paper_row(config, dim, tuple(size)))
    return rows


def _paper_row(config: RunConfig, decoder_dim: int, size: tuple[int, int]) -> dict[str, Any]:
    """One row of :func:`paper_profile`: the GMACs of ``config``'s model next to the paper's value."""
    adapter = build_model(config)
    frames = synthetic_frames(config.interval, size, config.seed)
    gmacs = count_gmacs(adapter, frames, config.interval)
    updated = mean_updated_fraction(adapter, frames)
    paper = paper_value("text", config.method, config.backbone, "gmacs_nonkeyframe")
    return {
        "method": config.method,
        "backbone": config.backbone,
        "decoder_dim": decoder_dim,
        "decoder": config.decoder,
        "size": list(size),
        "params": count_parameters(adapter)["total"] / 1e6,
        "gmacs_keyframe": gmacs["gmacs_keyframe"],
        "gmacs_nonkeyframe": gmacs["gmacs_nonkeyframe"],
        "gmacs_per_frame": gmacs["gmacs_per_frame"],
        "updated_fraction": updated,
        "paper_gflops_nonkeyframe": paper,
        "ratio": None if paper is None else gmacs["gmacs_nonkeyframe"] / paper,
    }


def build_model(config: RunConfig) -> torch.nn.Module:
    """The method of a (normalized) ``config`` on the CPU, as ``vssbench run``/``profile`` build it."""
    return build_adapter(config, torch.device("cpu"))[0]


def synthetic_frames(count: int, size: tuple[int, int], seed: int = 0) -> list[torch.Tensor]:
    """``count`` normalized 1 x 3 x H x W frames of a rendered synthetic video (as ``vssbench profile``)."""
    return profile_frames("video", count, size, seed)


def mean_updated_fraction(adapter: torch.nn.Module, frames: Sequence[torch.Tensor]) -> float | None:
    """Mean of the adapter's ``updated_fraction`` diagnostic over ``frames`` (NaN on keyframes: left out)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    with torch.inference_mode():
        adapter.reset()
        for frame in frames:
            adapter.step(frame)
            accumulate_diagnostics(sums, counts, getattr(adapter, "last_step_info", {}))
        adapter.reset()
    return sums["updated_fraction"] / counts["updated_fraction"] if counts.get("updated_fraction") else None


def format_paper_profile(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`paper_profile` as a text table with a note on how to read them."""
    header = ["backbone", "E", "method", "params(M)", "GMACs key", "GMACs non-key", "paper non-key", "ratio"]
    body = []
    for r in rows:
        paper = r["paper_gflops_nonkeyframe"]
        body.append(
            [
                r["backbone"],
                str(r["decoder_dim"]),
                r["method"],
                f"{r['params']:.1f}",
                f"{r['gmacs_keyframe']:.1f}",
                f"{r['gmacs_nonkeyframe']:.1f}",
                "-" if paper is None else f"{paper:.1f}",
                "-" if r["ratio"] is None else f"{r['ratio']:.2f}",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    lines = [
        "  ".join(c.rjust(w) for c, w in zip(cells, widths))
        for cells in [header, ["-" * w for w in widths], *body]
    ]
    h, w = rows[0]["size"] if rows else PAPER_SIZE
    lines.append(
        f"GMACs (one multiply-add = one) at {h}x{w}, {rows[0]['decoder'] if rows else 'reference'} decoder, "
        "random init, one keyframe interval of a synthetic video; "
        "'paper non-key' is the TFC paper's Sec. 4.2 "
        "GFLOPs per non-keyframe (the same value for both decoder widths: the paper names none). "
        "SegFormer's non-keyframe is any frame. Table 1's parameters (B0 3.8M, B5 82.1M) fit E=256."
    )
    return "\n".join(lines)


__all__ = [
    "PAPER_BACKBONES",
    "PAPER_DECODER_DIMS",
    "PAPER_METHODS",
    "PAPER_SIZE",
    "build_model",
    "format_paper_profile",
    "paper_profile",
    "synthetic_frames",
]
