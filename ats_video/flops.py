"""GFLOPs of a forward as it really runs, per sample: counted, and computed from the kept tokens.

Convention, as fvcore and the published figures (DeiT-S 4.6 GFLOPs, TimeSformer-B 196): one
multiply-add is one FLOP, and element-wise work (softmax, norms, activations) is not counted.
A sample's figure is the work of the tokens it kept: the padding that a batched forward adds
for other samples is not counted, nor the padding a padded attention kernel would add between
the sequences of one sample (a variable-length kernel adds none).

- :func:`count_gflops` is the reference: it runs each sample alone under PyTorch's
  ``FlopCounterMode``, which counts every matmul, linear, convolution and fused attention call as
  dispatched, with the attention backend that runs one sequence at a time (no padding). It is
  slow: a forward per sample.
- :func:`gflops_as_run` computes the same figure from the record of what each ATS block kept
  (:func:`ats_video.kept_tokens`), with each family's formula (:mod:`ats_video.families`);
  cheap enough to run on every test batch. Tests check the two agree.

fvcore traces the model and does not see inside ``scaled_dot_product_attention``; PyTorch's
table lacks the CPU fused-attention kernel, so we add it with the formula PyTorch uses for the
GPU kernels.
"""

from typing import Any, Dict, Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ats_video.families import family_of
from ats_video.tokens import KeptTokens, attention_backend, unwrap


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS: Dict[Any, Any] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
}


def forward_flops(model: nn.Module, inputs: Tensor) -> int:
    """Multiply-adds of one forward of ``model`` on ``inputs``, as dispatched (no grad), with
    attention run one sequence at a time. The model's record of its last forward is kept."""
    kept = getattr(model, "ats_kept", None)
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.no_grad(), attention_backend("sequential"), counter:
        model(inputs)
    if kept is not None:
        model.ats_kept = kept
    return counter.get_total_flops() // 2  # FlopCounterMode counts a multiply-add as two


def count_gflops(model: nn.Module, inputs: Tensor) -> Tensor:
    """Per-sample GFLOPs of ``model`` as run, each sample forwarded alone (the reference).

    Args:
        model: any model; put it in eval mode first for inference figures.
        inputs: [B, ...] a batch (images [B, C, H, W] or clips [B, C, T, H, W]).
    Returns:
        [B] float64 GFLOPs (1 multiply-add = 1 FLOP).
    """
    return torch.tensor([forward_flops(model, inputs[i : i + 1]) / 1e9 for i in range(len(inputs))], dtype=torch.float64)


def gflops_as_run(model: nn.Module, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
    """Per-sample GFLOPs of a forward of ``model`` that kept ``kept``, computed, not counted.

    Args:
        model: a supported model (any DDP or compile wrapper is looked through).
        kept: :func:`ats_video.kept_tokens` after the forward; empty: the same model without
            ATS (every block plain).
        batch_size: B, the samples of that forward.
    Returns:
        [B] float64 GFLOPs, equal to what :func:`count_gflops` counts for each sample.
    """
    model = unwrap(model)
    if hasattr(model, "forward_macs"):  # token merging (ats_video.patch.tome) counts its own work
        return model.forward_macs(list(kept), batch_size) / 1e9
    return family_of(model).forward_macs(model, list(kept), batch_size) / 1e9
