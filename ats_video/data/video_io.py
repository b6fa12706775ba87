"""Reading chosen frames from video files (decord, PyAV fallback) and writing videos (PyAV).

Readers take frame indices, not seconds: a clip sampler picks the indices it needs and only
those frames are returned, so a training clip of 8 frames costs 8 RGB conversions and copies
rather than the 64-256 frames a seconds-based clip holds.

- decord is the default: ``VideoReader.get_batch(indices)`` seeks to the keyframe before the
  first index and converts only the requested frames.
- PyAV is the fallback, used where decord is not installed, where it cannot read a file, or
  when asked for (``backend="pyav"``).

NOTE: The PyAV reader decodes from the first frame up to the last requested one and numbers
frames by counting them, not from timestamps, so both readers agree on frame numbers even for
variable-frame-rate files. For 10-second Kinetics clips this costs little, since ffmpeg's
default keyframe interval (250 frames) makes seeking save little anyway.

NOTE: Frames the header promises but the file does not hold (a file cut short) are never
stood in for by the last frame. decord counts only the frames in the file, so the clip is
chosen among them. PyAV takes the header's count (or, for containers that store none, such as
webm and some mkv, an estimate from the duration); when the video ends before a requested
frame, ``select`` is called again with the number of frames that decode, and a damaged file is
named in a warning, once per process. A video shorter than a clip still repeats its last frame,
by the sampler's choice (:mod:`ats_video.data.sampling`). :func:`count_frames` (and so
``data_prep/check_videos.py``) reports a file cut short as unusable.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction

import av
import numpy as np
import torch

try:
    import decord
except ImportError:  # decord has no wheels for some platforms (macOS arm64, Python 3.12+)
    decord = None

logger = logging.getLogger(__name__)

BACKENDS = ("decord", "pyav")
_CHUNK = 32  # frames per decord batch when decoding a whole video

_warned = set()


class UnusableVideoError(RuntimeError):
    """A video that is missing, empty, or that no backend can decode."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _decord_reader(path: str) -> decord.VideoReader:
    # One thread per reader: DataLoader workers already decode in parallel.
    reader = decord.VideoReader(path, num_threads=1)
    if len(reader) == 0:
        raise ValueError("no video frames")
    return reader


def _decord_batch(reader: decord.VideoReader, indices: list[int]) -> torch.Tensor:
    batch = reader.get_batch(indices)
    # pytorchvideo switches decord's global bridge to torch when its decord decoder is imported.
    return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch.asnumpy())


def _decord_frames(path: str, select: Callable[[int], Sequence[int]]) -> torch.Tensor:
    reader = _decord_reader(path)
    return _decord_batch(reader, list(select(len(reader))))


def _decord_count(path: str) -> int:
    reader = _decord_reader(path)
    for start in range(0, len(reader), _CHUNK):
        _decord_batch(reader, list(range(start, min(start + _CHUNK, len(reader)))))
    return len(reader)


def _pyav_stream(container: av.container.InputContainer) -> av.video.VideoStream:
    if not container.streams.video:
        raise ValueError("no video stream")
    return container.streams.video[0]  # single-threaded, like decord: workers run in parallel


def _pyav_num_frames(container: av.container.InputContainer, stream: av.video.VideoStream) -> int:
    if stream.frames > 0:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and rate:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration is not None and rate:
        return max(1, round(container.duration / av.time_base * float(rate)))
    raise ValueError("the container stores neither a frame count nor a duration")


def _pyav_frames(path: str, select: Callable[[int], Sequence[int]]) -> torch.Tensor:
    with av.open(path) as container:
        stream = _pyav_stream(container)
        announced, promised = _pyav_num_frames(container, stream), stream.frames
        indices = list(select(announced))
        frames, available = _pyav_decode(container, stream, indices)
    if available is not None:
        # The video ended before the last frame asked for: fewer frames decode than the header
        # promised (a damaged file) or than the duration suggested (an estimate). The clip is
        # taken again from the frames that do decode, rather than repeating the last one.
        if available < promised:
            _warn_once(
                f"cut:{path}",
                "%s: the header promises %d frames but only %d decode; its clips are taken "
                "from those (data_prep/check_videos.py tells whether the file is cut short)",
                path,
                promised,
                available,
            )
        indices = list(select(available))
        with av.open(path) as container:
            frames, short = _pyav_decode(container, _pyav_stream(container), indices)
        if short is not None:
            raise IndexError(f"frame {max(indices)} asked for; {short} frames decode")
    return torch.from_numpy(np.stack([frames[i] for i in indices]))


def _pyav_decode(
    container: av.container.InputContainer, stream: av.video.VideoStream, indices: list[int]
) -> tuple[dict[int, np.ndarray], int | None]:
    """RGB arrays of the frames ``indices``, decoding up to the last of them; and, when the
    video ends first, the number of frames it holds (None when every index was reached)."""
    wanted, last_wanted = set(indices), max(indices)
    frames, index = {}, -1
    for index, frame in enumerate(container.decode(stream)):
        if index in wanted:
            frames[index] = frame.to_ndarray(format="rgb24")
        if index == last_wanted:
            return frames, None
    if index < 0:
        raise ValueError("no video frames")
    return frames, index + 1


