"""Re-encodes a tree of videos with the short side scaled to 256 (or 320), for fast loading.

Every video under --src is written to the same relative path under --dst, as .mp4: short side
--short-side pixels, aspect ratio kept (sides rounded to even numbers, as H.264 needs), H.264
(libx264, yuv420p, --crf quality), same frame rate, no audio. Each output is then decoded in
full with decord; a video that fails to read, encode or decode is listed with the reason in
<dst>/resize_failures.txt and leaves no output behind.

Safe to run again: videos whose output exists are skipped (outputs are written under a temporary
name and renamed once checked, so an interrupted run leaves no partial file that looks done).
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import os
import sys
from concurrent.futures import as_completed

import av
from tqdm import tqdm

from ats_video.data.files import VIDEO_EXTENSIONS, partial_path, write_text_atomic
from ats_video.data.video_io import UnusableVideoError, count_frames, write_video
from ats_video.data.workers import Terminated, exit_status, worker_pool


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", required=True, help="directory of source videos (any depth)")
    parser.add_argument("--dst", required=True, help="output directory")
    parser.add_argument("--short-side", type=int, default=256, help="default 256 (or 320)")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality; lower is better")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    return parser.parse_args(argv)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` and both sides even."""
    scale = short_side / min(width, height)
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


def resize(src: str, dst: str, short_side: int, crf: int) -> tuple[str, str]:
    """Writes ``dst`` from ``src``; returns (src, reason), reason "" on success."""
    partial = partial_path(dst)
    try:
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
    jobs = []
    for directory, subdirs, files in os.walk(args.src):
        subdirs.sort()
        for file in sorted(files):
            if file.startswith(".") or not file.lower().endswith(VIDEO_EXTENSIONS):
                continue
            src = os.path.join(directory, file)
            relative = os.path.splitext(os.path.relpath(src, args.src))[0] + ".mp4"
            jobs.append((src, os.path.join(args.dst, relative)))
    todo = [(src, dst) for src, dst in jobs if not os.path.exists(dst)]
    for dst in {os.path.dirname(dst) for _, dst in todo}:
        os.makedirs(dst, exist_ok=True)

    failures, done = [], set()
    try:
        with worker_pool(args.workers) as pool:
            futures = [
                pool.submit(resize, src, dst, args.short_side, args.crf) for src, dst in todo
            ]
            progress = tqdm(
                as_completed(futures),
                total=len(jobs),
                initial=len(jobs) - len(todo),
                desc="resizing",
                unit="video",
            )
            for future in progress:
                src, reason = future.result()
                done.add(src)
                if reason:
                    failures.append((src, reason))
                    progress.write(f"failed: {src}: {reason}")
    except (KeyboardInterrupt, Terminated) as error:
        for src, dst in todo:  # a terminated worker leaves its partial output behind
            if src not in done and os.path.exists(partial_path(dst)):
                os.remove(partial_path(dst))
        print(
            f"interrupted: {len(done) - len(failures)} resized, {len(failures)} failed, "
            f"{len(todo) - len(done)} not done; run again to do the rest",
            file=sys.stderr,
        )
        return exit_status(error)

    os.makedirs(args.dst, exist_ok=True)
    failures_path = os.path.join(args.dst, "resize_failures.txt")
    write_text_atomic(failures_path, "".join(f"{src}\t{r}\n" for src, r in sorted(failures)))
    print(
        f"{len(jobs)} videos: {len(todo) - len(failures)} resized, {len(jobs) - len(todo)} "
        f"already done, {len(failures)} failed (listed in {failures_path})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
