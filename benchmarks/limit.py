"""The speed limit of ATS in a timm ViT, for benchmarks only (not part of the library).

A ViT that keeps given numbers of tokens in given blocks with no selection work at all: block i
keeps the first ``counts[i]`` patch tokens of every image (and its prefix tokens). Keys and values
are computed for all the tokens entering the block, queries, attention outputs, projection and MLP
for the kept ones only, as in an ATS block. Given the ATS model's mean kept tokens per block on
the same batch, its time is what ATS would take if scoring and sampling cost nothing and every
image kept the mean: the time the project's ATS is measured against.
"""

from typing import Dict

import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn


class KeepFirst(nn.Module):
    """A timm ``Block`` that keeps the first ``keep`` rows (prefix tokens included)."""

    def __init__(self, block: nn.Module, keep: int):
        super().__init__()
        self.block, self.keep = block, keep

    def forward(self, x: Tensor) -> Tensor:
        block, attn = self.block, self.block.attn
        b, n, d = x.shape
        heads = attn.num_heads
        h = block.norm1(x)
        w, bias = attn.qkv.weight, attn.qkv.bias
        q = F.linear(h[:, : self.keep], w[:d], None if bias is None else bias[:d])
        kv = F.linear(h, w[d:], None if bias is None else bias[d:])
        q = q.view(b, self.keep, heads, -1).transpose(1, 2)
        k, v = kv.view(b, n, 2, heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(attn.q_norm(q), attn.k_norm(k), v)
        out = attn.proj(attn.norm(out.transpose(1, 2).reshape(b, self.keep, d)))
        x = x[:, : self.keep] + block.ls1(out)
        return x + block.ls2(block.mlp(block.norm2(x)))


def apply_kept_counts(model: VisionTransformer, counts: Dict[int, int]) -> VisionTransformer:
    """Makes block i of ``model`` keep ``counts[i]`` patch tokens per image, in place."""
    for i, count in counts.items():
        model.blocks[i] = KeepFirst(model.blocks[i], model.num_prefix_tokens + count)
    return model
