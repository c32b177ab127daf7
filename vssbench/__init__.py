"""vssbench: benchmark and evaluation toolkit for efficient and stable video semantic segmentation."""

from vssbench.errors import VssbenchError

__version__ = "0.1.0"

__all__ = ["VssbenchError", "__version__"]
