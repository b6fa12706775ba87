"""One training epoch: the loop, read top to bottom.

Per iteration: the model's random state from (seed, epoch, iteration), the learning rate from
the schedule (a pure function of the fractional epoch), the batch's targets (mixed, if the
objective mixes), forward under autocast, the objective's loss (cross-entropy, label-smoothed, or
against mixup's soft targets), one flag exchange between processes
(:func:`ats_video.engine.preemption.agree`: a stop requested by a signal, a loss that is not
finite), backward through the gradient scaler (a pass-through unless fp16), optional clipping of
the gradients' L2 norm, step. Every ``log_period`` iterations the main process reports the
period's loss, training top-1 (against the unmixed labels), learning rate, clips/s, data time,
mean kept tokens per clip (over all processes), the time left in the epoch and in the run at the
epoch's pace so far, and on a GPU the peak memory since the last report, to the console,
``log.jsonl`` and TensorBoard.

Divergence is named where it happens, with epoch and iteration, before the weights take a
non-finite step: a non-finite loss on any process (or ATS meeting non-finite token scores in
the forward, which comes first when ATS is on) stops every process before the backward, and
non-finite gradients (identical on every process after DDP's all-reduce) before the step. So
the weights, and every checkpoint, stay finite.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Dict, Optional, Union

import torch
from torch import nn
from tqdm import tqdm

from ats_video.ats import NonFiniteScores
from ats_video.engine.distributed import all_reduce
from ats_video.engine.logs import Recorder, duration
from ats_video.engine.objective import Objective
from ats_video.engine.preemption import StopSignals, agree
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
    first_iteration: int = 0,
    seed_iteration: Callable[[int], None],
    stop: StopSignals,
    save_every: int = 0,
    save: Callable[[int], None],
) -> Dict[str, Union[float, int]]:
    """Trains ``model`` (DistributedDataParallel) for epoch ``epoch`` (0-based), from iteration
    ``first_iteration`` (the loader already starts there: :func:`~ats_video.engine.data.set_epoch`).

    ``seed_iteration(i)`` seeds the model's randomness before iteration ``i`` (0-based);
    ``save(n)`` writes a checkpoint after ``n`` iterations of the epoch, every ``save_every``
    iterations (0: never). When ``stop`` has received a signal on any process, every process
    stops after the same iteration.

    Returns the mean loss, clips, clips/s, seconds and unusable videos replaced over all
    processes, of the iterations run; ``iterations``: how many of the epoch are done; and
    ``stopped``: whether a signal stopped it (then perhaps after the epoch's last iteration).

    Raises:
        FloatingPointError: the loss or the gradients are not finite (on any process), naming
        the epoch and iteration; the weights are those before that iteration.
    """
    model.train()
    iters = first_iteration + len(loader)
    # loss sum, clips, data s, iters, correct top-1
    period = torch.zeros(5, dtype=torch.float64, device=device)
    kept_period: Dict[int, torch.Tensor] = {}  # ATS block -> kept tokens summed over clips
    epoch_loss, epoch_clips, replaced = 0.0, 0.0, torch.zeros((), dtype=torch.long, device=device)
    epoch_start = period_start = end = time.perf_counter()
    # disable=None: a bar only where the output is a terminal, not in logs
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{max_epoch}", disable=None if show_progress else True
    )
    done = first_iteration
    for it, batch in enumerate(bar, start=first_iteration):
        period[2] += time.perf_counter() - end
        seed_iteration(it)
        lr = lr_at(epoch + it / iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs = batch["inputs"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        inputs, targets = objective.targets(inputs, labels, epoch=epoch, iteration=it)

        loss = None  # stays None where the forward met non-finite activations
        with contextlib.suppress(NonFiniteScores):
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                logits = model(inputs)
            loss = objective(logits.float(), targets)
        verdict = agree(stop.requested is not None, loss, device)
        if verdict.diverged:
            raise _diverged(f"the loss is {_loss_text(loss)}", epoch, it)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        norm = None
        if clip_grad > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        # fp16's scaler skips steps with non-finite gradients itself; elsewhere they diverge
        if not scaler.is_enabled():
            if norm is None:
                norm = nn.utils.get_total_norm(
                    [p.grad for p in model.parameters() if p.grad is not None]
                )
            if not bool(norm.isfinite()):
                raise _diverged(f"the gradients' norm is {norm.item()}", epoch, it)
        scaler.step(optimizer)
        scaler.update()
        done = it + 1

        # sums stay on the device: no synchronisation until the period's report
        period[0] += loss.detach() * len(labels)
        period[1] += len(labels)
        period[3] += 1
        period[4] += (logits.detach().argmax(dim=-1) == labels).sum()
        for block, count in kept_counts(model).items():
            kept_period[block] = kept_period.get(block, 0) + count
        replaced += batch["num_replaced"].sum().to(device)
        if (it + 1) % log_period == 0 or it + 1 == iters or verdict.stop:
            kept_sums = [t.to(period) for t in kept_period.values()]
            totals = all_reduce(
                torch.cat([period, torch.stack(kept_sums) if kept_sums else period[:0]])
            )
            loss_sum, clips, data_seconds, steps, correct = totals[:5].tolist()
            kept = {b: v / clips for b, v in zip(kept_period, totals[5:].tolist())}
            now = time.perf_counter()
            seconds = now - period_start
            per_iter = (now - epoch_start) / (it + 1 - first_iteration)  # this run's pace
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
        if verdict.stop:
            break
        if save_every and done % save_every == 0 and done < iters:
            save(done)
        end = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - epoch_start
    return {
        "loss": epoch_loss / max(epoch_clips, 1),
        "clips": epoch_clips,
        "clips_per_s": epoch_clips / seconds,
        "seconds": seconds,
        "replaced": int(all_reduce(replaced)),
        "iterations": done,
        "stopped": done > first_iteration and verdict.stop,
    }


def _loss_text(loss: Optional[torch.Tensor]) -> str:
    if loss is None:
        return "nan (ATS met non-finite token scores in the forward)"
    if bool(loss.isfinite()):
        return f"{loss.item():.4g} here but not finite on another process"
    return str(loss.item())


def _diverged(what: str, epoch: int, it: int) -> FloatingPointError:
    """The error of a diverging run, naming where it was and what to change."""
    return FloatingPointError(
        f"training diverged: {what} at epoch {epoch + 1}, iteration {it + 1}: "
        "lower SOLVER.BASE_LR or set SOLVER.CLIP_GRAD; the weights were not updated with it, "
        "and every checkpoint holds finite weights"
    )
