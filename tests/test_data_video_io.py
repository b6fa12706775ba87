"""Decoding chosen frames with PyAV, decord and torchcodec, the fallback, and unusable files."""

import importlib.util
import logging
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from videos import (
    CPU_DECODERS,
    counter_frames,
    decoder_params,
    frame_numbers_uint8,
    write_broken_video,
    write_counter_video,
    write_cut_video,
)

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data import video_io
from ats_video.data.video_io import UnusableVideoError, count_frames, read_frames, write_video

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    return write_counter_video(str(tmp_path_factory.mktemp("v") / "counter.mp4"), num_frames=40)


DECODERS = decoder_params()


@pytest.mark.parametrize("backend", DECODERS)
def test_reads_exactly_the_selected_frames(counter_video, backend):
    seen = []

    def select(num_frames):
        seen.append(num_frames)
        return [39, 0, 7, 7, 38]

    frames = read_frames(counter_video, select, backend=backend)
    assert seen == [40]
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == torch.uint8
    assert frame_numbers_uint8(frames) == [39, 0, 7, 7, 38]
    assert count_frames(counter_video, backend=backend) == 40


@pytest.mark.parametrize("backend", DECODERS)
def test_backends_agree_on_pixels(tmp_path, backend):
    # A busy video (random pixels, lossy): the same H.264 frames through each reader's YUV->RGB
    # conversion. README.md and video_io's docstring state this tolerance.
    frames = np.random.default_rng(0).integers(0, 256, (30, 48, 64, 3), dtype=np.uint8)
    path = str(tmp_path / "busy.mp4")
    write_video(path, frames)
    select = lambda n: [29, 0, 11, 12, 11]  # noqa: E731
    reference = read_frames(path, select, backend="pyav").int()
    assert (read_frames(path, select, backend=backend).int() - reference).abs().max() <= 2


@pytest.mark.parametrize("backend", DECODERS)
def test_rgb_channel_order(tmp_path, backend):
    frames = counter_frames(4)
    frames[...] = (200, 30, 90)
    write_video(str(tmp_path / "c.mp4"), frames, crf=0)
    pixel = read_frames(str(tmp_path / "c.mp4"), lambda n: [0], backend=backend)[0, 10, 10]
    assert (pixel.int() - torch.tensor([200, 30, 90])).abs().max() <= 3


@pytest.mark.parametrize("backend", DECODERS)
def test_falls_back_to_the_next_decoder_when_one_fails(counter_video, backend, monkeypatch, caplog):
    def broken(path, select):
        raise RuntimeError(f"{backend} cannot read this")

    monkeypatch.setitem(video_io._DECODERS, backend, video_io._Decoder(broken, len))
    monkeypatch.setattr(video_io, "_warned", set())
    order = video_io.decoding_order(backend)
    if len(order) == 1:
        pytest.skip(f"only {backend} loads here: nothing to fall back to")
    with caplog.at_level(logging.WARNING):
        frames = read_frames(counter_video, lambda n: [3], backend=backend)
    assert frame_numbers_uint8(frames) == [3]
    assert f"{backend} could not read" in caplog.text and "counter.mp4" in caplog.text
    assert f"trying {order[1]}" in caplog.text


def hide(monkeypatch, backend: str) -> None:
    """Makes ``backend`` look not installed, as on a machine without it."""
    if backend == "pyav":
        monkeypatch.setattr(video_io, "av", None)
    elif backend == "decord":
        monkeypatch.setattr(video_io, "decord", None)
    else:
        monkeypatch.setattr(video_io, "_import_torchcodec", lambda: (None, "hidden by the test"))


@pytest.mark.parametrize("hidden", CPU_DECODERS)
def test_decodes_with_whatever_is_present(counter_video, hidden, monkeypatch, caplog):
    others = [name for name in CPU_DECODERS if name != hidden and not video_io.why_unavailable(name)]
    if not others:
        pytest.skip(f"no decoder but {hidden} loads here")
    hide(monkeypatch, hidden)
    monkeypatch.setattr(video_io, "_warned", set())
    assert hidden not in video_io.decoding_order()
    frames = read_frames(counter_video, lambda n: [39, 2], backend="auto")
    assert frame_numbers_uint8(frames) == [39, 2]
    assert count_frames(counter_video) == 40
    with caplog.at_level(logging.WARNING):
        frames = read_frames(counter_video, lambda n: [5], backend=hidden)  # asked for: falls back
        read_frames(counter_video, lambda n: [5], backend=hidden)
    assert frame_numbers_uint8(frames) == [5]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # once per process
    assert f"decoding backend {hidden} cannot be used: " in warnings[0]
    assert "to use it: " in warnings[0] and "Decoding with " in warnings[0]


def test_with_no_decoder_the_error_names_what_to_install(counter_video, monkeypatch):
    for backend in CPU_DECODERS:
        hide(monkeypatch, backend)
    with pytest.raises(video_io.NoDecoderError, match="no video decoder can be used") as error:
        read_frames(counter_video, lambda n: [0])
    message = str(error.value)
    assert "pip install av" in message and "pip install decord" in message
    assert "FFmpeg's shared libraries" in message


def test_a_decoder_that_cannot_load_says_why():
    # torchcodec's own error is 40 lines long; the reason kept is the cause in one line.
    missing_ffmpeg = RuntimeError(
        "Could not load libtorchcodec. Likely causes: ...\n[start of libtorchcodec loading traceback]"
        "\nFFmpeg version 8:\nOSError: libavutil.so.60: cannot open shared object file\n"
        "OSError: Could not load this library: /x/libtorchcodec_core8.so\n"
        "FFmpeg version 7:\nOSError: libavutil.so.59: cannot open shared object file\n"
    )
    assert video_io._torchcodec_load_error(missing_ffmpeg) == (
        "no FFmpeg shared libraries (4 to 8) are found: libavutil.so.60: cannot open shared object file"
    )
    cuda_build = RuntimeError("Could not load this library: /x/libtorchcodec_image.so")
    cuda_build.__cause__ = OSError("libnvrtc.so.13: cannot open shared object file")
    assert video_io._torchcodec_load_error(cuda_build).endswith(
        "(a CUDA build needs a CUDA torch): libnvrtc.so.13: cannot open shared object file"
    )


