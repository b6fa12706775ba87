"""Reading chosen frames from video files (PyAV, decord, torchcodec) and writing videos (PyAV).

Readers take frame indices, not seconds: a clip sampler picks the indices it needs and only
those frames are returned, so a training clip of 8 frames costs 8 RGB conversions and copies
rather than the 64-256 frames a seconds-based clip holds.

Three decoders, each optional behind a guarded import; a machine needs one of them:

- PyAV (``av``, a dependency: its wheels bundle FFmpeg for every platform) decodes from the
  first frame up to the last requested one, single-threaded, and converts only the requested
  frames.
- decord (``pip install decord``; wheels for Linux x86_64, Windows and older macOS only,
  unmaintained since 2021): ``VideoReader.get_batch(indices)`` seeks to the keyframe before the
  first index.
- torchcodec (PyTorch's decoder; needs FFmpeg's shared libraries, 4 or newer, and the torchcodec
  build made for the installed torch, see README.md): ``VideoDecoder.get_frames_at(indices)``,
  on the CPU (``"torchcodec"``) or on an NVIDIA GPU (``"torchcodec_cuda"``, frames copied back to
  the CPU). Its exact seek mode scans the file's packets first, so its frame numbers and counts
  are those of the file, as decord's.

``backend="auto"`` tries the decoders that load here in :data:`DEFAULT_ORDER`, the order of the
measured table benchmarks/decoders.md; a named backend is tried first, then the others in that
order. A file the first cannot read goes to the next (logged once per process), so a run never
depends on one decoder. All of them convert with FFmpeg's swscale, so the same indices give the
same frames (tests/test_data_video_io.py checks equality within 2 levels of 255).

NOTE: The PyAV reader numbers frames by counting them, not from timestamps, so the readers agree
on frame numbers even for variable-frame-rate files. For 10-second Kinetics clips decoding from
the start costs little, since ffmpeg's default keyframe interval (250 frames) makes seeking
save little anyway.

NOTE: Frames the header promises but the file does not hold (a file cut short) are never
stood in for by the last frame. decord and torchcodec count only the frames in the file, so the
clip is chosen among them. PyAV takes the header's count (or, for containers that store none,
such as webm and some mkv, an estimate from the duration); when the video ends before a
requested frame, ``select`` is called again with the number of frames that decode, and a
damaged file is named in a warning, once per process. A video shorter than a clip still repeats
its last frame, by the sampler's choice (:mod:`ats_video.data.sampling`). :func:`count_frames`
(and so ``data_prep/check_videos.py``) reports a file cut short as unusable.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

_IMPORT_ERRORS = {}  # backend: why its import failed
try:
    import av
except ImportError as error:
    av, _IMPORT_ERRORS["pyav"] = None, f" ({error})"
try:
    import decord
except ImportError as error:  # no wheels for Linux aarch64, macOS arm64, recent Pythons
    decord, _IMPORT_ERRORS["decord"] = None, f" ({error})"

logger = logging.getLogger(__name__)

Select = Callable[[int], Sequence[int]]

# By benchmarks/decoders.md: training and test clips per CPU-second, 1 and 2 workers, on a
# 2-core CPU, where the three tie within noise (torchcodec 1.04, decord 0.99 of PyAV); the
# maintained torchcodec first where it loads. torchcodec_cuda is used only when asked for.
DEFAULT_ORDER = ("torchcodec", "pyav", "decord")
BACKENDS = ("auto", "pyav", "decord", "torchcodec", "torchcodec_cuda")
_CHUNK = 32  # frames per batch when decoding a whole video

_INSTALL = {
    "pyav": "pip install av (wheels bundle FFmpeg, for every platform)",
    "decord": "pip install decord (wheels for Linux x86_64, Windows and macOS x86_64 only)",
    "torchcodec": "FFmpeg's shared libraries (apt install ffmpeg, brew install ffmpeg or "
    "conda install ffmpeg) and the torchcodec release built for this torch (README.md, "
    "'Video decoders')",
}
_INSTALL["torchcodec_cuda"] = _INSTALL["torchcodec"] + ", on a machine with an NVIDIA GPU"

_warned = set()


class UnusableVideoError(RuntimeError):
    """A video that is missing, empty, or that no backend can decode."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class NoDecoderError(RuntimeError):
    """No decoding backend can be used on this machine."""


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


