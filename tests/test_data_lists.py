"""Video lists, class-name maps and class-folder trees."""

import json
import os
import re

import pytest

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data.lists import (
    VideoRecord,
    load_videos,
    read_class_names,
    read_video_list,
    scan_class_folders,
)

CLASSES = ["abseiling", "riding a bike", "zumba"]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize(
    "text, separator",
    [
        ("a/x.mp4 0\nriding a bike/y z.mp4 1\n\n", "auto"),
        ("a/x.mp4,0\nriding a bike/y z.mp4,1\n", "auto"),
        ("a/x.mp4\t0\nriding a bike/y z.mp4   1\n", " "),
        ("a/x.mp4 , 0\nriding a bike/y z.mp4,1\n", ","),
    ],
)
def test_space_and_comma_lists_with_spaces_in_paths(tmp_path, text, separator):
    path = write(tmp_path / "train.csv", text)
    videos = read_video_list(path, prefix="/data", separator=separator)
    assert videos == [
        VideoRecord("/data/a/x.mp4", 0),
        VideoRecord("/data/riding a bike/y z.mp4", 1),
    ]


def test_absolute_paths_ignore_the_prefix(tmp_path):
    path = write(tmp_path / "l.csv", "/abs/v.mp4 2\n")
    assert read_video_list(path, prefix="/data") == [VideoRecord("/abs/v.mp4", 2)]


def test_class_name_labels(tmp_path):
    path = write(tmp_path / "val.csv", "a.mp4,riding a bike\nb.mp4,2\n")
    videos = read_video_list(path, class_names=CLASSES)
    assert [v.label for v in videos] == [1, 2]


