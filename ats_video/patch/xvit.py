"""Space-time ATS in XViT, applied to an existing model.

Fayyaz et al. (ECCV 2022) put the Adaptive Token Sampler into image transformers. XViT (Bulat et
al., NeurIPS 2021) is an image transformer run on every frame, with its own CLS per frame, whose
attention mixes a slice of key and value channels in from frames t-1 and t+1 at the same spatial
position. Here each frame is sampled as DeiT's image is: the frame's CLS scores its own present
tokens (Eq. 3) and keeps its own set. ``apply_ats_xvit`` swaps the model's class for a subclass
whose ``forward_features`` carries the tokens packed (:class:`ats_video.tokens.Tokens`, a
sequence per frame) from the first ATS block on; parameters and state-dict keys are untouched,
so official checkpoints load before and after.

The blocks are :func:`ats_video.patch.common.attention_block`, DeiT's, with XViT's mixing of
keys and values passed in. The shift pairs tokens by spatial position, never by rank: a
frame's keys and values are placed on its [1 + S] position grid (zeros where a token was
dropped), shifted in time there, and read back at the frame's own positions. A dropped token
thus contributes zeros to its neighbours' shift, as at the clip's ends.

Two sampling modes:
- "frame" (default): frame t keeps its own set, with budget K_t from ``k`` and the frame's
  present token count;
- "shared": each frame's scores, normalised within the frame, are summed over the clip's frames
  and one set of positions is kept in every frame, its budget from the per-frame token count.

NOTE: the paper has no video path and the official ATS code none either; the modes and the zeros
for dropped tokens in the shift are this project's reading of the paper for XViT.
NOTE: scores use the mixed keys and values, the ones the block's attention really uses.
NOTE: stochastic depth drops a frame's branch, as the release's per-frame backbone does.
"""

from functools import partial
from typing import Dict, List, Sequence, Tuple

import torch
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ats_video.ats import ATSConfig, SharedGrid
from ats_video.models.xvit import Block, MixingAttention, XViT
from ats_video.patch.common import (
    attention_block, attention_block_macs, grid_positions, linear_macs, macs_device, patch_embed_macs,
)
from ats_video.tokens import KeptRows, KeptTokens, Layout, Tokens


def shift_by_position(z: Tensor, tokens: Tokens, attn: MixingAttention, grid: Tuple[int, int]) -> Tensor:
    """XViT's temporal shift on packed rows, pairing tokens by spatial position.

    Args:
        z: [R, H, d] keys or values of the rows of ``tokens`` (a sequence per frame, CLS first).
        tokens: the rows' sequences and positions.
        attn: the block's attention (its ``fold`` and shift group).
        grid: (h, w), a frame's patch grid.
    Returns:
        [R, H, d]: channels ``[0, 2 fold)`` (heads first) come from the token at the same
        position in frame t+1 (first slice) and t-1 (second slice), zero where that is absent.
    """
    layout, rows, size = tokens.layout, z.flatten(1), 1 + grid[0] * grid[1]
    if layout.uniform and layout.max_len == size:  # every token present, in order
        return attn.mix(rows.view(layout.num_seqs, size, rows.shape[1])).view_as(z)
    c, position = 2 * attn.fold, tokens.position
    # each frame's CLS at slot 0 of its [1 + h * w] grid, patch (h, w) at 1 + h * width + w
    in_frame = torch.where(position[:, 0] >= 0, 1 + position[:, 1] * grid[1] + position[:, 2], 0)
    slot = layout.sequence_of_rows() * size + in_frame
    on_grid = rows.new_zeros(layout.num_seqs * size, c)
    on_grid[slot] = rows[:, :c]
    mixed = attn.mix(on_grid.view(layout.num_seqs, size, c)).view(-1, c)[slot]
    return torch.cat([mixed, rows[:, c:]], dim=-1).view_as(z)


