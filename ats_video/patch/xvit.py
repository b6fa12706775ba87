"""Space-time ATS in XViT, applied to an existing model.

Fayyaz et al. (ECCV 2022) put the Adaptive Token Sampler into image transformers. XViT (Bulat et
al., NeurIPS 2021) is an image transformer run on every frame, with its own CLS per frame, whose
attention mixes a slice of key and value channels in from frames t-1 and t+1 at the same spatial
position. Here each frame is sampled as DeiT's image is: the frame's CLS scores its own present
tokens (Eq. 3) and keeps its own set. ``apply_ats_xvit`` swaps the model's class for a subclass
whose ``forward_features`` passes the tokens through the blocks explicitly; parameters and
state-dict keys are untouched, so official checkpoints load before and after.

Tokens flow between blocks as ``Tokens`` of the ViT patch, one row of the batch per frame:
[(B T), L, D] with CLS first, a validity mask, and each row's spatial position. Token-wise work
runs on the valid rows only (``ats.pack``), so its cost follows the kept tokens.

The shift pairs tokens by spatial position, never by rank: a frame's keys and values are placed
on its [1 + S] position grid (zeros where a token was dropped), shifted in time there, and read
back at the frame's own positions. A dropped token thus contributes zeros to its neighbours'
shift, as at the clip's ends.

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

from typing import Dict, List, Optional

import torch
from einops import rearrange
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
    row_samples,
    select_shared,
    select_tokens,
    significance_scores,
    unpack,
)
from ats_video.models.xvit import Block, MixingAttention, XViT
from ats_video.tokens import KeptTokens, kept_record
from ats_video.patch.vit import Tokens


def shift_by_position(z: Tensor, patch_index: Tensor, valid: Optional[Tensor], attn: MixingAttention,
                      num_positions: int) -> Tensor:
    """XViT's temporal shift on per-frame padded rows, pairing tokens by spatial position.

    Args:
        z: [(B T), L, D] keys or values of each frame's rows, CLS first.
        patch_index: [(B T), L - 1] each patch row's position in the frame's grid, -1 at padding.
        valid: [(B T), L] bool, the real rows; None while every frame holds all its tokens in order.
        attn: the block's attention (its ``fold`` and shift group).
        num_positions: S, the patches per frame.
    Returns:
        [(B T), L, D]: channels ``[0, 2 fold)`` come from the token at the same position in frame
        t+1 (first slice) and t-1 (second slice), zero where that token is absent.
    """
    if valid is None:
        return attn.mix(z)
    c = 2 * attn.fold
    # slot 0 is CLS, slot s + 1 patch s; padding rows write zeros into one spare slot
    slot = torch.cat([torch.zeros_like(patch_index[:, :1]), patch_index + 1], dim=1)
    slot = slot.masked_fill(~valid, num_positions + 1)[..., None].expand(-1, -1, c)
    grid = z.new_zeros(z.shape[0], num_positions + 2, c).scatter(1, slot, z[..., :c] * valid[..., None])
    return torch.cat([attn.mix(grid).gather(1, slot), z[..., c:]], dim=-1)


def select_kept(scores: Tensor, valid: Optional[Tensor], num_frames: int, config: ATSConfig, mode: str) -> Tensor:
    """The kept patch rows of every frame.

    Args:
        scores: [(B T), L - 1] significance scores of each frame's patch rows.
        valid: [(B T), L] the real rows, or None.
        num_frames: T, frames per clip.
        config: budget and selector; mode: "frame" or "shared".
    Returns:
        [(B T), L - 1] bool.
    """
    patch_valid = None if valid is None else valid[:, 1:]
    if mode == "frame":
        return select_tokens(scores, patch_valid, config)
    # in this mode every frame of a clip holds the same positions in the same rows
    def by_frame(z: Optional[Tensor]) -> Optional[Tensor]:
        return None if z is None else rearrange(z, "(b t) l -> b t l", t=num_frames)

    return rearrange(select_shared(by_frame(scores), by_frame(patch_valid), config), "b t l -> (b t) l")


def block_forward(block: Block, tokens: Tokens, num_frames: int, num_positions: int,
                  config: Optional[ATSConfig], mode: str = "frame") -> Tokens:
    """One XViT block on per-frame padded rows; with ``config``, an ATS block (outputs for kept rows only)."""
    x, valid, patch_index = tokens.x, tokens.valid, tokens.patch_index
    attn = block.attn
    frames, length, _ = x.shape
    q, k, v = unpack(attn.qkv(block.norm1(pack(x, valid))), valid, (frames, length)).chunk(3, dim=-1)
    k, v = (shift_by_position(z, patch_index, valid, attn, num_positions) for z in (k, v))
    q, k, v = (rearrange(z, "n l (h c) -> n h l c", h=attn.num_heads) for z in (q, k, v))

    rows_valid = valid
    if config is not None:
        scores = significance_scores(cls_attention(q[:, :, 0], k, valid), v, 1)
        rows, rows_valid = kept_rows(select_kept(scores, valid, num_frames, config, mode), 1)
        q = gather_rows(q.transpose(1, 2), rows).transpose(1, 2)
        x = gather_rows(x, rows)
        patch_index = gather_rows(patch_index, (rows[:, 1:] - 1).clamp_min(0))
        patch_index = patch_index.masked_fill(~rows_valid[:, 1:], -1)

    dropout_p = attn.attn_drop.p if attn.training else 0.0
    out = rearrange(attention(q, k, v, valid, dropout_p), "n h l c -> n l (h c)")
    out = attn.proj_drop(attn.proj(pack(out, rows_valid)))
    frame = row_samples(x, rows_valid) if block.training else None  # stochastic depth draws per frame
    h = pack(x, rows_valid) + drop_path(block.drop_path, out, frame, frames)
    h = h + drop_path(block.drop_path, block.mlp(block.norm2(h)), frame, frames)
    return Tokens(unpack(h, rows_valid, x.shape[:2]), rows_valid, patch_index)


def presence(patch_index: Tensor, num_frames: int, num_positions: int) -> Tensor:
    """[(B T), L - 1] patch positions (-1 at padding) -> [B, T, S] bool grid of present tokens."""
    index = patch_index.masked_fill(patch_index < 0, num_positions)  # padding: a spare column
    grid = torch.zeros(len(index), num_positions + 1, dtype=torch.bool, device=index.device)
    return rearrange(grid.scatter(1, index, True)[:, :num_positions], "(b t) s -> b t s", t=num_frames)


class ATSXViTMixin:
    """Replaces XViT's ``forward_features`` by an ATS-aware one.

    ``forward_features`` returns [B, T, L', D], CLS first in every frame, then the frame's kept
    tokens and rows of padding up to the fullest frame (the head reads only CLS). After each
    forward, ``model.ats_kept`` lists a ``KeptTokens`` per ATS block: kept counts per frame
    and the kept tokens' (t, h, w).
    """

    ats_blocks: Dict[int, ATSConfig]
    ats_mode: str
    ats_kept: List[KeptTokens]

    def forward_features(self, x: Tensor) -> Tensor:
        batch, frames = x.shape[0], x.shape[2]
        x = self.embed(x)
        grid = self.patch_embed.grid_size
        s = grid[0] * grid[1]
        tokens = Tokens(x, None, torch.arange(s, device=x.device).expand(len(x), -1))
        kept = []
        for i, block in enumerate(self.blocks):
            config = self.ats_blocks.get(i)
            args = (block, tokens, frames, s, config, self.ats_mode)
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block_forward, *args, use_reentrant=False)
            else:
                tokens = block_forward(*args)
            if config is not None:
                kept.append(kept_record(i, presence(tokens.patch_index, frames, s), grid))
        self.ats_kept = kept
        return rearrange(self.norm(tokens.x), "(b t) l d -> b t l d", b=batch)


def apply_ats_xvit(model: XViT, configs: Dict[int, ATSConfig], mode: str = "frame") -> XViT:
    """Puts ATS into the blocks of an XViT named in ``configs``, in place."""
    # every block runs on padded rows once ATS is in, not only the ATS blocks
    for i, block in enumerate(model.blocks):
        if type(block) is not Block or type(block.attn) is not MixingAttention:
            raise ValueError(f"block {i} is a {type(block).__name__}; ATS supports XViT's Block with MixingAttention")
    if not isinstance(model, ATSXViTMixin):
        model.__class__ = type(f"ATS{type(model).__name__}", (ATSXViTMixin, type(model)), {})
    model.ats_blocks = configs
    model.ats_mode = mode
    model.ats_kept = []
    return model
