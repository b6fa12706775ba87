"""Resizing a checkpoint's position and time embeddings to a model built for another clip size.

Shared by the video families' checkpoint-mapping functions (TimeSformer, XViT); it imports no
model module, so they can import it. Each resize logs a warning that names the embedding and its
old and new sizes: a resized embedding is an approximation the user should know about.
"""

import logging
import math
from typing import Optional, Sequence

import torch.nn.functional as F
from einops import rearrange
from timm.layers import resample_abs_pos_embed
from torch import Tensor

_logger = logging.getLogger(__name__)


def resizable(value: Optional[Tensor], target: Tensor) -> bool:
    """Whether a checkpoint's embedding differs from the model's ``target`` only along dim 1.

    Anything else (another width, another rank) is left alone, so the strict check after the
    mapping names it as a wrong shape instead of a resize failing halfway.
    """
    if value is None or value.dim() != target.dim() or value.shape == target.shape:
        return False
    return all(a == b for i, (a, b) in enumerate(zip(value.shape, target.shape)) if i != 1)


def resize_pos_embed(pos_embed: Tensor, grid: Sequence[int], *, name: str = "pos_embed") -> Tensor:
    """Position embedding of a square patch grid -> one of the ``grid`` (h, w) patch grid.

    Bicubic with antialiasing over the 2-D grid, as timm resizes ViT position embeddings; the
    CLS entry is kept as it is.

    Args:
        pos_embed: [1, 1 + s * s, D], the CLS entry first.
        grid: (h, w) of the model's patch grid.
        name: the state-dict key, for the warning.
    Returns:
        [1, 1 + h * w, D].
    """
    side = math.isqrt(pos_embed.shape[1] - 1)
    if side * side != pos_embed.shape[1] - 1:
        raise ValueError(
            f"{name} {tuple(pos_embed.shape)} is not a CLS entry and a square patch grid"
        )
    # "<what happened>: <from what to what>"; both halves are what readers (and tests) look for
    _logger.warning(
        "%s resized: %s from a %dx%d to a %dx%d patch grid (bicubic, CLS entry kept)",
        name,
        name,
        side,
        side,
        *grid,
    )
    return resample_abs_pos_embed(
        pos_embed,
        list(grid),
        [side, side],
        num_prefix_tokens=1,
        interpolation="bicubic",
        antialias=True,
    )


def resize_time_embed(embed: Tensor, num_frames: int, *, mode: str, name: str) -> Tensor:
    """Time embedding of T' frames -> one of ``num_frames`` frames, interpolated along time.

    Args:
        embed: [1, T', D].
        num_frames: T, the model's frame count.
        mode: ``F.interpolate``'s mode. The families differ on purpose: TimeSformer uses
            "nearest", as its official code does at every forward; for XViT no official rule
            was found (none is documented here), and "linear" is what this project has used
            for it from the start.
        name: the state-dict key, for the warning.
    Returns:
        [1, num_frames, D].
    """
    _logger.warning(
        "%s interpolated: %s from %d to %d frames (%s)",
        name,
        name,
        embed.shape[1],
        num_frames,
        mode,
    )
    resized = F.interpolate(rearrange(embed, "1 t d -> 1 d t"), size=num_frames, mode=mode)
    return rearrange(resized, "1 d t -> 1 t d")
