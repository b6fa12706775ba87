"""Fine-tunes (TRAIN.ENABLE) and then runs the multi-view test (TEST.ENABLE), PySlowFast style.

    python tools/run_net.py --cfg configs/Kinetics/TimeSformer_divST_8x32_224_ATS.yaml \\
        DATA.PATH_TO_DATA_DIR /data/k400 \\
        TRAIN.CHECKPOINT_FILE_PATH TimeSformer_divST_8x32_224_K400.pyth
    torchrun --nproc_per_node 8 tools/run_net.py --cfg CFG.yaml [KEY VALUE ...]

One process, or many under torchrun (its multi-node flags too): DistributedDataParallel over
NCCL on GPUs, gloo on CPUs. TRAIN.BATCH_SIZE and TEST.BATCH_SIZE are totals over all processes.

Everything is written under OUTPUT_DIR: config.yaml (the whole config; an earlier run's that
differs is kept as config.N.yaml),
checkpoints/checkpoint_epoch_NNNNN.pyth, log.txt, log.jsonl, tensorboard/, and after the test
test_results.json, test_predictions.csv, test_scores.npz, test_per_class.csv,
test_confusion.png and (with ATS) kept_tokens_histogram.png, the kept
tokens per clip of each ATS block.
Training starts from the last checkpoint there when TRAIN.AUTO_RESUME is set (and continues
exactly as an uninterrupted run would, mid-epoch too), else from TRAIN.CHECKPOINT_FILE_PATH (a
classifier of another class count is re-initialised), else from random weights. The test loads
TEST.CHECKPOINT_FILE_PATH, or else the last checkpoint in OUTPUT_DIR.

On a cluster: one live run holds OUTPUT_DIR (OUTPUT_DIR/run.lock; another is refused, naming
it), and SIGTERM or SIGUSR1 during training ends the run after the current iteration with a
checkpoint of it and the exit status 3 (ats_video.engine.preemption.REQUEUE_EXIT_CODE): run
the same command again to continue. tools/submit.py submits to SLURM and requeues.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from typing import Optional, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from ats_video.build import (
    build_dataset,
    build_lr_schedule,
    build_model,
    build_objective,
    build_optimizer,
    class_names,
    describe_ats,
)
from ats_video.checkpoint import load_checkpoint
from ats_video.config import load_config
from ats_video.engine.checkpoints import (
    last_checkpoint,
    prune_iteration_checkpoints,
    resume,
    save_training_checkpoint,
)
from ats_video.engine.data import (
    EngineDataset,
    eval_loader,
    seed_iteration,
    set_epoch,
    train_loader,
)
from ats_video.engine.distributed import Process, agreed, broadcast, init_process, shutdown
from ats_video.engine.evaluate import (
    Evaluation,
    evaluate,
    kept_tokens_text,
    test_log_lines,
    test_results,
    write_test_outputs,
)
from ats_video.engine.lock import output_dir_lock
from ats_video.engine.logs import Recorder, setup_logging, write_run_config
from ats_video.engine.preemption import REQUEUE_EXIT_CODE, STOP_SIGNALS, StopSignals
from ats_video.engine.run_config import check_resume, keep_optimizer_settings, test_mismatch
from ats_video.engine.scores import write_score_outputs
from ats_video.engine.train import train_epoch
from ats_video.vis import kept_tokens_histogram

logger = logging.getLogger("run_net")
HISTOGRAM = "kept_tokens_histogram.png"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", dest="cfg_file", default="", help="YAML config file")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config"
    )
    return parser.parse_args(argv)


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """TRAIN.MIXED_PRECISION -> the autocast dtype (None: full precision)."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("TRAIN.MIXED_PRECISION: fp16 needs a GPU; use bf16 on a CPU")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def allow_tf32(device: torch.device) -> None:
    """Lets float32 matmuls and convolutions on CUDA use TF32 (Ampere and newer), as PySlowFast and
    timm's training do: torch leaves float32 matmuls at full precision, several times slower on
    an A100. CPU results are left as they are."""
    if device.type != "cuda":
        return
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def per_process(total: int, key: str, process: Process) -> int:
    if total % process.world_size:
        raise ValueError(f"{key} {total} is not a multiple of the {process.world_size} processes")
    return total // process.world_size


