"""Files on disk: finding videos in folder trees, and writing outputs that a kill cannot tear.

Finding videos follows one rule everywhere a folder tree is read (class-folder datasets,
``data_prep/kinetics_lists.py``, ``data_prep/resize_videos.py``):

- a video is a file with one of ``VIDEO_EXTENSIONS`` (any case) whose name does not start with
  "." (macOS leaves "._<name>.mp4" resource forks beside copied files, and our own partial
  outputs are hidden the same way);
- a folder whose name starts with "." or "__" is a system folder, never a class and never
  searched: ``__MACOSX`` (zip archives made on macOS), ``.ipynb_checkpoints`` (Jupyter), ``.git``;
- links to folders are followed (class folders are often links to another disk), except a link
  back to a folder above it, which would loop; it is skipped with a warning naming it.

Folders are read in sorted order, each folder's videos before its subfolders (as ``os.walk``),
so lists and outputs come out the same on every run and machine.

Writing: an output appears complete or not at all. It is written under a hidden partial name
beside the target and renamed over it (``os.replace`` is atomic within a file system), so a run
killed mid-write leaves the previous file, or none, never half of one.

NOTE: "a kill" means the process dies; the bytes are not forced to disk (no fsync), so a power
cut may still lose a file written just before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


def is_system_folder(name: str) -> bool:
    """True for folders that tools, not people, make: names starting with "." or "__"."""
    return name.startswith((".", "__"))


def is_video_file(name: str) -> bool:
    """True for a file name with a video extension that is not hidden."""
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def class_folders(root: str) -> list[str]:
    """Sorted names of the folders in ``root`` that may be classes (no system folders)."""
    with os.scandir(root) as scan:
        return sorted(e.name for e in scan if e.is_dir() and not is_system_folder(e.name))


def walk_videos(root: str) -> Iterator[str]:
    """Paths of the videos under ``root`` (at any depth), one at a time, by the rules above.

    Paths are ``root`` joined with the names on the way, links unresolved, so a video in a
    linked folder keeps the path it has inside ``root``.

    Raises:
        OSError: a folder that cannot be read (a permission error is not a folder to skip).
    """
    yield from _walk(root, frozenset([os.path.realpath(root)]))


def _walk(directory: str, ancestors: frozenset[str]) -> Iterator[str]:
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    yield from (e.path for e in entries if not e.is_dir() and is_video_file(e.name))
    for entry in entries:
        if not entry.is_dir() or is_system_folder(entry.name):  # is_dir follows links
            continue
        real = os.path.realpath(entry.path)
        if real in ancestors:
            logger.warning("%s: skipped, a link back to %s above it (a loop)", entry.path, real)
            continue
        yield from _walk(entry.path, ancestors | {real})


def partial_path(path: str) -> str:
    """The hidden name an output is written under before it is renamed to ``path``.

    The extension stays last, so writers that pick a format by it (PyAV) still can.
    """
    directory, name = os.path.split(path)
    return os.path.join(directory, f".partial.{name}")


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yields :func:`partial_path` of ``path`` to write to; renames it to ``path`` on success.

    On an exception the partial file is removed and ``path`` is left as it was.
    """
    partial = partial_path(path)
    try:
        yield partial
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        raise
    os.replace(partial, path)


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` as UTF-8 to ``path`` through :func:`replacing`."""
    with replacing(path) as partial, open(partial, "w", encoding="utf-8") as f:
        f.write(text)
