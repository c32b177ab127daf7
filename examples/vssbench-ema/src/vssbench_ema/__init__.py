"""vssbench-ema: an example vssbench plugin adding the method ``segformer_ema``.

The method lives in :mod:`vssbench_ema.adapter`, the module that the entry point
``vssbench.methods: segformer_ema`` names: vssbench imports it on first use of its registry, and
the import registers the method. Importing this package imports it too, so
``vssbench --plugin vssbench_ema`` works for a source tree that is not installed.
"""

from vssbench_ema.adapter import SegFormerEMA, SegFormerEMAOptions

__all__ = ["SegFormerEMA", "SegFormerEMAOptions"]
