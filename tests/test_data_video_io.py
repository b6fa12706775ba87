"""Decoding chosen frames with decord and PyAV, the fallback, and unusable files."""

import logging

import av
import pytest
import torch
from videos import (
    counter_frames,
    frame_numbers_uint8,
    write_broken_video,
    write_counter_video,
    write_cut_video,
)

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data import video_io
from ats_video.data.video_io import UnusableVideoError, count_frames, read_frames, write_video


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    return write_counter_video(str(tmp_path_factory.mktemp("v") / "counter.mp4"), num_frames=40)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
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


def test_backends_agree_on_pixels(counter_video):
    select = lambda n: list(range(0, n, 5))  # noqa: E731
    a = read_frames(counter_video, select, backend="decord").int()
    b = read_frames(counter_video, select, backend="pyav").int()
    assert (a - b).abs().max() <= 2  # the same H.264 frames through two YUV->RGB converters


def test_rgb_channel_order(tmp_path):
    frames = counter_frames(4)
    frames[...] = (200, 30, 90)
    write_video(str(tmp_path / "c.mp4"), frames, crf=0)
    for backend in ["decord", "pyav"]:
        pixel = read_frames(str(tmp_path / "c.mp4"), lambda n: [0], backend=backend)[0, 10, 10]
        assert (pixel.int() - torch.tensor([200, 30, 90])).abs().max() <= 3


def test_falls_back_to_pyav_when_decord_fails(counter_video, monkeypatch, caplog):
    def broken_decord(path, select):
        raise RuntimeError("decord cannot read this")

    monkeypatch.setattr(video_io, "_decord_frames", broken_decord)
    monkeypatch.setattr(video_io, "_warned", set())
    with caplog.at_level(logging.WARNING):
        frames = read_frames(counter_video, lambda n: [3], backend="decord")
    assert frame_numbers_uint8(frames) == [3]
    assert "decord could not read" in caplog.text and "counter.mp4" in caplog.text


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("garbage", "decord: .*; pyav: .*Invalid data"),
        ("truncated", "decord: .*; pyav: "),
    ],
)
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_unusable_files_raise_naming_the_file(tmp_path, counter_video, kind, reason, backend):
    path = write_broken_video(str(tmp_path / f"{kind}.mp4"), kind, counter_video)
    if backend == "pyav":
        reason = reason.replace("decord: .*; ", "")
    with pytest.raises(UnusableVideoError, match=f"{kind}.mp4: {reason}") as error:
        read_frames(path, lambda n: [0], backend=backend)
    assert error.value.path == path
    with pytest.raises(UnusableVideoError, match=f"{kind}.mp4: {reason}"):
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


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_a_video_cut_at_a_packet_boundary_is_damaged(cut_video, backend):
    with av.open(cut_video) as container:  # the damage the test needs: no decoder error
        assert container.streams.video[0].frames == 40
        assert sum(1 for _ in container.decode(video=0)) == 25
    with pytest.raises(UnusableVideoError, match="cut.mp4: .*header promises 40 frames, .*25"):
        count_frames(cut_video, backend=backend)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
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
    if backend == "pyav":  # decord counts only the frames in the file: nothing to tell
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