def loader_options(cfg, process: Process) -> dict:
    return dict(
        rank=process.rank,
        world_size=process.world_size,
        num_workers=cfg.DATA_LOADER.NUM_WORKERS,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and process.device.type == "cuda",
    )


def views_loader(cfg, process: Process, split: str) -> torch.utils.data.DataLoader:
    """This process's shard of the views of ``split`` ("val": one per video; "test": all)."""
    return eval_loader(
        EngineDataset(build_dataset(cfg, split)),
        batch_size=max(1, cfg.TEST.BATCH_SIZE // process.world_size),
        group=cfg.TEST.NUM_SPATIAL_CROPS if split == "test" else 1,
        **loader_options(cfg, process),
    )


def run_evaluation(
    cfg, process: Process, model, loader, desc: str, keep_view_scores: bool = False
) -> Evaluation:
    return evaluate(
        model,
        loader,
        num_classes=cfg.MODEL.NUM_CLASSES,
        ensemble=cfg.TEST.ENSEMBLE_METHOD,
        device=process.device,
        autocast_dtype=autocast_dtype(cfg.TRAIN.MIXED_PRECISION, process.device),
        desc=desc,
        show_progress=process.is_main,
        keep_view_scores=keep_view_scores,
    )


def write_config(cfg, process: Process) -> None:
    """OUTPUT_DIR/config.yaml, the whole config, to read or to run again with --cfg (an earlier
    run's that differs is kept beside it), and the config into log.txt; written once the run has
    passed its checks, so a refused run leaves the folder as it was."""
    if process.is_main:
        text = cfg.dump()
        logger.info(f"config:\n{text}")
        logger.info(write_run_config(cfg.OUTPUT_DIR, text))


def save_progress(cfg, process: Process, model, optimizer, scaler, epoch: int, iteration: int = 0):
    """The main process writes the checkpoint after ``epoch`` epochs and ``iteration``
    iterations (keeping the newest TRAIN.CHECKPOINT_ITER_KEEP mid-epoch ones); every process
    waits for it, and fails with it. Returns its path."""

    def save() -> Optional[str]:
        if not process.is_main:
            return None
        path = save_training_checkpoint(
            cfg.OUTPUT_DIR, epoch, model, optimizer, scaler, cfg.dump(), iteration
        )
        prune_iteration_checkpoints(cfg.OUTPUT_DIR, cfg.TRAIN.CHECKPOINT_ITER_KEEP)
        logger.info(f"saved {path}")
        return path

    return broadcast(agreed(save))


def train(cfg, process: Process, stop: StopSignals) -> bool:
    """Trains; returns False when a signal stopped it (after writing a checkpoint)."""
    device = process.device
    dtype = autocast_dtype(cfg.TRAIN.MIXED_PRECISION, device)
    torch.manual_seed(cfg.RNG_SEED)  # the same initial weights on every process and every run
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    lr_at = build_lr_schedule(cfg)

    train_data = EngineDataset(build_dataset(cfg, "train"), seed=cfg.RNG_SEED)
    batch_size = per_process(cfg.TRAIN.BATCH_SIZE, "TRAIN.BATCH_SIZE", process)
    objective = build_objective(cfg, rank=process.rank, batch_size=batch_size)
    loader = train_loader(
        train_data,
        batch_size=batch_size,
        seed=cfg.RNG_SEED,
        drop_last=objective.mixes,
        **loader_options(cfg, process),
    )
    val_loader = views_loader(cfg, process, "val")
    iters = len(loader)
    # rank 0 decides where to resume, so processes with their own copies of OUTPUT_DIR cannot
    # start from different points; a process that cannot read it stops them all
    last = cfg.TRAIN.AUTO_RESUME and broadcast(last_checkpoint(cfg.OUTPUT_DIR))
    if last:
        agreed(lambda: check_resume(last, cfg))  # a change that cannot be honoured is refused
        with keep_optimizer_settings(optimizer):  # the config's, not the checkpoint's
            start_epoch, start_iteration = agreed(lambda: resume(last, model, optimizer, scaler))
    else:
        start_epoch, start_iteration = 0, 0
        if cfg.TRAIN.CHECKPOINT_FILE_PATH:
            initial = cfg.TRAIN.CHECKPOINT_FILE_PATH
            agreed(lambda: load_checkpoint(model, initial, fresh_classifier=True))
    write_config(cfg, process)  # the run has passed its checks
    if last:
        logger.info(f"resumed from {last} after {progress_text(start_epoch, start_iteration)}")
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        logger.info(f"initial weights from {cfg.TRAIN.CHECKPOINT_FILE_PATH}")
    else:
        logger.info(f"random initial weights (RNG_SEED {cfg.RNG_SEED})")
    ddp_model = DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None
    )
    recorder = Recorder(
        cfg.OUTPUT_DIR,
        tensorboard=cfg.TENSORBOARD.ENABLE,
        enabled=process.is_main,
        resumed_at=start_epoch * iters + start_iteration,
    )
    max_epoch = cfg.SOLVER.MAX_EPOCH
    logger.info(
        f"training {cfg.MODEL.ARCH} on {len(train_data)} videos for epochs {start_epoch + 1}.."
        f"{max_epoch}, {iters} iterations each, {process.world_size} process(es) on {device}"
    )
    for epoch in range(start_epoch, max_epoch):
        first = start_iteration if epoch == start_epoch else 0
        set_epoch(loader, epoch, first)
        stats = train_epoch(
            ddp_model,
            loader,
            optimizer,
            scaler,
            epoch=epoch,
            max_epoch=max_epoch,
            lr_at=lr_at,
            device=device,
            autocast_dtype=dtype,
            clip_grad=cfg.SOLVER.CLIP_GRAD,
            log_period=cfg.LOG_PERIOD,
            recorder=recorder,
            show_progress=process.is_main,
            objective=objective,
            first_iteration=first,
            seed_iteration=lambda it: seed_iteration(cfg.RNG_SEED, epoch, it, process.rank),
            stop=stop,
            save_every=cfg.TRAIN.CHECKPOINT_ITER_PERIOD,
            save=lambda it: save_progress(cfg, process, model, optimizer, scaler, epoch, it),
        )
        if stats["iterations"] < iters:  # a signal stopped it mid-epoch
            path = save_progress(cfg, process, model, optimizer, scaler, epoch, stats["iterations"])
            log_stop(stop, path, epoch, stats["iterations"])
            recorder.close()
            return False
        done = epoch + 1
        step = done * iters
        recorder.write("train_epoch", step, stats, epoch=done)
        logger.info(
            f"epoch {done}/{max_epoch}: loss {stats['loss']:.4f}, {stats['clips_per_s']:.1f} "
            f"clips/s, {stats['seconds']:.0f} s, {stats['replaced']} unusable videos replaced"
        )
        stopped = stats["stopped"]  # a signal stopped it at the epoch's last iteration
        if done % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or done == max_epoch or stopped:
            path = save_progress(cfg, process, model, optimizer, scaler, done)
        if stopped:
            log_stop(stop, path, done, 0)
            recorder.close()
            return False
        if done % cfg.TRAIN.EVAL_PERIOD == 0 or done == max_epoch:
            val = run_evaluation(cfg, process, model, val_loader, "validation")
            values = {
                "top1": val.accuracy(1),
                "top5": val.accuracy(5),
                "kept_tokens": val.kept_tokens,
            }
            recorder.write("val", step, values, epoch=done)
            logger.info(
                f"epoch {done} validation, clip-level (one centred view per video; not the "
                f"multi-view test): top-1 {values['top1']:.2f}%, top-5 {values['top5']:.2f}%; "
                f"kept tokens per clip: {kept_tokens_text(val.kept_tokens)}"
            )
            if val.unusable.failures:
                logger.warning(val.unusable.summary())
    recorder.close()
    return True