def _pyav_count(path: str) -> int:
    with av.open(path) as container:
        count = sum(1 for _ in container.decode(_pyav_stream(container)))
    if count == 0:
        raise ValueError("no video frames")
    return count


def _with_fallback(path: str, backend: str, with_decord: Callable, with_pyav: Callable):
    """``with_decord(path)`` if asked for and possible, else or on failure ``with_pyav(path)``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; expected one of {BACKENDS}")
    if not os.path.isfile(path):
        raise UnusableVideoError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise UnusableVideoError(path, "empty file")
    errors = []
    if backend == "decord":
        if decord is None:
            _warn_once("no-decord", "decord is not installed; decoding videos with PyAV")
        else:
            try:
                return with_decord(path)
            except Exception as error:  # decord raises bare RuntimeError/DECORDError
                errors.append(f"decord: {_first_line(error)}")
                _warn_once(
                    "decord-failed",
                    "decord could not read %s (%s); trying PyAV for it and any such videos "
                    "(data_prep/check_videos.py lists them)",
                    path,
                    errors[-1],
                )
    try:
        result = with_pyav(path)
    except Exception as error:
        errors.append(f"pyav: {_first_line(error)}")
        raise UnusableVideoError(path, "; ".join(errors)) from error
    if errors:
        logger.debug("%s: read with PyAV after %s", path, errors[0])
    return result


def read_frames(
    path: str, select: Callable[[int], Sequence[int]], *, backend: str = "decord"
) -> torch.Tensor:
    """Decodes the frames ``select(num_frames)`` of a video.

    Args:
        path: video file.
        select: maps the video's frame count to the frame indices wanted, in output order; an
            index may repeat. Called again if the fallback reader reports another count, or
            when fewer frames decode than the video announced.
        backend: "decord" (PyAV when decord fails or is missing) or "pyav".

    Returns:
        uint8 tensor (T, H, W, C), RGB, T = len(indices).

    Raises:
        UnusableVideoError: the file is missing, empty, or no backend decodes it; the message
            names the file and each backend's error.
    """
    return _with_fallback(
        path,
        backend,
        lambda p: _decord_frames(p, select),
        lambda p: _pyav_frames(p, select),
    )


def count_frames(path: str, *, backend: str = "decord") -> int:
    """Decodes every frame of a video, as a check that it can be used; returns their number.

    Raises:
        UnusableVideoError: as :func:`read_frames`, also when any frame fails to decode or the
            file is cut short (:func:`truncation`).
    """
    count = _with_fallback(path, backend, _decord_count, _pyav_count)
    try:
        reason = truncation(path)
    except Exception as error:  # decord decoded every frame, PyAV cannot open it: no telling
        logger.debug("%s: not checked for frames missing (%s)", path, _first_line(error))
        return count
    if reason:
        raise UnusableVideoError(path, reason)
    return count


def truncation(path: str) -> str:
    """Why a video file is cut short, or "" when it holds every frame its header promises.

    A file cut at a packet boundary (a download or copy that stopped) decodes without an error
    up to where it ends, while its header still counts every frame: decoders then report the
    shorter count, and the damage goes unseen. This compares the header's frame count with the
    packets the file holds; only containers that store a count (mp4, mov, avi) can be checked.

    NOTE: packets, not decoded frames, are counted: an mp4 edit list may hide frames from the
    decoder (pre-roll after a cut with stream copy) in a file that is whole.
    """
    with av.open(path) as container:
        stream = _pyav_stream(container)
        promised = stream.frames
        if promised <= 0:
            return ""
        held = sum(1 for packet in container.demux(stream) if packet.size)
    if held >= promised:
        return ""
    return f"cut short: the header promises {promised} frames, the file holds {held}"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def write_video(
    path: str, frames: Iterable[np.ndarray | av.VideoFrame], *, fps: float = 30, crf: int = 23
) -> int:
    """Writes frames as an H.264 (yuv420p) mp4 without audio, streaming them one at a time.

    Args:
        path: output file.
        frames: RGB uint8 arrays (H, W, 3) or PyAV frames, all of one even-sided size (a yuv420p
            requirement); a stacked (T, H, W, 3) array or tensor iterates the same way.
        fps: frame rate.
        crf: x264 quality, 0 (lossless) to 51; 23 is x264's default.

    Returns:
        the number of frames written.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    width, height = _frame_size(first)
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 needs an even frame size, got {width}x{height}")
    count = 0
    with av.open(path, "w") as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in itertools.chain([first], frames):
            if not isinstance(frame, av.VideoFrame):
                frame = av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")
            # Renumber: a decoded frame carries its source's timestamps and time base.
            frame.pts, frame.time_base = count, 1 / rate
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode())
    return count


def _frame_size(frame: np.ndarray | av.VideoFrame) -> tuple[int, int]:
    if isinstance(frame, av.VideoFrame):
        return frame.width, frame.height
    shape = np.asarray(frame).shape
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"expected RGB frames (H, W, 3), got shape {shape}")
    return shape[1], shape[0]
