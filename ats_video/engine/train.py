"""One training epoch: the loop, read top to bottom.

Per iteration: the learning rate from the schedule (a pure function of the fractional epoch),
the batch's targets (mixed, if the objective mixes), forward under autocast, the objective's
loss (cross-entropy, label-smoothed, or against mixup's soft targets), backward through the
gradient scaler (a pass-through unless fp16), optional clipping of the gradients' L2 norm,
step. Every ``log_period`` iterations the main process reports the period's loss, training top-1
(against the unmixed labels), learning rate, clips/s, data time, mean kept tokens per clip (over
all processes), the time left in the epoch and in the run at the epoch's pace so far, and on a
GPU the peak memory since the last report, to the console, ``log.jsonl`` and TensorBoard.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Dict, Optional

import torch
from torch import nn
from tqdm import tqdm

from ats_video.engine.distributed import all_reduce
from ats_video.engine.logs import Recorder, duration
from ats_video.engine.objective import Objective
from ats_video.tokens import kept_counts

logger = logging.getLogger(__name__)


def train_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    epoch: int,
    max_epoch: int,
    lr_at: Callable[[float], float],
    device: torch.device,
    autocast_dtype: Optional[torch.dtype],
    clip_grad: float,
    log_period: int,
    recorder: Recorder,
    show_progress: bool,
    objective: Objective,
) -> Dict[str, float]:
    """Trains ``model`` (DistributedDataParallel) for epoch ``epoch`` (0-based).

    Returns the epoch's mean loss, clips, clips/s, seconds and unusable videos replaced, over
    all processes.
    """
    model.train()
    iters = len(loader)
    # loss sum, clips, data s, iters, correct top-1
    period = torch.zeros(5, dtype=torch.float64, device=device)
    kept_period: Dict[int, torch.Tensor] = {}  # ATS block -> kept tokens summed over clips
    epoch_loss, epoch_clips, replaced = 0.0, 0.0, torch.zeros((), dtype=torch.long, device=device)
    epoch_start = period_start = end = time.perf_counter()
    # disable=None: a bar only where the output is a terminal, not in logs
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{max_epoch}", disable=None if show_progress else True
    )
    for it, batch in enumerate(bar):
        period[2] += time.perf_counter() - end
        lr = lr_at(epoch + it / iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs = batch["inputs"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        inputs, targets = objective.targets(inputs, labels, epoch=epoch, iteration=it)

        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(inputs)
        loss = objective(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()

        # sums stay on the device: no synchronisation until the period's report
        period[0] += loss.detach() * len(labels)
        period[1] += len(labels)
        period[3] += 1
        period[4] += (logits.detach().argmax(dim=-1) == labels).sum()
        for block, count in kept_counts(model).items():
            kept_period[block] = kept_period.get(block, 0) + count
        replaced += batch["num_replaced"].sum().to(device)
        if (it + 1) % log_period == 0 or it + 1 == iters:
            kept_sums = [t.to(period) for t in kept_period.values()]
            totals = all_reduce(
                torch.cat([period, torch.stack(kept_sums) if kept_sums else period[:0]])
            )
            loss_sum, clips, data_seconds, steps, correct = totals[:5].tolist()
            kept = {b: v / clips for b, v in zip(kept_period, totals[5:].tolist())}
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"the loss is {loss_sum} at epoch {epoch + 1}, iteration {it + 1}: "
                    "lower SOLVER.BASE_LR or set SOLVER.CLIP_GRAD"
                )
            now = time.perf_counter()
            seconds = now - period_start
            per_iter = (now - epoch_start) / (it + 1)
            eta_epoch = per_iter * (iters - it - 1)
            values = {
                "loss": loss_sum / clips,
                "top1": 100.0 * correct / clips,
                "lr": lr,
                "clips_per_s": clips / seconds,
                "data_time": data_seconds / steps,
                "kept_tokens": kept,
                "eta_epoch_s": eta_epoch,
                "eta_run_s": eta_epoch + per_iter * iters * (max_epoch - epoch - 1),
            }
            if device.type == "cuda":
                values["max_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                torch.cuda.reset_peak_memory_stats(device)
            recorder.write("train", epoch * iters + it + 1, values, epoch=epoch + 1, iter=it + 1)
            bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
            logger.info(
                f"epoch {epoch + 1}/{max_epoch} iter {it + 1}/{iters}: loss {values['loss']:.4f}, "
                f"top-1 {values['top1']:.1f}%, lr {lr:.3g}, {values['clips_per_s']:.1f} clips/s, "
                f"data {values['data_time']:.3f} s/iter"
                + "".join(f", kept tokens block {b}: {v:.1f}" for b, v in kept.items())
                + f", ETA epoch {duration(values['eta_epoch_s'])}"
                + f", run {duration(values['eta_run_s'])}"
                + (f", max mem {values['max_mem_gib']:.2f} GiB" if "max_mem_gib" in values else "")
            )
            epoch_loss += loss_sum
            epoch_clips += clips
            period.zero_()
            kept_period = {}
            period_start = time.perf_counter()
        end = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - epoch_start
    return {
        "loss": epoch_loss / max(epoch_clips, 1),
        "clips": epoch_clips,
        "clips_per_s": epoch_clips / seconds,
        "seconds": seconds,
        "replaced": int(all_reduce(replaced)),
    }
