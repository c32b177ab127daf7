"""GMACs and FPS of methods with a start-of-video fallback are measured at their steady state."""

from __future__ import annotations

import pytest
import torch

from vssbench.config import RunConfig
from vssbench.harness import profile_method
from vssbench.methods import create
from vssbench.profiling import count_gmacs, measure_fps


# Every method's lead-in is consistent with its caches (tests/methods/test_contract.py); these are
# the lead-ins of the built-in methods. CFFM/MRCFA: references t-9, t-6, t-3 all exist from frame 9;
# TDNet: a FIFO of N-1 = 3 frames (1 with two paths); the others have no start-of-video fallback.
@pytest.mark.parametrize(
    ("name", "options", "frames"),
    [
        ("cffm", {}, 9),
        ("mrcfa", {}, 9),
        ("tdnet", {}, 3),
        ("tdnet", {"num_paths": 2, "interval": 4}, 1),
        ("segformer", {}, 0),
        ("feature_reuse", {}, 0),
        ("tfc", {}, 0),
    ],
)
def test_steady_state_after_is_declared_by_the_adapters(name: str, options: dict, frames: int) -> None:
    assert create(name, "b0", **options).steady_state_after == frames


def test_lead_in_frames_are_run_but_not_counted() -> None:
    # TDNet: the shortest lead-in with a cheaper fallback (3 frames; CFFM's 9 would trace 6 more steps)
    torch.manual_seed(0)
    model = create("tdnet", "b0")
    frames = [torch.randn(1, 3, 64, 64) for _ in range(7)]
    every = count_gmacs(model, frames, 7)["gmacs_per_step"]
    steady = count_gmacs(model, frames, 4, lead_in=3)
    # The counted steps are exactly frames 3..6 of a video started at frame 0.
    assert steady["gmacs_per_step"] == pytest.approx(every[3:])
    assert steady["lead_in"] == 3
    # Frames 0..2, before the FIFO is full, are cheaper than a steady-state step.
    assert every[0] < every[3]
    fps = measure_fps(model, frames, 4, warmup=0, repeats=1, lead_in=3)
    assert fps["lead_in"] == 3 and fps["fps"] > 0
    with pytest.raises(ValueError, match="lead_in"):
        count_gmacs(model, frames, 4, lead_in=-1)


def test_profile_record_measures_after_the_lead_in() -> None:
    record = profile_method(
        RunConfig(method="tdnet", backbone="b0", resolution=(64, 64), warmup=0, repeats=1), frames="random"
    )
    assert record["fps_protocol"]["lead_in"] == 3
    assert "after 3 lead-in frames" in record["fps_protocol"]["frames"]
    steps = record["gmacs_per_step"]
    # At TDNet's steady state every path does the same work (full FIFO: N-1 attention hops).
    assert max(steps) == pytest.approx(min(steps), rel=1e-6)
