"""Clip sampling arithmetic and spatial transforms on (C, T, H, W) tensors."""

import pytest
import torch

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data.sampling import clip_indices, clip_span, random_clip_start, uniform_clip_start
from ats_video.data.transforms import (
    VideoTestTransform,
    VideoTrainTransform,
    normalize,
    random_crop,
    spatial_crop,
    to_float_cthw,
)


def test_clip_indices_and_span():
    assert clip_span(8, 32) == 225
    assert clip_indices(10, num_frames=4, sampling_rate=3, video_frames=100) == [10, 13, 16, 19]
    # A video shorter than the clip repeats its last frame.
    assert clip_indices(0, num_frames=5, sampling_rate=4, video_frames=10) == [0, 4, 8, 9, 9]


def test_random_start_covers_exactly_the_valid_range():
    generator = torch.Generator().manual_seed(0)
    starts = {random_clip_start(20, 16, generator) for _ in range(300)}
    assert starts == {0, 1, 2, 3, 4}
    assert {random_clip_start(10, 16, generator) for _ in range(20)} == {0}


def test_uniform_starts_spread_from_first_to_last_and_single_is_centred():
    assert [uniform_clip_start(100, 10, clip_index=i, num_clips=4) for i in range(4)] == [
        0,
        30,
        60,
        90,
    ]
    assert uniform_clip_start(100, 10, clip_index=0, num_clips=1) == 45
    assert uniform_clip_start(5, 10, clip_index=2, num_clips=3) == 0
    with pytest.raises(ValueError, match="clip_index 3 out of range"):
        uniform_clip_start(100, 10, clip_index=3, num_clips=3)


def test_to_float_and_normalize():
    frames = torch.full((2, 4, 6, 3), 255, dtype=torch.uint8)
    frames[..., 1] = 0
    video = to_float_cthw(frames)
    assert video.shape == (3, 2, 4, 6) and video.dtype == torch.float32
    out = normalize(video, (0.5, 0.5, 0.0), (0.5, 0.25, 1.0))
    assert out[:, 0, 0, 0].tolist() == [1.0, -2.0, 1.0]


def ramp_video(height, width):
    """(1, 1, H, W) video whose value is its column index, plus its row index * 1000."""
    rows = torch.arange(height).view(-1, 1) * 1000.0
    return (rows + torch.arange(width).view(1, -1)).expand(1, 1, height, width)


@pytest.mark.parametrize("height, width", [(4, 10), (10, 4)])
def test_three_crops_run_along_the_long_side(height, width):
    video = ramp_video(height, width)
    corners = [
        spatial_crop(video, 4, crop_index=i, num_crops=3)[0, 0, 0, 0].item() for i in range(3)
    ]
    expected = [0, 3, 6] if width > height else [0, 3000, 6000]
    assert corners == expected
    assert spatial_crop(video, 4, crop_index=0, num_crops=1)[0, 0, 0, 0].item() == expected[1]
    with pytest.raises(ValueError, match="num_crops must be 1 or 3"):
        spatial_crop(video, 4, crop_index=0, num_crops=2)


def test_random_crop_positions():
    video = ramp_video(6, 6)
    torch.manual_seed(0)
    corners = {random_crop(video, 4)[0, 0, 0, 0].item() for _ in range(200)}
    assert corners == {r * 1000 + c for r in range(3) for c in range(3)}
    with pytest.raises(ValueError, match="cannot crop"):
        random_crop(video, 7)


def test_train_transform_scales_crops_and_flips():
    frames = torch.randint(0, 256, (3, 30, 40, 3), dtype=torch.uint8)
    transform = VideoTrainTransform(
        crop_size=24, jitter_scales=(30, 36), mean=(0.5,) * 3, std=(0.5,) * 3
    )
    torch.manual_seed(0)
    outputs = [transform(frames) for _ in range(20)]
    assert all(o.shape == (3, 3, 24, 24) and o.dtype == torch.float32 for o in outputs)
    assert min(o.min() for o in outputs) >= -1 and max(o.max() for o in outputs) <= 1
    assert "jitter_scales=(30, 36)" in repr(transform)
    with pytest.raises(ValueError, match="must be >= crop_size"):
        VideoTrainTransform(crop_size=224, jitter_scales=(128, 160), mean=(0,) * 3, std=(1,) * 3)


def test_flip_mirrors_the_clip():
    frames = torch.arange(32, dtype=torch.uint8).view(1, 1, 32, 1).expand(2, 32, 32, 3)
    transform = VideoTrainTransform(
        crop_size=32, jitter_scales=(32, 32), mean=(0,) * 3, std=(1,) * 3
    )
    torch.manual_seed(0)
    rows = [transform(frames)[0, 0, 0] for _ in range(20)]
    assert {bool(row[0] > row[-1]) for row in rows} == {True, False}


def test_test_transform_scales_short_side_then_crops():
    frames = torch.zeros(2, 48, 64, 3, dtype=torch.uint8)
    transform = VideoTestTransform(
        crop_size=24, short_side=24, num_crops=3, mean=(0,) * 3, std=(1,) * 3
    )
    assert transform(frames, 2).shape == (3, 2, 24, 24)
