"""TEMPORARY stand-in for ``ats_video.flops.gflops_as_run``, which is landing in main.

It has the real function's signature and returns NaN (unknown) for every sample, so results
show GFLOPs as unknown until the merge. After the merge: delete this file and import
``gflops_as_run`` from ``ats_video.flops`` in ``ats_video/engine/evaluate.py`` (its only user).
"""

from typing import Sequence

import torch
from torch import Tensor, nn

from ats_video.tokens import KeptTokens


def gflops_as_run(model: nn.Module, kept: Sequence[KeptTokens], batch_size: int) -> Tensor:
    """[batch_size] float64 GFLOPs per sample of a forward with the ``kept`` record (``[]``:
    the model without ATS); here NaN, unknown."""
    return torch.full((batch_size,), float("nan"), dtype=torch.float64)
