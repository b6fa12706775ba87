"""Training checkpoints: ``OUTPUT_DIR/checkpoints/checkpoint_epoch_00005.pyth``, and resuming.

Each file is SlowFast's container as written by :func:`ats_video.checkpoint.save_checkpoint`
(atomically, readable with ``torch.load(weights_only=True)``): ``epoch`` (epochs completed,
the number in the name), ``model_state``, ``optimizer_state``, ``scaler_state`` (the fp16
gradient scaler; empty when off) and ``cfg`` (the run's config as YAML text).

That is all exact resumption needs: the learning rate is a pure function of the epoch
(:mod:`ats_video.engine.schedule`), and every random draw of an epoch is seeded from
(RNG_SEED, epoch, ...) (:mod:`ats_video.engine.data`), so no random state is stored.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Optional

import torch
from torch import nn

from ats_video.checkpoint import load_checkpoint, save_checkpoint
from ats_video.tokens import unwrap

logger = logging.getLogger(__name__)

_NAME = re.compile(r"checkpoint_epoch_(\d{5})\.pyth")


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(output_dir: str, epoch: int) -> str:
    """The checkpoint written after ``epoch`` epochs (1-based, as in the file name)."""
    return os.path.join(checkpoint_dir(output_dir), f"checkpoint_epoch_{epoch:05d}.pyth")


def last_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint of the most epochs under ``output_dir``, or None. Files still being
    written have another name, so they are never picked."""
    directory = checkpoint_dir(output_dir)
    if not os.path.isdir(directory):
        return None
    epochs = [int(m.group(1)) for m in map(_NAME.fullmatch, os.listdir(directory)) if m]
    return checkpoint_path(output_dir, max(epochs)) if epochs else None


def save_training_checkpoint(
    output_dir: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg_text: str,
) -> str:
    """Writes the state after ``epoch`` completed epochs; returns the file's path."""
    path = checkpoint_path(output_dir, epoch)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_checkpoint(
        unwrap(model),
        path,
        epoch=epoch,
        optimizer_state=optimizer.state_dict(),
        scaler_state=scaler.state_dict(),
        cfg=cfg_text,
    )
    return path


def resume(
    path: str, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> int:
    """Loads a training checkpoint into the model, optimizer and scaler; returns the number
    of epochs it had completed, the epoch to continue from."""
    extra = load_checkpoint(unwrap(model), path)
    missing = [k for k in ("epoch", "optimizer_state", "scaler_state") if k not in extra]
    if missing:
        raise ValueError(
            f"{path}: not a training checkpoint of this project (no {', '.join(missing)})"
        )
    optimizer.load_state_dict(extra["optimizer_state"])
    if extra["scaler_state"]:
        scaler.load_state_dict(extra["scaler_state"])
    return int(extra["epoch"])
