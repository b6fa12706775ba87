"""The timm ViT / DeiT family: what this project adds to timm's own models.

DeiT (Touvron et al., ICML 2021) and ViT are timm's ``VisionTransformer``; models are built by
timm from their names (``deit_small_patch16_224``, ...). This module holds the family's
checkpoint mapping, which is timm's own, plus a warning when it resizes the position embedding.
"""

import logging
from typing import Dict

from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as timm_filter_fn
from torch import Tensor

_logger = logging.getLogger(__name__)


def checkpoint_filter_fn(state_dict: Dict[str, Tensor], model: VisionTransformer) -> Dict[str, Tensor]:
    """Maps a timm / DeiT release state dict onto ``model``; timm resizes pos_embed (bicubic)."""
    out = timm_filter_fn(state_dict, model)
    pos = state_dict.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        _logger.warning(
            "pos_embed resized: from %s to %s (bicubic)", tuple(pos.shape), tuple(model.pos_embed.shape)
        )
    return out