def test_the_default_order_follows_the_measured_table():
    table = open(Path(__file__).parents[1] / "benchmarks" / "decoders.md").read()
    order = re.search(r"^Order: (.*)$", table, re.M).group(1).split(", ")
    assert list(video_io.DEFAULT_ORDER) == order


@pytest.mark.skipif(
    bool(video_io.why_unavailable("torchcodec_cuda")),
    reason=video_io.why_unavailable("torchcodec_cuda") or "torchcodec decodes on CUDA here",
)
def test_torchcodec_decodes_on_the_gpu_as_on_the_cpu(counter_video):
    select = lambda n: [39, 0, 7, 7, 38]  # noqa: E731
    gpu = read_frames(counter_video, select, backend="torchcodec_cuda")
    cpu = read_frames(counter_video, select, backend="pyav")
    assert gpu.device.type == "cpu" and frame_numbers_uint8(gpu) == [39, 0, 7, 7, 38]
    assert (gpu.int() - cpu.int()).abs().max() <= 2  # NVDEC + CUDA colour conversion


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "truncated"])
@pytest.mark.parametrize("backend", DECODERS)
def test_unusable_files_raise_naming_the_file(tmp_path, counter_video, kind, backend):
    path = write_broken_video(str(tmp_path / f"{kind}.mp4"), kind, counter_video)
    # every decoder tried, in order, names its error
    each = "; ".join(f"{name}: .+" for name in video_io.decoding_order(backend))
    reason = {"missing": "no such file", "empty": "empty file"}.get(kind, each)
    with pytest.raises(UnusableVideoError, match=f"{kind}.mp4: {reason}$") as error:
        read_frames(path, lambda n: [0], backend=backend)
    assert error.value.path == path
    if kind == "garbage" and backend == "pyav":
        assert "pyav: InvalidDataError" in error.value.reason
    with pytest.raises(UnusableVideoError, match=f"{kind}.mp4: {reason}$"):
        count_frames(path, backend=backend)


def test_write_video_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        write_video(str(tmp_path / "odd.mp4"), counter_frames(2, 47, 64))
    with pytest.raises(ValueError, match="no frames"):
        write_video(str(tmp_path / "none.mp4"), [])
    with pytest.raises(ValueError, match="unknown decoding backend"):
        read_frames(str(tmp_path / "odd.mp4"), lambda n: [0], backend="opencv")


@pytest.fixture(scope="module")
def cut_video(counter_video, tmp_path_factory):
    """The 40-frame counter video cut after 25 packets; its header still promises 40 frames."""
    return write_cut_video(str(tmp_path_factory.mktemp("cut") / "cut.mp4"), counter_video, 25)


@pytest.mark.parametrize("backend", DECODERS)
def test_a_video_cut_at_a_packet_boundary_is_damaged(cut_video, backend):
    with av.open(cut_video) as container:  # the damage the test needs: no decoder error
        assert container.streams.video[0].frames == 40
        assert sum(1 for _ in container.decode(video=0)) == 25
    with pytest.raises(UnusableVideoError, match="cut.mp4: .*header promises 40 frames, .*25"):
        count_frames(cut_video, backend=backend)


@pytest.mark.parametrize("backend", DECODERS)
def test_clips_of_a_cut_video_come_from_the_frames_that_decode(
    cut_video, backend, monkeypatch, caplog
):
    monkeypatch.setattr(video_io, "_warned", set())
    seen = []

    def last_clip(num_frames):  # ends at the last frame, like the last test view
        seen.append(num_frames)
        return [num_frames - 10, num_frames - 5, num_frames - 1]

    with caplog.at_level(logging.WARNING):
        frames = read_frames(cut_video, last_clip, backend=backend)
        assert frame_numbers_uint8(frames) == [15, 20, 24]  # not [24, 24, 24]
        read_frames(cut_video, last_clip, backend=backend)
    assert seen[-1] == 25
    if backend == "pyav":  # decord, torchcodec count only the frames in the file: nothing to tell
        assert seen[:2] == [40, 25]
        warnings = [r for r in caplog.records if "header promises 40 frames" in r.getMessage()]
        assert len(warnings) == 1 and "cut.mp4" in warnings[0].getMessage()


def test_pyav_takes_the_clip_again_when_an_estimated_count_runs_past_the_end(
    counter_video, monkeypatch
):
    # Containers without a frame count (webm, some mkv) estimate one from their duration.
    monkeypatch.setattr(video_io, "_pyav_num_frames", lambda container, stream: 45)
    frames = read_frames(counter_video, lambda n: [n - 9, n - 5, n - 1], backend="pyav")
    assert frame_numbers_uint8(frames) == [31, 35, 39]  # from select(40), not [36, 39, 39]


def test_check_decoders_reports_each_backend():
    spec = importlib.util.spec_from_file_location("check_decoders", TOOLS / "check_decoders.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    results = tool.check_decoders(height=32, width=48)
    assert [r["backend"] for r in results] == [b for b in video_io.BACKENDS if b != "auto"]
    for r in results:
        assert r["loads"] == (not video_io.why_unavailable(r["backend"]))
        assert r["ok"] if r["loads"] else "to use it: " in r["reason"]
