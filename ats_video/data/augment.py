"""AutoAugment for video clips: timm's image policies, one draw per clip.

XViT's Kinetics recipe (Bulat et al., NeurIPS 2021, Sec. 4.1: "autoaugment [7]"; its release,
``slowfast/datasets/kinetics.py``) applies AutoAugment's ImageNet policy "v0" with
``translate_const = int(224 * 0.45)`` to the decoded frames of a training clip, before scaling
and cropping, with one sub-policy, probability draw and magnitude for the whole clip, so every
frame gets the same shear, rotation, colour change. Here the policy is timm's own
(``timm.data.auto_augment``), unchanged; :func:`auto_augment_clip` gives every frame the same
draws by running the transform on each frame from the same state of Python's and numpy's random
generators, the only ones timm's augmentations draw from.

NOTE: the release's copy of timm's code picks the resampling filter (bilinear or bicubic) of a
geometric op anew for each frame; here one choice serves the whole clip, like every other draw.
"""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import auto_augment_transform as timm_auto_augment_transform

ImageTransform = Callable[[Image.Image], Image.Image]

# XViT's release passes translate_const = int(224 * 0.45): a translation of up to 45% of the crop
TRANSLATE_FRACTION = 0.45


def auto_augment_transform(policy: str, crop_size: int) -> ImageTransform:
    """timm's AutoAugment for ``policy`` ("v0", "v0r", "original", "originalr", "3a", with
    timm's optional "-mstd<std>"), translating by up to 45% of ``crop_size`` as XViT does.

    Raises:
        ValueError naming ``policy`` when timm does not know it.
    """
    try:
        return timm_auto_augment_transform(
            policy, {"translate_const": int(crop_size * TRANSLATE_FRACTION)}
        )
    except (AssertionError, KeyError, ValueError) as error:
        raise ValueError(
            f"unknown AutoAugment policy {policy!r} ({error}); timm's policies: v0, v0r, "
            "original, originalr, 3a, each with an optional -mstd<std>"
        ) from None


def auto_augment_clip(frames: torch.Tensor, transform: ImageTransform) -> torch.Tensor:
    """Applies an image ``transform`` with the same random draws to every frame of a clip.

    Args:
        frames: uint8 (T, H, W, C) RGB frames.
        transform: a PIL image transform that draws from Python's ``random`` and numpy only
            (timm's AutoAugment).
    Returns:
        uint8 (T, H, W, C), the augmented frames. The random generators end where one frame's
        transform left them.
    """
    states = random.getstate(), np.random.get_state()
    augmented = []
    for frame in frames.numpy():
        random.setstate(states[0])
        np.random.set_state(states[1])
        augmented.append(torch.from_numpy(np.array(transform(Image.fromarray(frame)))))
    return torch.stack(augmented)