def progress_text(epoch: int, iteration: int) -> str:
    """(epochs done, iterations of the next) -> "iteration 120 of epoch 6" or "epoch 5"."""
    return f"iteration {iteration} of epoch {epoch + 1}" if iteration else f"epoch {epoch}"


def log_stop(stop: StopSignals, path: str, epoch: int, iteration: int) -> None:
    after = ""
    if stop.received_at is not None:
        after = f", {time.monotonic() - stop.received_at:.1f} s after it"
    where = progress_text(epoch, iteration)
    logger.warning(
        f"stopped by {stop.requested or 'a signal to another process'} after {where}{after}; "
        f"{path} holds it: run the same command again to continue (TRAIN.AUTO_RESUME), exit "
        f"status {REQUEUE_EXIT_CODE}"
    )


def test(cfg, process: Process) -> None:
    device = process.device
    path = cfg.TEST.CHECKPOINT_FILE_PATH or last_checkpoint(cfg.OUTPUT_DIR)
    if not path:
        raise FileNotFoundError(
            f"TEST.CHECKPOINT_FILE_PATH is empty and {cfg.OUTPUT_DIR}/checkpoints holds no "
            "checkpoint: name the weights to test, or train first (TRAIN.ENABLE True)"
        )
    model = build_model(cfg).to(device)
    loader = views_loader(cfg, process, "test")
    load_checkpoint(model, path)
    if not cfg.TRAIN.ENABLE:  # the training wrote it
        write_config(cfg, process)
    mismatch = test_mismatch(path, cfg)
    if mismatch and process.is_main:
        logger.warning(mismatch)
    dataset = loader.dataset
    views = f"{cfg.TEST.NUM_ENSEMBLE_VIEWS}x{cfg.TEST.NUM_SPATIAL_CROPS}"
    logger.info(
        f"testing {path} on {len(dataset.videos)} videos x {views} views "
        f"({cfg.TEST.ENSEMBLE_METHOD} of softmax scores), ATS {'on' if cfg.ATS.ENABLE else 'off'}"
    )
    evaluation = run_evaluation(
        cfg, process, model, loader, f"test {views}", cfg.TEST.SAVE_VIEW_SCORES
    )
    if not process.is_main:
        return
    ats = {key: cfg.ATS[key] for key in ("ENABLE", "BLOCKS", "K", "RATIO", "MODE", "SELECTOR", "TOME_R")}
    results = test_results(
        evaluation,
        dataset,
        views=views,
        ensemble_method=cfg.TEST.ENSEMBLE_METHOD,
        checkpoint=path,
        arch=cfg.MODEL.ARCH,
        ats={k: list(v) if isinstance(v, (list, tuple)) else v for k, v in ats.items()},
    )
    write_test_outputs(cfg.OUTPUT_DIR, evaluation, dataset, results)
    for line in test_log_lines(results, f"multi-view test ({views})"):
        logger.info(line)
    if evaluation.unusable.failures:
        logger.warning(evaluation.unusable.summary())
    logger.info(f"wrote {cfg.OUTPUT_DIR}/test_results.json and test_predictions.csv")
    title = f"{cfg.MODEL.ARCH}, {describe_ats(cfg, model)}, {views} test"
    written = write_score_outputs(
        cfg.OUTPUT_DIR,
        evaluation,
        [video.path for video in dataset.videos],
        class_names(cfg, "test"),
        title=title,
    )
    logger.info(f"wrote {', '.join(written)}")
    logger.info(write_kept_histogram(cfg.OUTPUT_DIR, evaluation, title))


