"""Config defaults, strict overrides, and build_dataset for Kinetics-style and ImageNet data."""

import json
import os

import pytest
from PIL import Image
from videos import write_counter_video

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.build import build_dataset
from ats_video.config import get_cfg
from ats_video.data.imagenet import ImageNetFolder
from ats_video.data.kinetics import KineticsDataset


def test_defaults_are_timesformer_8x32_1x3():
    cfg = get_cfg()
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (8, 32)
    assert cfg.DATA.TRAIN_JITTER_SCALES == [256, 320] and cfg.DATA.DECODING_BACKEND == "auto"
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (1, 3)
    assert get_cfg() is not get_cfg()


def test_unknown_keys_are_errors_naming_the_key(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["DATA.NUM_FRAMES", "16", "DATA.TRAIN_JITTER_SCALES", "[128, 160]"])
    assert cfg.DATA.NUM_FRAMES == 16 and cfg.DATA.TRAIN_JITTER_SCALES == [128, 160]
    with pytest.raises(AssertionError, match="DATA.NUM_FRAME"):
        cfg.merge_from_list(["DATA.NUM_FRAME", "16"])
    path = tmp_path / "c.yaml"
    path.write_text("DATA:\n  NUM_FRAMES: 4\n  SAMPLNG_RATE: 2\n")
    with pytest.raises(KeyError, match="DATA.SAMPLNG_RATE"):
        cfg.merge_from_file(str(path))


@pytest.fixture(scope="module")
def kinetics_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("k400")
    for name in ["riding a bike/a.mp4", "zumba/b.mp4"]:
        write_counter_video(str(root / "videos" / name), 20)
    (root / "train.csv").write_text("riding a bike/a.mp4 0\nzumba/b.mp4 1\n")
    (root / "val.csv").write_text("zumba/b.mp4,zumba\n")
    (root / "classids.json").write_text(json.dumps({"riding a bike": 0, "zumba": 1}))
    return root


def kinetics_cfg(root):
    cfg = get_cfg()
    overrides = {
        "DATA.PATH_TO_DATA_DIR": str(root),
        "DATA.PATH_PREFIX": str(root / "videos"),
        "DATA.CLASS_NAMES_FILE": "classids.json",
        "DATA.NUM_FRAMES": 4,
        "DATA.SAMPLING_RATE": 2,
        "DATA.TRAIN_JITTER_SCALES": [40, 48],
        "DATA.TRAIN_CROP_SIZE": 32,
        "DATA.TEST_CROP_SIZE": 32,
    }
    cfg.merge_from_list([x for item in overrides.items() for x in item])
    return cfg


def test_build_kinetics_splits(kinetics_dir):
    cfg = kinetics_cfg(kinetics_dir)
    train, val, test = (build_dataset(cfg, split) for split in ["train", "val", "test"])
    assert all(isinstance(d, KineticsDataset) for d in (train, val, test))
    assert (len(train), len(val), len(test)) == (2, 1, 3)
    assert train.training and not val.training and val.num_views == 1
    assert train.videos[0].path == os.path.join(kinetics_dir, "videos", "riding a bike", "a.mp4")
    assert test[2]["video"].shape == (3, 4, 32, 32) and test[2]["label"] == 1
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset(cfg, "validation")


def test_build_kinetics_from_class_folders(kinetics_dir):
    cfg = kinetics_cfg(kinetics_dir)
    cfg.merge_from_list(["DATA.TRAIN_LIST", "videos", "DATA.CLASS_NAMES_FILE", ""])
    dataset = build_dataset(cfg, "train")
    assert [v.label for v in dataset.videos] == [0, 1]


def test_class_folder_splits_without_a_class_map_follow_the_training_tree(tmp_path):
    for split, names in [("train", ["abseiling", "bowling", "zumba"]), ("val", ["zumba", "__MACOSX"])]:
        for name in names:
            write_counter_video(str(tmp_path / split / name / "clip.mp4"), 20)
    cfg = kinetics_cfg(tmp_path)
    options = ["DATA.TRAIN_LIST", "train", "DATA.VAL_LIST", "val", "DATA.CLASS_NAMES_FILE", "", "MODEL.NUM_CLASSES", 3]
    cfg.merge_from_list(options)
    assert [v.label for v in build_dataset(cfg, "train").videos] == [0, 1, 2]
    assert [v.label for v in build_dataset(cfg, "val").videos] == [2]  # not 0: val lacks two classes


def test_build_imagenet(tmp_path):
    for split, names in [("train", ["n01", "n02"]), ("val", ["n01", "n02"])]:
        for label, name in enumerate(names):
            os.makedirs(tmp_path / split / name)
            Image.new("RGB", (300, 260), (label * 200, 0, 0)).save(
                tmp_path / split / name / "x.JPEG"
            )
    cfg = get_cfg()
    cfg.merge_from_list(["DATA.DATASET", "imagenet", "DATA.PATH_TO_DATA_DIR", str(tmp_path)])
    val = build_dataset(cfg, "test")
    assert isinstance(val, ImageNetFolder) and len(val) == 2
    sample = val[1]
    assert sample["image"].shape == (3, 224, 224) and sample["label"] == 1
    assert build_dataset(cfg, "train")[0]["image"].shape == (3, 224, 224)
    cfg.merge_from_list(["DATA.DATASET", "ucf101"])
    with pytest.raises(ValueError, match="DATA.DATASET must be"):
        build_dataset(cfg, "train")


def test_labels_beyond_the_classifier_are_named(kinetics_dir):
    cfg = kinetics_cfg(kinetics_dir)
    cfg.merge_from_list(["MODEL.NUM_CLASSES", "1"])
    with pytest.raises(ValueError, match=r"train.csv: label 1 is out of range for MODEL.NUM_CLASSES 1"):
        build_dataset(cfg, "train")


def test_class_folder_splits_share_the_class_map(kinetics_dir, tmp_path):
    # The val tree lacks "riding a bike" and holds a __MACOSX folder; both split indices must
    # still follow classids.json.
    for name in ["train/riding a bike/a.mp4", "train/zumba/b.mp4", "val/zumba/b.mp4"]:
        write_counter_video(str(tmp_path / name), 8)
    (tmp_path / "val" / "__MACOSX" / "zumba").mkdir(parents=True)
    (tmp_path / "classids.json").write_text(json.dumps({"riding a bike": 0, "zumba": 1}))
    cfg = kinetics_cfg(kinetics_dir)
    cfg.merge_from_list(["DATA.PATH_TO_DATA_DIR", str(tmp_path), "DATA.PATH_PREFIX", "",
                         "DATA.TRAIN_LIST", "train", "DATA.VAL_LIST", "val"])  # fmt: skip
    assert [v.label for v in build_dataset(cfg, "train").videos] == [0, 1]
    assert [v.label for v in build_dataset(cfg, "val").videos] == [1]
