"""Packed tokens, the one attention entry point, and the record of what ATS kept.

After ATS, the sequences of a batch hold different numbers of tokens. Every backbone carries
them the same way, as :class:`Tokens`: the rows of all sequences one after the other (no
padding), a :class:`Layout` saying where each sequence starts, and each row's (t, h, w) position
on the clip's patch grid. Token-wise work (norms, projections, MLP) runs on the rows, so its cost
is the sum of the kept tokens. Only attention needs sequences side by side, and
:func:`attention` runs it on packed rows with one of three backends:

- ``"varlen"``: PyTorch's variable-length flash kernel (``torch.nn.attention.varlen``), on CUDA
  for float16 / bfloat16 without attention dropout: no padding at all;
- ``"padded"``: ``scaled_dot_product_attention`` over a padded view (a free reshape when every
  sequence has the same length, as before the first ATS block or at batch 1), padded keys
  masked with ``-inf`` so padding never changes a real token;
- ``"sequential"``: one call per sequence, the reference: no padding, slow; the FLOP count
  (:mod:`ats_video.flops`) runs with it so that it counts exactly the work of the kept tokens.

``"auto"`` (the default) is varlen on CUDA where it applies, as a GPU run recorded in
benchmarks/gpu.md chose (:data:`AUTO_ON_CUDA`), and padded elsewhere;
:func:`attention_backend` chooses another for a block of code.

An image is a clip of one frame, so every :class:`KeptTokens` record has a time axis.
"""

import contextlib
import functools
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # torch < 2.10
    varlen_attn = None

BACKENDS = ("auto", "padded", "varlen", "sequential")
# the backend in force; a plain dict (not a ContextVar) so that torch.compile traces the read
_settings = {"backend": "auto"}


@dataclass(frozen=True)
class Layout:
    """How packed rows split into sequences: sequence i is rows ``offsets[i]:offsets[i + 1]``.

    offsets: [S + 1] long, on the rows' device.
    lengths: [S] long.
    max_len: the padded view's width, at least the longest sequence (a Python int, so that
        shapes never wait on the device).
    uniform: every sequence has ``max_len`` rows: the padded view is a reshape.
    slots: [R] long, each row's place in the flattened padded view [S * max_len]; None when
        uniform (the identity).
    """

    offsets: Tensor
    lengths: Tensor
    max_len: int
    uniform: bool
    slots: Optional[Tensor]

    @staticmethod
    def dense(num_seqs: int, length: int, device: torch.device) -> "Layout":
        """``num_seqs`` sequences of ``length`` rows each."""
        lengths = torch.full((num_seqs,), length, dtype=torch.long, device=device)
        offsets = torch.arange(num_seqs + 1, device=device) * length
        return Layout(offsets, lengths, length, True, None)

    @staticmethod
    def from_lengths(lengths: Tensor, max_len: Optional[int] = None, num_rows: Optional[int] = None) -> "Layout":
        """Sequences of the given [S] lengths.

        ``max_len`` (the padded view's width: at least the longest length) and ``num_rows``
        (their sum) are host values: a forward passes them in, from the lengths it reads once
        per ATS block (:func:`read_lengths`); left out, they are read here.
        """
        if max_len is None or num_rows is None:
            host = lengths.tolist()
            max_len, num_rows = max(host, default=0), sum(host)
        offsets = F.pad(lengths.cumsum(0), (1, 0))
        if max_len * len(lengths) == num_rows:  # every sequence as long as the widest
            return Layout(offsets, lengths, max_len, True, None)
        arange = functools.partial(torch.arange, device=lengths.device)
        seq = torch.repeat_interleave(arange(len(lengths)), lengths, output_size=num_rows)
        rank = arange(num_rows) - offsets[seq]
        return Layout(offsets, lengths, max_len, False, seq * max_len + rank)

    @property
    def num_seqs(self) -> int:
        return len(self.lengths)

    @property
    def num_rows(self) -> int:
        return len(self.lengths) * self.max_len if self.uniform else len(self.slots)

    def sequence_of_rows(self) -> Tensor:
        """[R] long, the sequence each row belongs to."""
        index = torch.arange(self.num_seqs, device=self.lengths.device)
        if self.uniform:
            return index.repeat_interleave(self.max_len)
        return torch.div(self.slots, self.max_len, rounding_mode="floor")

    def valid(self) -> Optional[Tensor]:
        """[S, max_len] bool, the real rows of the padded view; None when uniform."""
        if self.uniform:
            return None
        return torch.arange(self.max_len, device=self.lengths.device) < self.lengths[:, None]

    def pad(self, rows: Tensor) -> Tensor:
        """Rows [R, ...] -> the padded view [S, max_len, ...], zeros at padding."""
        shape = (self.num_seqs, self.max_len, *rows.shape[1:])
        if self.uniform:
            return rows.view(shape)
        out = rows.new_zeros(self.num_seqs * self.max_len, *rows.shape[1:])
        out[self.slots] = rows
        return out.view(shape)

    def unpad(self, padded: Tensor) -> Tensor:
        """The padded view [S, max_len, ...] -> rows [R, ...]."""
        rows = padded.reshape(self.num_seqs * self.max_len, *padded.shape[2:])
        return rows if self.uniform else rows[self.slots]


