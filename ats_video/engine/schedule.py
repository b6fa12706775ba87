"""The learning rate as a pure function of the (fractional) epoch, PySlowFast's policies.

The rate is recomputed every iteration from ``epoch + iteration / iterations_per_epoch``, so it
needs no state of its own and a resumed run follows the same curve.
"""

from __future__ import annotations

import math
from typing import Sequence


def lr_at(
    epoch: float,
    *,
    policy: str,
    base_lr: float,
    max_epoch: int,
    warmup_epochs: float = 0.0,
    warmup_start_lr: float = 0.0,
    cosine_end_lr: float = 0.0,
    steps: Sequence[float] = (),
    lrs: Sequence[float] = (),
) -> float:
    """The learning rate at fractional ``epoch``.

    Args:
        policy: "cosine" (from ``base_lr`` at epoch 0 to ``cosine_end_lr`` at ``max_epoch``) or
            "steps_with_relative_lrs" (``base_lr * lrs[i]`` from epoch ``steps[i]`` on;
            ``steps`` starts at 0).
        warmup_epochs, warmup_start_lr: a linear ramp from ``warmup_start_lr`` to the policy's
            rate at ``warmup_epochs`` over the first ``warmup_epochs``.
    """
    if epoch < warmup_epochs:
        end = lr_at(
            warmup_epochs,
            policy=policy,
            base_lr=base_lr,
            max_epoch=max_epoch,
            cosine_end_lr=cosine_end_lr,
            steps=steps,
            lrs=lrs,
        )
        return warmup_start_lr + (end - warmup_start_lr) * epoch / warmup_epochs
    if policy == "cosine":
        progress = min(epoch / max_epoch, 1.0)
        return cosine_end_lr + (base_lr - cosine_end_lr) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )
    if policy == "steps_with_relative_lrs":
        index = max(i for i, start in enumerate(steps) if start <= epoch)
        return base_lr * lrs[index]
    raise ValueError(f"unknown learning rate policy {policy!r}")
