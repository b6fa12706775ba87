"""Tiny test videos written with PyAV, and broken ones.

A "counter" video shows its frame number: frame i is a flat grey of level ``LEVEL_STEP * i``
in red and blue, so a decoded frame (or a normalised crop of it) tells which frame it was; green
ramps from 0 at the left to 255 at the right (or top to bottom for portrait videos), so a crop
tells where it was taken.
"""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from ats_video.data.video_io import why_unavailable, write_video

CPU_DECODERS = ("pyav", "decord", "torchcodec")
LEVEL_STEP = 6
MAX_COUNTER_FRAMES = 256 // LEVEL_STEP


def counter_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3) frames whose red/blue level encodes the frame number."""
    if num_frames > MAX_COUNTER_FRAMES:
        raise ValueError(f"at most {MAX_COUNTER_FRAMES} counter frames")
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = frames[..., 2] = (np.arange(num_frames) * LEVEL_STEP)[:, None, None]
    long_axis = np.linspace(0, 255, max(height, width))
    frames[..., 1] = long_axis[None, :] if width >= height else long_axis[:, None]
    return frames


def write_counter_video(path: str, num_frames: int = 40, height: int = 48, width: int = 64) -> str:
    """Writes a counter video (near-lossless, so levels survive) and returns its path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_video(path, counter_frames(num_frames, height, width), fps=30, crf=0)
    return path


def frame_numbers(video: torch.Tensor, mean=(0.0,) * 3, std=(1.0,) * 3) -> list[int]:
    """Frame numbers of a (C, T, H, W) float video normalised with ``mean``/``std`` from [0, 1]."""
    red = video[0] * std[0] + mean[0]
    return (red.mean(dim=(1, 2)) * 255 / LEVEL_STEP).round().long().tolist()


def frame_numbers_uint8(frames: torch.Tensor) -> list[int]:
    """Frame numbers of uint8 frames (T, H, W, C)."""
    return (frames[..., 0].float().mean(dim=(1, 2)) / LEVEL_STEP).round().long().tolist()


def write_broken_video(path: str, kind: str, valid_source: str | None = None) -> str:
    """Writes an unusable file: "empty", "garbage" (random bytes) or "truncated" (first half of
    ``valid_source``). "missing" writes nothing."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if kind == "empty":
        open(path, "wb").close()
    elif kind == "garbage":
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).bytes(4096))
    elif kind == "truncated":
        with open(valid_source, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    elif kind != "missing":
        raise ValueError(kind)
    return path


def write_cut_video(path: str, source: str, keep: int) -> str:
    """Writes ``source`` cut after its first ``keep`` packets, its header still promising all.

    A download or copy that stopped early: the mp4 header ("moov", moved to the front by
    remuxing with faststart) lists every frame, but the file ends at a packet boundary, so
    the demuxer meets a clean end of file after ``keep`` frames and no decoder reports an
    error. ``source`` must be intra-only or without B-frames (as the lossless counter videos
    are), so that the first ``keep`` packets are the first ``keep`` frames.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with av.open(source) as src, av.open(path, "w", options={"movflags": "faststart"}) as dst:
        # newer PyAV: add_stream_from_template; setup.py's minimum, PyAV 12: add_stream(template=...)
        if hasattr(dst, "add_stream_from_template"):
            stream = dst.add_stream_from_template(src.streams.video[0])
        else:
            stream = dst.add_stream(template=src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    with av.open(path) as container:
        ends = sorted(p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size)
    with open(path, "r+b") as f:
        f.truncate(ends[keep - 1])
    return path


def decoder_params() -> list:
    """The CPU decoders as pytest parameters, each skipped with its reason where it cannot load."""
    return [
        pytest.param(name, marks=pytest.mark.skipif(bool(reason), reason=reason))
        for name, reason in ((name, why_unavailable(name)) for name in CPU_DECODERS)
    ]
