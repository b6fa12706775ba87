"""Video lists: ``path label`` files, class-name maps and folder-per-class trees.

A list line is a video path and a label, separated by a space (PySlowFast) or a comma (the
official ATS code). The label is the line's last field, since Kinetics class folders hold
spaces ("riding a bike/abc_000010_000020.mp4 273"). A label is a class index or, given a
class-name map, a class name. Paths are relative to a prefix unless absolute.

The folder-per-class layout is PyTorchVideo's ``LabeledVideoPaths.from_directory``:
``root/<class name>/<video>``. The class map, when there is one, numbers the classes of every
split; without one, each tree is numbered in its own sorted order.

NOTE: PyTorchVideo's ``LabeledVideoPaths`` reads only whitespace-separated integer labels,
fails with a bare ``ValueError`` on a bad line and finds only .mp4 and .avi in folders; these
readers name the file and line of every error and accept the containers Kinetics ships in.

NOTE: PyTorchVideo counts every sub-folder as a class, "__MACOSX" and ".ipynb_checkpoints"
included, which shifts the indices of all classes after them; such system folders are skipped
here (:mod:`ats_video.data.files`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from typing import NamedTuple

from ats_video.data.files import VIDEO_EXTENSIONS, class_folders, walk_videos

logger = logging.getLogger(__name__)

SEPARATORS = ("auto", " ", ",")


class VideoRecord(NamedTuple):
    """A labelled video: its path (prefix applied) and class index."""

    path: str
    label: int


def read_class_names(path: str) -> list[str]:
    """Reads a class-name map: a JSON list of names or ``{name: index}`` (SlowFast classids.json).

    Returns:
        the class names in index order.
    """
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if isinstance(data, list) and all(isinstance(name, str) for name in data):
        names = data
    elif isinstance(data, dict) and all(type(i) is int for i in data.values()):  # not bool
        if sorted(data.values()) != list(range(len(data))):
            raise ValueError(f"{path}: class indices must be 0..{len(data) - 1}, each once")
        names = sorted(data, key=data.get)
    else:
        raise ValueError(f"{path}: expected a list of class names or a {{name: index}} object")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a class name occurs twice")
    return names


def read_video_list(
    path: str,
    *,
    prefix: str = "",
    separator: str = "auto",
    class_names: Sequence[str] | None = None,
) -> list[VideoRecord]:
    """Reads a ``path label`` list.

    Args:
        path: the list file. Blank lines are skipped.
        prefix: directory the listed paths are relative to.
        separator: " " (any whitespace), "," or "auto": a comma if the first line holds one,
            whitespace otherwise.
        class_names: class names in index order. With it, labels may be names as well as
            indices, and indices are checked against its length.

    Raises:
        ValueError: naming the file and line of bytes that are not UTF-8, a line without a
            label, a label that is neither a plain integer (0-9 only: not "3.0", "-1", "1e2"
            or other scripts' digits) nor a known class name, or an index out of range; or an
            empty list.
    """
    if separator not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, got {separator!r}")
    class_index = {name: i for i, name in enumerate(class_names or [])}
    name = os.path.basename(path)
    records = []
    lines = [(n, line.strip()) for n, line in read_list_lines(path)]
    if separator == "auto" and lines:
        separator = "," if "," in lines[0][1] else " "
    for line_number, line in lines:
        where = f"{name} line {line_number}"
        fields = line.rsplit(None if separator == " " else ",", 1)
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            sep = "space" if separator == " " else "comma"
            raise ValueError(f"{where}: expected 'path label' ({sep}-separated), got {line!r}")
        video, label = fields[0].strip(), fields[1].strip()
        records.append(VideoRecord(os.path.join(prefix, video), _label(label, class_index, where)))
    if not records:
        raise ValueError(f"{path}: the list holds no videos")
    return records


def read_list_lines(path: str) -> list[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file as (line number, text without its line break).

    A BOM (Excel, Notepad) is dropped. Lines end at "\\n", "\\r\\n" or "\\r", as in Python's text
    mode, so line numbers are those an editor shows.

    Raises:
        ValueError: naming the file, the line and the byte, when the file is not UTF-8.
    """
    text = read_utf8(path)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]


