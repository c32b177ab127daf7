"""Method adapters and their registry (built-in adapters are imported explicitly below)."""

from vssbench.methods.base import (
    BACKBONES,
    MethodInfo,
    VideoSegmenter,
    available,
    create,
    method_info,
    method_options,
    register,
)

# Built-in adapters register themselves on import; keep this list complete (a test checks it).
# (adapters are added here as they land)

__all__ = [
    "BACKBONES",
    "MethodInfo",
    "VideoSegmenter",
    "available",
    "create",
    "method_info",
    "method_options",
    "register",
]
