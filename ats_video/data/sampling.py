"""Temporal clip sampling as frame-index arithmetic.

A clip is ``num_frames`` frames taken every ``sampling_rate`` frames, so it spans
``(num_frames - 1) * sampling_rate + 1`` frames of the video. Training draws the start at
random; testing spreads ``num_clips`` starts evenly from the first to the last possible start
(a single clip is centred), like PySlowFast's offset sampling.

NOTE: PyTorchVideo's clip samplers work in seconds and return every frame of the window; we
return frame indices so the decoder reads only the sampled frames, and its
``ConstantClipsPerVideoSampler`` would put a single test clip at the start, not the centre.

NOTE: PySlowFast and TimeSformer take ``num_frames`` points evenly over a window of
``num_frames * sampling_rate`` frames (a stride of 255 / 7 = 36.4 frames for 8x32) and rescale
it by the video's fps over ``DATA.TARGET_FPS`` (30). We use the stride ``sampling_rate``
exactly, in the video's own frames; most Kinetics videos are 30 fps.

A video shorter than a clip repeats its last frame.
"""

from __future__ import annotations

import torch


def clip_span(num_frames: int, sampling_rate: int) -> int:
    """Number of video frames a clip covers, from its first to its last sampled frame."""
    return (num_frames - 1) * sampling_rate + 1


def clip_indices(
    start: int, *, num_frames: int, sampling_rate: int, video_frames: int
) -> list[int]:
    """Frame indices ``start, start + sampling_rate, ...``, clamped to the last frame."""
    return [min(start + i * sampling_rate, video_frames - 1) for i in range(num_frames)]


def random_clip_start(
    video_frames: int, span: int, generator: torch.Generator | None = None
) -> int:
    """A start drawn uniformly from every start at which a clip of ``span`` frames fits."""
    return int(torch.randint(max(video_frames - span, 0) + 1, (1,), generator=generator))


def uniform_clip_start(video_frames: int, span: int, *, clip_index: int, num_clips: int) -> int:
    """Start of clip ``clip_index`` of ``num_clips`` spread evenly over the video.

    The first clip starts at frame 0 and the last ends at the last frame; one clip is centred.
    """
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index {clip_index} out of range for {num_clips} clips")
    slack = max(video_frames - span, 0)
    if num_clips == 1:
        return slack // 2
    return round(slack * clip_index / (num_clips - 1))
