"""Finding videos in folder trees, and writing outputs whole or not at all."""

import os

import pytest
from videos import counter_frames

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data.files import partial_path, replacing, walk_videos, write_text_atomic
from ats_video.data.video_io import count_frames, write_video


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()
    return str(path)


def test_walk_videos_order_and_rules(tmp_path):
    for name in ["b.MP4", "a.webm", "notes.txt", "._a.webm", ".partial.c.mp4", "z/d.avi",
                 "y/e.mkv", "__MACOSX/f.mp4", ".git/g.mp4", "y/.ipynb_checkpoints/h.mp4",
                 "__id_000001_000011.mp4"]:  # fmt: skip
        touch(tmp_path / name)
    found = [os.path.relpath(p, tmp_path) for p in walk_videos(str(tmp_path))]
    # A folder's videos before its sub-folders, each sorted; a YouTube id may start with "__".
    assert found == ["__id_000001_000011.mp4", "a.webm", "b.MP4", "y/e.mkv", "z/d.avi"]


def test_walk_videos_follows_links_once_around_a_loop(tmp_path, caplog):
    touch(tmp_path / "disk" / "a.mp4")
    os.makedirs(tmp_path / "root")
    os.symlink(tmp_path / "disk", tmp_path / "root" / "linked")
    os.symlink(tmp_path / "root", tmp_path / "disk" / "back")
    assert list(walk_videos(str(tmp_path / "root"))) == [f"{tmp_path}/root/linked/a.mp4"]
    assert "root/linked/back: skipped, a link back to" in caplog.text


def test_write_text_atomic_is_whole_or_nothing(tmp_path):
    path = str(tmp_path / "classids.json")
    write_text_atomic(path, '{"caf\u00e9": 0}\n')  # UTF-8 whatever the locale
    assert open(path, encoding="utf-8").read() == '{"caf\u00e9": 0}\n'
    # Writing fails half-way (an unencodable character after 10,000 good ones): the old file
    # stays as it was and no partial file is left behind.
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "x" * 10_000 + "\ud800")
    assert open(path, encoding="utf-8").read() == '{"caf\u00e9": 0}\n'
    assert os.listdir(tmp_path) == ["classids.json"]


def test_replacing_keeps_the_extension_for_writers_that_need_it(tmp_path):
    path = str(tmp_path / "v.mp4")
    assert partial_path(path) == str(tmp_path / ".partial.v.mp4")
    with replacing(path) as partial:
        write_video(partial, counter_frames(4))  # PyAV picks the format by the extension
        assert not os.path.exists(path)
    assert count_frames(path) == 4 and os.listdir(tmp_path) == ["v.mp4"]
    with pytest.raises(RuntimeError), replacing(str(tmp_path / "w.mp4")) as partial:
        write_video(partial, counter_frames(4))
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["v.mp4"]