def read_utf8(path: str) -> str:
    """A UTF-8 text file's content, a BOM dropped; not UTF-8: ValueError naming line and byte."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, column = _line_and_column(data, error.start)
        raise ValueError(
            f"{os.path.basename(path)} line {line}: not valid UTF-8 (byte "
            f"0x{data[error.start]:02x} at column {column}); save the file as UTF-8"
        ) from None


def _line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte ``offset``, lines ending as in :func:`read_list_lines`."""
    before = data[:offset].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return before.count(b"\n") + 1, len(before) - before.rfind(b"\n")


def _label(text: str, class_index: dict[str, int], where: str) -> int:
    """A label field as a class index: a plain integer (ASCII digits only) or a class name.

    NOTE: ``str.isdigit`` and ``int`` accept other scripts' digits ("\\u0663", fullwidth
    "\\uff11") and ``isdigit`` also superscripts, which ``int`` then refuses; a label is a
    class index only when it is made of 0-9.
    """
    if re.fullmatch(r"[0-9]+", text):
        label = int(text)
        if class_index and label >= len(class_index):
            raise ValueError(f"{where}: label {label} out of range for {len(class_index)} classes")
        return label
    if text in class_index:
        return class_index[text]
    if not class_index:
        raise ValueError(
            f"{where}: label {text!r} is not a class index (digits 0-9 only); "
            "give a class-name map if labels are class names"
        )
    raise ValueError(f"{where}: unknown class {text!r} (not in the class-name map, nor an index)")


def scan_class_folders(root: str, *, class_names: Sequence[str] | None = None) -> list[VideoRecord]:
    """Lists the videos of a folder-per-class tree ``root/<class name>/.../<video>``.

    Folders and videos are found by the rules of :mod:`ats_video.data.files`: system folders
    ("__MACOSX", ".ipynb_checkpoints") are no classes, hidden files no videos, and linked
    folders are followed. With ``class_names`` (the dataset's class map) every class folder is
    indexed by it, so all splits agree even where one lacks a class; every folder must then be
    a known class. Without it, classes are indexed in this tree's sorted order, which matches
    another split's only if both hold the same classes: a warning says so.

    Raises:
        ValueError: folders not in the class map, videos outside any class folder, or no videos.
    """
    folders = class_folders(root)
    if class_names is None:
        logger.warning(
            "%s: %d classes numbered in this tree's sorted order; give a class-name map "
            "(DATA.CLASS_NAMES_FILE) so that every split numbers them alike",
            root,
            len(folders),
        )
        class_names = folders
    class_index = {name: i for i, name in enumerate(class_names)}
    unknown = [f for f in folders if f not in class_index]
    if unknown:
        raise ValueError(f"{root}: folders not in the class-name map: {unknown[:5]}")
    records, outside = [], []
    for path in walk_videos(root):
        folder, _, rest = os.path.relpath(path, root).partition(os.sep)
        if rest:
            records.append(VideoRecord(path, class_index[folder]))
        else:
            outside.append(folder)
    if outside:
        raise ValueError(f"{root}: videos outside any class folder: {outside[:5]}")
    if not records:
        raise ValueError(f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in class folders")
    return records


def load_videos(
    source: str,
    *,
    prefix: str = "",
    separator: str = "auto",
    class_names: Sequence[str] | None = None,
) -> list[VideoRecord]:
    """A list file (:func:`read_video_list`) or a class-folder tree (:func:`scan_class_folders`)."""
    if os.path.isfile(source):
        return read_video_list(source, prefix=prefix, separator=separator, class_names=class_names)
    if os.path.isdir(source):
        return scan_class_folders(source, class_names=class_names)
    raise FileNotFoundError(f"{source}: no such list file or class-folder directory")
