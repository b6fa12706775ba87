"""ImageNet-1k from class folders, for the DeiT path.

Layout ``root/train/nXXXXXXXX/*.JPEG`` and ``root/val/nXXXXXXXX/*.JPEG``;
``data_prep/imagenet_val_dirs.py`` sorts the flat validation release into it. Classes are
indexed in sorted order, the order of the official class indices, and both splits take them
from ``train/`` where it exists, so a validation folder that lacks a class shifts no index.
Evaluation follows DeiT: bicubic resize of the short side to 256, centre crop 224, ImageNet
mean and std. Training is
DeiT's recipe through timm's ``create_transform`` (random resized crop, flip, RandAugment
rand-m9-mstd0.5-inc1, random erasing 0.25); mixup and cutmix act on batches and belong to the
training loop.

NOTE: torchvision's ``ImageFolder`` counts every sub-folder as a class, ".ipynb_checkpoints"
and "__MACOSX" included, numbers each split on its own and takes macOS's "._x.JPEG" resource
forks for images; here system folders and hidden files are skipped (the rules of
:mod:`ats_video.data.files`) and the classes of ``train/`` number every split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torchvision
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import InterpolationMode

from ats_video.data.files import class_folders

IMAGENET_MEAN = IMAGENET_DEFAULT_MEAN
IMAGENET_STD = IMAGENET_DEFAULT_STD


def imagenet_eval_transform(
    *,
    crop_size: int = 224,
    resize_size: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """PIL image to a float tensor (C, crop_size, crop_size): resize, centre crop, normalise."""
    return transforms.Compose(
        [
            transforms.Resize(resize_size, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(crop_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def imagenet_train_transform(
    *,
    crop_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """DeiT's training augmentation; PIL image to a float tensor (C, crop_size, crop_size)."""
    return create_transform(
        crop_size,
        is_training=True,
        auto_augment="rand-m9-mstd0.5-inc1",
        interpolation="bicubic",
        re_prob=0.25,
        re_mode="pixel",
        mean=tuple(mean),
        std=tuple(std),
    )


def _is_image_file(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


class ImageNetFolder(torchvision.datasets.ImageFolder):
    """One split of ImageNet in class folders; samples are ``{"image", "label"}`` dicts.

    Args:
        root: directory holding ``train/`` and ``val/``.
        split: "train" (DeiT augmentation) or "val" (evaluation transform).
        crop_size: output size.
        resize_size: evaluation short side before the centre crop.
        mean, std: normalisation.
    """

    def __init__(
        self,
        root: str,
        *,
        split: str,
        crop_size: int = 224,
        resize_size: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        directory = os.path.join(root, split)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory}: no such directory")
        if not class_folders(directory):
            raise ValueError(
                f"{directory} holds no class folders; sort the validation images into "
                "nXXXXXXXX/ folders with data_prep/imagenet_val_dirs.py"
            )
        self._class_source = os.path.join(root, "train")
        if not os.path.isdir(self._class_source):  # evaluation-only copies hold val/ alone
            self._class_source = directory
        if split == "train":
            transform = imagenet_train_transform(crop_size=crop_size, mean=mean, std=std)
        else:
            transform = imagenet_eval_transform(
                crop_size=crop_size, resize_size=resize_size, mean=mean, std=std
            )
        # allow_empty: a validation folder may lack some of train/'s classes
        super().__init__(
            directory, transform=transform, is_valid_file=_is_image_file, allow_empty=True
        )
        if not self.samples:
            raise ValueError(f"{directory}: no images in its class folders")

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        """The classes of ``train/`` (or of ``directory`` alone), system folders skipped.

        Raises:
            ValueError: ``directory`` holds a class folder that ``train/`` lacks.
        """
        classes = class_folders(self._class_source)
        unknown = sorted(set(class_folders(directory)) - set(classes))
        if unknown:
            raise ValueError(
                f"{directory}: class folders not in {self._class_source}: {unknown[:5]}"
            )
        return classes, {name: i for i, name in enumerate(classes)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image, label = super().__getitem__(index)
        return {"image": image, "label": label}
