"""Token merging (ToMe) in TimeSformer's and XViT's spatial attention, applied to an existing
model: the alternative to ATS that merges similar tokens instead of dropping unimportant ones.

ToMe (Bolya et al., ICLR 2023; :mod:`ats_video.merge`) was written for image transformers;
Pollard and Wray put it into TimeSformer's divided space-time attention ("Video, How Do Your
Tokens Merge?", CVPR 2025 workshops, arXiv 2506.03885). Here it runs in the same blocks as ATS
would and on the same packed tokens (:class:`ats_video.tokens.Tokens`), from the first merging
block on:

- TimeSformer: temporal attention as with ATS (a sequence per clip and spatial position); then
  spatial attention per (clip, frame), CLS copied into every frame, with proportional
  attention; after its residual, every frame merges r of its patch tokens (the metric: the
  spatial keys averaged over heads); then the MLP.
- XViT: DeiT's block on a sequence per frame, keys and values mixed over time by position
  (:func:`ats_video.patch.xvit.shift_by_position`), proportional attention, r tokens of every
  frame merged after the attention's residual, then the MLP.

Every frame merges the same r tokens, so the frames of a batch keep equal lengths. A merged
token sits at the position of the token it was merged into; the positions merged away are
absent from their frame, exactly as dropped tokens are with ATS, so temporal attention and
XViT's shift pair tokens by position. Parameters and state dicts are untouched.

After each forward, ``ats_video.kept_tokens(model)`` reads the tokens each merging block left,
in the record ATS blocks use, and :func:`ats_video.flops.gflops_as_run` counts the model's work
with its own formula (``forward_macs``).

NOTE: proportional attention is used in spatial attention only. In temporal attention a key is
the token at the same position in another frame; the patches merged into it come from other
positions, which the plain model's temporal attention never mixes in, so there is nothing for
its size to stand for there.
NOTE: the merging metric in XViT is the mixed keys, the ones its attention uses (as ATS scores).
"""

from functools import partial
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ats_video.families import family_of
from ats_video.merge import merge_count, merge_tokens, proportional_qk
from ats_video.models.timesformer import DividedSpaceTimeBlock, TimeSformer
from ats_video.models.xvit import Block, MixingAttention, XViT
from ats_video.patch.common import (
    ats_attention, attention_block_macs, drop_path, grid_positions, linear_macs, macs_device, patch_embed_macs, qkv_heads,
)
from ats_video.patch.timesformer import ATSTimeSformerMixin, clip_positions, frame_groups, temporal_attention
from ats_video.patch.xvit import ATSXViTMixin, shift_by_position
from ats_video.tokens import KeptRows, KeptTokens, Layout, Tokens


def attend_and_merge(
    attn: nn.Module,
    qkv: Tuple[Tensor, Tensor, Tensor],
    layout: Layout,
    size: Optional[Tensor],
    residual: Callable[[Tensor], Tensor],
    tokens: Tokens,
    r: int,
) -> Tuple[Tokens, Optional[Tensor]]:
    """Attention of equal-length sequences (proportional once ``size`` is known), the block's
    residual, and ``r`` tokens of every sequence merged.

    Args:
        attn: the attention module (its dropout, norm, proj).
        qkv: [R, H, d] queries, keys and values of ``tokens``' rows.
        layout: equal-length sequences of those rows, CLS first in each.
        size: [R] the patches each row stands for, or None before the first merge (all ones).
        residual: (rows [R, D] attention output) -> the rows after the residual.
        tokens: the rows (x, positions) in ``layout``.
        r: tokens to merge away per sequence.
    Returns:
        The tokens left, a sequence each (same order), and their sizes (None while nothing has
        been merged).
    """
    q, k, v = qkv
    metric = k.mean(1)
    if size is not None:
        q, k = proportional_qk(q, k, size)
    out, _, _, _ = ats_attention(attn, q, k, v, layout, 1, None)
    x = residual(out)
    s, n = layout.num_seqs, layout.max_len
    if merge_count(n - 1, r) == 0:
        return Tokens(x, layout, tokens.position), size
    if size is None:
        size = x.new_ones(len(x))
    x, size, position = merge_tokens(
        x.view(s, n, -1), size.view(s, n), tokens.position.view(s, n, 3), metric.view(s, n, -1), r
    )
    return Tokens(x.flatten(0, 1), Layout.dense(s, x.shape[1], x.device), position.flatten(0, 1)), size.flatten()


