"""Config defaults, PySlowFast style: an fvcore ``CfgNode`` that YAML files and ``KEY VALUE``
command-line pairs override, checked once when it is read.

Unknown keys are errors: :func:`load_config` names every unknown key of the file and of the
command line at once (``UnknownKeysError``, a ``KeyError``), with what to use instead for the
keys of PySlowFast, TimeSformer and XViT (:mod:`ats_video.legacy_keys`), so a typo never
silently falls back to a default.
:func:`load_config` (what the tools call) then checks the values with :func:`check_cfg`, so a
value that would be ignored or would fail far from its cause is an error naming its key.
Only the tools and ``ats_video.build`` read a config; everything else takes plain arguments.

Sections: DATA (what to read and how to sample it), DATA_LOADER, TRAIN, SOLVER, TEST, MODEL,
ATS, TENSORBOARD, and the top-level OUTPUT_DIR, RNG_SEED, LOG_PERIOD; DIST (collectives between
processes). Key names are PySlowFast's where it has one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Dict

import yaml
from fvcore.common.config import CfgNode
from timm.models import is_model_in_modules

from ats_video.data.augment import auto_augment_transform
from ats_video.data.lists import SEPARATORS
from ats_video.data.video_io import BACKENDS as DECODING_BACKENDS
from ats_video.families import video_architectures
from ats_video.legacy_keys import unknown_keys_message

_C = CfgNode()

# Everything a run writes: checkpoints/, log.jsonl, TensorBoard events, test results.
_C.OUTPUT_DIR = "output"
# Seeds the model's initialisation and, with the epoch and the sample index, every random draw
# of training (data order, augmentation, stochastic depth), so a resumed run repeats exactly.
_C.RNG_SEED = 0
# Training iterations between log lines (console, log.jsonl, TensorBoard).
_C.LOG_PERIOD = 10

# ---------------------------------------------------------------------------------------------
# DATA
# ---------------------------------------------------------------------------------------------
_C.DATA = CfgNode()
# "kinetics" (any `path label` video list or class-folder tree) or "imagenet" (class folders).
_C.DATA.DATASET = "kinetics"
# Directory of the lists (or class-folder trees) and of the class-name map.
_C.DATA.PATH_TO_DATA_DIR = ""
# Directory the listed video paths are relative to; empty means PATH_TO_DATA_DIR.
_C.DATA.PATH_PREFIX = ""
# Between path and label: " ", "," or "auto" (a comma if a list's first line holds one).
_C.DATA.PATH_LABEL_SEPARATOR = "auto"
# Lists (or class-folder directories) per split, relative to PATH_TO_DATA_DIR. Kinetics results
# are reported on the validation set, which is what the multi-view test reads by default.
_C.DATA.TRAIN_LIST = "train.csv"
_C.DATA.VAL_LIST = "val.csv"
_C.DATA.TEST_LIST = "val.csv"
# JSON class-name map (list of names, or {name: index}), relative to PATH_TO_DATA_DIR; optional.
# With it, list labels may be class names, and indices are range-checked.
_C.DATA.CLASS_NAMES_FILE = ""
# A clip is NUM_FRAMES frames, one every SAMPLING_RATE frames of the video (TimeSformer: 8x32).
_C.DATA.NUM_FRAMES = 8
_C.DATA.SAMPLING_RATE = 32
# Training: short side scaled to a random size in [min, max], then a random square crop.
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
_C.DATA.TRAIN_CROP_SIZE = 224
_C.DATA.RANDOM_FLIP = True
# Testing: 3 crops take the short side to TEST_CROP_SIZE; 1 crop takes it to
# TRAIN_JITTER_SCALES[0] and crops the centre. ImageNet resizes to TEST_RESIZE_SIZE first.
_C.DATA.TEST_CROP_SIZE = 224
_C.DATA.TEST_RESIZE_SIZE = 256
# Normalisation of [0, 1] pixels, the model's own (TimeSformer's here; ImageNet's for DeiT:
# [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225]).
_C.DATA.MEAN = [0.45, 0.45, 0.45]
_C.DATA.STD = [0.225, 0.225, 0.225]
# "auto" (the decoders installed, fastest first by benchmarks/decoders.md), or the one to try
# first: "pyav", "decord", "torchcodec", "torchcodec_cuda" (ats_video.data.video_io).
_C.DATA.DECODING_BACKEND = "auto"

# ---------------------------------------------------------------------------------------------
# DATA_LOADER
# ---------------------------------------------------------------------------------------------
_C.DATA_LOADER = CfgNode()
# Worker processes per training or test process.
_C.DATA_LOADER.NUM_WORKERS = 8
_C.DATA_LOADER.PIN_MEMORY = True

# ---------------------------------------------------------------------------------------------
# TRAIN
# ---------------------------------------------------------------------------------------------
_C.TRAIN = CfgNode()
_C.TRAIN.ENABLE = True
# Clips per iteration over all processes; each of N processes takes BATCH_SIZE / N.
_C.TRAIN.BATCH_SIZE = 64
# Epochs between clip-level validations (one centred view per video; not the multi-view test)
# and between checkpoints. The last epoch always does both.
_C.TRAIN.EVAL_PERIOD = 1
_C.TRAIN.CHECKPOINT_PERIOD = 1
# Continue from the last checkpoint in OUTPUT_DIR/checkpoints, if there is one.
_C.TRAIN.AUTO_RESUME = True
# Initial weights when not resuming: an official TimeSformer .pyth, XViT .pth, DeiT .pth, or
# a checkpoint of this project. A classifier of another class count is re-initialised.
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# "off"; "bf16": bfloat16 autocast (CPU and GPU); "fp16": float16 autocast with a gradient
# scaler (GPU only). Also used by the test.
_C.TRAIN.MIXED_PRECISION = "off"
# Iterations between mid-epoch checkpoints (checkpoint_epoch_00006_iter_000120.pyth), for
# hard kills that give no warning; 0: none. A signal (SIGTERM, SIGUSR1) always writes one.
_C.TRAIN.CHECKPOINT_ITER_PERIOD = 0
# Mid-epoch checkpoints kept (the newest); those of whole epochs are all kept.
_C.TRAIN.CHECKPOINT_ITER_KEEP = 2

# ---------------------------------------------------------------------------------------------
# SOLVER
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CfgNode()
# "sgd" or "adamw" (timm's optimizer factory). No weight decay on norms, biases and the
# model's no_weight_decay() parameters (position, time and class embeddings).
_C.SOLVER.OPTIMIZING_METHOD = "sgd"
_C.SOLVER.BASE_LR = 0.1
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = True
_C.SOLVER.WEIGHT_DECAY = 1e-4
# "cosine" (from BASE_LR to COSINE_END_LR over MAX_EPOCH), or "steps_with_relative_lrs":
# BASE_LR * LRS[i] from epoch STEPS[i] on (STEPS starts at 0).
_C.SOLVER.LR_POLICY = "cosine"
_C.SOLVER.COSINE_END_LR = 0.0
_C.SOLVER.STEPS = []
_C.SOLVER.LRS = []
_C.SOLVER.MAX_EPOCH = 300
# A linear ramp from WARMUP_START_LR to the policy's rate over the first WARMUP_EPOCHS.
_C.SOLVER.WARMUP_EPOCHS = 0.0
_C.SOLVER.WARMUP_START_LR = 0.01
# Largest L2 norm of all gradients together; 0 turns clipping off.
_C.SOLVER.CLIP_GRAD = 0.0

# ---------------------------------------------------------------------------------------------
# TEST
# ---------------------------------------------------------------------------------------------
_C.TEST = CfgNode()
_C.TEST.ENABLE = True
# Views per iteration over all processes; a multiple of NUM_SPATIAL_CROPS lets the crops of a
# clip share one decode.
_C.TEST.BATCH_SIZE = 8
# The weights to test; empty: the last checkpoint in OUTPUT_DIR/checkpoints.
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Views per test video: clips spread evenly over it x crops along its long side (1 or 3).
# TimeSformer reports 1x3; PySlowFast models 10x3.
_C.TEST.NUM_ENSEMBLE_VIEWS = 1
_C.TEST.NUM_SPATIAL_CROPS = 3
# How a video's view scores (softmax) are combined: "sum" or "max".
_C.TEST.ENSEMBLE_METHOD = "sum"
# Also save every view's softmax scores in test_scores.npz (view_scores [videos, views, classes]);
# the per-video scores are always saved.
_C.TEST.SAVE_VIEW_SCORES = False

# ---------------------------------------------------------------------------------------------
# MODEL
# ---------------------------------------------------------------------------------------------
_C.MODEL = CfgNode()
# A video preset (timesformer_base_8x224, timesformer_hr_16x448, timesformer_l_96x224,
# xvit_base_16x224_k600, xvit_base_16x224_ssv2, xvit_base_8x224_k400), a generic video model
# ("timesformer", "xvit") or a timm ViT/DeiT name (deit_small_patch16_224, ...). Video models
# take their frame count from DATA.NUM_FRAMES and their size from DATA.TRAIN_CROP_SIZE.
_C.MODEL.ARCH = "timesformer_base_8x224"
_C.MODEL.NUM_CLASSES = 400
_C.MODEL.DROP_PATH_RATE = 0.1
# Backbone sizes; 0 keeps the architecture's own (the presets' ViT-B/16: 16, 768, 12, 12).
_C.MODEL.PATCH_SIZE = 0
_C.MODEL.EMBED_DIM = 0
_C.MODEL.DEPTH = 0
_C.MODEL.NUM_HEADS = 0

# ---------------------------------------------------------------------------------------------
# ATS
# ---------------------------------------------------------------------------------------------
_C.ATS = CfgNode()
_C.ATS.ENABLE = True
# 0-indexed ATS blocks; empty: the backbone's defaults (DeiT and XViT 3-11, TimeSformer 3-5).
_C.ATS.BLOCKS = []
# The budget K of every ATS block, one of:
# - K > 0: that many tokens (per frame for video);
# - RATIO in (0, 1]: K = max(floor(RATIO * N + 0.5), 8) of the N tokens entering the block;
# - both 0: the official default, K = the model's patch tokens per frame (196 at 224 px),
#   where the reduction comes from tokens picked more than once.
_C.ATS.K = 0
_C.ATS.RATIO = 0.0
# "frame" (each frame keeps its own tokens) or "shared" (one set of positions per clip).
_C.ATS.MODE = "frame"
# "sample" (inverse transform sampling), "topk" (the paper's ablation), "random" (a uniform
# sample of K tokens, seeded by each frame's scores: a baseline) or "tome" (token merging in
# the same blocks instead of ATS: TOME_R tokens merged per frame and block; video models only).
_C.ATS.SELECTOR = "sample"
# Token merging's r, with SELECTOR "tome" only (0 otherwise).
_C.ATS.TOME_R = 0

# ---------------------------------------------------------------------------------------------
# TENSORBOARD
# ---------------------------------------------------------------------------------------------
_C.TENSORBOARD = CfgNode()
# Events under OUTPUT_DIR/tensorboard (`tensorboard --logdir OUTPUT_DIR`).
_C.TENSORBOARD.ENABLE = True

# ---------------------------------------------------------------------------------------------
# Training augmentation and loss beyond the TimeSformer recipe (XViT's Kinetics recipe uses all
# three: AUTO_AUGMENT "v0", MIXUP_ALPHA 0.4, LABEL_SMOOTHING 0.3); all off by default.
# ---------------------------------------------------------------------------------------------
# A timm AutoAugment policy applied alike to every frame of a training clip ("v0", "original",
# ...), or "" for none. Video datasets only (DeiT's ImageNet recipe has its own RandAugment).
_C.DATA.AUTO_AUGMENT = ""
# Mixup's Beta(alpha, alpha) (timm's Mixup, one mixing weight per batch); 0: off. Needs an even
# number of clips per process; the epoch's last, incomplete batch is then dropped.
_C.TRAIN.MIXUP_ALPHA = 0.0
# Label smoothing s of the cross-entropy (targets (1 - s) one-hot + s / classes); 0: off.
_C.TRAIN.LABEL_SMOOTHING = 0.0

# ---------------------------------------------------------------------------------------------
# DIST
# ---------------------------------------------------------------------------------------------
_C.DIST = CfgNode()
# Seconds a collective waits for every process before the run fails (PyTorch's default, 600).
_C.DIST.TIMEOUT_S = 600

OPTIMIZERS = ("sgd", "adamw")
LR_POLICIES = ("cosine", "steps_with_relative_lrs")
MIXED_PRECISION = ("off", "bf16", "fp16")
ENSEMBLE_METHODS = ("sum", "max")
ATS_MODES = ("frame", "shared")
ATS_SELECTORS = ("sample", "topk", "random", "tome")
DATASETS = ("kinetics", "imagenet")


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return _C.clone()


def load_config(path: str = "", opts: Sequence[str] = ()) -> CfgNode:
    """The defaults, overridden by the YAML file ``path`` (if given) and then by ``opts``
    (``KEY VALUE`` pairs), checked by :func:`check_cfg` and frozen.

    Raises:
        KeyError / AssertionError naming an unknown key; ValueError naming an empty or
        non-mapping YAML file, or a key whose value cannot work.
    """
    cfg = get_cfg()
    known = flatten(cfg)
    unknown = {"the command line": [key for key in opts[::2] if key not in known]}
    if path:
        with open(path) as f:
            content = yaml.safe_load(f)
        # fvcore fails on an empty file with a TypeError that names neither file nor cause
        if not isinstance(content, dict):
            what = "empty" if content is None else f"a {type(content).__name__}, not a mapping"
            raise ValueError(f"config file {path} is {what}")
        in_file = [key for key in flatten(content) if key not in known]
        unknown = {f"config file {path}": in_file, **unknown}
    if any(unknown.values()):
        raise UnknownKeysError(
            "\n".join(unknown_keys_message(keys, where) for where, keys in unknown.items() if keys)
        )
    if path:
        cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    check_cfg(cfg)
    cfg.freeze()
    return cfg


class UnknownKeysError(KeyError):
    """Config keys this project does not have, every one named."""

    def __str__(self) -> str:  # KeyError's own quotes its message as a repr
        return str(self.args[0])


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A config tree (a CfgNode or YAML's dicts) -> ``{"SECTION.KEY": value}``."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fail(key: str, message: str) -> None:
    raise ValueError(f"{key}: {message}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(condition: bool, key: str, message: str) -> None:
    if not condition:
        _fail(key, message)


def _positive_ints(cfg: CfgNode, *keys: str) -> None:
    for key in keys:
        value = _get(cfg, key)
        _need(_is_int(value) and value >= 1, key, f"must be an integer >= 1, got {value!r}")


def _choice(cfg: CfgNode, key: str, choices: Sequence[str]) -> None:
    value = _get(cfg, key)
    _need(value in choices, key, f"must be one of {list(choices)}, got {value!r}")


def _get(cfg: CfgNode, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def check_cfg(cfg: CfgNode) -> None:
    """Raises ValueError naming the first key whose value would be ignored or fail later."""
    _check_data(cfg)
    _check_model(cfg)
    _check_ats(cfg)
    _check_solver(cfg)
    _positive_ints(cfg, "LOG_PERIOD", "TRAIN.BATCH_SIZE", "TRAIN.EVAL_PERIOD")
    _positive_ints(cfg, "TRAIN.CHECKPOINT_PERIOD", "TEST.BATCH_SIZE", "TEST.NUM_ENSEMBLE_VIEWS")
    _need(cfg.DATA_LOADER.NUM_WORKERS >= 0, "DATA_LOADER.NUM_WORKERS", "must be >= 0")
    _check_cluster(cfg)
    _choice(cfg, "TRAIN.MIXED_PRECISION", MIXED_PRECISION)
    _choice(cfg, "TEST.ENSEMBLE_METHOD", ENSEMBLE_METHODS)
    _need(
        cfg.TEST.NUM_SPATIAL_CROPS in (1, 3),
        "TEST.NUM_SPATIAL_CROPS",
        f"must be 1 or 3, got {cfg.TEST.NUM_SPATIAL_CROPS!r}",
    )
    _check_augmentation(cfg)


def _check_data(cfg: CfgNode) -> None:
    data = cfg.DATA
    _choice(cfg, "DATA.DATASET", DATASETS)
    _choice(cfg, "DATA.PATH_LABEL_SEPARATOR", SEPARATORS)
    _positive_ints(cfg, "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE")
    _positive_ints(cfg, "DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE", "DATA.TEST_RESIZE_SIZE")
    for key in ("MEAN", "STD"):
        values = data[key]
        _need(
            len(values) == 3 and all(isinstance(v, (int, float)) for v in values),
            f"DATA.{key}",
            f"must be 3 numbers (one per RGB channel), got {values!r}",
        )
    _need(all(s > 0 for s in data.STD), "DATA.STD", f"must be > 0 in every channel, got {data.STD}")
    scales = data.TRAIN_JITTER_SCALES
    _need(
        len(scales) == 2 and all(_is_int(s) and s >= 1 for s in scales) and scales[0] <= scales[1],
        "DATA.TRAIN_JITTER_SCALES",
        f"must be [min, max] short sides with 1 <= min <= max, got {scales!r}",
    )
    _choice(cfg, "DATA.DECODING_BACKEND", DECODING_BACKENDS)


def _check_model(cfg: CfgNode) -> None:
    arch = cfg.MODEL.ARCH
    # timm's vision_transformer and deit modules hold the ViT / DeiT models ATS supports
    _need(
        arch in video_architectures() or is_model_in_modules(arch, ("vision_transformer", "deit")),
        "MODEL.ARCH",
        f"unknown architecture {arch!r}: expected one of {sorted(video_architectures())} or a "
        "timm ViT / DeiT name (e.g. deit_small_patch16_224)",
    )
    _positive_ints(cfg, "MODEL.NUM_CLASSES")
    for key in ("PATCH_SIZE", "EMBED_DIM", "DEPTH", "NUM_HEADS"):
        value = cfg.MODEL[key]
        _need(
            _is_int(value) and value >= 0, f"MODEL.{key}", f"must be an integer >= 0, got {value!r}"
        )
    rate = cfg.MODEL.DROP_PATH_RATE
    _need(0 <= rate < 1, "MODEL.DROP_PATH_RATE", f"must be in [0, 1), got {rate!r}")


def _check_ats(cfg: CfgNode) -> None:
    ats = cfg.ATS
    _need(
        all(_is_int(b) and b >= 0 for b in ats.BLOCKS),
        "ATS.BLOCKS",
        f"must be 0-indexed block numbers (integers >= 0), got {list(ats.BLOCKS)!r}",
    )
    _need(
        _is_int(ats.K) and ats.K >= 0,
        "ATS.K",
        f"must be an integer >= 0 (0: not used), got {ats.K!r}",
    )
    _need(
        0 <= ats.RATIO <= 1,
        "ATS.RATIO",
        f"must be in (0, 1], or 0 when not used, got {ats.RATIO!r}",
    )
    if ats.K and ats.RATIO:
        _fail("ATS.K, ATS.RATIO", f"give at most one budget, got K {ats.K} and RATIO {ats.RATIO}")
    _choice(cfg, "ATS.MODE", ATS_MODES)
    _choice(cfg, "ATS.SELECTOR", ATS_SELECTORS)
    _check_tome(cfg)


def _check_tome(cfg: CfgNode) -> None:
    ats = cfg.ATS
    tome = ats.SELECTOR == "tome"
    _need(
        _is_int(ats.TOME_R) and (ats.TOME_R >= 1 if tome else ats.TOME_R == 0),
        "ATS.TOME_R",
        "must be an integer >= 1 with ATS.SELECTOR tome" if tome else "is token merging's r: "
        f"give it with ATS.SELECTOR tome only (here {ats.SELECTOR!r}); got {ats.TOME_R!r}",
    )
    if tome:
        _need(not ats.K and not ats.RATIO, "ATS.K, ATS.RATIO", "are ATS budgets: leave them 0 with ATS.SELECTOR tome")
        _need(ats.MODE == "frame", "ATS.MODE", "token merging works per frame: use frame with ATS.SELECTOR tome")
        _need(
            cfg.MODEL.ARCH in video_architectures(),
            "ATS.SELECTOR",
            f"tome (token merging) supports TimeSformer and XViT, not {cfg.MODEL.ARCH!r}",
        )


def _check_solver(cfg: CfgNode) -> None:
    solver = cfg.SOLVER
    _choice(cfg, "SOLVER.OPTIMIZING_METHOD", OPTIMIZERS)
    _choice(cfg, "SOLVER.LR_POLICY", LR_POLICIES)
    _positive_ints(cfg, "SOLVER.MAX_EPOCH")
    for key in (
        "BASE_LR",
        "MOMENTUM",
        "WEIGHT_DECAY",
        "COSINE_END_LR",
        "WARMUP_START_LR",
        "CLIP_GRAD",
    ):
        value = solver[key]
        _need(math.isfinite(value) and value >= 0, f"SOLVER.{key}", f"must be >= 0, got {value!r}")
    _need(
        0 <= solver.WARMUP_EPOCHS <= solver.MAX_EPOCH,
        "SOLVER.WARMUP_EPOCHS",
        f"must be in [0, SOLVER.MAX_EPOCH {solver.MAX_EPOCH}], got {solver.WARMUP_EPOCHS!r}",
    )
    if solver.LR_POLICY == "steps_with_relative_lrs":
        steps, lrs = list(solver.STEPS), list(solver.LRS)
        _need(
            len(steps) == len(lrs) > 0,
            "SOLVER.STEPS, SOLVER.LRS",
            f"need one relative rate per step, got {len(steps)} steps and {len(lrs)} rates",
        )
        _need(
            steps[0] == 0 and all(a < b for a, b in zip(steps, steps[1:])),
            "SOLVER.STEPS",
            f"must start at epoch 0 and increase, got {steps}",
        )
        _need(
            steps[-1] < solver.MAX_EPOCH,
            "SOLVER.STEPS",
            f"step {steps[-1]} is never reached: training ends after SOLVER.MAX_EPOCH "
            f"{solver.MAX_EPOCH} epochs",
        )
    else:
        _need(
            not solver.STEPS and not solver.LRS,
            "SOLVER.STEPS, SOLVER.LRS",
            f"are read by LR_POLICY steps_with_relative_lrs only, not by {solver.LR_POLICY!r}: "
            f"empty them (got {list(solver.STEPS)} and {list(solver.LRS)})",
        )


def _check_augmentation(cfg: CfgNode) -> None:
    policy = cfg.DATA.AUTO_AUGMENT
    if policy:
        _need(
            cfg.DATA.DATASET == "kinetics",
            "DATA.AUTO_AUGMENT",
            f"is for video datasets; DATA.DATASET {cfg.DATA.DATASET!r} has its own augmentation",
        )
        try:
            auto_augment_transform(policy, cfg.DATA.TRAIN_CROP_SIZE)
        except ValueError as error:
            _fail("DATA.AUTO_AUGMENT", str(error))
    alpha, smoothing = cfg.TRAIN.MIXUP_ALPHA, cfg.TRAIN.LABEL_SMOOTHING
    _need(
        isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0,
        "TRAIN.MIXUP_ALPHA",
        f"must be >= 0 (0: no mixup), got {alpha!r}",
    )
    _need(
        isinstance(smoothing, (int, float)) and 0 <= smoothing < 1,
        "TRAIN.LABEL_SMOOTHING",
        f"must be in [0, 1) (0: none), got {smoothing!r}",
    )
    if alpha > 0:
        _need(
            cfg.TRAIN.BATCH_SIZE % 2 == 0,
            "TRAIN.BATCH_SIZE",
            f"mixup (TRAIN.MIXUP_ALPHA {alpha}) pairs clips: needs an even batch, got "
            f"{cfg.TRAIN.BATCH_SIZE}",
        )


def _check_cluster(cfg: CfgNode) -> None:
    """The keys of runs on clusters: mid-epoch checkpoints and the collective timeout."""
    period = cfg.TRAIN.CHECKPOINT_ITER_PERIOD
    _need(
        _is_int(period) and period >= 0,
        "TRAIN.CHECKPOINT_ITER_PERIOD",
        f"must be an integer >= 0 (0: none), got {period!r}",
    )
    _positive_ints(cfg, "TRAIN.CHECKPOINT_ITER_KEEP")
    timeout = cfg.DIST.TIMEOUT_S
    _need(
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and 0 < timeout < math.inf,
        "DIST.TIMEOUT_S",
        f"must be a finite number of seconds > 0, got {timeout!r}",
    )
