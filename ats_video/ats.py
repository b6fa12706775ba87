"""The Adaptive Token Sampler as pure functions on tensors.

Follows Fayyaz et al., "Adaptive Token Sampling for Efficient Vision Transformers", ECCV 2022
(arXiv 2111.15667). An ATS layer is an ordinary attention layer that, after computing keys and
values, scores every token by the CLS token's attention times the value's norm (Eq. 3), picks
tokens by inverse transform sampling of those scores (Eq. 4-5), and computes attention outputs
only for CLS, the other prefix tokens and the picked tokens. Nothing here has parameters.

:func:`keep_tokens` is the ATS step every backbone runs on its packed tokens
(:class:`ats_video.tokens.Layout`): score, select; the caller gathers the kept rows. The
functions it is made of work on a padded [sequences, tokens] layout, one row per sequence, so
that each sequence's result is computed on its own and never depends on the rest of its batch.

NOTE: the sampling grid is the paper's ``u_m = (2m - 1) / (2K)``; the official code's grid
(N - 1 points from the smallest non-zero CDF value to 1) is not used. See README, "Differences".
NOTE: the budget ``K`` is per sequence: a ratio ``rho`` applies to that sequence's own token
count, so a result never depends on the other samples of its batch.
"""

import functools
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ats_video.tokens import Layout, padding_computed

Budget = Union[int, float]

MIN_RATIO_BUDGET = 8  # the paper's floor when K is a ratio of the input tokens


def resolve_budget(k: Budget, num_tokens: Union[int, Tensor]) -> Union[int, Tensor]:
    """The budget K for inputs of ``num_tokens`` non-prefix tokens.

    Args:
        k: an int K >= 1, or a float ratio rho in (0, 1] giving K = max(floor(rho * N + 0.5), 8).
        num_tokens: N, an int or a LongTensor [B] of per-sample token counts.
    Returns:
        an int for an int ``num_tokens`` (nothing is read from a device), else a LongTensor [B].
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"ATS budget k must be an int or a float ratio, got {k!r}")
    if isinstance(k, int) and k < 1:
        raise ValueError(f"ATS budget k must be an int >= 1 or a ratio in (0, 1], got {k}")
    if isinstance(k, float) and not 0.0 < k <= 1.0:
        raise ValueError(f"ATS budget ratio must lie in (0, 1], got {k}")
    if isinstance(num_tokens, int):
        return k if isinstance(k, int) else max(math.floor(num_tokens * k + 0.5), MIN_RATIO_BUDGET)
    if isinstance(k, int):
        return torch.full_like(num_tokens, k)
    return torch.floor(num_tokens.double() * k + 0.5).long().clamp_min(MIN_RATIO_BUDGET)


def _score_dtype(*tensors: Tensor) -> torch.dtype:
    """The wider of the inputs' type and float32: half inputs are scored in float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def cls_attention(q: Tensor, k: Tensor, layout: Layout) -> Tensor:
    """Softmaxed attention row of each sequence's first query (CLS) over the sequence's keys.

    Args:
        q, k: [R, H, d] queries and keys, packed by ``layout``.
    Returns:
        [S, L, H] in float32 (float64 for float64 inputs), L = ``layout.max_len``, exactly zero
        at padding.
    """
    if torch.is_autocast_enabled(q.device.type):  # not under autocast: these decide what is kept
        with torch.autocast(q.device.type, enabled=False):
            return cls_attention(q, k, layout)
    dtype = _score_dtype(q, k)
    if q.dtype != dtype or k.dtype != dtype:
        q, k = q.to(dtype), k.to(dtype)
    q_cls = (layout.pad(q)[:, 0] if layout.uniform else q[layout.offsets[:-1]]) * q.shape[-1] ** -0.5
    if layout.uniform:
        return torch.einsum("shd,slhd->slh", q_cls, layout.pad(k)).softmax(dim=1)
    if padding_computed():  # one batched product over the padded keys: the faster way
        logits = torch.einsum("shd,slhd->slh", q_cls, layout.pad(k))
    else:  # one dot product per real key, so that counting FLOPs sees no padding
        logits = layout.pad(torch.einsum("rhd,rhd->rh", q_cls[layout.sequence_of_rows()], k))
    return logits.masked_fill(~layout.valid()[..., None], float("-inf")).softmax(dim=1)