class ATSXViTMixin:
    """Replaces XViT's ``forward_features`` by an ATS-aware one.

    ``forward_features`` returns [B, T, L', D], CLS first in every frame, then the frame's kept
    tokens and rows of padding up to the fullest frame (the head reads only CLS). After each
    forward, ``ats_video.kept_tokens(model)`` reads what each ATS block kept.
    """

    ats_blocks: Dict[int, ATSConfig]
    ats_mode: str
    ats_kept: List[KeptRows]

    def forward_features(self, x: Tensor) -> Tensor:
        batch, frames = x.shape[0], x.shape[2]
        x = self.embed(x)
        first = min(self.ats_blocks) if self.ats_blocks else len(self.blocks)
        for block in self.blocks[:first]:  # every token is present: the plain blocks
            x = checkpoint(block, x, use_reentrant=False) if self._checkpointing() else block(x)
        grid = self.patch_embed.grid_size
        s = grid[0] * grid[1]
        position = grid_positions(frames, grid, 1, x.device).repeat(batch, 1)
        tokens = Tokens(x.flatten(0, 1), Layout.dense(len(x), x.shape[1], x.device), position)
        self.ats_kept = []
        for i in range(first, len(self.blocks)):
            block, config = self.blocks[i], self.ats_blocks.get(i)
            shared = None
            if config is not None and self.ats_mode == "shared":
                patch = tokens.position[:, 0] >= 0
                slot = torch.where(patch, tokens.position[:, 1] * grid[1] + tokens.position[:, 2], -1)
                shared = SharedGrid(frames, slot, s)
            mix = partial(shift_by_position, attn=block.attn, grid=grid)
            args = (block, tokens, 1, config, mix, shared)
            tokens = checkpoint(attention_block, *args, use_reentrant=False) if self._checkpointing() else attention_block(*args)
            if config is not None:
                self.ats_kept.append(KeptRows(i, tokens.position, tokens.layout, batch, (frames, *grid)))
        return rearrange(tokens.layout.pad(self.norm(tokens.x)), "(b t) l d -> b t l d", t=frames)

    def _checkpointing(self) -> bool:
        return self.grad_checkpointing and torch.is_grad_enabled()


def apply_ats_xvit(model: XViT, configs: Dict[int, ATSConfig], mode: str = "frame") -> XViT:
    """Puts ATS into the blocks of an XViT named in ``configs``, in place."""
    # every block from the first ATS block on runs through attention_block
    for i, block in enumerate(model.blocks):
        if type(block) is not Block or type(block.attn) is not MixingAttention:
            raise ValueError(f"block {i} is a {type(block).__name__}; ATS supports XViT's Block with MixingAttention")
    if not isinstance(model, ATSXViTMixin):
        model.__class__ = type(f"ATS{type(model).__name__}", (ATSXViTMixin, type(model)), {})
    model.ats_blocks = configs
    model.ats_mode = mode
    model.ats_kept = []
    return model


def forward_macs(model: XViT, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
    """[B] float64 multiply-adds per clip of a forward that kept ``kept`` (empty: no ATS)."""
    frames, n = model.num_frames, model.patch_embed.num_patches
    counts = {r.block: 1 + r.count.double() for r in kept}  # [B, T] rows per frame, CLS included
    device = macs_device(kept)
    tokens = torch.full((batch_size, frames), float(1 + n), dtype=torch.float64, device=device)
    total = torch.full((batch_size,), float(frames * patch_embed_macs(model.patch_embed.proj, n)), dtype=torch.float64,
                       device=device)
    for i, block in enumerate(model.blocks):
        total += attention_block_macs(block, tokens, counts.get(i)).sum(1)
        tokens = counts.get(i, tokens)
    head = model.consensus  # a transformer over the T frame CLS tokens and its own CLS
    rows = torch.tensor(float(frames + 1), dtype=torch.float64, device=device)
    total += sum(attention_block_macs(block, rows, None) for block in head.temporal_encoder)
    return total + linear_macs(head.mlp_head)
