"""Builders: the one place where a config becomes datasets, models, an optimizer, a
learning-rate schedule and the training objective."""

from __future__ import annotations

import os
from functools import partial
from typing import Callable, Sequence

import torch
from fvcore.common.config import CfgNode
from timm.optim import create_optimizer_v2
from torch import nn

from ats_video.data.files import class_folders
from ats_video.data.imagenet import ImageNetFolder
from ats_video.data.kinetics import KineticsDataset
from ats_video.data.lists import VideoRecord, load_videos, read_class_names
from ats_video.engine.objective import Objective
from ats_video.engine.schedule import lr_at
from ats_video.families import apply_ats, create_model, family_of, video_architectures
from ats_video.patch.tome import apply_tome
from ats_video.tokens import unwrap

SPLITS = ("train", "val", "test")


def build_model(cfg: CfgNode) -> nn.Module:
    """The model named by ``cfg.MODEL.ARCH``, with ATS as ``cfg.ATS`` says (random weights).

    MODEL.PATCH_SIZE, EMBED_DIM, DEPTH and NUM_HEADS override the architecture's own sizes
    where they are not 0, so a tiny model can be configured from the command line.
    """
    arch = cfg.MODEL.ARCH
    kwargs = dict(
        num_classes=cfg.MODEL.NUM_CLASSES,
        drop_path_rate=cfg.MODEL.DROP_PATH_RATE,
        img_size=cfg.DATA.TRAIN_CROP_SIZE,
    )
    if arch in video_architectures():
        kwargs["num_frames"] = cfg.DATA.NUM_FRAMES
    sizes = {
        f"MODEL.{key}": cfg.MODEL[key]
        for key in ("PATCH_SIZE", "EMBED_DIM", "DEPTH", "NUM_HEADS")
        if cfg.MODEL[key]
    }
    kwargs.update({key[len("MODEL.") :].lower(): value for key, value in sizes.items()})
    try:
        model = create_model(arch, **kwargs)
    except ValueError as error:
        raise ValueError(f"MODEL.ARCH: {error}") from None
    except AssertionError as error:  # timm's, e.g. a width that the heads do not divide
        raise ValueError(f"MODEL.ARCH {arch!r} with {sizes}: {error}") from None
    if cfg.ATS.ENABLE and cfg.ATS.SELECTOR == "tome":
        apply_tome(model, cfg.ATS.BLOCKS or None, cfg.ATS.TOME_R)
    elif cfg.ATS.ENABLE:
        budget = cfg.ATS.K or cfg.ATS.RATIO or None  # None: the official K, a frame's patch tokens
        blocks = cfg.ATS.BLOCKS or None
        apply_ats(model, blocks, budget, mode=cfg.ATS.MODE, selector=cfg.ATS.SELECTOR)
    return model


def ats_blocks(cfg: CfgNode, model: nn.Module) -> list[int]:
    """The ATS blocks ``cfg.ATS`` puts into ``model`` (empty without ATS), in order."""
    if not cfg.ATS.ENABLE:
        return []
    model = unwrap(model)
    return sorted(set(cfg.ATS.BLOCKS or family_of(model).default_blocks(len(model.blocks))))


def describe_ats(cfg: CfgNode, model: nn.Module) -> str:
    """``cfg.ATS`` in words for titles and logs, e.g. "ATS K=6 in blocks 3-5, per frame" or
    "no ATS"; ``model`` (built from ``cfg``) gives the default blocks and budget."""
    ats = cfg.ATS
    if not ats.ENABLE:
        return "no ATS"
    model = unwrap(model)
    if ats.SELECTOR == "tome":
        budget = f"r={ats.TOME_R}"
    elif ats.K:
        budget = f"K={ats.K}"
    elif ats.RATIO:
        budget = f"ratio {ats.RATIO:g}"
    else:
        budget = f"default K={model.patch_embed.num_patches}"
    blocks = ats_blocks(cfg, model)
    if not blocks:
        return "ATS in no block"
    consecutive = blocks == list(range(blocks[0], blocks[-1] + 1)) and len(blocks) > 2
    where = f"{blocks[0]}-{blocks[-1]}" if consecutive else ", ".join(map(str, blocks))
    method = "ToMe" if ats.SELECTOR == "tome" else "ATS"
    text = f"{method} {budget} in block{'s' * (len(blocks) > 1)} {where}"
    if len(family_of(model).modes) > 1 and method == "ATS":  # video
        text += ", per frame" if ats.MODE == "frame" else ", shared"
    return text + {"topk": ", top-K", "random": ", random"}.get(ats.SELECTOR, "")