@torch.compiler.disable  # one graph break for the whole read, not one per value
def read_lengths(lengths: Tensor, usable: Tensor) -> Tuple[List[int], bool]:
    """[S] lengths and a 0-d bool flag -> their Python values, in one read: the one moment a
    forward waits for the device, once per ATS block."""
    host = torch.where(usable, lengths, -1).tolist()  # -1 everywhere: unusable
    return host, not host or host[0] >= 0


def true_indices(mask: Tensor, count: int) -> Tensor:
    """[N] bool -> [count] long, the positions of its True values in order, ``count`` (their
    number) being known on the host: ``mask.nonzero()`` without waiting for the device."""
    return mask.to(torch.uint8).argsort(descending=True, stable=True)[:count]


@dataclass
class Tokens:
    """The tokens flowing between blocks, packed.

    x: [R, D] rows, sequence after sequence; a sequence starts with its prefix tokens (CLS,
        distillation), then its patch tokens in their original order.
    layout: how the rows split into sequences.
    position: [R, 3] long (t, h, w) of each row on the clip's patch grid, -1 for prefix tokens.
    """

    x: Tensor
    layout: Layout
    position: Tensor


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Runs :func:`attention` with backend ``name`` (see the module docstring) inside the block."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from {BACKENDS}")
    before, _settings["backend"] = _settings["backend"], name
    try:
        yield
    finally:
        _settings["backend"] = before


def padding_computed() -> bool:
    """Whether work may be computed on padded layouts: not under the "sequential" backend, which
    the FLOP count runs with so that it counts the work of the real tokens only."""
    return _settings["backend"] != "sequential"


# "auto" on CUDA, where varlen applies: chosen by the GPU run recorded in benchmarks/gpu.md (an
# H200, bf16): varlen agrees with padded (tests/test_cuda.py) and is 3-9% faster at batch 32 and
# 64 for DeiT-S, TimeSformer-B and XViT-B with ATS, within +-5% at batch 1
AUTO_ON_CUDA = "varlen"


