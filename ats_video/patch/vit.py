"""ATS in timm's VisionTransformer, DeiT and distilled DeiT, applied to an existing model.

``apply_ats_vit`` swaps the model's class for a subclass whose ``forward_features`` passes the
tokens through the blocks explicitly (rows, their validity, their original patch indices) and
runs the chosen blocks as ATS blocks (Fayyaz et al., ECCV 2022, Sec. 3). The blocks' parameters
and the state dict are untouched, so DeiT and timm checkpoints load strictly before and after.

All prefix tokens (CLS, DeiT's distillation token, register tokens) are always kept; CLS must
come first. Blocks after an ATS block see only the kept tokens, with padded rows masked out.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from einops import rearrange
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
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
    select_tokens,
    significance_scores,
    unpack,
)
from ats_video.tokens import KeptTokens, kept_record


@dataclass
class Tokens:
    """The token rows flowing between blocks.

    x: [B, L, D], the p prefix tokens first.
    valid: [B, L] bool mask of real rows, or None while every row is real.
    patch_index: [B, L - p] original patch index of each non-prefix row, -1 at padding.
    """

    x: Tensor
    valid: Optional[Tensor]
    patch_index: Tensor


def block_forward(block: Block, tokens: Tokens, num_prefix_tokens: int, config: Optional[ATSConfig]) -> Tokens:
    """One timm Block on padded token rows; with ``config``, an ATS block (outputs for kept rows only)."""
    x, valid, p = tokens.x, tokens.valid, num_prefix_tokens
    attn = block.attn
    batch, length, _ = x.shape
    qkv = unpack(attn.qkv(block.norm1(pack(x, valid))), valid, (batch, length))
    q, k, v = rearrange(qkv, "b l (three h d) -> three b h l d", three=3, h=attn.num_heads)
    q, k = attn.q_norm(q), attn.k_norm(k)

    rows_valid, patch_index = valid, tokens.patch_index
    if config is not None:
        scores = significance_scores(cls_attention(q[:, :, 0], k, valid), v, p)
        keep = select_tokens(scores, None if valid is None else valid[:, p:], config)
        rows, rows_valid = kept_rows(keep, p)
        q = gather_rows(q.transpose(1, 2), rows).transpose(1, 2)
        x = gather_rows(x, rows)
        patch_index = gather_rows(patch_index, (rows[:, p:] - p).clamp_min(0))
        patch_index = patch_index.masked_fill(~rows_valid[:, p:], -1)

    dropout_p = attn.attn_drop.p if block.training else 0.0
    out = rearrange(attention(q, k, v, valid, dropout_p), "b h l d -> b l (h d)")
    out = attn.proj_drop(attn.proj(attn.norm(pack(out, rows_valid))))
    # stochastic depth draws once per sample, not once per packed row
    sample = row_samples(x, rows_valid) if block.training else None
    h = pack(x, rows_valid) + drop_path(block.drop_path1, block.ls1(out), sample, batch)
    h = h + drop_path(block.drop_path2, block.ls2(block.mlp(block.norm2(h))), sample, batch)
    return Tokens(unpack(h, rows_valid, x.shape[:2]), rows_valid, patch_index)


def present(patch_index: Tensor, num_patches: int) -> Tensor:
    """[B, L] patch indices (-1 at padding) -> [B, 1, num_patches] bool grid of present tokens."""
    index = patch_index.masked_fill(patch_index < 0, num_patches)  # padding: a spare column
    grid = torch.zeros(len(index), num_patches + 1, dtype=torch.bool, device=index.device)
    return grid.scatter(1, index, True)[:, None, :num_patches]


class ATSVisionTransformerMixin:
    """Replaces ``forward_features`` of a timm VisionTransformer (or subclass) by an ATS-aware one.

    After each forward, ``model.ats_kept`` lists a :class:`KeptTokens` per ATS block.
    """

    ats_blocks: Dict[int, ATSConfig]
    ats_kept: List[KeptTokens]

    def forward_features(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("a model with ATS takes no attention mask: ATS makes its own")
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        p = self.num_prefix_tokens
        grid = self.patch_embed.grid_size
        batch, length, _ = x.shape
        index = torch.arange(length - p, device=x.device).expand(batch, -1)
        tokens = Tokens(x, None, index)
        kept = []
        for i, block in enumerate(self.blocks):
            config = self.ats_blocks.get(i)
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block_forward, block, tokens, p, config, use_reentrant=False)
            else:
                tokens = block_forward(block, tokens, p, config)
            if config is not None:
                kept.append(kept_record(i, present(tokens.patch_index, self.patch_embed.num_patches), grid))
        self.ats_kept = kept
        return self.norm(tokens.x)

    def forward_intermediates(self, *args, **kwargs):
        # timm's version runs its own block loop, which would silently skip ATS
        raise NotImplementedError("forward_intermediates is not available on a model with ATS")


def apply_ats_vit(model: VisionTransformer, configs: Dict[int, ATSConfig], mode: str = "frame") -> VisionTransformer:
    """Puts ATS into the blocks named in ``configs`` of a timm VisionTransformer, in place."""
    if model.cls_token is None or model.global_pool != "token":
        raise ValueError("ATS needs a CLS token read by the head (global_pool='token'); "
                         f"this model has global_pool={model.global_pool!r}")
    if not isinstance(model.patch_drop, torch.nn.Identity):
        raise ValueError("ATS does not support timm's patch dropout (patch_drop_rate > 0)")
    # every block runs through block_forward once ATS is in, not only the ATS blocks
    for i, block in enumerate(model.blocks):
        if type(block) is not Block or type(block.attn) is not Attention or block.attn.gate is not None:
            raise ValueError(
                f"block {i} is a {type(block).__name__} with {type(block.attn).__name__}; "
                "ATS supports timm's plain Block with its plain Attention"
            )
    if not isinstance(model, ATSVisionTransformerMixin):
        model.__class__ = type(f"ATS{type(model).__name__}", (ATSVisionTransformerMixin, type(model)), {})
    model.ats_blocks = configs
    model.ats_kept = []
    return model
