"""Space-time ATS in TimeSformer's spatial attention, applied to an existing model.

Fayyaz et al. (ECCV 2022) put the Adaptive Token Sampler into image transformers; here it works
in the spatial attention of chosen TimeSformer blocks, where the copy of CLS in each frame gives
that frame's significance scores (Eq. 3). ``apply_ats_timesformer`` swaps the model's class for a
subclass whose ``forward_features`` passes the tokens through the blocks explicitly; parameters
and state-dict keys are untouched, so official checkpoints load before and after.

The blocks before the first ATS block run as in the plain model. From there on, tokens flow
between blocks as :class:`VideoTokens`: the CLS token, the present patch tokens
packed as rows in (clip, frame, position) order, and a [B, T, S] grid saying which tokens are
present. Every token-wise operation (norms, projections, MLP) runs on the packed rows, so its
cost follows the sum of the kept tokens. Attention regroups the rows:
- spatial attention per frame, padded to the fullest frame, CLS first, padded keys at -inf;
- temporal attention per spatial position, over the frames where that position is present
  (tokens pair by position, never by rank: a dropped token is a masked key).

Two sampling modes:
- "frame": frame t's CLS copy scores the frame's present tokens and the frame keeps its own set,
  with budget K_t from ``k`` and the frame's present token count;
- "shared": each frame's scores, normalised within the frame, are summed over the frames, and
  one set of positions is kept in every frame, its budget from the per-frame token count.

NOTE: the paper reports TimeSformer with ATS but does not say how sampling meets divided
space-time attention, and the official ATS code has no video path; the two modes and the
temporal key mask are this project's design (see DESIGN.md, "Video").
NOTE: the CLS copies of all frames are one token, so its norm and projections run once per clip
rather than once per frame as in the official TimeSformer; the result is the same.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from timm.layers import Attention
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ats_video.ats import (
    ATSConfig,
    attention,
    cls_attention,
    drop_path,
    gather_rows,
    kept_rows,
    pack,
    select_shared,
    select_tokens,
    significance_scores,
    unpack,
)
from ats_video.models.timesformer import DividedSpaceTimeBlock, TimeSformer
from ats_video.tokens import KeptTokens, kept_record


@dataclass
class VideoTokens:
    """The tokens flowing between TimeSformer blocks.

    cls: [B, D] the CLS token.
    rows: [R, D] the present patch tokens, in (clip, frame, spatial position) order.
    present: [B, T, S] bool, which (frame, position) tokens are present; R = present.sum().
    """

    cls: Tensor
    rows: Tensor
    present: Tensor


def frame_layout(present: Tensor) -> Tuple[Tensor, Tensor]:
    """Where each packed row sits when tokens are grouped by frame, CLS first in every frame.

    Args:
        present: [B, T, S] bool.
    Returns:
        slot: [R] index of each row (in (clip, frame, position) order) into the flattened
            [(B T), 1 + L] layout, whose column 0 holds CLS; L is the fullest frame's count.
        valid: [(B T), L] bool, the present patch tokens of each frame, in order.
    """
    counts = rearrange(present.sum(-1), "b t -> (b t)")
    length = int(counts.max())
    rank = torch.arange(length, device=present.device)
    valid = rank < counts[:, None]
    frame = torch.arange(len(counts), device=present.device)[:, None]
    return (frame * (1 + length) + 1 + rank)[valid], valid


def time_layout(present: Tensor) -> Tuple[Tensor, Tensor]:
    """Where each packed row sits when tokens are grouped by spatial position over time.

    Args:
        present: [B, T, S] bool.
    Returns:
        slot: [R] index of each row (in (clip, frame, position) order) into the flattened
            [P, T] layout; P counts the (clip, position) pairs present in at least one frame.
        valid: [P, T] bool, the frames where each of those positions is present.
    """
    b, t, s = present.shape
    by_position = rearrange(present, "b t s -> (b s) t")
    used = by_position.any(-1)
    position = rearrange(used.cumsum(0) - 1, "(b s) -> b 1 s", b=b)
    frame = torch.arange(t, device=present.device)[:, None]
    slot = (position * t + frame).expand(b, t, s)[present]
    return slot, by_position[used]


def scatter_rows(rows: Tensor, slot: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """Packed rows [R, E] -> a zero-padded layout [*shape, E], row r at flat position slot[r].

    Unlike ``ats.unpack``, the target layout may hold a CLS column or regroup the rows (by
    frame, by position), which a mask over the packed order cannot describe.
    """
    out = rows.new_zeros(math.prod(shape), rows.shape[-1])
    out[slot] = rows
    return out.view(*shape, rows.shape[-1])


def _row_samples(present: Tensor) -> Tensor:
    """[R] the clip of each packed row."""
    counts = present.flatten(1).sum(-1)
    return torch.repeat_interleave(torch.arange(len(counts), device=present.device), counts)


def _heads(qkv: Tensor, attn: Attention) -> Tuple[Tensor, Tensor, Tensor]:
    q, k, v = rearrange(qkv, "n l (three h d) -> three n h l d", three=3, h=attn.num_heads)
    return attn.q_norm(q), attn.k_norm(k), v


def temporal_attention(attn: Attention, x: Tensor, present: Tensor) -> Tensor:
    """Attention over time at each spatial position, only over the frames where it is present.

    Args:
        attn: the block's ``temporal_attn``.
        x: [R, D] normalised packed rows.
        present: [B, T, S].
    Returns:
        [R, D] the attention output of every row, projected.
    """
    slot, valid = time_layout(present)
    q, k, v = _heads(scatter_rows(attn.qkv(x), slot, valid.shape), attn)
    dropout_p = attn.attn_drop.p if attn.training else 0.0
    out = rearrange(attention(q, k, v, valid, dropout_p), "p h t d -> (p t) (h d)")[slot]
    return attn.proj_drop(attn.proj(attn.norm(out)))


def select_kept(
    scores: Tensor, frame_valid: Tensor, present: Tensor, config: ATSConfig, mode: str
) -> Tensor:
    """The kept tokens of every frame, in the per-frame padded layout.

    Args:
        scores: [(B T), L] significance scores per frame (Eq. 3).
        frame_valid: [(B T), L] the frames' present tokens.
        present: [B, T, S].
        config: budget and selector; mode: "frame" or "shared".
    Returns:
        [(B T), L] bool, a subset of ``frame_valid``.
    """
    if mode == "frame":
        return select_tokens(scores, frame_valid, config)
    grid = scores.new_zeros(present.shape).masked_scatter(present, scores[frame_valid])
    keep = select_shared(grid, present, config)
    return torch.zeros_like(frame_valid).masked_scatter(frame_valid, keep[present])


def spatial_attention(
    block: DividedSpaceTimeBlock,
    cls: Tensor,
    rows: Tensor,
    present: Tensor,
    config: Optional[ATSConfig],
    mode: str,
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Attention within each frame, CLS copied into every frame; with ``config``, ATS.

    Args:
        block: the TimeSformer block; cls: [B, D]; rows: [R, D]; present: [B, T, S].
    Returns:
        cls_out: [B, D] the CLS output, averaged over the frames;
        rows_out: [R', D] the outputs of the kept rows (all R rows without ATS);
        keep: [R] bool, the kept rows, or None without ATS.
    """
    attn, t = block.attn, present.shape[1]
    slot, frame_valid = frame_layout(present)
    frames, length = frame_valid.shape
    qkv = scatter_rows(attn.qkv(block.norm1(rows)), slot, (frames, 1 + length))
    qkv[:, 0] = repeat(attn.qkv(block.norm1(cls)), "b e -> (b t) e", t=t)
    q, k, v = _heads(qkv, attn)
    key_valid = F.pad(frame_valid, (1, 0), value=True)

    query_valid, keep = key_valid, None
    if config is not None:
        scores = significance_scores(cls_attention(q[:, :, 0], k, key_valid), v, 1)
        kept = select_kept(scores, frame_valid, present, config, mode)
        query_rows, query_valid = kept_rows(kept, 1)
        q = gather_rows(q.transpose(1, 2), query_rows).transpose(1, 2)
        keep = kept[frame_valid]

    dropout_p = attn.attn_drop.p if attn.training else 0.0
    out = rearrange(attention(q, k, v, key_valid, dropout_p), "n h l d -> n l (h d)")
    out = torch.cat([out[:, 0], pack(out[:, 1:], query_valid[:, 1:])])
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    return reduce(out[:frames], "(b t) d -> b d", "mean", t=t), out[frames:], keep


