"""Config defaults, PySlowFast style: an fvcore ``CfgNode`` that YAML files and ``KEY VALUE``
command-line pairs override.

Unknown keys are errors that name the key (``merge_from_file`` raises ``KeyError``,
``merge_from_list`` ``AssertionError``), so a typo never silently falls back to a default.
Only the tools and ``ats_video.build`` read a config; everything else takes plain arguments.

Sections: DATA (what to read and how to sample it), DATA_LOADER, TEST, MODEL, ATS.
"""

from fvcore.common.config import CfgNode

_C = CfgNode()

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
# "decord" (PyAV for files decord cannot read) or "pyav".
_C.DATA.DECODING_BACKEND = "decord"

# ---------------------------------------------------------------------------------------------
# DATA_LOADER
# ---------------------------------------------------------------------------------------------
_C.DATA_LOADER = CfgNode()
_C.DATA_LOADER.NUM_WORKERS = 8
_C.DATA_LOADER.PIN_MEMORY = True

# ---------------------------------------------------------------------------------------------
# TEST
# ---------------------------------------------------------------------------------------------
_C.TEST = CfgNode()
# Views per test video: clips spread evenly over it x crops along its long side (1 or 3).
# TimeSformer reports 1x3; PySlowFast models 10x3.
_C.TEST.NUM_ENSEMBLE_VIEWS = 1
_C.TEST.NUM_SPATIAL_CROPS = 3

# ---------------------------------------------------------------------------------------------
# MODEL
# ---------------------------------------------------------------------------------------------
_C.MODEL = CfgNode()
# A video preset (timesformer_base_8x224, timesformer_hr_16x448, timesformer_l_96x224,
# xvit_base_16x224_k600, xvit_base_16x224_ssv2) or a timm ViT/DeiT name (deit_small_patch16_224,
# ...). Video models take their frame count from DATA.NUM_FRAMES and their size from
# DATA.TRAIN_CROP_SIZE.
_C.MODEL.ARCH = "timesformer_base_8x224"
_C.MODEL.NUM_CLASSES = 400
_C.MODEL.DROP_PATH_RATE = 0.1

# ---------------------------------------------------------------------------------------------
# ATS
# ---------------------------------------------------------------------------------------------
_C.ATS = CfgNode()
_C.ATS.ENABLE = True
# 0-indexed ATS blocks; empty: the backbone's defaults (DeiT and XViT 3-11, TimeSformer 3-5).
_C.ATS.BLOCKS = []
# The budget of each ATS block: K = max(floor(RATIO * N + 0.5), 8) of the N tokens entering it,
# or, when K > 0, that fixed number. RATIO 1.0 (K = N) is the paper's default.
_C.ATS.RATIO = 1.0
_C.ATS.K = 0
# "frame" (each frame keeps its own tokens) or "shared" (one set of positions per clip).
_C.ATS.MODE = "frame"
# "sample" (inverse transform sampling) or "topk" (the paper's ablation).
_C.ATS.SELECTOR = "sample"


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return _C.clone()
