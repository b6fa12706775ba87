"""The training objective: what a batch is trained against, and the loss.

Plain cross-entropy by default. XViT's Kinetics recipe adds two things (Bulat et al., NeurIPS
2021, Sec. 4.1; its release's ``TRAIN.MIXUP_ALPHA: 0.4`` and ``MODEL.LOSS_FUNC:
smooth_cross_entropy``, whose smoothing is 0.3), both from timm here:

- label smoothing ``s``: timm's ``LabelSmoothingCrossEntropy``, i.e. cross-entropy against
  ``(1 - s) * one_hot + s / num_classes``, the release's loss;
- mixup with ``alpha``: timm's ``Mixup`` blends each clip with another of its batch by
  ``lam ~ Beta(alpha, alpha)`` (one ``lam`` per batch) and its soft targets with it (smoothed
  as above), and timm's ``SoftTargetCrossEntropy`` is the loss. The release mixes the inputs the
  same way and adds the two losses weighted by ``lam``, which is the same loss.

Mixup's draws come from a seed of (run seed, epoch, process, iteration) alone, so a resumed run
mixes exactly as an uninterrupted one.

NOTE: timm's mixup pairs clip i with clip B-1-i of the batch (the release: a random
permutation), so a batch must have an even number of clips; the training loader then drops an
epoch's last, incomplete batch.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from ats_video.engine.data import mixup_seed, seeded


class Objective:
    """Targets and loss of a training batch.

    Args:
        num_classes: classifier outputs.
        label_smoothing: s in [0, 1); 0: hard targets.
        mixup_alpha: mixup's Beta(alpha, alpha); 0: no mixup.
        seed: the run's seed (RNG_SEED); rank: this process's rank; they seed mixup's draws.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {mixup_alpha}")
        self.seed, self.rank = seed, rank
        self.mixup = None
        if mixup_alpha > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup_alpha,
                cutmix_alpha=0.0,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
            self.loss = SoftTargetCrossEntropy()
        elif label_smoothing > 0:
            self.loss = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
        else:
            self.loss = F.cross_entropy

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (and so must hold an even number of clips)."""
        return self.mixup is not None

    def targets(
        self, inputs: torch.Tensor, labels: torch.Tensor, *, epoch: int, iteration: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The batch to train on and its targets.

        Args:
            inputs: [B, ...] clips (or images); mixed in place with mixup.
            labels: [B] class indices.
            epoch, iteration: where in training the batch is (0-based); they seed mixup.
        Returns:
            (inputs, labels) as given without mixup; with it, the mixed inputs and [B, classes]
            soft targets.
        Raises:
            ValueError when mixup meets an odd batch.
        """
        if self.mixup is None:
            return inputs, labels
        if len(inputs) % 2:
            raise ValueError(
                f"mixup needs an even number of clips per process and batch, got {len(inputs)}"
            )
        with seeded(mixup_seed(self.seed, epoch, self.rank, iteration)):
            return self.mixup(inputs, labels)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of ``logits`` [B, classes] against :meth:`targets`' targets."""
        return self.loss(logits, targets)
