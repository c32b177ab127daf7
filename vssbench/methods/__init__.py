"""Method adapters and their registry (built-in adapters are imported explicitly below)."""

from vssbench.methods.base import (
    BACKBONES,
    MethodInfo,
    VideoSegmenter,
    available,
    create,
    describe,
    method_info,
    method_options,
    register,
)

# Built-in adapters register themselves on import; keep this list complete (a test checks it).
from vssbench.methods import feature_reuse, segformer  # noqa: F401
from vssbench.methods import tfc  # noqa: F401
from vssbench.methods import tdnet  # noqa: F401
from vssbench.methods import cffm  # noqa: F401
from vssbench.methods import mrcfa  # noqa: F401

__all__ = [
    "BACKBONES",
    "MethodInfo",
    "VideoSegmenter",
    "available",
    "create",
    "describe",
    "method_info",
    "method_options",
    "register",
]
