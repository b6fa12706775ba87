"""Token merging (ToMe) as pure functions on tensors: the alternative to ATS that merges tokens
instead of dropping them.

Follows Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023 (arXiv 2210.09461),
Sec. 3. In a merging block, between attention and MLP, r tokens of every sequence are merged
away by bipartite soft matching: the tokens are split alternately into sets A and B, each token
of A is matched to its most similar token of B (cosine similarity of the attention keys,
averaged over heads), and the r best-matched tokens of A are averaged into their matches,
weighted by the number of patches each token already stands for (its size). Attention is then
proportional: each key's logit gets ``log(size)``, as if the key were there ``size`` times.

:func:`merge_tokens` works on sequences of equal length, ``[S, n, ...]``: every sequence merges
the same r tokens, so sequences that start equal (the frames of clips, the images of a batch)
stay equal, and each sequence's result is computed on its own. :mod:`ats_video.patch.tome` puts
it into TimeSformer's and XViT's spatial attention.

NOTE: prefix tokens (CLS) are left out of the matching rather than matched with a similarity of
-inf; the non-prefix tokens alternate A, B, A, ... from the first one. r is capped at half the
non-prefix tokens, as ToMe caps it.
NOTE: the merged tokens stay in their original order, each at the position of the token of B it
was merged into, so that the video rule "temporal operations pair tokens by spatial position"
(DESIGN.md) holds for merged tokens as for kept ones.
"""

import math
from typing import Tuple

import torch
from torch import Tensor


def proportional_qk(q: Tensor, k: Tensor, size: Tensor) -> Tuple[Tensor, Tensor]:
    """Queries and keys whose scaled dot products are the originals' plus ``log(size)`` of the
    key: ToMe's proportional attention, ``softmax(q k^T / sqrt(d) + log s)``, through any
    scaled dot-product attention kernel (its scale becomes ``1 / sqrt(d + 1)``).

    Args:
        q, k: [R, H, d] query and key rows.
        size: [R] the patches each key row stands for.
    Returns:
        q, k: [R, H, d + 1].
    """
    d = q.shape[-1]
    log_size = size.log().to(k.dtype)[:, None, None].expand(*k.shape[:-1], 1)
    q = torch.cat([q * math.sqrt((d + 1) / d), q.new_ones(*q.shape[:-1], 1)], dim=-1)
    return q, torch.cat([k, log_size * math.sqrt(d + 1)], dim=-1)


def merge_count(num_tokens: int, r: int) -> int:
    """The tokens a merge of ``r`` really removes from ``num_tokens`` non-prefix tokens: r,
    capped at half of them (ToMe's cap)."""
    return max(0, min(r, num_tokens // 2))


def merge_tokens(
    x: Tensor, size: Tensor, position: Tensor, metric: Tensor, r: int, num_prefix_tokens: int = 1
) -> Tuple[Tensor, Tensor, Tensor]:
    """Bipartite soft matching: merges ``r`` tokens away from every sequence.

    Args:
        x: [S, n, D] tokens, each sequence's ``num_prefix_tokens`` prefix tokens first (never
            merged).
        size: [S, n] the patches each token stands for (ones before any merge).
        position: [S, n, 3] long (t, h, w) of each token (-1 for prefix tokens).
        metric: [S, n, c] what similarity is measured on (ToMe: the keys averaged over heads).
        r: tokens to merge away per sequence, capped by :func:`merge_count`.
        num_prefix_tokens: p.
    Returns:
        x [S, n - r', D], size [S, n - r'] and position [S, n - r', 3] of the tokens left, in
        their original order; a merged token is the size-weighted mean of the tokens merged
        into it, at the position of the token of B it was merged into.
    """
    s, n, channels = x.shape
    p = num_prefix_tokens
    r = merge_count(n - p, r)
    if r == 0:
        return x, size, position
    metric = metric[:, p:] / metric[:, p:].norm(dim=-1, keepdim=True).clamp_min(torch.finfo(metric.dtype).tiny)
    similarity = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # [S, |A|, |B|]
    best, match = similarity.max(dim=-1)
    merged = torch.sort(best, dim=-1, descending=True, stable=True).indices[:, :r]  # ranks in A
    source = p + 2 * merged  # their rows
    dest = torch.arange(n, device=x.device).expand(s, n).scatter(1, source, p + 1 + 2 * match.gather(1, merged))
    weights = size.to(x.dtype)[..., None]
    total = torch.zeros_like(x).scatter_add_(1, dest[..., None].expand(s, n, channels), x * weights)
    size = torch.zeros_like(size).scatter_add_(1, dest, size)
    gone = torch.zeros(s, n, dtype=torch.uint8, device=x.device).scatter_(1, source, 1)
    left = torch.sort(gone, dim=1, stable=True).indices[:, : n - r]  # the rest, in order
    x = (total / size.to(x.dtype)[..., None]).gather(1, left[..., None].expand(s, n - r, channels))
    return x, size.gather(1, left), position.gather(1, left[..., None].expand(s, n - r, 3))
