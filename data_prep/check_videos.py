"""Decodes every video of a list and writes the broken ones and a clean list.

Every frame of every listed video is decoded the way the data loader reads it (decord, PyAV
where decord fails; or PyAV only with --backend pyav). Writes, next to the list or into --out:

    <list name>.broken.txt   `path<TAB>reason` for each video that is missing, empty or fails
    <list name>.clean<ext>   the list's lines for the other videos, unchanged

Safe to run again: results are kept in .<list name>.check_cache.jsonl beside the outputs, and a
video whose size and modification time have not changed is not decoded again.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from tqdm import tqdm

from ats_video.data.lists import read_class_names, read_list_lines, read_video_list
from ats_video.data.video_io import BACKENDS, UnusableVideoError, count_frames


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
    parser.add_argument("--backend", default="decord", choices=BACKENDS)
    parser.add_argument("--out", help="output directory (default: the list's directory)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    return parser.parse_args(argv)


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


def main(argv=None) -> int:
    args = parse_args(argv)
    list_dir = os.path.dirname(os.path.abspath(args.list))
    prefix = list_dir if args.prefix is None else args.prefix
    class_names = read_class_names(args.class_names) if args.class_names else None
    videos = read_video_list(
        args.list, prefix=prefix, separator=args.separator, class_names=class_names
    )
    lines = [text + "\n" for _, text in read_list_lines(args.list)]  # those read_video_list reads

    out = args.out or list_dir
    os.makedirs(out, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(args.list))
    cache_path = os.path.join(out, f".{stem}.check_cache.jsonl")
    cache = {}
    if os.path.exists(cache_path):
        with open(cache_path) as f:
            for line in f:
                entry = json.loads(line)
                cache[(entry["path"], entry["backend"])] = entry

    paths = list(dict.fromkeys(video.path for video in videos))  # a video listed twice: once
    results = {}
    todo = []
    for path in paths:
        entry = cache.get((path, args.backend))
        if entry is not None and entry["key"] == file_key(path):
            results[path] = entry["reason"]
        else:
            todo.append(path)

    with open(cache_path, "a") as cache_file, ProcessPoolExecutor(max(1, args.workers)) as pool:
        jobs = [pool.submit(check, path, args.backend) for path in todo]
        progress = tqdm(
            as_completed(jobs),
            total=len(paths),
            initial=len(paths) - len(todo),
            desc="decoding",
            unit="video",
        )
        for job in progress:
            path, _, reason = job.result()
            results[path] = reason
            entry = {"path": path, "backend": args.backend, "key": file_key(path), "reason": reason}
            cache_file.write(json.dumps(entry) + "\n")
            cache_file.flush()  # an interrupted run keeps what it has checked

    broken_path = os.path.join(out, f"{stem}.broken.txt")
    clean_path = os.path.join(out, f"{stem}.clean{ext}")
    with open(broken_path, "w") as broken, open(clean_path, "w") as clean:
        for video, line in zip(videos, lines):
            if results[video.path]:
                broken.write(f"{video.path}\t{results[video.path]}\n")
            else:
                clean.write(line)
    num_broken = sum(1 for video in videos if results[video.path])
    print(f"{len(videos)} videos, {num_broken} broken: {broken_path}; clean list: {clean_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