def varlen_unusable(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Optional[str]:
    """Why the variable-length flash kernel cannot run on these inputs, or None when it can.

    The kernel needs CUDA with compute capability 8.0 or newer, float16 or bfloat16 queries with
    keys and values of the same type, a head size that is a multiple of 8 up to 256 (unlike
    ``scaled_dot_product_attention``, it does not pad head sizes) and no attention dropout.
    """
    if varlen_attn is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (it came with 2.10)"
    if not q.is_cuda:
        return f"it runs on CUDA only, not on {q.device.type}"
    if torch.cuda.get_device_capability(q.device) < (8, 0):
        return f"it needs compute capability 8.0 or newer, this GPU has {torch.cuda.get_device_capability(q.device)}"
    if q.dtype not in (torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        return f"it needs float16 or bfloat16 queries, keys and values of one type, not {q.dtype}, {k.dtype}, {v.dtype}"
    if q.shape[-1] % 8 or q.shape[-1] > 256:
        return f"it needs a head size that is a multiple of 8 up to 256, not {q.shape[-1]}"
    if dropout_p:
        return "it has no attention dropout"
    return None


def attention(q: Tensor, k: Tensor, v: Tensor, q_layout: Layout, k_layout: Layout, dropout_p: float = 0.0) -> Tensor:
    """Scaled dot-product attention of each sequence's queries over that sequence's keys.

    Args:
        q: [Rq, H, d] query rows; k, v: [Rk, H, d] key and value rows.
        q_layout, k_layout: the sequences of the query and of the key rows (the same number of
            sequences; a sequence may keep fewer queries than keys).
        dropout_p: attention dropout.
    Returns:
        [Rq, H, d].
    """
    backend = _settings["backend"]
    if backend == "auto":
        backend = AUTO_ON_CUDA if q.is_cuda and varlen_unusable(q, k, v, dropout_p) is None else "padded"
    if backend == "varlen":
        reason = varlen_unusable(q, k, v, dropout_p)
        if reason is not None:
            raise RuntimeError(f"the varlen attention backend cannot run here: {reason}")
        cu_q, cu_k = q_layout.offsets.int(), k_layout.offsets.int()
        return varlen_attn(q, k, v, cu_q, cu_k, q_layout.max_len, k_layout.max_len)
    if backend == "sequential":
        outs = []
        q_offsets, k_offsets = q_layout.offsets.tolist(), k_layout.offsets.tolist()
        for q0, q1, k0, k1 in zip(q_offsets, q_offsets[1:], k_offsets, k_offsets[1:]):
            heads = (z.transpose(0, 1)[None] for z in (q[q0:q1], k[k0:k1], v[k0:k1]))
            outs.append(F.scaled_dot_product_attention(*heads, dropout_p=dropout_p)[0].transpose(0, 1))
        return torch.cat(outs) if outs else q.new_zeros(q.shape)
    key_valid = k_layout.valid()
    mask = None if key_valid is None else key_valid[:, None, None, :]
    q, k, v = (layout.pad(z).transpose(1, 2) for layout, z in ((q_layout, q), (k_layout, k), (k_layout, v)))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return q_layout.unpad(out.transpose(1, 2))


# ---------------------------------------------------------------- what ATS kept


@dataclass
class KeptTokens:
    """What one ATS block kept in each sample of the last forward.

    block: the block's 0-based index.
    count: [B, T] long, kept patch tokens per frame (prefix tokens such as CLS not counted).
    positions: [B, K', 3] long (t, h, w) of each kept token in (t, h, w) order, -1 at padding;
        K' is the largest number of tokens a sample kept.
    grid: (T, h, w), the frames and the patch grid of a frame.
    """

    block: int
    count: Tensor
    positions: Tensor
    grid: Tuple[int, int, int]

    @property
    def mask(self) -> Tensor:
        """[B, T, h, w] bool, True where the token of frame t at patch row h, column w was kept."""
        t, h, w = self.grid
        real = self.positions[..., 0] >= 0
        flat = (self.positions[..., 0] * h + self.positions[..., 1]) * w + self.positions[..., 2]
        flat = flat.masked_fill(~real, t * h * w)  # padding goes to a spare column
        mask = torch.zeros(len(flat), t * h * w + 1, dtype=torch.bool, device=flat.device)
        return mask.scatter_(1, flat, True)[:, :-1].view(len(flat), t, h, w)


@dataclass(frozen=True)
class KeptRows:
    """What a forward stores for an ATS block; :func:`kept_tokens` makes it a :class:`KeptTokens`.

    block: the block's index; position, layout: the kept tokens' (t, h, w) and sequences;
    samples: B, each sample being one sequence (images, TimeSformer clips) or ``S / B``
    consecutive ones (XViT: a sequence per frame); grid: (T, h, w).
    """

    block: int
    position: Tensor
    layout: Layout
    samples: int
    grid: Tuple[int, int, int]


def kept_record(rows: KeptRows) -> KeptTokens:
    """The :class:`KeptTokens` of what a forward stored for one ATS block."""
    frames, h, w = rows.grid
    b = rows.samples
    patch = rows.position[:, 0] >= 0
    position = rows.position[patch]
    sample = rows.layout.sequence_of_rows()[patch]
    if b:
        sample = torch.div(sample, rows.layout.num_seqs // b, rounding_mode="floor")
    count = torch.zeros(b * frames, dtype=torch.long, device=position.device)
    count.index_add_(0, sample * frames + position[:, 0], torch.ones_like(sample))
    layout = Layout.from_lengths(torch.bincount(sample, minlength=b))
    positions = layout.pad(position)
    valid = layout.valid()
    if valid is not None:
        positions = positions.masked_fill(~valid[..., None], -1)
    return KeptTokens(rows.block, count.view(b, frames), positions, rows.grid)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def kept_counts(model: nn.Module) -> Dict[int, Tensor]:
    """ATS block -> the patch tokens it kept in the last forward of ``model``, summed over the
    batch (a 0-d tensor on the model's device): the cheap figure a training log needs, with none
    of :func:`kept_tokens`'s work."""
    return {rows.block: (rows.position[:, 0] >= 0).sum() for rows in getattr(unwrap(model), "ats_kept", [])}


def kept_tokens(model: nn.Module) -> List[KeptTokens]:
    """What each ATS block kept in the last forward of ``model`` (wrapped or not), in block
    order; empty for a model without ATS."""
    return [kept_record(rows) for rows in getattr(unwrap(model), "ats_kept", [])]