def _decord_frames(path: str, select: Select) -> torch.Tensor:
    reader = _decord_reader(path)
    return _decord_batch(reader, list(select(len(reader))))


def _decord_count(path: str) -> int:
    reader = _decord_reader(path)
    return _decode_in_chunks(len(reader), lambda indices: _decord_batch(reader, indices))


def _decode_in_chunks(num_frames: int, read_batch: Callable[[list[int]], object]) -> int:
    """Decodes frames 0..num_frames-1 in batches of _CHUNK (each frame must decode)."""
    for start in range(0, num_frames, _CHUNK):
        read_batch(list(range(start, min(start + _CHUNK, num_frames))))
    return num_frames


@functools.cache
def _import_torchcodec() -> tuple[object | None, str]:
    """torchcodec's VideoDecoder class and "", or None and why it cannot load (once per process:
    loading it tries each FFmpeg major version's library)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as error:
        return None, f"torchcodec is not installed ({error})"
    except Exception as error:  # RuntimeError: no FFmpeg libraries, or built for another torch
        return None, f"torchcodec is installed but cannot load: {_torchcodec_load_error(error)}"
    return VideoDecoder, ""


def _torchcodec_load_error(error: Exception) -> str:
    """The cause in torchcodec's long load error: its libraries do not fit this torch, or no
    FFmpeg is found (it tries FFmpeg 8 down to 4; each try names a missing library)."""
    lines = str(error).splitlines()
    if error.__cause__ is not None:  # torchcodec 0.14 on: one library's error, chained
        lines.append(f"OSError: {error.__cause__}")
    causes = [
        line.removeprefix("OSError: ")
        for line in lines
        if line.startswith("OSError: ") and "Could not load this library" not in line
    ]
    not_ffmpeg = [cause for cause in causes if not cause.startswith(("libav", "libsw"))]
    if not_ffmpeg:
        return (
            f"it was built for another torch than {torch.__version__} (a CUDA build needs a "
            f"CUDA torch): {not_ffmpeg[0]}"
        )
    if causes:
        return f"no FFmpeg shared libraries (4 to 8) are found: {causes[0]}"
    return _first_line(error)


def _torchcodec_decoder(path: str, device: str):
    VideoDecoder, _ = _import_torchcodec()
    # Exact seek mode: frame numbers from the packets the file holds, as the other readers.
    # One FFmpeg thread per decoder: DataLoader workers already decode in parallel.
    decoder = VideoDecoder(
        path, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1, device=device
    )
    if len(decoder) == 0:
        raise ValueError("no video frames")
    return decoder


def _torchcodec_frames(path: str, select: Select, *, device: str = "cpu") -> torch.Tensor:
    decoder = _torchcodec_decoder(path, device)
    return decoder.get_frames_at(list(select(len(decoder)))).data.cpu()


def _torchcodec_count(path: str, *, device: str = "cpu") -> int:
    decoder = _torchcodec_decoder(path, device)
    return _decode_in_chunks(len(decoder), decoder.get_frames_at)


def _pyav_stream(container: av.container.InputContainer) -> av.video.VideoStream:
    if not container.streams.video:
        raise ValueError("no video stream")
    stream = container.streams.video[0]
    # One thread, like the other readers: DataLoader workers already decode in parallel, and
    # FFmpeg's default (one thread per core, up to 16) would oversubscribe the CPUs.
    stream.codec_context.thread_count = 1
    return stream


def _pyav_num_frames(container: av.container.InputContainer, stream: av.video.VideoStream) -> int:
    if stream.frames > 0:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and rate:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration is not None and rate:
        return max(1, round(container.duration / av.time_base * float(rate)))
    raise ValueError("the container stores neither a frame count nor a duration")


def _pyav_frames(path: str, select: Select) -> torch.Tensor:
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


@dataclass(frozen=True)
class _Decoder:
    frames: Callable[[str, Select], torch.Tensor]  # (path, select) -> uint8 (T, H, W, C)
    count: Callable[[str], int]  # path -> frames, each decoded


_DECODERS = {
    "pyav": _Decoder(_pyav_frames, _pyav_count),
    "decord": _Decoder(_decord_frames, _decord_count),
    "torchcodec": _Decoder(_torchcodec_frames, _torchcodec_count),
    "torchcodec_cuda": _Decoder(
        functools.partial(_torchcodec_frames, device="cuda"),
        functools.partial(_torchcodec_count, device="cuda"),
    ),
}


def why_unavailable(backend: str) -> str:
    """Why ``backend`` cannot be used on this machine and what to install; "" when it can."""
    if backend in ("pyav", "decord"):
        module = av if backend == "pyav" else decord
        reason = "" if module else f"{backend} is not installed{_IMPORT_ERRORS.get(backend, '')}"
    elif backend in ("torchcodec", "torchcodec_cuda"):
        reason = _import_torchcodec()[1]
        if not reason and backend == "torchcodec_cuda" and not torch.cuda.is_available():
            reason = "no CUDA device is available to torch"
    else:
        raise ValueError(f"unknown decoding backend {backend!r}; expected one of {BACKENDS}")
    return f"{reason}; to use it: {_INSTALL[backend]}" if reason else ""


def decoding_order(backend: str = "auto") -> tuple[str, ...]:
    """The decoders :func:`read_frames` tries, in order: ``backend`` first (unless "auto"),
    then the others of :data:`DEFAULT_ORDER`, keeping those that load here.

    A named backend that cannot load is skipped with a warning, once per process, naming why
    and what to install.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
        NoDecoderError: none loads; the message names each one's reason.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; expected one of {BACKENDS}")
    wanted = [name for name in (backend, *DEFAULT_ORDER) if name != "auto"]
    order = tuple(dict.fromkeys(name for name in wanted if not why_unavailable(name)))
    if not order:
        reasons = "; ".join(why_unavailable(name) for name in dict.fromkeys(wanted))
        raise NoDecoderError(f"no video decoder can be used here: {reasons}")
    if backend != "auto" and order[0] != backend:
        _warn_once(
            f"unavailable:{backend}",
            "decoding backend %s cannot be used: %s. Decoding with %s instead.",
            backend,
            why_unavailable(backend),
            order[0],
        )
    return order