def block_forward(
    block: DividedSpaceTimeBlock,
    tokens: VideoTokens,
    config: Optional[ATSConfig],
    mode: str = "frame",
) -> VideoTokens:
    """One TimeSformer block on packed tokens; with ``config``, ATS in its spatial attention."""
    cls, rows, present = tokens.cls, tokens.rows, tokens.present
    batch = len(cls)
    # stochastic depth needs each row's clip; it runs only in training
    sample = _row_samples(present) if block.training else None

    res = temporal_attention(block.temporal_attn, block.temporal_norm1(rows), present)
    rows = rows + block.temporal_fc(drop_path(block.drop_path, res, sample, batch))

    cls_res, rows_res, keep = spatial_attention(block, cls, rows, present, config, mode)
    if keep is not None:
        rows = rows[keep]
        present = present.masked_scatter(present, keep)
        sample = None if sample is None else sample[keep]
    if sample is not None:
        sample = torch.cat([torch.arange(batch, device=sample.device), sample])

    x = torch.cat([cls, rows])
    x = x + drop_path(block.drop_path, torch.cat([cls_res, rows_res]), sample, batch)
    x = x + drop_path(block.drop_path, block.mlp(block.norm2(x)), sample, batch)
    return VideoTokens(x[:batch], x[batch:], present)


