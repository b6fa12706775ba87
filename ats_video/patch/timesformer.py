"""Space-time ATS in TimeSformer's spatial attention, applied to an existing model.

Fayyaz et al. (ECCV 2022) put the Adaptive Token Sampler into image transformers; here it works
in the spatial attention of chosen TimeSformer blocks, where the copy of CLS in each frame gives
that frame's significance scores (Eq. 3). ``apply_ats_timesformer`` swaps the model's class for a
subclass whose ``forward_features`` passes the tokens through the blocks explicitly; parameters
and state-dict keys are untouched, so official checkpoints load before and after.

The blocks before the first ATS block run as in the plain model. From there on, tokens flow
between blocks packed (:class:`ats_video.tokens.Tokens`), a sequence per clip: its CLS token,
then its present patch tokens in (frame, position) order. Token-wise work (norms, projections,
MLP) runs on those rows, so its cost follows the sum of the kept tokens. Attention regroups the
rows into other sequences and runs through :func:`ats_video.tokens.attention`:
- temporal attention: a sequence per (clip, spatial position), over the frames where that
  position is present (tokens pair by position, never by rank: a dropped token is simply not
  there);
- spatial attention: a sequence per (clip, frame), CLS first, and there the ATS step
  (:func:`ats_video.patch.common.ats_attention`).

Two sampling modes:
- "frame": frame t's CLS copy scores the frame's present tokens and the frame keeps its own set,
  with budget K_t from ``k`` and the frame's present token count;
- "shared": each frame's scores, normalised within the frame, are summed over the frames, and
  one set of positions is kept in every frame, its budget from the per-frame token count.

NOTE: the paper reports TimeSformer with ATS but does not say how sampling meets divided
space-time attention, and the official ATS code has no video path; the two modes and the
temporal grouping are this project's design (see DESIGN.md, "Video").
NOTE: the CLS token is one row per clip, so its norm and qkv run once per clip rather than once
per frame as in the official TimeSformer; the result is the same.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ats_video.ats import ATSConfig, SharedGrid
from ats_video.models.timesformer import DividedSpaceTimeBlock, TimeSformer
from ats_video.patch.common import ats_attention, drop_path, linear_macs, macs_device, patch_embed_macs, qkv_heads
from ats_video.tokens import KeptRows, KeptTokens, Layout, Tokens, attention, true_indices


def time_groups(tokens: Tokens, frames: int, grid: Tuple[int, int]) -> Tuple[Tensor, Layout]:
    """The patch rows grouped by (clip, spatial position), each group in frame order.

    Args:
        tokens: a sequence per clip, CLS first, patches in (t, h, w) order.
        frames: T; grid: (h, w), a frame's patch grid.
    Returns:
        index: [R_patch] the rows of ``tokens`` in (clip, position, frame) order;
        layout: a sequence per (clip, position), T rows wide; a position absent from every frame
            is an empty sequence (so that no length needs reading from the device).
    """
    layout, position, s = tokens.layout, tokens.position, grid[0] * grid[1]
    if layout.uniform and layout.max_len == 1 + frames * s:  # every token present
        rows = torch.arange(layout.num_rows, device=position.device).view(layout.num_seqs, layout.max_len)[:, 1:]
        index = rearrange(rows, "b (t s) -> (b s t)", t=frames)
        return index, Layout.dense(layout.num_seqs * s, frames, position.device)
    patch = true_indices(position[:, 0] >= 0, layout.num_rows - layout.num_seqs)  # all but CLS
    key = layout.sequence_of_rows()[patch] * s + position[patch, 1] * grid[1] + position[patch, 2]
    order = torch.sort(key, stable=True).indices  # stable: frames stay in order within a group
    counts = torch.zeros(layout.num_seqs * s, dtype=torch.long, device=key.device).index_add_(0, key, torch.ones_like(key))
    return patch[order], Layout.from_lengths(counts, frames, len(patch))


def temporal_attention(block: DividedSpaceTimeBlock, tokens: Tokens, frames: int, grid: Tuple[int, int]) -> Tensor:
    """The temporal residual branch: each patch token attends over the frames of its position.

    Returns:
        [R, D] new rows: patch rows + temporal_fc(attention output), CLS rows unchanged.
    """
    attn = block.temporal_attn
    index, layout = time_groups(tokens, frames, grid)
    q, k, v = qkv_heads(attn, block.temporal_norm1(tokens.x[index]))
    dropout_p = attn.attn_drop.p if attn.training else 0.0
    out = attention(q, k, v, layout, layout, dropout_p).flatten(1)
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    clip = tokens.layout.sequence_of_rows()[index] if block.training else None  # drop per clip
    # the official order: stochastic depth before temporal_fc, whose bias is always added
    res = block.temporal_fc(drop_path(block.drop_path, out, clip, tokens.layout.num_seqs))
    return tokens.x.index_add(0, index, res.to(tokens.x.dtype))  # under autocast res may be half


def frame_groups(tokens: Tokens, frames: int, groups: Layout) -> Tensor:
    """The rows grouped by (clip, frame), each group its clip's CLS then the frame's patches.

    Args:
        tokens: a sequence per clip, CLS first, patches in (t, h, w) order.
        frames: T.
        groups: a sequence per (clip, frame), 1 + the frame's patch rows long.
    Returns:
        [R_frame] the rows of ``tokens`` in the order of ``groups`` (a clip's CLS row once per
        frame).
    """
    layout, position = tokens.layout, tokens.position
    rows = true_indices(position[:, 0] >= 0, layout.num_rows - layout.num_seqs)  # all but CLS
    frame = layout.sequence_of_rows()[rows] * frames + position[rows, 0]  # in (clip, frame) order
    counts = groups.lengths - 1
    first = groups.offsets[:-1] + 1 - (counts.cumsum(0) - counts)  # + rank among patch rows
    index = torch.empty(groups.num_rows, dtype=torch.long, device=position.device)
    index[first[frame] + torch.arange(len(rows), device=rows.device)] = rows
    index[groups.offsets[:-1]] = layout.offsets[:-1].repeat_interleave(frames)
    return index


def spatial_attention(
    block: DividedSpaceTimeBlock, tokens: Tokens, groups: Layout, frames: int, grid: Tuple[int, int],
    config: Optional[ATSConfig], mode: str,
) -> Tuple[Tensor, Optional[Tensor], Layout, Layout]:
    """Attention within each frame, CLS copied into every frame; with ``config``, ATS.

    Args:
        groups: the frames of ``tokens``, a sequence per (clip, frame) (see :func:`frame_groups`).
    Returns:
        res: [R', D] the residual branch of the kept rows in clip order, CLS first in every
            clip (a clip's CLS output is the mean of its frames' CLS outputs);
        rows: [R'] the kept rows of ``tokens``, or None when every row is kept;
        layout: their sequences, one per clip;
        groups: their frames, a sequence per (clip, frame).
    """
    attn = block.attn
    index = frame_groups(tokens, frames, groups)
    q, k, v = (z[index] for z in qkv_heads(attn, block.norm1(tokens.x)))
    shared = None
    if mode == "shared":
        position = tokens.position[index]
        slot = torch.where(position[:, 0] >= 0, position[:, 1] * grid[1] + position[:, 2], -1)
        shared = SharedGrid(frames, slot, grid[0] * grid[1])
    clips = tokens.layout.num_seqs
    out, kept, out_groups, lengths = ats_attention(attn, q, k, v, groups, 1, config, shared)
    # out holds a group per (clip, frame), CLS first; in clip order the frames' patch rows follow
    # one another and a clip's CLS rows become one: patch row j of frame f goes to j - f + clip
    layout = tokens.layout
    if kept is not None:  # a clip's rows: its frames' rows, CLS once
        longest = max(sum(lengths[c * frames : (c + 1) * frames]) for c in range(clips)) - frames + 1
        clip_lengths = (out_groups.lengths.view(clips, frames) - 1).sum(1) + 1
        layout = Layout.from_lengths(clip_lengths, longest, out_groups.num_rows - clips * (frames - 1))
    frame = out_groups.sequence_of_rows()
    dest = torch.arange(len(out), device=out.device) - frame + torch.div(frame, frames, rounding_mode="floor")
    cls, cls_dest = out_groups.offsets[:-1], layout.offsets[:-1]
    dest[cls] = cls_dest.repeat_interleave(frames)  # every CLS copy lands on its clip's CLS row
    res = out.new_empty(layout.num_rows, out.shape[1])
    res[dest] = out
    res[cls_dest] = out[cls].view(clips, frames, out.shape[1]).mean(1)  # written after the copies
    if kept is None:
        return res, None, layout, out_groups
    rows = torch.empty(layout.num_rows, dtype=torch.long, device=out.device)
    rows[dest] = index[kept]
    return res, rows, layout, out_groups


def block_forward(
    block: DividedSpaceTimeBlock,
    tokens: Tokens,
    groups: Layout,
    frames: int,
    grid: Tuple[int, int],
    config: Optional[ATSConfig],
    mode: str = "frame",
) -> Tuple[Tokens, Layout]:
    """One TimeSformer block on packed tokens; with ``config``, ATS in its spatial attention.

    ``groups`` are the frames of ``tokens`` (a sequence per (clip, frame)); returns the tokens
    after the block and their frames.
    """
    tokens = Tokens(temporal_attention(block, tokens, frames, grid), tokens.layout, tokens.position)
    tokens, groups = _spatial_residual(block, tokens, groups, frames, grid, config, mode)
    clip = tokens.layout.sequence_of_rows() if block.training else None  # stochastic depth per clip
    x = tokens.x + drop_path(block.drop_path, block.mlp(block.norm2(tokens.x)), clip, tokens.layout.num_seqs)
    return Tokens(x, tokens.layout, tokens.position), groups


def _spatial_residual(
    block: DividedSpaceTimeBlock, tokens: Tokens, groups: Layout, frames: int, grid: Tuple[int, int],
    config: Optional[ATSConfig], mode: str,
) -> Tuple[Tokens, Layout]:
    """The kept rows after spatial attention and its residual, and their frames (a function of
    its own so that the branch's buffers are freed before the MLP runs)."""
    res, rows, layout, groups = spatial_attention(block, tokens, groups, frames, grid, config, mode)
    x, position = tokens.x, tokens.position
    if rows is not None:
        x, position = x[rows], position[rows]
    clip = layout.sequence_of_rows() if block.training else None  # stochastic depth per clip
    return Tokens(x + drop_path(block.drop_path, res, clip, layout.num_seqs), layout, position), groups


def clip_positions(frames: int, grid: Tuple[int, int], device: torch.device) -> Tensor:
    """[1 + T * h * w, 3] (t, h, w) of a clip's rows: CLS (-1), then patches in (t, h, w) order."""
    h, w = grid
    t, y, x = torch.meshgrid(
        torch.arange(frames, device=device), torch.arange(h, device=device), torch.arange(w, device=device),
        indexing="ij",
    )
    patches = torch.stack([t, y, x], dim=-1).view(-1, 3)
    return torch.cat([patches.new_full((1, 3), -1), patches])


class ATSTimeSformerMixin:
    """Replaces TimeSformer's ``forward_features`` by an ATS-aware one.

    ``forward_features`` returns [B, 1 + T*S, D] as the plain model does, with zero rows at the
    dropped tokens. After each forward, ``ats_video.kept_tokens(model)`` reads what each ATS
    block kept.
    """

    ats_blocks: Dict[int, ATSConfig]
    ats_mode: str
    ats_kept: List[KeptRows]

    def forward_features(self, x: Tensor) -> Tensor:
        # until the first ATS block every token is present: those blocks run as in the plain model
        first = min(self.ats_blocks) if self.ats_blocks else len(self.blocks)
        x = self.forward_blocks(self.embed(x), self.blocks[:first])
        self.ats_kept = []
        if first == len(self.blocks):
            return self.norm(x)
        batch, length, _ = x.shape
        frames, grid = self.num_frames, self.patch_embed.grid_size
        position = clip_positions(frames, grid, x.device).repeat(batch, 1)
        tokens = Tokens(x.flatten(0, 1), Layout.dense(batch, length, x.device), position)
        groups = Layout.dense(batch * frames, 1 + grid[0] * grid[1], x.device)  # (clip, frame)
        for i in range(first, len(self.blocks)):
            args = (self.blocks[i], tokens, groups, frames, grid, self.ats_blocks.get(i), self.ats_mode)
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens, groups = checkpoint(block_forward, *args, use_reentrant=False)
            else:
                tokens, groups = block_forward(*args)
            if i in self.ats_blocks:
                self.ats_kept.append(KeptRows(i, tokens.position, tokens.layout, batch, (frames, *grid)))
        # back to the plain layout [B, 1 + T*S, D], zeros at dropped tokens
        position = tokens.position
        in_clip = torch.where(position[:, 0] >= 0, 1 + (position[:, 0] * grid[0] + position[:, 1]) * grid[1] + position[:, 2], 0)
        slot = tokens.layout.sequence_of_rows() * length + in_clip
        out = x.new_zeros(batch * length, x.shape[-1])
        out[slot] = self.norm(tokens.x)
        return out.view(batch, length, x.shape[-1])


def apply_ats_timesformer(
    model: TimeSformer, configs: Dict[int, ATSConfig], mode: str = "frame"
) -> TimeSformer:
    """Puts ATS into the spatial attention of the blocks named in ``configs``, in place."""
    # every block after the first ATS block runs on packed tokens, not only the ATS blocks
    for i, block in enumerate(model.blocks):
        if (
            type(block) is not DividedSpaceTimeBlock
            or getattr(block.attn, "gate", None) is not None
        ):
            raise ValueError(
                f"block {i} is a {type(block).__name__}; ATS supports DividedSpaceTimeBlock "
                "with timm's plain Attention"
            )
    if not isinstance(model, ATSTimeSformerMixin):
        model.__class__ = type(f"ATS{type(model).__name__}", (ATSTimeSformerMixin, type(model)), {})
    model.ats_blocks = configs
    model.ats_mode = mode
    model.ats_kept = []
    return model


def forward_macs(model: TimeSformer, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
    """[B] float64 multiply-adds per clip of a forward that kept ``kept`` (empty: no ATS).

    The blocks before the first ATS block are the plain model's (CLS copied into every frame);
    from there on every present token is a row (CLS once per clip) and attention runs over the
    present tokens only.
    """
    d, frames, n = model.embed_dim, model.num_frames, model.patch_embed.num_patches
    block = model.blocks[0]
    temporal = 3 * d * d + linear_macs(block.temporal_attn.proj) + linear_macs(block.temporal_fc)
    mlp, proj = linear_macs(block.mlp), linear_macs(block.attn.proj)
    masks = {r.block: r.mask.flatten(2).double() for r in kept}  # [B, T, S]
    first = min(masks, default=len(model.blocks))
    device = macs_device(kept)
    present = torch.ones(batch_size, frames, n, dtype=torch.float64, device=device)
    total = torch.full((batch_size,), float(frames * patch_embed_macs(model.patch_embed.proj, n)), dtype=torch.float64,
                       device=device)
    for i in range(len(model.blocks)):
        after = masks.get(i, present)
        rows, kept_rows = present.sum((1, 2)), after.sum((1, 2))
        in_frame, out_frame = 1 + present.sum(2), 1 + after.sum(2)  # [B, T], CLS included
        # temporal: qkv, proj and temporal_fc of every patch row; attention within each position
        total += rows * temporal + 2 * d * (present.sum(1) ** 2).sum(1)
        # spatial: qkv (the plain blocks compute CLS in every frame); attention per frame
        total += (frames * in_frame[:, 0] if i < first else 1 + rows) * 3 * d * d
        total += 2 * d * (out_frame * in_frame).sum(1)
        if i in masks:
            total += d * in_frame.sum(1)  # the CLS attention rows that score the tokens
        total += (frames + kept_rows) * proj + (1 + kept_rows) * mlp  # CLS projected per frame
        present = after
    return total + linear_macs(model.head)
