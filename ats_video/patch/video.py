"""What the video patches share: the record of what an ATS block kept in each clip."""

from dataclasses import dataclass
from typing import Tuple

import torch
from einops import rearrange
from torch import Tensor

from ats_video.ats import kept_rows


@dataclass
class KeptVideoTokens:
    """What one ATS block kept in each clip of the last forward.

    block: the block's 0-based index.
    count: [B, T] kept patch tokens per frame.
    mask: [B, T, h, w] bool, True where the token of frame t at patch row h, column w is kept.
    positions: [B, K', 3] long (t, h, w) of each kept token, in (t, h, w) order, -1 at padding;
        K' is the largest number of tokens a clip kept.
    """

    block: int
    count: Tensor
    mask: Tensor
    positions: Tensor


def kept_record(block: int, present: Tensor, grid: Tuple[int, int]) -> KeptVideoTokens:
    """The :class:`KeptVideoTokens` of a [B, T, S] presence grid with patch grid (h, w)."""
    h, w = grid
    s = h * w
    index, valid = kept_rows(rearrange(present, "b t s -> b (t s)"), 0)
    positions = torch.stack([index // s, index % s // w, index % w], dim=-1)
    return KeptVideoTokens(
        block=block,
        count=present.sum(-1),
        mask=rearrange(present, "b t (h w) -> b t h w", h=h),
        positions=positions.masked_fill(~valid[..., None], -1),
    )