def significance_scores(cls_attn: Tensor, v_norm: Tensor, num_prefix_tokens: int = 1) -> Tensor:
    """Significance score of every non-prefix token (Eq. 3).

    Args:
        cls_attn: [S, L, H] softmaxed attention of the CLS query over all L tokens, per head.
        v_norm: [S, L, H] the norms of the values.
        num_prefix_tokens: p, the leading tokens (CLS, distillation) that are not scored.
    Returns:
        [S, L - p] scores in the wider of the inputs' type and float32: per head
        ``a_j * ||v_j||`` normalised over the non-prefix tokens, summed over heads.
    """
    p = num_prefix_tokens
    dtype = _score_dtype(cls_attn, v_norm)
    a, norm = cls_attn[:, p:], v_norm[:, p:]
    if a.dtype != dtype or norm.dtype != dtype:
        a, norm = a.to(dtype), norm.to(dtype)
    weighted = a * norm
    # clamp: a head whose weights are all zero contributes zeros instead of NaN
    weighted = weighted / weighted.sum(1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return weighted.sum(-1)


UNUSABLE_SCORES = "ATS scores must be finite and non-negative (NaN, inf or negative values found)"


class NonFiniteScores(ValueError):
    """ATS met NaN, infinite or negative token scores: the activations before it were not
    finite. Training reports this as divergence (:mod:`ats_video.engine.train`)."""


def _normalised_cdf(scores: Tensor) -> Tensor:
    """[B, N] usable scores -> their CDF along N, in float64, the last value exactly 1.

    float64 so that half and float32 inputs choose alike; an all-zero row carries no preference
    and is sampled as uniform.
    """
    s = scores.double()
    cdf = (s + (s.sum(-1, keepdim=True) == 0)).cumsum(-1)
    return cdf / cdf[:, -1:]


@functools.lru_cache(maxsize=16)
def _grid(k: int, device: torch.device) -> Tensor:
    """The sampling grid u_m = (2m - 1) / (2K), m = 1..K, in float64 (computed once per K)."""
    return (torch.arange(1, k + 1, dtype=torch.float64, device=device) - 0.5) / k


def _checked(select: Callable[[Tensor, Union[int, Tensor]], Tensor], scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """A selector called directly, with its checks: scores finite and non-negative, every budget
    >= 1 (this reads the device; a model's forward checks once per ATS block instead, see
    :func:`keep_tokens`). The budgets go to the scores' device."""
    low = k if isinstance(k, int) else (int(k.min()) if k.numel() else 1)
    if low < 1:
        raise ValueError(f"ATS budget K must be >= 1 in every row, got {low}")
    s = scores.double()
    if s.numel() and not bool((s.sum() * 0 == 0) & (s.min() >= 0)):  # x * 0 is 0 unless x is NaN or inf
        raise NonFiniteScores(UNUSABLE_SCORES)
    return select(scores, k if isinstance(k, int) else k.to(scores.device))


def _sample(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """:func:`sample_tokens` without its checks."""
    cdf = _normalised_cdf(scores)
    if isinstance(k, int):  # one grid for every row: count its points by binary search
        below = torch.searchsorted(_grid(k, cdf.device), cdf, right=True)
    else:
        # per-row grids: the count is floor(K x + 1/2) up to round-off, which one step each way
        # corrects by comparing with u_m = (m - 1/2) / K, computed as the grid above is
        # (u_0 < 0 and u_(K+1) > 1, so the steps need no bounds)
        k = k[:, None].double()
        below = torch.floor(cdf * k + 0.5)
        below = below + ((below + 0.5) / k <= cdf).double() - ((below - 0.5) / k > cdf).double()
    return below > F.pad(below, (1, 0))[:, :-1]


def _topk(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """:func:`topk_tokens` without its checks."""
    n = scores.shape[1]
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    rank_kept = (torch.arange(n, device=scores.device) < (k if isinstance(k, int) else k[:, None])).expand_as(order)
    return torch.zeros_like(rank_kept).scatter_(1, order, rank_kept)


def _hash32(x: Tensor) -> Tensor:
    """An integer mix (multiply, xor-shift) of int64 values in [0, 2^32), elementwise; the
    products stay below 2^63, so int64 arithmetic is exact on every device."""
    for _ in range(2):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    return (x >> 16) ^ x


def _random(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """:func:`random_tokens` without its checks."""
    n = scores.shape[1]
    if n == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    real = scores > 0
    seed = real.sum(-1)
    for index in torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :3].T:
        seed = _hash32(seed ^ index)
    key = _hash32(seed[:, None] ^ _hash32(torch.arange(n, device=scores.device)))
    # the smallest keys first: 2^32 - key > 0 for real tokens, 0 for padding
    return _topk(torch.where(real, 2.0**32 - key.double(), 0.0), k)


def sample_tokens(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """Inverse transform sampling of tokens (the paper's sampler).

    For u_m = (2m - 1) / (2K), m = 1..K, picks the first token whose CDF >= u_m; a token picked
    several times is kept once, so a row keeps K' <= K tokens. Deterministic, and each row is
    computed on its own. A row of zeros is sampled as if uniform.

    Token j is picked when at least one grid point lies in (CDF_{j-1}, CDF_j], so the result
    comes from the number of grid points up to each CDF value.

    Args:
        scores: [B, N] finite, non-negative scores (ValueError otherwise: a NaN would otherwise
            turn into a uniform sample, silently).
        k: K >= 1, an int or a LongTensor [B] of per-row budgets; K > N is allowed.
    Returns:
        [B, N] bool mask of the kept tokens (at least one per row).
    """
    return _checked(_sample, scores, k)


def topk_tokens(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """The paper's top-K ablation: keep the K highest scores (ties: the lower index wins).

    Same interface as :func:`sample_tokens`; K >= N keeps every token.
    """
    return _checked(_topk, scores, k)


def random_tokens(scores: Tensor, k: Union[int, Tensor]) -> Tensor:
    """A uniform random sample of K tokens per row, whatever their scores: the baseline that
    token-reduction methods must beat (most do not in video: Hao et al., "Principles of Visual
    Tokens for Efficient Video Understanding", arXiv 2411.13626).

    Same interface as :func:`sample_tokens`; a row keeps exactly min(K, N) tokens. The draw is
    seeded by the row itself, so that a row always keeps the same tokens, whatever else is in
    its batch, and no global random state is touched: the seed is a hash of the indices of the
    row's three highest scores and of its count of non-zero scores; each token's key is a hash of
    the seed and the token's index, and the K tokens with the smallest keys are kept.

    NOTE: tokens whose score is exactly zero (the padding of a batch) come after all the
    others, so a real token with a score of exactly zero is kept only when the budget reaches it.
    """
    return _checked(_random, scores, k)


# selector name -> (scores [B, N], budgets) -> [B, N] kept, unchecked: the forward checks once
SELECTORS: Dict[str, Callable[[Tensor, Union[int, Tensor]], Tensor]] = {
    "sample": _sample,
    "topk": _topk,
    "random": _random,
}


@dataclass(frozen=True)
class ATSConfig:
    """What one ATS layer does: its budget ``k`` and its selector ("sample", "topk" or
    "random")."""

    k: Budget
    selector: str = "sample"

    def __post_init__(self):
        resolve_budget(self.k, 1)  # validates k
        if self.selector not in SELECTORS:
            raise ValueError(f"unknown ATS selector {self.selector!r}; choose from {sorted(SELECTORS)}")


def select_tokens(scores: Tensor, valid: Optional[Tensor], config: ATSConfig) -> Tensor:
    """Chooses the kept tokens of each row from its scores.

    Args:
        scores: [B, N] significance scores (padding may hold anything).
        valid: [B, N] bool mask of real (non-padding) tokens, or None when all are real.
        config: the budget and selector.
    Returns:
        [B, N] bool mask of kept tokens, a subset of ``valid`` with at least one per row.
    """
    budget = resolve_budget(config.k, scores.shape[1] if valid is None else valid.sum(-1))
    if valid is None:
        return SELECTORS[config.selector](scores, budget)
    scores = scores.masked_fill(~valid, 0)
    # no information at all (every value zero): keep a uniform sample of the real tokens
    scores = torch.where(scores.sum(-1, keepdim=True) > 0, scores, valid.to(scores.dtype))
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


@dataclass(frozen=True)
class SharedGrid:
    """Where the tokens of a clip's frames sit, for the "shared" mode.

    frames: T, the consecutive sequences that are the frames of one clip.
    slot: [R] long, each row's position on a frame's patch grid (h * width + w), -1 for prefix
        tokens.
    size: the positions of a frame's patch grid.
    """

    frames: int
    slot: Tensor
    size: int


def _select_shared_rows(scores: Tensor, valid: Optional[Tensor], slot: Tensor, grid: SharedGrid,
                        config: ATSConfig) -> Tensor:
    """:func:`select_shared` for per-frame padded rows: [S, N] scores and slots -> [S, N] keep."""
    s, n = scores.shape
    spare = grid.size  # padding writes to a spare column
    slot = slot if valid is None else slot.masked_fill(~valid, spare)
    on_grid = scores.new_zeros(s, grid.size + 1).scatter_(1, slot, scores)[:, :-1]
    present = torch.zeros(s, grid.size + 1, dtype=torch.bool, device=scores.device)
    present = present.scatter_(1, slot, True)[:, :-1]
    keep = select_shared(
        on_grid.view(s // grid.frames, grid.frames, grid.size),
        present.view(s // grid.frames, grid.frames, grid.size),
        config,
    ).reshape(s, grid.size)
    keep = F.pad(keep, (0, 1)).gather(1, slot)
    return keep if valid is None else keep & valid


def keep_tokens(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: Layout,
    num_prefix_tokens: int,
    config: ATSConfig,
    shared: Optional[SharedGrid] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """The ATS step: which rows of each sequence an ATS attention layer keeps.

    Scores each sequence's non-prefix tokens from its first row's (CLS) query (Eq. 3) and
    selects by ``config``, per sequence, or with ``shared`` one set of positions per clip.
    Nothing is read from the device: the caller reads the lengths and the check together.

    Args:
        q, k, v: [R, H, d] the layer's queries, keys and values, packed by ``layout``; every
            sequence starts with its ``num_prefix_tokens`` prefix rows, CLS first.
        layout: the sequences.
        num_prefix_tokens: p, always kept.
        config: budget and selector.
        shared: the clips' frame grids for the "shared" mode; None for a set per sequence.
    Returns:
        keep: [R] bool, the kept rows (prefix rows included);
        lengths: [S] the kept rows per sequence;
        usable: 0-d bool, False when a score was NaN or infinite (then ``keep`` means nothing:
            the caller raises ``NonFiniteScores(UNUSABLE_SCORES)``).
    """
    p = num_prefix_tokens
    norm = v.norm(dim=-1, dtype=_score_dtype(v))  # on the real rows only: [R, H]
    scores = significance_scores(cls_attention(q, k, layout), layout.pad(norm), p)
    key_valid = layout.valid()
    valid = None if key_valid is None else key_valid[:, p:]
    if shared is None:
        keep = select_tokens(scores, valid, config)
    else:
        slot = layout.pad(shared.slot)[:, p:]
        keep = _select_shared_rows(scores, valid, slot, shared, config)
    keep = F.pad(keep, (p, 0), value=True)
    # scores made from softmax weights and norms are never negative: a NaN or an infinity
    # anywhere makes the sum non-finite (padding scores are zeros)
    return layout.unpad(keep), keep.sum(-1), scores.sum().isfinite()
