"""Token merging (ToMe) in a timm ViT, for side-by-side benchmarks only (not part of the library).

Written here from the paper: Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023
(arXiv 2210.09461), Sec. 3. In every block, between attention and MLP, r tokens are merged away
by bipartite soft matching: the tokens are split alternately into sets A and B, each token of
A is matched to its most similar token of B (cosine similarity of the attention keys, averaged
over heads), the r most similar pairs are merged by a size-weighted average, and CLS is never
merged. Attention is proportional: each key's logit gets log(size of its token).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor


def _attention(block, x: Tensor, size: Tensor) -> Tuple[Tensor, Tensor]:
    """The block's attention with proportional attention; returns its output and the keys
    averaged over heads (the merging metric)."""
    attn = block.attn
    b, n, _ = x.shape
    q, k, v = attn.qkv(x).view(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    bias = size.log()[:, None, None, :, 0]  # [B, 1, 1, N]: log size of each key
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
    out = attn.proj(out.transpose(1, 2).reshape(b, n, -1))
    return out, k.mean(1)


def _merge(x: Tensor, size: Tensor, metric: Tensor, r: int) -> Tuple[Tensor, Tensor]:
    """Merges r tokens of every sample by bipartite soft matching (CLS, row 0, is kept)."""
    r = min(r, (x.shape[1] - 1) // 2)
    if r <= 0:
        return x, size
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    similarity = a @ b.transpose(1, 2)
    similarity[:, 0] = -float("inf")  # CLS (the first token of A) is never merged
    best, match = similarity.max(-1)
    order = best.argsort(-1, descending=True)[..., None]
    merged = order[:, :r]
    kept = order[:, r:].sort(dim=1).values  # in their original order: CLS stays first
    target = match[..., None].gather(1, merged)

    def combine(z: Tensor) -> Tensor:
        za, zb = z[:, ::2], z[:, 1::2]
        channels = z.shape[-1]
        source = za.gather(1, merged.expand(-1, -1, channels))
        zb = zb.scatter_add(1, target.expand(-1, -1, channels), source)
        return torch.cat([za.gather(1, kept.expand(-1, -1, channels)), zb], dim=1)

    total, size = combine(x * size), combine(size)
    return total / size, size


class ToMeVisionTransformer(VisionTransformer):
    """A timm VisionTransformer that merges ``tome_r`` tokens in every block."""

    tome_r: int

    def forward_features(self, x: Tensor, attn_mask=None, is_causal: bool = False) -> Tensor:
        x = self.norm_pre(self._pos_embed(self.patch_embed(x)))
        size = x.new_ones(*x.shape[:2], 1)
        for block in self.blocks:
            out, metric = _attention(block, block.norm1(x), size)
            x = x + block.ls1(out)
            x, size = _merge(x, size, metric, self.tome_r)
            x = x + block.ls2(block.mlp(block.norm2(x)))
        return self.norm(x)


def apply_tome(model: VisionTransformer, r: int) -> VisionTransformer:
    """Puts ToMe with r merged tokens per block into a plain timm ViT / DeiT, in place."""
    if model.num_prefix_tokens != 1:
        raise ValueError("this ToMe supports models whose only prefix token is CLS")
    model.__class__ = ToMeVisionTransformer
    model.tome_r = r
    return model
