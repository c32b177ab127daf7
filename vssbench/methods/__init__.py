"""Method adapters and their registry (built-in adapters are imported explicitly below)."""

from vssbench.methods import cffm, feature_reuse, mrcfa, segformer, tdnet, tfc  # noqa: F401  (register on import)
from vssbench.methods.base import (
    BACKBONES,
    BaseOptions,
    MethodInfo,
    VideoSegmenter,
    available,
    create,
    describe,
    load_plugins,
    method_info,
    method_options,
    method_origin,
    plugin_exceptions,
    plugin_failures,
    register,
)

__all__ = [
    "BACKBONES",
    "BaseOptions",
    "MethodInfo",
    "VideoSegmenter",
    "available",
    "create",
    "describe",
    "load_plugins",
    "method_info",
    "method_options",
    "method_origin",
    "plugin_exceptions",
    "plugin_failures",
    "register",
]