def build_dataset(cfg: CfgNode, split: str) -> torch.utils.data.Dataset:
    """The dataset of ``split`` described by ``cfg.DATA`` (and ``cfg.TEST`` for testing).

    Video splits: "train" samples random clips with augmentation; "val" one centred clip and
    the centre crop per video (quick validation while training); "test"
    TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views per video.
    ImageNet: "train" or "val" ("test" reads "val").
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = cfg.DATA
    root = data.PATH_TO_DATA_DIR
    if not os.path.isdir(root):
        raise FileNotFoundError(f"DATA.PATH_TO_DATA_DIR: no directory {root!r}")
    if data.DATASET == "imagenet":
        return ImageNetFolder(
            root,
            split="train" if split == "train" else "val",
            crop_size=data.TRAIN_CROP_SIZE if split == "train" else data.TEST_CROP_SIZE,
            resize_size=data.TEST_RESIZE_SIZE,
            mean=data.MEAN,
            std=data.STD,
        )
    if data.DATASET != "kinetics":
        raise ValueError(f"DATA.DATASET must be 'kinetics' or 'imagenet', got {data.DATASET!r}")

    source = _list_of(data, split)
    videos = load_videos(
        os.path.join(root, source),
        prefix=data.PATH_PREFIX or root,
        separator=data.PATH_LABEL_SEPARATOR,
        class_names=class_names(cfg, split),
    )
    # a label beyond the classifier would otherwise surface only in the loss, far from its cause
    label = max(video.label for video in videos)
    if label >= cfg.MODEL.NUM_CLASSES:
        raise ValueError(
            f"{os.path.join(root, source)}: label {label} is out of range for MODEL.NUM_CLASSES "
            f"{cfg.MODEL.NUM_CLASSES}"
        )
    return build_video_dataset(cfg, videos, split)


def _list_of(data: CfgNode, split: str) -> str:
    return {"train": data.TRAIN_LIST, "val": data.VAL_LIST, "test": data.TEST_LIST}[split]


def class_names(cfg: CfgNode, split: str) -> list[str] | None:
    """The class names of ``split`` in index order where the data names them: the
    DATA.CLASS_NAMES_FILE map, or the training tree's class folders (ImageNet, or Kinetics-style
    class-folder trees); None for plain lists without a class map."""
    data = cfg.DATA
    root = data.PATH_TO_DATA_DIR
    if data.DATASET == "imagenet":
        train_tree = os.path.join(root, "train")
        return class_folders(train_tree) if os.path.isdir(train_tree) else None
    if data.CLASS_NAMES_FILE:
        return read_class_names(os.path.join(root, data.CLASS_NAMES_FILE))
    train_tree = os.path.join(root, data.TRAIN_LIST)
    if os.path.isdir(os.path.join(root, _list_of(data, split))) and os.path.isdir(train_tree):
        # class-folder trees and no class map: every split is numbered by the training tree's
        # classes, so a split that lacks a class shifts no other class's index
        return class_folders(train_tree)
    return None


def build_video_dataset(cfg: CfgNode, videos: Sequence[VideoRecord], split: str) -> KineticsDataset:
    """The Kinetics-style dataset of ``videos`` for ``split``, sampled and transformed as
    ``cfg.DATA`` (and ``cfg.TEST`` for testing) say: what :func:`build_dataset` makes of a list,
    and what ``ats_video.inference`` makes of the videos a user names."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = cfg.DATA
    training = split == "train"
    return KineticsDataset(
        videos,
        training=training,
        num_frames=data.NUM_FRAMES,
        sampling_rate=data.SAMPLING_RATE,
        crop_size=data.TRAIN_CROP_SIZE if training else data.TEST_CROP_SIZE,
        jitter_scales=data.TRAIN_JITTER_SCALES,
        mean=data.MEAN,
        std=data.STD,
        random_flip=data.RANDOM_FLIP,
        num_ensemble_views=cfg.TEST.NUM_ENSEMBLE_VIEWS if split == "test" else 1,
        num_spatial_crops=cfg.TEST.NUM_SPATIAL_CROPS if split == "test" else 1,
        decoding_backend=data.DECODING_BACKEND,
        auto_augment=data.AUTO_AUGMENT,
    )


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZING_METHOD through timm's factory, with no weight decay on norms, biases
    and the model's ``no_weight_decay()`` parameters (position, time and class embeddings).

    The learning rate is set every iteration from :func:`build_lr_schedule`'s function.
    """
    solver = cfg.SOLVER
    if solver.OPTIMIZING_METHOD == "sgd":
        # timm's "sgd" is Nesterov SGD and its "momentum" plain momentum SGD
        name = "sgd" if solver.NESTEROV else "momentum"
        extra = dict(momentum=solver.MOMENTUM)
    else:
        name, extra = solver.OPTIMIZING_METHOD, {}
    return create_optimizer_v2(
        model,
        opt=name,
        lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        filter_bias_and_bn=True,
        **extra,
    )


def build_lr_schedule(cfg: CfgNode) -> Callable[[float], float]:
    """The learning rate as a function of the fractional epoch (:func:`lr_at`), from SOLVER."""
    solver = cfg.SOLVER
    return partial(
        lr_at,
        policy=solver.LR_POLICY,
        base_lr=solver.BASE_LR,
        max_epoch=solver.MAX_EPOCH,
        warmup_epochs=solver.WARMUP_EPOCHS,
        warmup_start_lr=solver.WARMUP_START_LR,
        cosine_end_lr=solver.COSINE_END_LR,
        steps=tuple(solver.STEPS),
        lrs=tuple(solver.LRS),
    )


def build_objective(cfg: CfgNode, *, rank: int, batch_size: int) -> Objective:
    """The training targets and loss (TRAIN.LABEL_SMOOTHING, TRAIN.MIXUP_ALPHA) of process
    ``rank``, which trains ``batch_size`` clips a batch.

    Raises:
        ValueError naming TRAIN.BATCH_SIZE when mixup would meet an odd batch.
    """
    train = cfg.TRAIN
    if train.MIXUP_ALPHA > 0 and batch_size % 2:
        raise ValueError(
            f"TRAIN.BATCH_SIZE: mixup (TRAIN.MIXUP_ALPHA {train.MIXUP_ALPHA}) needs an even "
            f"number of clips per process, got {batch_size}"
        )
    return Objective(
        num_classes=cfg.MODEL.NUM_CLASSES,
        label_smoothing=train.LABEL_SMOOTHING,
        mixup_alpha=train.MIXUP_ALPHA,
        seed=cfg.RNG_SEED,
        rank=rank,
    )
