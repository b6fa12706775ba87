"""Fine-tunes (TRAIN.ENABLE) and then runs the multi-view test (TEST.ENABLE), PySlowFast style.

    python tools/run_net.py --cfg configs/Kinetics/TimeSformer_divST_8x32_224_ATS.yaml \\
        DATA.PATH_TO_DATA_DIR /data/k400 \\
        TRAIN.CHECKPOINT_FILE_PATH TimeSformer_divST_8x32_224_K400.pyth
    torchrun --nproc_per_node 8 tools/run_net.py --cfg CFG.yaml [KEY VALUE ...]

One process, or many under torchrun (its multi-node flags too): DistributedDataParallel over
NCCL on GPUs, gloo on CPUs. TRAIN.BATCH_SIZE and TEST.BATCH_SIZE are totals over all processes.

Everything is written under OUTPUT_DIR: config.yaml (the whole config),
checkpoints/checkpoint_epoch_NNNNN.pyth, log.txt, log.jsonl, tensorboard/, and after the test
test_results.json, test_predictions.csv and (with ATS) kept_tokens_histogram.png, the kept
tokens per clip of each ATS block.
Training starts from the last checkpoint there when TRAIN.AUTO_RESUME is set (and continues
exactly as an uninterrupted run would), else from TRAIN.CHECKPOINT_FILE_PATH (a classifier of
another class count is re-initialised), else from random weights. The test loads
TEST.CHECKPOINT_FILE_PATH, or else the last checkpoint in OUTPUT_DIR.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import logging
import os
import sys
from typing import Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ats_video.build import (
    build_dataset,
    build_lr_schedule,
    build_model,
    build_optimizer,
    describe_ats,
)
from ats_video.checkpoint import load_checkpoint
from ats_video.config import load_config
from ats_video.engine.checkpoints import last_checkpoint, resume, save_training_checkpoint
from ats_video.engine.data import EngineDataset, eval_loader, seed_epoch, set_epoch, train_loader
from ats_video.engine.distributed import Process, init_process, shutdown
from ats_video.engine.evaluate import (
    Evaluation,
    evaluate,
    kept_tokens_text,
    test_log_lines,
    test_results,
    write_test_outputs,
)
from ats_video.engine.logs import Recorder, setup_logging
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
        **loader_options(cfg, process),
    )


def run_evaluation(cfg, process: Process, model, loader, desc: str) -> Evaluation:
    return evaluate(
        model,
        loader,
        num_classes=cfg.MODEL.NUM_CLASSES,
        ensemble=cfg.TEST.ENSEMBLE_METHOD,
        device=process.device,
        autocast_dtype=autocast_dtype(cfg.TRAIN.MIXED_PRECISION, process.device),
        desc=desc,
        show_progress=process.is_main,
    )


def train(cfg, process: Process) -> None:
    device = process.device
    dtype = autocast_dtype(cfg.TRAIN.MIXED_PRECISION, device)
    torch.manual_seed(cfg.RNG_SEED)  # the same initial weights on every process and every run
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    lr_at = build_lr_schedule(cfg)

    start_epoch = 0
    last = last_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    if last:
        start_epoch = resume(last, model, optimizer, scaler)
        logger.info(f"resumed from {last} after epoch {start_epoch}")
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        load_checkpoint(model, cfg.TRAIN.CHECKPOINT_FILE_PATH, fresh_classifier=True)
        logger.info(f"initial weights from {cfg.TRAIN.CHECKPOINT_FILE_PATH}")
    else:
        logger.info(f"random initial weights (RNG_SEED {cfg.RNG_SEED})")
    ddp_model = DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None
    )

    train_data = EngineDataset(build_dataset(cfg, "train"), seed=cfg.RNG_SEED)
    loader = train_loader(
        train_data,
        batch_size=per_process(cfg.TRAIN.BATCH_SIZE, "TRAIN.BATCH_SIZE", process),
        seed=cfg.RNG_SEED,
        **loader_options(cfg, process),
    )
    val_loader = views_loader(cfg, process, "val")
    recorder = Recorder(cfg.OUTPUT_DIR, tensorboard=cfg.TENSORBOARD.ENABLE, enabled=process.is_main)
    max_epoch = cfg.SOLVER.MAX_EPOCH
    logger.info(
        f"training {cfg.MODEL.ARCH} on {len(train_data)} videos for epochs {start_epoch + 1}.."
        f"{max_epoch}, {len(loader)} iterations each, {process.world_size} process(es) on {device}"
    )
    for epoch in range(start_epoch, max_epoch):
        seed_epoch(cfg.RNG_SEED, epoch, process.rank)
        set_epoch(loader, epoch)
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
        )
        done = epoch + 1
        step = done * len(loader)
        recorder.write("train_epoch", step, stats, epoch=done)
        logger.info(
            f"epoch {done}/{max_epoch}: loss {stats['loss']:.4f}, {stats['clips_per_s']:.1f} "
            f"clips/s, {stats['seconds']:.0f} s, {stats['replaced']} unusable videos replaced"
        )
        if done % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or done == max_epoch:
            if process.is_main:
                path = save_training_checkpoint(
                    cfg.OUTPUT_DIR, done, model, optimizer, scaler, cfg.dump()
                )
                logger.info(f"saved {path}")
            dist.barrier()  # the test reads it next, on every process
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


def test(cfg, process: Process) -> None:
    device = process.device
    path = cfg.TEST.CHECKPOINT_FILE_PATH or last_checkpoint(cfg.OUTPUT_DIR)
    if not path:
        raise FileNotFoundError(
            f"TEST.CHECKPOINT_FILE_PATH is empty and {cfg.OUTPUT_DIR}/checkpoints holds no "
            "checkpoint: name the weights to test, or train first (TRAIN.ENABLE True)"
        )
    model = build_model(cfg).to(device)
    load_checkpoint(model, path)
    loader = views_loader(cfg, process, "test")
    dataset = loader.dataset
    views = f"{cfg.TEST.NUM_ENSEMBLE_VIEWS}x{cfg.TEST.NUM_SPATIAL_CROPS}"
    logger.info(
        f"testing {path} on {len(dataset.videos)} videos x {views} views "
        f"({cfg.TEST.ENSEMBLE_METHOD} of softmax scores), ATS {'on' if cfg.ATS.ENABLE else 'off'}"
    )
    evaluation = run_evaluation(cfg, process, model, loader, f"test {views}")
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


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)
    process = init_process()
    try:
        setup_logging(cfg.OUTPUT_DIR, process.is_main)
        if process.is_main:  # the whole config, to read or to run again with --cfg
            with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
                f.write(cfg.dump())
        if cfg.TRAIN.ENABLE:
            train(cfg, process)
        if cfg.TEST.ENABLE:
            test(cfg, process)
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
