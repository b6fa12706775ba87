"""What an ATS block kept: one record for every model family, images and video alike, and
:func:`kept_tokens`, which reads it from a model through any DDP or ``torch.compile`` wrapper.

An image is a clip of one frame, so every record has a time axis: ``count`` is [B, T] with
T = 1 for images, and positions are (t, h, w) triples on the model's patch grid.
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch
from einops import rearrange
from torch import Tensor, nn


@dataclass
class KeptTokens:
    """What one ATS block kept in each sample of the last forward.

    block: the block's 0-based index.
    count: [B, T] long, kept patch tokens per frame (prefix tokens such as CLS not counted).
    positions: [B, K', 3] long (t, h, w) of each kept token in (t, h, w) order, -1 at padding;
        K' is the largest number of tokens a sample kept.
    grid: (T, h, w), the frames and the patch grid of a frame.
    """

    block: int
    count: Tensor
    positions: Tensor
    grid: Tuple[int, int, int]

    @property
    def mask(self) -> Tensor:
        """[B, T, h, w] bool, True where the token of frame t at patch row h, column w was kept."""
        t, h, w = self.grid
        real = self.positions[..., 0] >= 0
        flat = (self.positions[..., 0] * h + self.positions[..., 1]) * w + self.positions[..., 2]
        flat = flat.masked_fill(~real, t * h * w)  # padding goes to a spare column
        mask = torch.zeros(len(flat), t * h * w + 1, dtype=torch.bool, device=flat.device)
        return mask.scatter_(1, flat, True)[:, :-1].view(-1, t, h, w)


def kept_record(block: int, present: Tensor, grid: Tuple[int, int]) -> KeptTokens:
    """The :class:`KeptTokens` of a [B, T, S] bool grid of kept tokens, S = h * w."""
    batch, frames, s = present.shape
    h, w = grid
    flat = rearrange(present, "b t s -> b (t s)")
    counts = flat.sum(-1)
    length = int(counts.max()) if batch else 0
    # a stable sort puts the kept tokens first without changing their order
    index = torch.sort((~flat).to(torch.uint8), dim=-1, stable=True).indices[:, :length]
    real = torch.arange(length, device=present.device) < counts[:, None]
    positions = torch.stack([index // s, index % s // w, index % w], dim=-1)
    return KeptTokens(block, present.sum(-1), positions.masked_fill(~real[..., None], -1), (frames, h, w))


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def kept_tokens(model: nn.Module) -> List[KeptTokens]:
    """What each ATS block kept in the last forward of ``model`` (wrapped or not), in block
    order; empty for a model without ATS."""
    return list(getattr(unwrap(model), "ats_kept", []))


def kept_tokens(model: nn.Module) -> List[KeptTokens]:
    """What each ATS block kept in the last forward of ``model`` (wrapped or not), in block
    order; empty for a model without ATS."""
    return list(getattr(unwrap(model), "ats_kept", []))