def _merges(patches: Tensor, r: int) -> Tensor:
    """[B, T] 1.0 where a frame of ``patches`` patch tokens merges with r (there is a pair)."""
    return ((patches >= 2) & (r > 0)).double()


def _similarity_macs(patches: Tensor, channels: int) -> Tensor:
    """Multiply-adds of the similarity of sets A and B of frames of ``patches`` tokens."""
    return torch.ceil(patches / 2) * torch.floor(patches / 2) * channels


# ---------------------------------------------------------------- TimeSformer


def timesformer_block(
    block: DividedSpaceTimeBlock, tokens: Tokens, size: Optional[Tensor], frames: int, grid: Tuple[int, int], r: int
) -> Tuple[Tokens, Optional[Tensor]]:
    """One TimeSformer block on packed tokens (a sequence per clip) that merges ``r`` tokens of
    every frame after its spatial attention. ``size``: [R] the patches each row stands for, or
    None before the first merge. Returns the tokens and their sizes."""
    tokens = Tokens(temporal_attention(block, tokens, frames, grid), tokens.layout, tokens.position)
    clips, length = tokens.layout.num_seqs, tokens.layout.max_len
    if not tokens.layout.uniform or (length - 1) % frames:
        raise ValueError("token merging needs every frame to hold the same number of tokens")
    groups = Layout.dense(clips * frames, 1 + (length - 1) // frames, tokens.x.device)  # (clip, frame)
    index = frame_groups(tokens, frames, groups)
    clip = torch.div(groups.sequence_of_rows(), frames, rounding_mode="floor") if block.training else None
    rows = Tokens(tokens.x[index], groups, tokens.position[index])

    def residual(out: Tensor) -> Tensor:  # stochastic depth draws once per clip
        return rows.x + drop_path(block.drop_path, out, clip, clips)

    qkv = tuple(z[index] for z in qkv_heads(block.attn, block.norm1(tokens.x)))
    in_frames, size = attend_and_merge(block.attn, qkv, groups, None if size is None else size[index], residual, rows, r)
    # back to a sequence per clip: its CLS (the mean of the frames' copies), then every frame's patches
    n = in_frames.layout.max_len
    x = in_frames.x.view(clips, frames, n, -1)
    x = torch.cat([x[:, :, 0].mean(1, keepdim=True), rearrange(x[:, :, 1:], "b t n d -> b (t n) d")], dim=1)
    position = in_frames.position.view(clips, frames, n, 3)
    position = torch.cat([position[:, 0, :1], rearrange(position[:, :, 1:], "b t n c -> b (t n) c")], dim=1)
    if size is not None:
        size = size.view(clips, frames, n)
        size = torch.cat([size[:, 0, :1], rearrange(size[:, :, 1:], "b t n -> b (t n)")], dim=1).flatten()
    layout = Layout.dense(clips, x.shape[1], x.device)
    x = x.flatten(0, 1)
    clip = layout.sequence_of_rows() if block.training else None
    x = x + drop_path(block.drop_path, block.mlp(block.norm2(x)), clip, clips)
    return Tokens(x, layout, position.flatten(0, 1)), size


class ToMeTimeSformerMixin:
    """Replaces TimeSformer's ``forward_features`` by one that merges tokens.

    ``forward_features`` returns [B, L', D]: CLS, then the clip's tokens left (every clip of a
    batch keeps as many); the head reads only CLS.
    """

    tome_blocks: Dict[int, int]
    ats_kept: List[KeptRows]

    def forward_features(self, x: Tensor) -> Tensor:
        first = min(self.tome_blocks, default=len(self.blocks))
        x = self.forward_blocks(self.embed(x), self.blocks[:first])  # every token present: plain
        batch, length, _ = x.shape
        frames, grid = self.num_frames, self.patch_embed.grid_size
        position = clip_positions(frames, grid, x.device).repeat(batch, 1)
        tokens, size = Tokens(x.flatten(0, 1), Layout.dense(batch, length, x.device), position), None
        self.ats_kept = []
        for i in range(first, len(self.blocks)):
            args = (self.blocks[i], tokens, size, frames, grid, self.tome_blocks.get(i, 0))
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens, size = checkpoint(timesformer_block, *args, use_reentrant=False)
            else:
                tokens, size = timesformer_block(*args)
            if i in self.tome_blocks:
                self.ats_kept.append(KeptRows(i, tokens.position, tokens.layout, batch, (frames, *grid)))
        return tokens.layout.pad(self.norm(tokens.x))

    def forward_macs(self, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
        """[B] float64 multiply-adds per clip of a forward that left ``kept``."""
        d, frames, n = self.embed_dim, self.num_frames, self.patch_embed.num_patches
        block = self.blocks[0]
        temporal = 3 * d * d + linear_macs(block.temporal_attn.proj) + linear_macs(block.temporal_fc)
        mlp, proj, heads = linear_macs(block.mlp), linear_macs(block.attn.proj), block.attn.num_heads
        masks = {r.block: r.mask.flatten(2).double() for r in kept}  # [B, T, S]
        first = min(masks, default=len(self.blocks))  # no record: the plain model
        device = macs_device(kept)
        present = torch.ones(batch_size, frames, n, dtype=torch.float64, device=device)
        total = torch.full((batch_size,), float(frames * patch_embed_macs(self.patch_embed.proj, n)), dtype=torch.float64,
                           device=device)
        merged = torch.zeros(batch_size, dtype=torch.float64, device=device)  # 1 after a clip's first merge
        for i in range(len(self.blocks)):
            after = masks.get(i, present)
            rows, patches = present.sum((1, 2)), present.sum(2)  # [B], [B, T]
            total += rows * temporal + 2 * d * (present.sum(1) ** 2).sum(1)
            total += (frames * (1 + patches[:, 0]) if i < first else 1 + rows) * 3 * d * d
            # proportional attention adds a channel to queries and keys
            total += (2 * d + heads * merged) * ((1 + patches) ** 2).sum(1)
            merges = _merges(patches, self.tome_blocks.get(i, 0) if i in masks else 0)
            total += (merges * _similarity_macs(patches, d // heads)).sum(1)
            merged = torch.maximum(merged, merges.amax(1))
            total += (frames + rows) * proj + (1 + after.sum((1, 2))) * mlp
            present = after
        return total + linear_macs(self.head)


# ---------------------------------------------------------------- XViT


def xvit_block(
    block: Block, tokens: Tokens, size: Optional[Tensor], grid: Tuple[int, int], r: int
) -> Tuple[Tokens, Optional[Tensor]]:
    """One XViT block on packed tokens (a sequence per frame) that merges ``r`` tokens of every
    frame after its attention. ``size`` as in :func:`timesformer_block`."""
    if not tokens.layout.uniform:
        raise ValueError("token merging needs every frame to hold the same number of tokens")
    frames = tokens.layout.num_seqs
    sequence = tokens.layout.sequence_of_rows() if block.training else None

    def residual(out: Tensor) -> Tensor:  # stochastic depth draws once per frame
        return tokens.x + drop_path(block.drop_path1, block.ls1(out), sequence, frames)

    q, k, v = qkv_heads(block.attn, block.norm1(tokens.x))
    mix = partial(shift_by_position, tokens=tokens, attn=block.attn, grid=grid)
    tokens, size = attend_and_merge(block.attn, (q, mix(k), mix(v)), tokens.layout, size, residual, tokens, r)
    x, layout = tokens.x, tokens.layout
    sequence = layout.sequence_of_rows() if block.training else None
    x = x + drop_path(block.drop_path2, block.ls2(block.mlp(block.norm2(x))), sequence, frames)
    return Tokens(x, layout, tokens.position), size


class ToMeXViTMixin:
    """Replaces XViT's ``forward_features`` by one that merges tokens; it returns [B, T, L', D],
    CLS first in every frame (every frame keeps as many tokens)."""

    tome_blocks: Dict[int, int]
    ats_kept: List[KeptRows]

    def forward_features(self, x: Tensor) -> Tensor:
        batch, frames = x.shape[0], x.shape[2]
        x = self.embed(x)
        first = min(self.tome_blocks, default=len(self.blocks))
        checkpointing = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self.blocks[:first]:  # every token is present: the plain blocks
            x = checkpoint(block, x, use_reentrant=False) if checkpointing else block(x)
        grid = self.patch_embed.grid_size
        position = grid_positions(frames, grid, 1, x.device).repeat(batch, 1)
        tokens, size = Tokens(x.flatten(0, 1), Layout.dense(len(x), x.shape[1], x.device), position), None
        self.ats_kept = []
        for i in range(first, len(self.blocks)):
            args = (self.blocks[i], tokens, size, grid, self.tome_blocks.get(i, 0))
            tokens, size = checkpoint(xvit_block, *args, use_reentrant=False) if checkpointing else xvit_block(*args)
            if i in self.tome_blocks:
                self.ats_kept.append(KeptRows(i, tokens.position, tokens.layout, batch, (frames, *grid)))
        return rearrange(tokens.layout.pad(self.norm(tokens.x)), "(b t) l d -> b t l d", t=frames)

    def forward_macs(self, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
        """[B] float64 multiply-adds per clip of a forward that left ``kept``."""
        frames, n = self.num_frames, self.patch_embed.num_patches
        counts = {r.block: r.count.double() for r in kept}  # [B, T] patch tokens per frame
        device = macs_device(kept)
        patches = torch.full((batch_size, frames), float(n), dtype=torch.float64, device=device)
        total = torch.full((batch_size,), float(frames * patch_embed_macs(self.patch_embed.proj, n)), dtype=torch.float64,
                           device=device)
        merged = torch.zeros(batch_size, 1, dtype=torch.float64, device=device)  # 1 after a clip's first merge
        for i, block in enumerate(self.blocks):
            d, heads = block.attn.qkv.in_features, block.attn.num_heads
            after = counts.get(i, patches)
            rows = 1 + patches
            total += (rows * (3 * d * d + linear_macs(block.attn.proj)) + (2 * d + heads * merged) * rows**2).sum(1)
            merges = _merges(patches, self.tome_blocks.get(i, 0) if i in counts else 0)
            total += (merges * _similarity_macs(patches, d // heads)).sum(1)
            merged = torch.maximum(merged, merges.amax(1, keepdim=True))
            total += ((1 + after) * linear_macs(block.mlp)).sum(1)
            patches = after
        head = self.consensus  # a transformer over the T frame CLS tokens and its own CLS
        rows = torch.tensor(float(frames + 1), dtype=torch.float64, device=device)
        total += sum(attention_block_macs(block, rows, None) for block in head.temporal_encoder)
        return total + linear_macs(head.mlp_head)


# ---------------------------------------------------------------- applying it

_MIXINS = ((TimeSformer, ToMeTimeSformerMixin, DividedSpaceTimeBlock), (XViT, ToMeXViTMixin, Block))


def apply_tome(model: nn.Module, blocks: Optional[Iterable[int]] = None, r: int = 1) -> nn.Module:
    """Puts token merging into the given 0-indexed ``blocks`` of a TimeSformer or an XViT, in
    place: each of those blocks merges ``r`` tokens of every frame (capped at half the frame's
    tokens). Default blocks: ATS's (TimeSformer 3-5, XViT 3 to the last)."""
    if isinstance(model, (ATSTimeSformerMixin, ATSXViTMixin)):
        raise ValueError("this model has ATS; token merging is put into a plain model")
    mixin, block_type = next(((m, b) for t, m, b in _MIXINS if isinstance(model, t)), (None, None))
    if mixin is None:
        raise TypeError(f"token merging supports TimeSformer and XViT, not {type(model).__name__}")
    if isinstance(r, bool) or not isinstance(r, int) or r < 0:
        raise ValueError(f"token merging's r must be an integer >= 0, got {r!r}")
    depth = len(model.blocks)
    blocks = family_of(model).default_blocks(depth) if blocks is None else tuple(sorted(set(blocks)))
    for i in blocks:
        if not 0 <= i < depth:
            raise ValueError(f"token merging block {i} out of range: the model has blocks 0..{depth - 1}")
    for i, block in enumerate(model.blocks):
        if type(block) is not block_type or (block_type is Block and type(block.attn) is not MixingAttention):
            raise ValueError(f"block {i} is a {type(block).__name__}; token merging supports {block_type.__name__}")
    if not isinstance(model, mixin):
        model.__class__ = type(f"ToMe{type(model).__name__}", (mixin, type(model)), {})
    model.tome_blocks = {i: r for i in blocks}
    model.ats_kept = []
    return model
