"""Starting a video model from an ImageNet ViT, as the video releases do.

TimeSformer and XViT are trained from an ImageNet ViT (timm's / the ViT release's ``.pth``, or
DeiT's): the weights a ViT block has load as they are, and what video adds is initialised.
How each family fills the video part is beside its checkpoint mapping
(``timesformer.from_image_vit``, ``xvit.from_image_vit``); this module holds what they share.
"""

import re
from typing import Callable, Dict, List, Mapping, Sequence

from torch import Tensor, nn

StateDict = Dict[str, Tensor]


def is_image_vit(state_dict: Mapping[str, Tensor], video_prefixes: Sequence[str]) -> bool:
    """Whether ``state_dict`` (prefixes stripped) is an image ViT's: ViT blocks, and no key
    that starts with one of the video model's own ``video_prefixes``."""
    return "blocks.0.attn.qkv.weight" in state_dict and not any(
        key.startswith(tuple(video_prefixes)) for key in state_dict
    )


def keep_model_init(
    state_dict: StateDict, model: nn.Module, wanted: Callable[[str], bool]
) -> List[str]:
    """Adds to ``state_dict`` (in place) the model's own tensors for its keys that
    ``state_dict`` lacks and ``wanted`` accepts; returns those keys. A lacking key that is
    not wanted stays missing, for the strict check to name."""
    added = [k for k in model.state_dict() if k not in state_dict and wanted(k)]
    own = model.state_dict()
    state_dict.update({k: own[k] for k in added})
    return added


def block_range(keys: Sequence[str]) -> str:
    """``["blocks.0.x", "blocks.11.y"]`` -> ``"blocks 0-11"`` (the blocks the keys name)."""
    blocks = sorted({int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))})
    return f"blocks {blocks[0]}-{blocks[-1]}" if blocks else "no blocks"
