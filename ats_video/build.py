"""Builders: the one place where a config becomes datasets and models."""

from __future__ import annotations

import os

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ats_video.data.imagenet import ImageNetFolder
from ats_video.data.kinetics import KineticsDataset
from ats_video.data.lists import load_videos, read_class_names
from ats_video.families import apply_ats, create_model, video_architectures

SPLITS = ("train", "val", "test")


def build_model(cfg: CfgNode) -> nn.Module:
    """The model named by ``cfg.MODEL.ARCH``, with ATS as ``cfg.ATS`` says (random weights)."""
    arch = cfg.MODEL.ARCH
    common = dict(num_classes=cfg.MODEL.NUM_CLASSES, drop_path_rate=cfg.MODEL.DROP_PATH_RATE)
    size = dict(img_size=cfg.DATA.TRAIN_CROP_SIZE)
    if arch in video_architectures():
        size["num_frames"] = cfg.DATA.NUM_FRAMES
    try:
        model = create_model(arch, **common, **size)
    except ValueError as error:
        raise ValueError(f"MODEL.ARCH: {error}") from None
    if cfg.ATS.ENABLE:
        budget = cfg.ATS.K if cfg.ATS.K > 0 else cfg.ATS.RATIO
        apply_ats(model, cfg.ATS.BLOCKS or None, budget, mode=cfg.ATS.MODE, selector=cfg.ATS.SELECTOR)
    return model


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
    if data.DATASET == "imagenet":
        return ImageNetFolder(
            data.PATH_TO_DATA_DIR,
            split="train" if split == "train" else "val",
            crop_size=data.TRAIN_CROP_SIZE if split == "train" else data.TEST_CROP_SIZE,
            resize_size=data.TEST_RESIZE_SIZE,
            mean=data.MEAN,
            std=data.STD,
        )
    if data.DATASET != "kinetics":
        raise ValueError(f"DATA.DATASET must be 'kinetics' or 'imagenet', got {data.DATASET!r}")

    root = data.PATH_TO_DATA_DIR
    class_names = None
    if data.CLASS_NAMES_FILE:
        class_names = read_class_names(os.path.join(root, data.CLASS_NAMES_FILE))
    source = {"train": data.TRAIN_LIST, "val": data.VAL_LIST, "test": data.TEST_LIST}[split]
    videos = load_videos(
        os.path.join(root, source),
        prefix=data.PATH_PREFIX or root,
        separator=data.PATH_LABEL_SEPARATOR,
        class_names=class_names,
    )
    # a label beyond the classifier would otherwise surface only in the loss, far from its cause
    label = max(video.label for video in videos)
    if label >= cfg.MODEL.NUM_CLASSES:
        raise ValueError(
            f"{os.path.join(root, source)}: label {label} is out of range for MODEL.NUM_CLASSES "
            f"{cfg.MODEL.NUM_CLASSES}"
        )
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
    )
