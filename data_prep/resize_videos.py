"""Re-encodes a tree of videos with the short side scaled to 256 (or 320), for fast loading.

Every video under --src is written to the same relative path under --dst, as .mp4: short side
--short-side pixels, aspect ratio kept (sides rounded to even numbers, as H.264 needs), H.264
(libx264, yuv420p, --crf quality), same frame rate, no audio. Each output is then decoded in
full with the loader's decoders; a video that fails to read, encode or decode, or whose file holds fewer
frames than its header promises (cut short), is listed with the reason in
<dst>/resize_failures.txt and leaves no output behind.

Videos are found as the datasets find them (ats_video/data/files.py): linked folders are
followed, system folders ("__MACOSX", ".ipynb_checkpoints") and hidden files skipped. Sources
that would share an output ("a.avi" and "a.mp4" of one folder) are not resized but listed as
failures, each naming the others. --dst must lie outside --src.

Safe to run again: videos whose output exists are skipped (outputs are written under a temporary
name and renamed once checked, so an interrupted run leaves no partial file that looks done).
Ctrl-C or SIGTERM stop the run at once (exit status 130 or 143).
"""

from __future__ import annotations

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import os
import sys

import av
from tqdm import tqdm

from ats_video.data.files import partial_path, walk_videos, write_text_atomic
from ats_video.data.video_io import UnusableVideoError, count_frames, truncation, write_video
from ats_video.data.workers import Terminated, completed, exit_status, worker_pool


MIN_SHORT_SIDE = 16  # one 16x16 patch of the models


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", required=True, help="directory of source videos (any depth)")
    parser.add_argument("--dst", required=True, help="output directory, outside --src")
    parser.add_argument("--short-side", type=int, default=256, help="default 256 (or 320)")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality; lower is better")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    args = parser.parse_args(argv)
    problem = argument_problem(args)
    if problem:
        parser.error(problem)
    return args


def argument_problem(args: argparse.Namespace) -> str:
    """Why the arguments would lose or spoil videos, or "" when they would not."""
    if not os.path.isdir(args.src):
        return f"--src {args.src}: no such directory"
    src, dst = os.path.realpath(args.src), os.path.realpath(args.dst)
    if _is_within(dst, src):
        return (
            f"--dst {args.dst} is --src or inside it: a source would pass for its own output "
            "(an .mp4 for one already resized), and outputs for sources on the next run"
        )
    if _is_within(src, dst):
        return f"--src {args.src} is inside --dst {args.dst}: outputs could overwrite sources"
    if args.short_side < MIN_SHORT_SIDE or args.short_side % 2:
        return (
            f"--short-side must be an even number of at least {MIN_SHORT_SIDE} (H.264 needs "
            f"even sides), got {args.short_side}"
        )
    if not 0 <= args.crf <= 51:
        return f"--crf must be in 0..51 (x264's range), got {args.crf}"
    if args.workers < 1:
        return f"--workers must be at least 1, got {args.workers}"
    return ""


def _is_within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def plan(
    sources: list[str], src: str, dst: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (source, output) pairs to resize, and (source, reason) for sources that clash.

    An output keeps its source's path relative to ``src``, with the extension ".mp4", so
    "a.avi" and "a.mp4" in one folder would both be written to "a.mp4", the second over the
    first. Sources that share an output are not resized at all: each is named as a failure
    with the others, to be renamed or removed.
    """
    by_output: dict[str, list[str]] = {}
    for source in sources:
        output = os.path.join(dst, os.path.splitext(os.path.relpath(source, src))[0] + ".mp4")
        by_output.setdefault(output, []).append(source)
    jobs, clashes = [], []
    for output, group in by_output.items():
        if len(group) == 1:
            jobs.append((group[0], output))
            continue
        for source in group:
            others = ", ".join(other for other in group if other != source)
            clashes.append((source, f"{others} would be written to the same output {output}"))
    return jobs, clashes


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` and both sides even."""
    scale = short_side / min(width, height)
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


def resize(src: str, dst: str, short_side: int, crf: int) -> tuple[str, str]:
    """Writes ``dst`` from ``src``; returns (src, reason), reason "" on success."""
    partial = partial_path(dst)
    try:
        damage = truncation(src)  # else its frames that decode would pass for a whole video
        if damage:
            raise ValueError(f"source {damage}")
        with av.open(src) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            width, height = scaled_size(stream.width, stream.height, short_side)
            fps = stream.average_rate or stream.guessed_rate or 30
            frames = (
                frame.reformat(width, height, format="yuv420p", interpolation="BICUBIC")
                for frame in container.decode(stream)
            )
            written = write_video(partial, frames, fps=fps, crf=crf)
        decoded = count_frames(partial)
        if decoded != written:
            raise ValueError(f"output decodes {decoded} of {written} frames")
    except Exception as error:  # one bad video is reported, never the end of the run
        if os.path.exists(partial):
            os.remove(partial)
        reason = error.reason if isinstance(error, UnusableVideoError) else str(error)
        return src, reason.strip().splitlines()[0] if reason.strip() else type(error).__name__
    os.replace(partial, dst)
    return src, ""


def main(argv=None) -> int:
    args = parse_args(argv)
    sources = list(tqdm(walk_videos(args.src), desc=f"scanning {args.src}", unit=" videos"))
    jobs, failures = plan(sources, args.src, args.dst)
    for source, reason in failures:
        print(f"failed: {source}: {reason}")
    todo = [(src, dst) for src, dst in jobs if not os.path.exists(dst)]
    for dst in {os.path.dirname(dst) for _, dst in todo}:
        os.makedirs(dst, exist_ok=True)

    resized, finished = 0, set()
    try:
        with worker_pool(args.workers) as pool:
            futures = [
                pool.submit(resize, src, dst, args.short_side, args.crf) for src, dst in todo
            ]
            progress = completed(futures, total=len(jobs), desc="resizing")
            for future in progress:
                src, reason = future.result()
                finished.add(src)
                if reason:
                    failures.append((src, reason))
                    progress.write(f"failed: {src}: {reason}")
                else:
                    resized += 1
    except (KeyboardInterrupt, Terminated) as error:
        for src, dst in todo:  # a terminated worker leaves its partial output behind
            if src not in finished and os.path.exists(partial_path(dst)):
                os.remove(partial_path(dst))
        print(
            f"interrupted: {resized} resized, {len(failures)} failed, {len(todo) - len(finished)} "
            "not done; run again to do the rest",
            file=sys.stderr,
        )
        return exit_status(error)

    os.makedirs(args.dst, exist_ok=True)
    failures_path = os.path.join(args.dst, "resize_failures.txt")
    write_text_atomic(failures_path, "".join(f"{src}\t{r}\n" for src, r in sorted(failures)))
    print(
        f"{len(sources)} videos: {resized} resized, {len(jobs) - len(todo)} already done, "
        f"{len(failures)} failed (listed in {failures_path})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