def _with_fallback(path: str, backend: str, action: Callable[[_Decoder, str], object]):
    """``action(decoder, path)`` with the first decoder of :func:`decoding_order` that succeeds."""
    order = decoding_order(backend)
    if not os.path.isfile(path):
        raise UnusableVideoError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise UnusableVideoError(path, "empty file")
    errors = []
    for name in order:
        try:
            result = action(_DECODERS[name], path)
        except Exception as error:  # decord raises bare RuntimeError/DECORDError
            errors.append(f"{name}: {_first_line(error)}")
            if name != order[-1]:
                _warn_once(
                    f"failed:{name}",
                    "%s could not read %s (%s); trying %s for it and any such videos "
                    "(data_prep/check_videos.py lists them)",
                    name,
                    path,
                    errors[-1],
                    " and ".join(order[order.index(name) + 1 :]),
                )
            continue
        if errors:
            logger.debug("%s: read with %s after %s", path, name, "; ".join(errors))
        return result
    raise UnusableVideoError(path, "; ".join(errors))


def read_frames(path: str, select: Select, *, backend: str = "auto") -> torch.Tensor:
    """Decodes the frames ``select(num_frames)`` of a video.

    Args:
        path: video file.
        select: maps the video's frame count to the frame indices wanted, in output order; an
            index may repeat. Called again if the next reader reports another count, or
            when fewer frames decode than the video announced.
        backend: one of :data:`BACKENDS`: "auto" (the decoders that load here, in
            :data:`DEFAULT_ORDER`) or the one to try first (:func:`decoding_order`).

    Returns:
        uint8 tensor (T, H, W, C), RGB, on the CPU, T = len(indices).

    Raises:
        UnusableVideoError: the file is missing, empty, or no backend decodes it; the message
            names the file and each backend's error.
        NoDecoderError: no backend can be used on this machine.
    """
    return _with_fallback(path, backend, lambda decoder, p: decoder.frames(p, select))


def count_frames(path: str, *, backend: str = "auto") -> int:
    """Decodes every frame of a video, as a check that it can be used; returns their number.

    Raises:
        UnusableVideoError: as :func:`read_frames`, also when any frame fails to decode or the
            file is cut short (:func:`truncation`).
    """
    count = _with_fallback(path, backend, lambda decoder, p: decoder.count(p))
    try:
        reason = truncation(path)
    except Exception as error:  # read by another decoder, PyAV cannot open it: no telling
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
