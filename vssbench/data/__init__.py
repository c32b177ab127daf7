"""VSPW data layer: reader, label space, transforms, clip samplers, synthetic VSPW-mini, checker."""

from __future__ import annotations

from vssbench.data.check import PROBLEM_KINDS, CheckReport, Problem, check_dataset
from vssbench.data.labels import (
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    PALETTE,
    load_prediction,
    raw_class_name,
    remap_raw_label,
    save_prediction,
)
from vssbench.data.samplers import (
    ConsecutiveClipSampler,
    KeyframeClipSampler,
    ReferenceClipSampler,
    VSPWClipDataset,
)
from vssbench.data.synth import PRESETS as SYNTH_PRESETS
from vssbench.data.synth import (
    Difficulty,
    cache_dir,
    default_dataset,
    render_video,
    synthesize,
    write_dataset,
)
from vssbench.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipAugment,
    TestTransform,
    keep_ratio_size,
)
from vssbench.data.vspw import Frame, VSPWDataset, read_image, read_raw_mask, write_predictions_dir

__all__ = [
    "CLASS_NAMES",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NUM_CLASSES",
    "PALETTE",
    "PROBLEM_KINDS",
    "SYNTH_PRESETS",
    "CheckReport",
    "ClipAugment",
    "ConsecutiveClipSampler",
    "Difficulty",
    "Frame",
    "KeyframeClipSampler",
    "Problem",
    "ReferenceClipSampler",
    "TestTransform",
    "VSPWClipDataset",
    "VSPWDataset",
    "cache_dir",
    "check_dataset",
    "default_dataset",
    "keep_ratio_size",
    "load_prediction",
    "raw_class_name",
    "read_image",
    "read_raw_mask",
    "remap_raw_label",
    "render_video",
    "save_prediction",
    "synthesize",
    "write_dataset",
    "write_predictions_dir",
]