@pytest.mark.parametrize(
    "text, class_names, message",
    [
        (
            "a.mp4 0\nb.mp4\n",
            None,
            "train.csv line 2: expected 'path label' (space-separated), got 'b.mp4'",
        ),
        ("a.mp4,0\n,3\n", None, "train.csv line 2: expected 'path label' (comma-separated)"),
        (
            "a.mp4 0\n\nb.mp4 dancing\n",
            None,
            "train.csv line 3: label 'dancing' is not a class index",
        ),
        ("a.mp4,dancing\n", CLASSES, "train.csv line 1: unknown class 'dancing'"),
        ("a.mp4 3\n", CLASSES, "train.csv line 1: label 3 out of range for 3 classes"),
        ("\n\n", None, "holds no videos"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, class_names, message):
    path = write(tmp_path / "train.csv", text)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_video_list(path, class_names=class_names)


def test_unknown_separator(tmp_path):
    with pytest.raises(ValueError, match="separator"):
        read_video_list(write(tmp_path / "l.csv", "a 0\n"), separator=";")


def test_class_maps(tmp_path):
    as_dict = write(
        tmp_path / "classids.json", json.dumps({"zumba": 2, "abseiling": 0, "riding a bike": 1})
    )
    as_list = write(tmp_path / "names.json", json.dumps(CLASSES))
    assert read_class_names(as_dict) == CLASSES
    assert read_class_names(as_list) == CLASSES
    gap = write(tmp_path / "gap.json", json.dumps({"a": 0, "b": 2}))
    with pytest.raises(ValueError, match="gap.json: class indices must be 0..1"):
        read_class_names(gap)
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_class_names(write(tmp_path / "bad.json", "{"))


def test_class_folders(tmp_path):
    for name in ["zumba/b.mp4", "abseiling/x/a.webm", "abseiling/c.mp4", "abseiling/notes.txt"]:
        write(tmp_path / "train" / name, "")
    videos = scan_class_folders(str(tmp_path / "train"))
    root = str(tmp_path / "train")
    assert videos == [
        VideoRecord(f"{root}/abseiling/c.mp4", 0),
        VideoRecord(f"{root}/abseiling/x/a.webm", 0),
        VideoRecord(f"{root}/zumba/b.mp4", 1),
    ]
    assert scan_class_folders(root, class_names=CLASSES)[-1].label == 2
    with pytest.raises(ValueError, match="not in the class-name map"):
        scan_class_folders(root, class_names=["zumba"])
    assert load_videos(root) == videos


def test_load_videos_dispatch(tmp_path):
    path = write(tmp_path / "l.csv", "a.mp4 0\n")
    assert load_videos(path, prefix="p") == [VideoRecord("p/a.mp4", 0)]
    with pytest.raises(FileNotFoundError, match="nothing.csv: no such list file"):
        load_videos(str(tmp_path / "nothing.csv"))


def test_lists_and_class_maps_with_a_byte_order_mark(tmp_path):
    # Excel and Notepad save UTF-8 with a BOM; it must not become part of the first path.
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa.mp4 0\r\nb.mp4 1\r\n".encode("utf-8"))
    assert read_video_list(str(path), prefix="/d") == [
        VideoRecord("/d/a.mp4", 0),
        VideoRecord("/d/b.mp4", 1),
    ]
    names = tmp_path / "classids.json"
    names.write_bytes(("\ufeff" + json.dumps({"b": 1, "a": 0})).encode("utf-8"))
    assert read_class_names(str(names)) == ["a", "b"]


@pytest.mark.parametrize(
    "label",
    ["3.0", "-1", "+1", "1e2", "\u0663", "\u00b2", "0x1", "1_000", "\uff11"],
)
def test_a_label_that_is_not_a_plain_integer_names_file_and_line(tmp_path, label):
    # "\u0663" (Arabic-Indic three) and "\uff11" (fullwidth one) pass str.isdigit, and int()
    # takes them; "\u00b2" (superscript two) passes isdigit but int() refuses it.
    path = write(tmp_path / "train.csv", f"a.mp4 0\nb.mp4 {label}\n")
    with pytest.raises(ValueError, match=re.escape(f"train.csv line 2: label {label!r}")):
        read_video_list(path)
    with pytest.raises(ValueError, match=re.escape(f"train.csv line 2: unknown class {label!r}")):
        read_video_list(path, class_names=CLASSES)


def test_a_list_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "val.csv"
    path.write_bytes("a.mp4 0\nb.mp4 1\ncaf\u00e9.mp4 2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"val.csv line 3: not valid UTF-8 \(byte 0xe9"):
        read_video_list(str(path))
    (tmp_path / "names.json").write_bytes('["caf\u00e9"]'.encode("latin-1"))
    with pytest.raises(ValueError, match="names.json line 1: not valid UTF-8"):
        read_class_names(str(tmp_path / "names.json"))


def test_class_map_indices_must_be_integers(tmp_path):
    with pytest.raises(ValueError, match="b.json: expected a list of class names"):
        read_class_names(write(tmp_path / "b.json", json.dumps({"a": 0, "b": True})))


def test_class_folders_skip_system_folders_and_files(tmp_path):
    # A zip made on macOS adds __MACOSX/ and "._" files; Jupyter adds .ipynb_checkpoints/.
    root = tmp_path / "val"
    for name in ["__MACOSX/zumba/._b.mp4", ".ipynb_checkpoints/x.mp4", "zumba/._b.mp4",
                 "zumba/b.mp4", "abseiling/a.mp4", "zumba/.cache/c.mp4"]:  # fmt: skip
        write(root / name, "")
    expected = [VideoRecord(f"{root}/abseiling/a.mp4", 0), VideoRecord(f"{root}/zumba/b.mp4", 1)]
    assert scan_class_folders(str(root)) == expected
    assert scan_class_folders(str(root), class_names=CLASSES)[-1] == VideoRecord(
        f"{root}/zumba/b.mp4", 2
    )


def test_class_folders_follow_links_and_stop_at_loops(tmp_path, caplog):
    # A class folder, and a folder inside one, that are links to another disk.
    write(tmp_path / "disk2" / "zumba" / "b.mp4", "")
    write(tmp_path / "disk2" / "more abseiling" / "c.mp4", "")
    write(tmp_path / "train" / "abseiling" / "a.mp4", "")
    os.symlink(tmp_path / "disk2" / "zumba", tmp_path / "train" / "zumba")
    os.symlink(tmp_path / "disk2" / "more abseiling", tmp_path / "train" / "abseiling" / "more")
    os.symlink(tmp_path / "train", tmp_path / "disk2" / "zumba" / "loop")
    root = str(tmp_path / "train")
    assert scan_class_folders(root) == [
        VideoRecord(f"{root}/abseiling/a.mp4", 0),
        VideoRecord(f"{root}/abseiling/more/c.mp4", 0),
        VideoRecord(f"{root}/zumba/b.mp4", 1),
    ]
    assert f"{root}/zumba/loop" in caplog.text and "loop" in caplog.text


def test_every_split_is_indexed_by_the_class_map(tmp_path):
    # The val split lacks "riding a bike": numbered on its own, zumba would be 1, not 2.
    for name in ["train/abseiling/a.mp4", "train/riding a bike/b.mp4", "train/zumba/c.mp4",
                 "val/abseiling/d.mp4", "val/zumba/e.mp4"]:  # fmt: skip
        write(tmp_path / name, "")
    train = scan_class_folders(str(tmp_path / "train"), class_names=CLASSES)
    val = scan_class_folders(str(tmp_path / "val"), class_names=CLASSES)
    assert [v.label for v in train] == [0, 1, 2] and [v.label for v in val] == [0, 2]
