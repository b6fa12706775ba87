"""load_config: strict keys, and values that would be ignored or fail later are errors naming
their key when the config is read."""

from pathlib import Path

import pytest

import ats_video  # noqa: F401  (before timm)
from ats_video.config import check_cfg, get_cfg, load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_pass_the_checks(path):
    cfg = load_config(str(path))
    assert cfg.is_frozen()
    assert not (cfg.ATS.K and cfg.ATS.RATIO)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 7\nMODEL:\n  ARCH: xvit\n")
    cfg = load_config(str(path), ["SOLVER.MAX_EPOCH", "3", "MODEL.EMBED_DIM", "48"])
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH, cfg.MODEL.ARCH) == (0.5, 3, "xvit")
    assert cfg.MODEL.EMBED_DIM == 48


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(KeyError, match="TRAIN.BATCHSIZE"):
        load_config("", ["TRAIN.BATCHSIZE", "8"])
    path = tmp_path / "typo.yaml"
    path.write_text("SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(KeyError, match="SOLVER.BASE_LRR"):
        load_config(str(path))


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- list\n"])
def test_empty_or_non_mapping_yaml_names_the_file(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"config file {path} is"):
        load_config(str(path))


BAD_VALUES = [
    # (overrides, the key the error must name)
    (["ATS.BLOCKS", "[3.5, 4]"], "ATS.BLOCKS"),
    (["ATS.BLOCKS", "['3']"], "ATS.BLOCKS"),
    (["ATS.BLOCKS", "[-1]"], "ATS.BLOCKS"),
    (["ATS.K", "-4"], "ATS.K"),
    (["ATS.RATIO", "1.5"], "ATS.RATIO"),
    (["ATS.RATIO", "-0.5"], "ATS.RATIO"),
    (["ATS.K", "50", "ATS.RATIO", "0.5"], "ATS.K, ATS.RATIO"),
    (["ATS.MODE", "framewise"], "ATS.MODE"),
    (["ATS.SELECTOR", "top_k"], "ATS.SELECTOR"),
    (["MODEL.ARCH", "resnet50"], "MODEL.ARCH"),
    (["MODEL.ARCH", "timesformer_tiny"], "MODEL.ARCH"),
    (["MODEL.NUM_CLASSES", "0"], "MODEL.NUM_CLASSES"),
    (["MODEL.EMBED_DIM", "-8"], "MODEL.EMBED_DIM"),
    (["MODEL.DROP_PATH_RATE", "1.0"], "MODEL.DROP_PATH_RATE"),
    (["DATA.MEAN", "[0.45, 0.45]"], "DATA.MEAN"),
    (["DATA.STD", "[0.225, 0.0, 0.225]"], "DATA.STD"),
    (["DATA.STD", "[0.225, 0.225, 0.225, 0.225]"], "DATA.STD"),
    (["DATA.TRAIN_JITTER_SCALES", "[320, 256]"], "DATA.TRAIN_JITTER_SCALES"),
    (["DATA.NUM_FRAMES", "0"], "DATA.NUM_FRAMES"),
    (["DATA.DECODING_BACKEND", "opencv"], "DATA.DECODING_BACKEND"),
    (["TRAIN.BATCH_SIZE", "0"], "TRAIN.BATCH_SIZE"),
    (["TRAIN.MIXED_PRECISION", "fp8"], "TRAIN.MIXED_PRECISION"),
    (["DATA.AUTO_AUGMENT", "v9"], "DATA.AUTO_AUGMENT"),
    (["DATA.AUTO_AUGMENT", "rand-m9-n2"], "DATA.AUTO_AUGMENT"),
    (["DATA.AUTO_AUGMENT", "v0", "DATA.DATASET", "imagenet"], "DATA.AUTO_AUGMENT"),
    (["TRAIN.MIXUP_ALPHA", "-0.4"], "TRAIN.MIXUP_ALPHA"),
    (["TRAIN.MIXUP_ALPHA", "0.4", "TRAIN.BATCH_SIZE", "7"], "TRAIN.BATCH_SIZE"),
    (["TRAIN.LABEL_SMOOTHING", "1.0"], "TRAIN.LABEL_SMOOTHING"),
    (["TRAIN.LABEL_SMOOTHING", "-0.1"], "TRAIN.LABEL_SMOOTHING"),
    (["TEST.NUM_SPATIAL_CROPS", "2"], "TEST.NUM_SPATIAL_CROPS"),
    (["TEST.ENSEMBLE_METHOD", "mean"], "TEST.ENSEMBLE_METHOD"),
    (["SOLVER.OPTIMIZING_METHOD", "lamb"], "SOLVER.OPTIMIZING_METHOD"),
    (["SOLVER.LR_POLICY", "linear"], "SOLVER.LR_POLICY"),
    (["SOLVER.BASE_LR", "-0.1"], "SOLVER.BASE_LR"),
    (["SOLVER.WARMUP_EPOCHS", "400.0"], "SOLVER.WARMUP_EPOCHS"),
    (
        ["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 10]"],
        "SOLVER.STEPS, SOLVER.LRS",
    ),
    (
        [
            "SOLVER.LR_POLICY",
            "steps_with_relative_lrs",
            "SOLVER.STEPS",
            "[5, 10]",
            "SOLVER.LRS",
            "[1, 0.1]",
        ],
        "SOLVER.STEPS",
    ),
    (["LOG_PERIOD", "0"], "LOG_PERIOD"),
    (["SOLVER.STEPS", "[0, 10]", "SOLVER.LRS", "[1, 0.1]"], "SOLVER.STEPS, SOLVER.LRS"),
    (
        [
            "SOLVER.LR_POLICY",
            "steps_with_relative_lrs",
            "SOLVER.MAX_EPOCH",
            "15",
            "SOLVER.STEPS",
            "[0, 11, 20]",
            "SOLVER.LRS",
            "[1, 0.1, 0.01]",
        ],
        "SOLVER.STEPS",
    ),
    (["DATA.DECODING_BACKEND", "torchvision"], "DATA.DECODING_BACKEND"),
    (["DATA.PATH_LABEL_SEPARATOR", ";"], "DATA.PATH_LABEL_SEPARATOR"),
    (["DATA.DATASET", "ssv2"], "DATA.DATASET"),
]


@pytest.mark.parametrize("overrides, key", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ValueError) as error:
        load_config("", overrides)
    assert str(error.value).startswith(f"{key}: "), str(error.value)


def test_yaml_values_are_checked_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ATS:\n  BLOCKS: [3, 4.0]\n")
    with pytest.raises(ValueError, match="^ATS.BLOCKS: "):
        load_config(str(path))


def test_budget_defaults_to_the_official_one():
    cfg = get_cfg()
    assert (cfg.ATS.K, cfg.ATS.RATIO) == (0, 0.0)
    check_cfg(cfg)
    for overrides in (
        ["ATS.K", "50"],
        ["ATS.RATIO", "0.5"],
        ["MODEL.ARCH", "deit_small_patch16_224"],
    ):
        load_config("", overrides)
