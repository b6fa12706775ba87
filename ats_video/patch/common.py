"""What every family's ATS patch shares: one attention block on packed tokens.

A block with ATS (Fayyaz et al., ECCV 2022, Sec. 3) computes queries, keys and values for all
its input tokens, runs the ATS step (:func:`ats_video.ats.keep_tokens`), gathers the kept rows
and computes attention outputs, the residual and the MLP for those rows only. DeiT's blocks and
XViT's blocks are this one function; XViT passes its space-time mixing of keys and values in.
TimeSformer's spatial attention uses :func:`ats_attention` and :func:`drop_path` from here.

Blocks are pre-norm transformer blocks with timm's attribute names: ``norm1``, ``attn``
(``qkv``, ``q_norm``, ``k_norm``, ``attn_drop``, ``norm``, ``proj``, ``proj_drop``,
``num_heads``), ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ``ls2``, ``drop_path2``.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from timm.layers import DropPath
from torch import Tensor, nn

from ats_video.ats import UNUSABLE_SCORES, ATSConfig, NonFiniteScores, SharedGrid, keep_tokens
from ats_video.tokens import KeptTokens, Layout, Tokens, attention, read_lengths, true_indices

# (k or v [R, H, d], the tokens) -> the same, mixed with other rows (XViT's temporal shift)
Mixer = Callable[[Tensor, Tokens], Tensor]


def qkv_heads(attn: nn.Module, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Normalised rows [R, D] -> queries, keys, values [R, H, d] (q_norm and k_norm applied)."""
    heads = attn.num_heads
    q, k, v = attn.qkv(x).view(len(x), 3, heads, attn.qkv.out_features // (3 * heads)).unbind(1)
    return attn.q_norm(q), attn.k_norm(k), v


def drop_path(module: nn.Module, rows: Tensor, sequence: Optional[Tensor], num_seqs: int) -> Tensor:
    """A block's stochastic depth (timm ``DropPath`` or ``Identity``) on packed rows.

    timm's DropPath draws once per leading index, which on packed rows would be once per token;
    here each sequence draws once and all its rows share the draw.

    Args:
        module: the block's drop-path module, whose ``drop_prob``, ``scale_by_keep`` and
            ``training`` apply.
        rows: [R, D] a residual branch's output.
        sequence: [R] long, the sequence of each row (``Layout.sequence_of_rows``); may be None
            when the module is not training.
        num_seqs: S.
    Returns:
        [R, D].
    """
    if not isinstance(module, DropPath) or not module.training or module.drop_prob == 0.0:
        return rows
    keep_prob = 1.0 - module.drop_prob
    keep = rows.new_empty(num_seqs).bernoulli_(keep_prob)
    if module.scale_by_keep and keep_prob > 0.0:
        keep = keep / keep_prob
    return rows * keep[sequence, None]


def ats_attention(
    attn: nn.Module,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: Layout,
    num_prefix_tokens: int,
    config: Optional[ATSConfig],
    shared: Optional[SharedGrid] = None,
) -> Tuple[Tensor, Optional[Tensor], Layout, List[int]]:
    """Attention outputs of the rows an ATS layer keeps (all rows without ``config``), projected.

    The ATS step's one read from the device happens here: the kept lengths, with whether the
    scores were usable, in one transfer.

    Args:
        attn: the attention module (``attn_drop``, ``norm``, ``proj``, ``proj_drop``).
        q, k, v: [R, H, d] packed by ``layout``, prefix rows first in every sequence.
        layout, num_prefix_tokens, config, shared: as :func:`ats_video.ats.keep_tokens`.
    Returns:
        out: [R', D] the kept rows' outputs;
        index: [R'] the kept rows, or None when every row is kept;
        out_layout: the sequences of ``out``;
        lengths: their lengths on the host (empty without ``config``).
    Raises:
        NonFiniteScores: a score was NaN or infinite (a ValueError).
    """
    index, out_layout, lengths = None, layout, []
    if config is not None:
        keep, kept, usable = keep_tokens(q, k, v, layout, num_prefix_tokens, config, shared)
        lengths, usable = read_lengths(kept, usable)
        if not usable:
            raise NonFiniteScores(UNUSABLE_SCORES)
        num_rows = sum(lengths)
        if num_rows < layout.num_rows:
            index = true_indices(keep, num_rows)
            q, out_layout = q[index], Layout.from_lengths(kept, max(lengths), num_rows)
    dropout_p = attn.attn_drop.p if attn.training else 0.0
    out = attention(q, k, v, out_layout, layout, dropout_p).flatten(1)
    return attn.proj_drop(attn.proj(attn.norm(out))), index, out_layout, lengths


def attention_block(
    block: nn.Module,
    tokens: Tokens,
    num_prefix_tokens: int,
    config: Optional[ATSConfig],
    mix: Optional[Mixer] = None,
    shared: Optional[SharedGrid] = None,
) -> Tokens:
    """One pre-norm transformer block on packed tokens; with ``config``, an ATS block.

    Args:
        block: the block (see the module docstring for the attributes it needs).
        tokens: its input.
        num_prefix_tokens: p, the rows every sequence starts with (CLS first).
        config: the ATS budget and selector, or None for a plain block.
        mix: XViT's space-time mixing of keys and values, or None.
        shared: the clips' frame grids for the "shared" mode, or None.
    Returns:
        The kept tokens after the block.
    """
    tokens = _attention_residual(block, tokens, num_prefix_tokens, config, mix, shared)
    x, layout = tokens.x, tokens.layout
    sequence = layout.sequence_of_rows() if block.training else None
    x = x + drop_path(block.drop_path2, block.ls2(block.mlp(block.norm2(x))), sequence, layout.num_seqs)
    return Tokens(x, layout, tokens.position)


def _attention_residual(
    block: nn.Module,
    tokens: Tokens,
    num_prefix_tokens: int,
    config: Optional[ATSConfig],
    mix: Optional[Mixer],
    shared: Optional[SharedGrid],
) -> Tokens:
    """The kept rows after the attention branch and its residual. A function of its own so
    that queries, keys and values are freed before the MLP runs."""
    q, k, v = qkv_heads(block.attn, block.norm1(tokens.x))
    if mix is not None:
        k, v = mix(k, tokens), mix(v, tokens)
    out, index, layout, _ = ats_attention(block.attn, q, k, v, tokens.layout, num_prefix_tokens, config, shared)
    x, position = tokens.x, tokens.position
    if index is not None:
        x, position = x[index], position[index]
    # stochastic depth draws once per sequence, not once per packed row
    sequence = layout.sequence_of_rows() if block.training else None
    return Tokens(x + drop_path(block.drop_path1, block.ls1(out), sequence, layout.num_seqs), layout, position)


def grid_positions(frames: int, grid: Tuple[int, int], num_prefix_tokens: int, device: torch.device) -> Tensor:
    """[T * (p + h * w), 3] long (t, h, w) of a clip's rows when every frame is a sequence of
    its p prefix tokens (at -1) and its patches in row-major order; one frame: an image."""
    h, w = grid
    t, y, x = torch.meshgrid(
        torch.arange(frames, device=device), torch.arange(h, device=device), torch.arange(w, device=device),
        indexing="ij",
    )
    patches = torch.stack([t, y, x], dim=-1).view(frames, h * w, 3)
    prefix = patches.new_full((frames, num_prefix_tokens, 3), -1)
    return torch.cat([prefix, patches], dim=1).view(-1, 3)


# ---------------------------------------------------------------- multiply-adds as run


def macs_device(kept: Sequence[KeptTokens]) -> torch.device:
    """Where a forward's per-sample multiply-adds are added up: on the kept records' device (the
    model's), so that no record is copied off it; on the CPU for a model without ATS."""
    return kept[0].count.device if kept else torch.device("cpu")


def patch_embed_macs(proj: nn.Module, num_patches: int) -> int:
    """Multiply-adds of a patch-embedding convolution producing ``num_patches`` tokens."""
    return num_patches * proj.out_channels * proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]


def linear_macs(module: nn.Module) -> int:
    """Multiply-adds of every Linear layer in ``module`` applied to one row."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def attention_block_macs(block: nn.Module, tokens: Tensor, kept: Optional[Tensor]) -> Tensor:
    """Multiply-adds of :func:`attention_block` on sequences of ``tokens`` rows (prefix included)
    of which an ATS block keeps ``kept`` (None: a plain block): qkv of every row, the CLS
    attention row that scores them, attention of the kept rows over all, projection and MLP of
    the kept rows. Any shape of tensors; float64 in, float64 out."""
    d = block.attn.qkv.in_features
    rows = tokens if kept is None else kept
    macs = tokens * 3 * d * d + 2 * rows * tokens * d + rows * linear_macs(block.attn.proj)
    macs = macs + rows * linear_macs(block.mlp)
    return macs if kept is None else macs + tokens * d
