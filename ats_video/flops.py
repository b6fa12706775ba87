"""GFLOPs of a forward as it really runs, per sample, fused attention included.

fvcore traces the model and does not see inside ``scaled_dot_product_attention``; it also
counts one padded batch, not what each sample kept. Here each sample runs on its own under
PyTorch's ``FlopCounterMode``, which counts every matmul, linear, convolution and fused
attention call as dispatched. PyTorch's table lacks the CPU fused-attention kernel, so we add it
with the formula PyTorch uses for the GPU kernels.

Convention, as fvcore and the published figures (DeiT-S 4.6 GFLOPs, TimeSformer-B 196): one
multiply-add is one FLOP, and element-wise work (softmax, norms, activations) is not counted.
NOTE: a sample is counted alone, so the figure is the cost of the tokens that sample kept; the
padding a batched forward adds for other samples is not counted.
"""

from typing import Any, Dict

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS: Dict[Any, Any] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
}


def forward_flops(model: nn.Module, inputs: Tensor) -> int:
    """Multiply-adds of one forward of ``model`` on ``inputs``, as dispatched (no grad).

    A model with ATS keeps the ``ats_kept`` of its last forward from before the count.
    """
    kept = getattr(model, "ats_kept", None)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        model(inputs)
    if kept is not None:
        model.ats_kept = kept
    return counter.get_total_flops() // 2  # FlopCounterMode counts a multiply-add as two


def count_gflops(model: nn.Module, inputs: Tensor) -> Tensor:
    """Per-sample GFLOPs of ``model`` as run, each sample forwarded alone.

    Args:
        model: any model; put it in eval mode first for inference figures.
        inputs: [B, ...] a batch (images [B, C, H, W] or clips [B, C, T, H, W]).
    Returns:
        [B] float64 GFLOPs (1 multiply-add = 1 FLOP).
    """
    return torch.tensor([forward_flops(model, inputs[i : i + 1]) / 1e9 for i in range(len(inputs))], dtype=torch.float64)
