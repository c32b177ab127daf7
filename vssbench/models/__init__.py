"""Building blocks: the MiT encoder, the SegFormer MLP decoder and checkpoint I/O."""

from vssbench.models.checkpoint import FORMATS, LoadReport, load_checkpoint, read_state_dict, save_checkpoint
from vssbench.models.decoder import SegFormerHead, resize_logits
from vssbench.models.mit import MIT_CONFIGS, MiTConfig, MixTransformer

__all__ = [
    "FORMATS",
    "MIT_CONFIGS",
    "LoadReport",
    "MiTConfig",
    "MixTransformer",
    "SegFormerHead",
    "load_checkpoint",
    "read_state_dict",
    "resize_logits",
    "save_checkpoint",
]
