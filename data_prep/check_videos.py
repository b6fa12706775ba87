"""Decodes every video of a list and writes the broken ones and a clean list.

Every frame of every listed video is decoded the way the data loader reads it (the decoders
installed, in ats_video.data.video_io's order, each trying a video the one before could not read;
--backend names the one to try first). Writes, next to the list or into --out:

    <list name>.broken.txt   `path<TAB>reason` for each video that is missing, empty or fails
    <list name>.clean<ext>   the list's lines for the other videos, unchanged

Safe to run again: results are kept in .<list name>.check_cache.jsonl beside the outputs, and a
video whose size and modification time have not changed is not decoded again. Ctrl-C or SIGTERM
stop the run at once (exit status 130 or 143) with every result so far in the cache; outputs are
written whole or not at all, and a line torn by a kill mid-write is dropped from the cache.
"""

from __future__ import annotations

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import json
import os
import sys
from ats_video.data.files import write_text_atomic
from ats_video.data.lists import read_class_names, read_list_lines, read_video_list
from ats_video.data.video_io import BACKENDS, UnusableVideoError, count_frames
from ats_video.data.workers import Terminated, completed, exit_status, worker_pool


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("list", help="a `path label` list (space- or comma-separated)")
    parser.add_argument(
        "--prefix",
        help="directory the listed paths are relative to (default: the list's directory)",
    )
    parser.add_argument("--separator", default="auto", choices=["auto", " ", ","])
    parser.add_argument("--class-names", help="class-name map, if labels are names")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--out", help="output directory (default: the list's directory)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def check(path: str, backend: str) -> tuple[str, int | None, str]:
    """(path, frame count or None, reason when broken)."""
    try:
        return path, count_frames(path, backend=backend), ""
    except UnusableVideoError as error:
        return path, None, error.reason


def file_key(path: str) -> list | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


CACHE_FIELDS = {"path": str, "backend": str, "reason": str}


def read_cache(path: str) -> tuple[dict[tuple[str, str], dict], bool]:
    """The cached results by (path, backend), and whether the file is whole.

    The cache is appended to as results come, so a run killed mid-write leaves a torn last
    line; such a line, or any other that is not a cache entry, is dropped (its video is checked
    again), and the file is then not whole: the caller rewrites it before appending.
    """
    entries, whole = {}, True
    if not os.path.exists(path):
        return entries, whole
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if _is_entry(entry):
            entries[(entry["path"], entry["backend"])] = entry
        else:
            whole = False
    return entries, whole and (text == "" or text.endswith("\n"))


def _is_entry(entry) -> bool:
    return (
        isinstance(entry, dict)
        and all(isinstance(entry.get(k), t) for k, t in CACHE_FIELDS.items())
        and (entry.get("key") is None or isinstance(entry.get("key"), list))
    )


def cache_line(path: str, backend: str, reason: str) -> str:
    entry = {"path": path, "backend": backend, "key": file_key(path), "reason": reason}
    return json.dumps(entry) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    list_dir = os.path.dirname(os.path.abspath(args.list))
    prefix = list_dir if args.prefix is None else args.prefix
    try:
        class_names = read_class_names(args.class_names) if args.class_names else None
        videos = read_video_list(
            args.list, prefix=prefix, separator=args.separator, class_names=class_names
        )
        lines = [text + "\n" for _, text in read_list_lines(args.list)]  # as read_video_list
    except ValueError as error:
        raise SystemExit(str(error)) from None

    out = args.out or list_dir
    os.makedirs(out, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(args.list))
    cache_path = os.path.join(out, f".{stem}.check_cache.jsonl")
    cache, whole = read_cache(cache_path)
    if not whole:  # drop the torn line before appending after it
        write_text_atomic(cache_path, "".join(json.dumps(e) + "\n" for e in cache.values()))

    paths = list(dict.fromkeys(video.path for video in videos))  # a video listed twice: once
    results = {}
    todo = []
    for path in paths:
        entry = cache.get((path, args.backend))
        if entry is not None and entry["key"] == file_key(path):
            results[path] = entry["reason"]
        else:
            todo.append(path)

    try:
        with worker_pool(args.workers) as pool, open(cache_path, "a", encoding="utf-8") as cache:
            jobs = [pool.submit(check, path, args.backend) for path in todo]
            for job in completed(jobs, total=len(paths), desc="decoding"):
                path, _, reason = job.result()
                results[path] = reason
                cache.write(cache_line(path, args.backend, reason))
                cache.flush()  # an interrupted run keeps what it has checked
    except (KeyboardInterrupt, Terminated) as error:
        print(
            f"interrupted: {len(results)} of {len(paths)} videos checked, kept in {cache_path}; "
            "run again to check the rest",
            file=sys.stderr,
        )
        return exit_status(error)

    broken_path = os.path.join(out, f"{stem}.broken.txt")
    clean_path = os.path.join(out, f"{stem}.clean{ext}")
    broken = [f"{v.path}\t{results[v.path]}\n" for v in videos if results[v.path]]
    write_text_atomic(broken_path, "".join(broken))
    write_text_atomic(
        clean_path, "".join(line for v, line in zip(videos, lines) if not results[v.path])
    )
    print(f"{len(videos)} videos, {len(broken)} broken: {broken_path}; clean list: {clean_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