def write_kept_histogram(output_dir: str, evaluation: Evaluation, title: str) -> str:
    """Draws OUTPUT_DIR/kept_tokens_histogram.png (kept tokens per clip, per ATS block) where
    the model has ATS; says what it did."""
    if not evaluation.kept_per_view:
        return "no kept tokens recorded (no ATS, or no view run): no kept-token histogram"
    per_clip = {block: counts.numpy() for block, counts in evaluation.kept_per_view.items()}
    figure = kept_tokens_histogram(
        per_clip, tokens_per_clip=evaluation.tokens_per_clip, title=title
    )
    path = os.path.join(output_dir, HISTOGRAM)
    figure.savefig(path, dpi=110)
    return f"wrote {path}"


def main(argv=None, stop_signals: Sequence[signal.Signals] = STOP_SIGNALS) -> int:
    """Runs the command; returns 0, or REQUEUE_EXIT_CODE when one of ``stop_signals`` stopped
    the training (after a checkpoint)."""
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)
    process = init_process(cfg.DIST.TIMEOUT_S)
    allow_tf32(process.device)
    try:
        with contextlib.ExitStack() as held:
            # one live run per OUTPUT_DIR, held by the main process for all
            agreed(lambda: process.is_main and held.enter_context(output_dir_lock(cfg.OUTPUT_DIR)))
            setup_logging(cfg.OUTPUT_DIR, process.is_main)
            if cfg.TRAIN.ENABLE:
                with StopSignals(stop_signals) as stop:
                    if not train(cfg, process, stop):
                        return REQUEUE_EXIT_CODE
            if cfg.TEST.ENABLE:
                test(cfg, process)
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
