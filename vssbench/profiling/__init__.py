"""Efficiency measurements of method adapters: parameters, GMACs and per-interval FPS.

Conventions (recorded in every result): GMACs count one multiply-add as one (fvcore's
convention, the SegFormer paper's "GFLOPs"), op by op on a traced ``adapter.step``; FPS is
frames of one keyframe interval divided by the median model time of that interval, with
the device synchronized around the timed region. Data loading is timed by the harness,
never here.

- :mod:`.params`: parameter counts and the parameters inference never uses;
- :mod:`.gmacs`: GMACs per step of one keyframe interval (fvcore plus our op handles);
- :mod:`.fps`: the timing protocol, alone or with several adapters' intervals in turns;
- :mod:`.contention`: whether a timing got the CPU (and GPU) it asked for;
- :mod:`.environment`: where a measurement ran.
"""

from vssbench.profiling.contention import (
    CONTENTION_SHARE,
    LOAD_SAMPLES,
    LOAD_SPACING_S,
    SHARE_PROCESS_TIME,
    SHARE_SCHEDSTAT,
    CpuMeter,
    assess_contention,
    cpu_cores,
    gpu_other_processes,
    load_reading,
    runnable_others,
)
from vssbench.profiling.environment import cpu_model, environment
from vssbench.profiling.fps import (
    FPS_BUDGET_S,
    FPS_MAX_REPEATS,
    FPS_MIN_REPEATS,
    IntervalTimer,
    auto_repeats,
    interleaved_order,
    measure_fps,
    time_interleaved,
)
from vssbench.profiling.gmacs import FREE_OPS, MACS_CONVENTION, OP_HANDLES, count_gmacs
from vssbench.profiling.params import count_parameters, find_dead_parameters, find_dead_parameters_by_gradient

__all__ = [
    "CONTENTION_SHARE",
    "FPS_BUDGET_S",
    "FPS_MAX_REPEATS",
    "FPS_MIN_REPEATS",
    "FREE_OPS",
    "LOAD_SAMPLES",
    "LOAD_SPACING_S",
    "MACS_CONVENTION",
    "OP_HANDLES",
    "SHARE_PROCESS_TIME",
    "SHARE_SCHEDSTAT",
    "CpuMeter",
    "IntervalTimer",
    "assess_contention",
    "auto_repeats",
    "count_gmacs",
    "count_parameters",
    "cpu_cores",
    "cpu_model",
    "environment",
    "find_dead_parameters",
    "find_dead_parameters_by_gradient",
    "gpu_other_processes",
    "interleaved_order",
    "load_reading",
    "measure_fps",
    "runnable_others",
    "time_interleaved",
]