class ATSTimeSformerMixin:
    """Replaces TimeSformer's ``forward_features`` by an ATS-aware one.

    ``forward_features`` returns [B, 1 + T*S, D] as the plain model does, with zero rows at the
    dropped tokens. After each forward, ``model.ats_kept`` lists a :class:`KeptTokens` per
    ATS block.
    """

    ats_blocks: Dict[int, ATSConfig]
    ats_mode: str
    ats_kept: List[KeptTokens]

    def forward_features(self, x: Tensor) -> Tensor:
        # until the first ATS block every token is present: those blocks run as in the plain model
        first = min(self.ats_blocks, default=len(self.blocks))
        x = self.forward_blocks(self.embed(x), self.blocks[:first])
        self.ats_kept = []
        if first == len(self.blocks):
            return self.norm(x)

        batch, t, grid = len(x), self.num_frames, self.patch_embed.grid_size
        present = x.new_ones(batch, t, grid[0] * grid[1], dtype=torch.bool)
        tokens = VideoTokens(x[:, 0], rearrange(x[:, 1:], "b l d -> (b l) d"), present)
        for i in range(first, len(self.blocks)):
            args = (self.blocks[i], tokens, self.ats_blocks.get(i), self.ats_mode)
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block_forward, *args, use_reentrant=False)
            else:
                tokens = block_forward(*args)
            if i in self.ats_blocks:
                self.ats_kept.append(kept_record(i, tokens.present, grid))
        x = self.norm(torch.cat([tokens.cls, tokens.rows]))
        present = rearrange(tokens.present, "b t s -> b (t s)")
        return torch.cat([x[:batch, None], unpack(x[batch:], present, present.shape)], dim=1)


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
