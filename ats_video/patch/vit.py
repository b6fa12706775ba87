"""ATS in timm's VisionTransformer, DeiT and distilled DeiT, applied to an existing model.

``apply_ats_vit`` swaps the model's class for a subclass whose ``forward_features`` runs the
blocks before the first ATS block as timm does, then carries the tokens packed
(:class:`ats_video.tokens.Tokens`, a sequence per image) through the rest, the chosen blocks
being ATS blocks (Fayyaz et al., ECCV 2022, Sec. 3). The blocks' parameters and the state dict
are untouched, so DeiT and timm checkpoints load strictly before and after.

All prefix tokens (CLS, DeiT's distillation token, register tokens) are always kept; CLS must
come first.
"""

from typing import Dict, List, Sequence

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ats_video.ats import ATSConfig
from ats_video.patch.common import (
    attention_block, attention_block_macs, grid_positions, linear_macs, macs_device, patch_embed_macs,
)
from ats_video.tokens import KeptRows, KeptTokens, Layout, Tokens


class ATSVisionTransformerMixin:
    """Replaces ``forward_features`` of a timm VisionTransformer (or subclass) by an ATS-aware one.

    ``forward_features`` returns [B, L', D]: each image's prefix and kept tokens, then zero rows
    up to the image that kept most (the head reads only the prefix tokens). After each forward,
    ``ats_video.kept_tokens(model)`` reads what each ATS block kept.
    """

    ats_blocks: Dict[int, ATSConfig]
    ats_kept: List[KeptRows]

    def forward_features(self, x: Tensor, attn_mask=None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("a model with ATS takes no attention mask: ATS makes its own")
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        first = min(self.ats_blocks) if self.ats_blocks else len(self.blocks)
        for block in self.blocks[:first]:  # every token is present: timm's own blocks
            x = checkpoint(block, x, use_reentrant=False) if self._checkpointing() else block(x)
        batch, length, _ = x.shape
        p, grid = self.num_prefix_tokens, self.patch_embed.grid_size
        position = grid_positions(1, grid, p, x.device).repeat(batch, 1)
        tokens = Tokens(x.flatten(0, 1), Layout.dense(batch, length, x.device), position)
        self.ats_kept = []
        for i in range(first, len(self.blocks)):
            args = (self.blocks[i], tokens, p, self.ats_blocks.get(i))
            tokens = checkpoint(attention_block, *args, use_reentrant=False) if self._checkpointing() else attention_block(*args)
            if i in self.ats_blocks:
                self.ats_kept.append(KeptRows(i, tokens.position, tokens.layout, batch, (1, *grid)))
        return tokens.layout.pad(self.norm(tokens.x))

    def _checkpointing(self) -> bool:
        return self.grad_checkpointing and torch.is_grad_enabled()

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
    # every block from the first ATS block on runs through attention_block
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


def forward_macs(model: VisionTransformer, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
    """[B] float64 multiply-adds per image of a forward that kept ``kept`` (empty: no ATS)."""
    p, n = model.num_prefix_tokens, model.patch_embed.num_patches
    counts = {r.block: p + r.count[:, 0].double() for r in kept}
    tokens = torch.full((batch_size,), float(p + n), dtype=torch.float64, device=macs_device(kept))
    total = torch.full_like(tokens, patch_embed_macs(model.patch_embed.proj, n))
    for i, block in enumerate(model.blocks):
        total += attention_block_macs(block, tokens, counts.get(i))
        tokens = counts.get(i, tokens)
    heads = [model.head, getattr(model, "head_dist", None)]  # DeiT's distillation head too
    return total + sum(linear_macs(h) for h in heads if h is not None)
