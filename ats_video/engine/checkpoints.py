"""Training checkpoints under ``OUTPUT_DIR/checkpoints``, and resuming.

- ``checkpoint_epoch_00005.pyth``: after epoch 5;
- ``checkpoint_epoch_00006_iter_000120.pyth``: after iteration 120 of epoch 6, written when a
  signal stopped the run (:mod:`ats_video.engine.preemption`) or every
  ``TRAIN.CHECKPOINT_ITER_PERIOD`` iterations; only the newest few of these are kept.

Each file is SlowFast's container as written by :func:`ats_video.checkpoint.save_checkpoint`
(atomically, readable with ``torch.load(weights_only=True)``): ``epoch`` (epochs completed),
``iteration`` (iterations done of the next epoch; 0 after a whole epoch), ``model_state``,
``optimizer_state``, ``scaler_state`` (the fp16 gradient scaler; empty when off) and ``cfg``
(the run's config as YAML text).

That is all exact resumption needs, mid-epoch too: the learning rate is a pure function of
the fractional epoch (:mod:`ats_video.engine.schedule`), the epoch's sample order is a function
of (RNG_SEED, epoch) and can start at any batch, and every random draw is seeded from
(RNG_SEED, epoch, sample or iteration, ...) (:mod:`ats_video.engine.data`), so no random state
is stored.
"""

from __future__ import annotations

import logging
import os
import re
from typing import List, Optional, Tuple

import torch
from torch import nn

from ats_video.checkpoint import load_checkpoint, save_checkpoint
from ats_video.tokens import unwrap

logger = logging.getLogger(__name__)

_NAME = re.compile(r"checkpoint_epoch_(\d{5})(?:_iter_(\d{6}))?\.pyth")


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(output_dir: str, epoch: int, iteration: int = 0) -> str:
    """The checkpoint written after ``epoch`` whole epochs and ``iteration`` iterations of the
    next one (named by that epoch, 1-based, and the iteration)."""
    if iteration:
        name = f"checkpoint_epoch_{epoch + 1:05d}_iter_{iteration:06d}.pyth"
    else:
        name = f"checkpoint_epoch_{epoch:05d}.pyth"
    return os.path.join(checkpoint_dir(output_dir), name)


def _progress(name: str) -> Optional[Tuple[int, int]]:
    """A checkpoint's file name -> (epochs completed, iterations of the next), or None."""
    match = _NAME.fullmatch(name)
    if not match:
        return None
    if match.group(2) is None:
        return int(match.group(1)), 0
    return int(match.group(1)) - 1, int(match.group(2))


def _checkpoints(output_dir: str) -> List[Tuple[Tuple[int, int], str]]:
    """((epochs, iteration), path) of every checkpoint under ``output_dir``, oldest first."""
    directory = checkpoint_dir(output_dir)
    if not os.path.isdir(directory):
        return []
    found = [(_progress(name), os.path.join(directory, name)) for name in os.listdir(directory)]
    return sorted((progress, path) for progress, path in found if progress)


def last_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint furthest into training under ``output_dir``, or None. Files still being
    written have another name, so they are never picked."""
    found = _checkpoints(output_dir)
    return found[-1][1] if found else None


def prune_iteration_checkpoints(output_dir: str, keep: int) -> List[str]:
    """Deletes all but the newest ``keep`` mid-epoch checkpoints; returns the deleted paths.
    Checkpoints of whole epochs are never deleted."""
    mid_epoch = [path for (_, iteration), path in _checkpoints(output_dir) if iteration]
    doomed = mid_epoch[: max(len(mid_epoch) - keep, 0)]
    for path in doomed:
        os.remove(path)
    return doomed


def save_training_checkpoint(
    output_dir: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg_text: str,
    iteration: int = 0,
) -> str:
    """Writes the state after ``epoch`` completed epochs and ``iteration`` iterations of the
    next; returns the file's path."""
    path = checkpoint_path(output_dir, epoch, iteration)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_checkpoint(
        unwrap(model),
        path,
        epoch=epoch,
        iteration=iteration,
        optimizer_state=optimizer.state_dict(),
        scaler_state=scaler.state_dict(),
        cfg=cfg_text,
    )
    return path


def resume(
    path: str, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> Tuple[int, int]:
    """Loads a training checkpoint into the model, optimizer and scaler; returns where to
    continue: (epochs completed, iterations done of the next epoch)."""
    extra = load_checkpoint(unwrap(model), path)
    missing = [k for k in ("epoch", "optimizer_state", "scaler_state") if k not in extra]
    if missing:
        raise ValueError(
            f"{path}: not a training checkpoint of this project (no {', '.join(missing)})"
        )
    optimizer.load_state_dict(extra["optimizer_state"])
    if extra["scaler_state"]:
        scaler.load_state_dict(extra["scaler_state"])
    # checkpoints written before mid-epoch checkpoints existed have no "iteration"
    return int(extra["epoch"]), int(extra.get("iteration", 0))
