"""The Adaptive Token Sampler as pure functions on tensors.

Follows Fayyaz et al., "Adaptive Token Sampling for Efficient Vision Transformers", ECCV 2022
(arXiv 2111.15667). An ATS layer is an ordinary attention layer that, after computing keys and
values, scores every token by the CLS token's attention times the value's norm (Eq. 3), picks
tokens by inverse transform sampling of those scores, and computes attention outputs only for
CLS, the other prefix tokens and the picked tokens. Nothing here has parameters.

Tokens of a batch are kept in a padded layout: a sample's tokens are the first rows of its row
of ``x``, a ``valid`` mask says which rows are real, and keys outside it get ``-inf`` so padding
never changes a real token. Token-wise work (norms, projections, MLP) runs on the valid rows
only (``pack``/``unpack``), so its cost follows the sum of the kept tokens, not the maximum.

NOTE: the sampling grid is the paper's ``u_m = (2m - 1) / (2K)``; the official code's grid
(N - 1 points from the smallest non-zero CDF value to 1) is not used. See README, "Differences".
NOTE: the budget ``K`` is per sample: a ratio ``rho`` applies to that sample's own token count,
so a sample's result never depends on the other samples of its batch.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

Budget = Union[int, float]

MIN_RATIO_BUDGET = 8  # the paper's floor when K is a ratio of the input tokens


def resolve_budget(k: Budget, num_tokens: Union[int, Tensor]) -> Tensor:
    """The budget K for inputs of ``num_tokens`` non-prefix tokens.

    Args:
        k: an int K >= 1, or a float ratio rho in (0, 1] giving K = max(floor(rho * N + 0.5), 8).
        num_tokens: N, an int or a LongTensor [B] of per-sample token counts.
    Returns:
        LongTensor [B] (or a 0-d tensor for an int ``num_tokens``).
    """
    n = torch.as_tensor(num_tokens)
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"ATS budget k must be an int or a float ratio, got {k!r}")
    if isinstance(k, int):
        if k < 1:
            raise ValueError(f"ATS budget k must be >= 1, got {k}")
        return torch.full_like(n, k)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"ATS budget ratio must lie in (0, 1], got {k}")
    return torch.floor(n.double() * k + 0.5).long().clamp_min(MIN_RATIO_BUDGET)


def significance_scores(cls_attn: Tensor, v: Tensor, num_prefix_tokens: int = 1) -> Tensor:
    """Significance score of every non-prefix token (Eq. 3).

    Args:
        cls_attn: [B, H, T] softmaxed attention of the CLS query over all T tokens.
        v: [B, H, T, d] values.
        num_prefix_tokens: p, the leading tokens (CLS, distillation) that are not scored.
    Returns:
        [B, T - p] float32 scores: per head ``a_j * ||v_j||`` normalised over the non-prefix
        tokens, summed over heads.
    """
    p = num_prefix_tokens
    weighted = cls_attn[..., p:].float() * v[..., p:, :].float().norm(dim=-1)
    # clamp: a head whose weights are all zero contributes zeros instead of NaN
    weighted = weighted / weighted.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return weighted.sum(1)


def _per_sample(k: Union[int, Tensor], batch: int, device: torch.device) -> Tensor:
    k = torch.as_tensor(k, device=device, dtype=torch.long)
    return k.expand(batch) if k.dim() == 0 else k


def _normalised_cdf(scores: Tensor) -> Tensor:
    # float64 so that half and float32 inputs choose alike and the CDF's last value is ~1 exactly;
    # an all-zero row carries no preference and is sampled as uniform.
    s = scores.double()
    s = torch.where(s.sum(-1, keepdim=True) > 0, s, torch.ones_like(s))
    cdf = s.cumsum(-1)
    return cdf / cdf[:, -1:]


def sample_tokens(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """Inverse transform sampling of tokens (the paper's sampler).

    For u_m = (2m - 1) / (2K), m = 1..K, picks the first token whose CDF >= u_m; a token picked
    several times is kept once, so a sample keeps K' <= K tokens. Deterministic, and each row
    is computed on its own.

    Args:
        scores: [B, N] non-negative scores.
        k: K, an int or a LongTensor [B] of per-sample budgets; K > N is allowed.
    Returns:
        [B, N] bool mask of the kept tokens (at least one per row).
    """
    b, n = scores.shape
    k = _per_sample(k, b, scores.device)
    cdf = _normalised_cdf(scores)
    m = torch.arange(1, int(k.max()) + 1 if b else 1, device=scores.device)
    grid = (2 * m - 1).double() / (2 * k[:, None]).double()  # [B, Kmax]
    picked = torch.searchsorted(cdf, grid).clamp_max(n - 1)  # first index with cdf >= u
    picked = torch.where(m <= k[:, None], picked, n)  # grid points beyond a row's K: a dummy column
    keep = torch.zeros(b, n + 1, dtype=torch.bool, device=scores.device)
    return keep.scatter_(1, picked, True)[:, :n]


def topk_tokens(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """The paper's top-K ablation: keep the K highest scores (ties: the lower index wins).

    Same interface as :func:`sample_tokens`; K >= N keeps every token.
    """
    b, n = scores.shape
    k = _per_sample(k, b, scores.device)
    order = torch.sort(scores.float(), dim=-1, descending=True, stable=True).indices
    rank_kept = torch.arange(n, device=scores.device) < k[:, None]
    return torch.zeros_like(rank_kept).scatter_(1, order, rank_kept)


SELECTORS: Dict[str, Callable[[Tensor, Union[int, Tensor]], Tensor]] = {
    "sample": sample_tokens,
    "topk": topk_tokens,
}


@dataclass(frozen=True)
class ATSConfig:
    """What one ATS layer does: its budget ``k`` and its selector ("sample" or "topk")."""

    k: Budget
    selector: str = "sample"

    def __post_init__(self):
        resolve_budget(self.k, 1)  # validates k
        if self.selector not in SELECTORS:
            raise ValueError(f"unknown ATS selector {self.selector!r}; choose from {sorted(SELECTORS)}")


def select_tokens(scores: Tensor, valid: Optional[Tensor], config: ATSConfig) -> Tensor:
    """Chooses the kept tokens of each sample from its scores.

    Args:
        scores: [B, N] significance scores (padding may hold anything).
        valid: [B, N] bool mask of real (non-padding) tokens, or None when all are real.
        config: the budget and selector.
    Returns:
        [B, N] bool mask of kept tokens, a subset of ``valid`` with at least one per sample.
    """
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    scores = scores.masked_fill(~valid, 0)
    # no information at all (every value zero): keep a uniform sample of the real tokens
    scores = torch.where(scores.sum(-1, keepdim=True) > 0, scores, valid.to(scores.dtype))
    budget = resolve_budget(config.k, valid.sum(-1))
    return SELECTORS[config.selector](scores, budget) & valid


def select_shared(scores: Tensor, valid: Optional[Tensor], config: ATSConfig) -> Tensor:
    """One set of positions for every frame of a clip (the video "shared" mode).

    Each frame's scores are normalised within the frame and summed over the frames; the clip
    then keeps one set of positions, its budget following from the per-frame position count.

    Args:
        scores: [B, T, N] per-frame scores of the same N positions in every frame.
        valid: [B, T, N] bool, the positions present in each frame, or None when all are.
        config: the budget and selector.
    Returns:
        [B, T, N] bool: the chosen positions, in every frame where they are present.
    """
    if valid is not None:
        scores = scores.masked_fill(~valid, 0)
    scores = scores / scores.sum(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    keep = select_tokens(scores.sum(1), None if valid is None else valid.any(1), config)
    keep = keep[:, None, :].expand_as(scores)
    return keep if valid is None else keep & valid


def kept_rows(keep: Tensor, num_prefix_tokens: int) -> "tuple[Tensor, Tensor]":
    """Row positions of the prefix tokens and the kept tokens, in their original order.

    Args:
        keep: [B, N] bool mask over the non-prefix tokens.
        num_prefix_tokens: p.
    Returns:
        rows: [B, L'] long positions into the p + N input rows, padded with 0;
        valid: [B, L'] bool mask of the real rows, L' = p + the largest kept count.
    """
    prefix = torch.ones_like(keep[:, :num_prefix_tokens]) if num_prefix_tokens else keep[:, :0]
    full = torch.cat([prefix, keep], dim=1)
    counts = full.sum(-1)
    length = int(counts.max()) if len(counts) else num_prefix_tokens
    # a stable sort puts the kept rows first without changing their order
    rows = torch.sort((~full).to(torch.uint8), dim=-1, stable=True).indices[:, :length]
    valid = torch.arange(length, device=keep.device) < counts[:, None]
    return rows.masked_fill(~valid, 0), valid


def cls_attention(q_cls: Tensor, k: Tensor, key_valid: Optional[Tensor]) -> Tensor:
    """Softmaxed attention row of a single query over all keys.

    Args:
        q_cls: [B, H, d]; k: [B, H, T, d]; key_valid: [B, T] bool or None.
    Returns:
        [B, H, T] float32, exactly zero at invalid keys.
    """
    # float32 even under autocast: these probabilities decide which tokens are kept
    with torch.autocast(q_cls.device.type, enabled=False):
        logits = torch.einsum("bhd,bhtd->bht", q_cls.float(), k.float()) * q_cls.shape[-1] ** -0.5
        if key_valid is not None:
            logits = logits.masked_fill(~key_valid[:, None, :], float("-inf"))
        return logits.softmax(dim=-1)


def attention(q: Tensor, k: Tensor, v: Tensor, key_valid: Optional[Tensor], dropout_p: float = 0.0) -> Tensor:
    """Scaled dot-product attention of some queries over all keys, invalid keys masked with -inf.

    Args:
        q: [B, H, L', d]; k, v: [B, H, T, d]; key_valid: [B, T] bool or None.
    Returns:
        [B, H, L', d]. The fused kernel never builds a T x T matrix.
    """
    mask = None if key_valid is None else key_valid[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def pack(x: Tensor, valid: Optional[Tensor]) -> Tensor:
    """[B, L, D] padded rows -> [R, D] real rows (all B * L when ``valid`` is None)."""
    return x.flatten(0, 1) if valid is None else x[valid]


def unpack(rows: Tensor, valid: Optional[Tensor], shape: "tuple[int, int]") -> Tensor:
    """Inverse of :func:`pack`: [R, D] -> [B, L, D] with zeros at padding."""
    if valid is None:
        return rows.view(*shape, rows.shape[-1])
    out = rows.new_zeros(*shape, rows.shape[-1])
    out[valid] = rows  # an indexed write: several times faster than masked_scatter on CPU
    return out


def gather_rows(x: Tensor, rows: Tensor) -> Tensor:
    """x [B, L, ...] at rows [B, L'] -> [B, L', ...]."""
    index = rows.view(*rows.shape, *([1] * (x.dim() - 2))).expand(*rows.shape, *x.shape[2:])
    return x.gather(1, index)


def drop_path(module: nn.Module, rows: Tensor, sample: Optional[Tensor], num_samples: int) -> Tensor:
    """A block's stochastic depth (timm ``DropPath`` or ``Identity``) on packed rows.

    timm's DropPath draws once per leading index, which on packed rows would be once per token;
    here each sample draws once and all its rows share the draw.

    Args:
        module: the block's drop-path module, whose ``drop_prob``, ``scale_by_keep`` and
            ``training`` apply.
        rows: [R, D] packed rows (a residual branch's output).
        sample: [R] long, the sample each row belongs to (see :func:`row_samples`); may be None
            when the module is not training.
        num_samples: B.
    Returns:
        [R, D].
    """
    if not isinstance(module, DropPath) or not module.training or module.drop_prob == 0.0:
        return rows
    keep_prob = 1.0 - module.drop_prob
    keep = rows.new_empty(num_samples).bernoulli_(keep_prob)
    if module.scale_by_keep and keep_prob > 0.0:
        keep = keep / keep_prob
    return rows * keep[sample, None]


def row_samples(x: Tensor, valid: Optional[Tensor]) -> Tensor:
    """[R] the sample (index along B) of each row of ``pack(x, valid)``, x being [B, L, ...]."""
    batch, length = x.shape[:2]
    index = torch.arange(batch, device=x.device)[:, None, None].expand(batch, length, 1)
    return pack(index, valid)[:, 0]
