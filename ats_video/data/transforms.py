"""Spatial video transforms: pure functions on (C, T, H, W) tensors and two thin wrappers.

Training (PySlowFast / TimeSformer recipe): optionally AutoAugment on the decoded frames, the
same for every frame (XViT's recipe, :mod:`ats_video.data.augment`), then the short side scaled
to a random size in ``jitter_scales``, a random square crop, a horizontal flip with probability
1/2, normalisation.
Testing: short side scaled to ``short_side``, then crop ``crop_index`` of ``num_crops``: the
centre for one crop; left, centre, right (top, centre, bottom for portrait videos) for three.

Scaling and the three-crop layout are PyTorchVideo's own functions; randomness comes from
torch's global generator, which DataLoader seeds differently in every worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorchvideo.transforms.functional import short_side_scale, uniform_crop

from ats_video.data.augment import ImageTransform, auto_augment_clip, auto_augment_transform


def to_float_cthw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (T, H, W, C) to float32 video (C, T, H, W) in [0, 1]."""
    return frames.permute(3, 0, 1, 2).float().div_(255)


def normalize(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(video - mean) / std`` for a video (C, T, H, W)."""
    mean = torch.as_tensor(mean, dtype=video.dtype).view(-1, 1, 1, 1)
    std = torch.as_tensor(std, dtype=video.dtype).view(-1, 1, 1, 1)
    return (video - mean) / std


def random_short_side_scale(video: torch.Tensor, min_size: int, max_size: int) -> torch.Tensor:
    """Scales (C, T, H, W) so its short side is a random integer in [min_size, max_size]."""
    return short_side_scale(video, int(torch.randint(min_size, max_size + 1, (1,))))


def random_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """A random ``size`` x ``size`` crop of (C, T, H, W), the same for every frame."""
    height, width = video.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height} frames")
    top = int(torch.randint(height - size + 1, (1,)))
    left = int(torch.randint(width - size + 1, (1,)))
    return video[..., top : top + size, left : left + size]


def spatial_crop(
    video: torch.Tensor, size: int, *, crop_index: int, num_crops: int
) -> torch.Tensor:
    """Crop ``crop_index`` of ``num_crops`` (1 or 3) along the long side of (C, T, H, W)."""
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    if not 0 <= crop_index < num_crops:
        raise ValueError(f"crop_index {crop_index} out of range for {num_crops} crops")
    return uniform_crop(video, size, spatial_idx=1 if num_crops == 1 else crop_index)


def train_video_transform(
    frames: torch.Tensor,
    *,
    crop_size: int,
    jitter_scales: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = True,
    auto_augment: ImageTransform | None = None,
) -> torch.Tensor:
    """uint8 frames (T, H, W, C) to an augmented, normalised float video (C, T, crop, crop).

    ``auto_augment``: an image transform (:func:`ats_video.data.augment.auto_augment_transform`)
    applied with the same draws to every frame first, as XViT applies AutoAugment."""
    if auto_augment is not None:
        frames = auto_augment_clip(frames, auto_augment)
    video = random_short_side_scale(to_float_cthw(frames), *jitter_scales)
    video = random_crop(video, crop_size)
    if flip and torch.rand(()) < 0.5:
        video = video.flip(-1)
    return normalize(video, mean, std)


def test_video_transform(
    frames: torch.Tensor,
    *,
    crop_size: int,
    short_side: int,
    crop_index: int,
    num_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """uint8 frames (T, H, W, C) to test crop ``crop_index``, a float video (C, T, crop, crop)."""
    video = short_side_scale(to_float_cthw(frames), short_side)
    video = spatial_crop(video, crop_size, crop_index=crop_index, num_crops=num_crops)
    return normalize(video, mean, std)


class VideoTrainTransform(torch.nn.Module):
    """``nn.Module`` wrapper of :func:`train_video_transform`; ``auto_augment`` names a timm
    AutoAugment policy ("v0" is XViT's) or is empty for none."""

    def __init__(
        self,
        *,
        crop_size: int,
        jitter_scales: Sequence[int],
        mean,
        std,
        flip=True,
        auto_augment: str = "",
    ):
        super().__init__()
        if len(jitter_scales) != 2 or jitter_scales[0] > jitter_scales[1]:
            raise ValueError(f"jitter_scales must be [min, max], got {list(jitter_scales)}")
        if jitter_scales[0] < crop_size:
            raise ValueError(
                f"jitter_scales {list(jitter_scales)} must be >= crop_size {crop_size}"
            )
        self.kwargs = dict(
            crop_size=crop_size,
            jitter_scales=tuple(jitter_scales),
            mean=tuple(mean),
            std=tuple(std),
            flip=flip,
        )
        self.auto_augment = auto_augment
        self.augment = auto_augment_transform(auto_augment, crop_size) if auto_augment else None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8 (T, H, W, C). Returns float (C, T, crop_size, crop_size)."""
        return train_video_transform(frames, auto_augment=self.augment, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(
            f"{k}={v}" for k, v in {**self.kwargs, "auto_augment": self.auto_augment}.items()
        )


class VideoTestTransform(torch.nn.Module):
    """``nn.Module`` wrapper of :func:`test_video_transform`; the crop index is a call argument."""

    def __init__(self, *, crop_size: int, short_side: int, num_crops: int, mean, std):
        super().__init__()
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if short_side < crop_size:
            raise ValueError(f"short_side {short_side} must be >= crop_size {crop_size}")
        self.kwargs = dict(
            crop_size=crop_size,
            short_side=short_side,
            num_crops=num_crops,
            mean=tuple(mean),
            std=tuple(std),
        )

    def forward(self, frames: torch.Tensor, crop_index: int) -> torch.Tensor:
        """frames: uint8 (T, H, W, C). Returns float (C, T, crop_size, crop_size)."""
        return test_video_transform(frames, crop_index=crop_index, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
