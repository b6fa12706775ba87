"""ImageNet class folders and DeiT's evaluation transform."""

import os

import pytest
import torch
from PIL import Image

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageNetFolder,
    imagenet_eval_transform,
)


def test_eval_transform_resizes_short_side_then_crops_centre():
    image = Image.new("RGB", (512, 300), (255, 255, 255))
    for x in range(256 - 20, 256 + 20):  # a red band in the middle column survives the crop
        for y in range(300):
            image.putpixel((x, y), (255, 0, 0))
    out = imagenet_eval_transform()(image)
    assert out.shape == (3, 224, 224)
    pixel = out[:, 112, 112] * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
    assert torch.allclose(pixel, torch.tensor([1.0, 0.0, 0.0]), atol=0.02)
    white = out[:, 112, 0] * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
    assert torch.allclose(white, torch.ones(3), atol=0.02)


def test_folder_dataset_and_flat_val_error(tmp_path):
    for name in ["n02", "n01"]:
        os.makedirs(tmp_path / "val" / name)
        Image.new("RGB", (64, 80)).save(tmp_path / "val" / name / "a.JPEG")
    dataset = ImageNetFolder(str(tmp_path), split="val", crop_size=32, resize_size=40)
    assert dataset.classes == ["n01", "n02"]
    assert dataset[1]["image"].shape == (3, 32, 32) and dataset[1]["label"] == 1
    os.makedirs(tmp_path / "flat" / "val")
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(ValueError, match="imagenet_val_dirs.py"):
        ImageNetFolder(str(tmp_path / "flat"), split="val")
    with pytest.raises(FileNotFoundError, match="train: no such directory"):
        ImageNetFolder(str(tmp_path), split="train")


def test_val_is_numbered_by_the_train_classes_and_skips_system_folders(tmp_path):
    # val lacks n02 and holds Jupyter's and macOS's folders; numbered on its own, n03 would be 1.
    for split, names in [("train", ["n01", "n02", "n03"]), ("val", ["n01", "n03"])]:
        for name in names + [".ipynb_checkpoints", "__MACOSX"]:
            os.makedirs(tmp_path / split / name)
            Image.new("RGB", (64, 80)).save(tmp_path / split / name / "a.JPEG")
            (tmp_path / split / name / "._a.JPEG").write_bytes(b"\0\5\26\7")  # macOS fork
    val = ImageNetFolder(str(tmp_path), split="val", crop_size=32, resize_size=40)
    assert val.classes == ["n01", "n02", "n03"] and [label for _, label in val.samples] == [0, 2]
    os.makedirs(tmp_path / "val" / "n04")
    with pytest.raises(ValueError, match=r"val: class folders not in .*train: \['n04'\]"):
        ImageNetFolder(str(tmp_path), split="val")
