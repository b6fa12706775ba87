"""Decoder throughput: PyAV, decord and torchcodec side by side, through the project's loader.

Writes Kinetics-like H.264 videos with PyAV (10 s; 456x256 at 30 fps and 568x320 at 25 fps, the
short sides of the resized Kinetics copies in use; the synthetic actions of
:mod:`ats_video.data.synthetic` in their most cluttered background, with a shaking camera and
film grain, so that their bit rate, 500-800 kb/s, is that of real clips), and reads them with
:class:`ats_video.data.kinetics.KineticsDataset` through a DataLoader, one decoder at a time:

- train 8x32: 8 frames every 32 from a random start (TimeSformer, XViT), scale jitter, crop, flip;
- train 16x4: 16 frames every 4 from a random start;
- test 1x3: one centred 8x32 clip, 3 crops (decoded once, the 3 views reuse it).

Each decoder that loads here is timed, and PyAV a second time with FFmpeg's own threading (one
thread per core, up to 16, its default when the thread count is left at 0) instead of the one
thread ats_video sets. The runs are interleaved (every decoder once per round, in a rotating
order, then the next round) and each keeps its fastest pass: on a shared machine other work only
ever adds time. Clips per second over one pass, worker start-up included; the ratio is to PyAV.
Each pass is measured per second and per CPU-second of the workers (user and system time,
from ``getrusage(RUSAGE_CHILDREN)``): on a shared machine the second is far less disturbed. The
last line orders the decoders by the geometric mean of their CPU-time ratios over all rows:
:data:`ats_video.data.video_io.DEFAULT_ORDER` follows it (tests/test_data_video_io.py checks).

    python benchmarks/decoders.py --machine "2-core CPU sandbox, no GPU" --out benchmarks/decoders.md
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import math
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

from ats_video.data import video_io
from ats_video.data.kinetics import KineticsDataset
from ats_video.data.lists import VideoRecord
from ats_video.data.synthetic import render_action
from ats_video.data.video_io import write_video
from loader_throughput import print_and_write, version  # beside this script

SECONDS, SHAKE, GRAIN = 10, 16, 4.0  # camera shake (pixels) and film grain (grey levels)
SIZES = {"256": (256, 456, 30), "320": (320, 568, 25)}  # short side: (height, width, fps)
MODES = {  # name: (training, frames, sampling rate)
    "train 8x32": (True, 8, 32),
    "train 16x4": (True, 16, 4),
    "test 1x3": (False, 8, 32),
}
CROP, BATCH_SIZE = 224, 4
PYAV_FFMPEG_THREADS = "pyav, FFmpeg threads"


def kinetics_like_frames(index: int, height: int, width: int, num_frames: int):
    """uint8 RGB frames (H, W, 3) one at a time: a synthetic action seen by a shaking camera."""
    scene = render_action(
        index % 8, seed=[index], num_frames=num_frames, height=height + 2 * SHAKE,
        width=width + 2 * SHAKE, clutter=3,
    )
    rng = np.random.default_rng(index)
    shake = np.cumsum(rng.integers(-2, 3, (num_frames, 2)), axis=0).clip(-SHAKE, SHAKE) + SHAKE
    for frame, (y, x) in zip(scene, shake):
        grain = rng.normal(0, GRAIN, (height, width, 1))
        yield (frame[y : y + height, x : x + width] + grain).clip(0, 255).astype(np.uint8)


def write_videos(directory: str, size: str, count: int) -> list[str]:
    """Writes ``count`` videos of one size (once; kept between runs); returns their paths."""
    height, width, fps = SIZES[size]
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"{size}_{i:02d}.mp4")
        if not os.path.exists(path):
            write_video(path + ".partial.mp4", kinetics_like_frames(i, height, width, fps * SECONDS), fps=fps)
            os.replace(path + ".partial.mp4", path)
        paths.append(path)
    return paths


def clips_per_second(paths: list[str], mode: str, decoder: str, workers: int) -> tuple[float, float]:
    """Clips per second over one pass of a DataLoader (a test clip is its 3 views), and clips
    per CPU-second of its workers (user and system time, every thread)."""
    training, num_frames, sampling_rate = MODES[mode]
    dataset = KineticsDataset(
        [VideoRecord(path, 0) for path in paths], training=training, num_frames=num_frames,
        sampling_rate=sampling_rate, crop_size=CROP, num_spatial_crops=3,
        decoding_backend="pyav" if decoder == PYAV_FFMPEG_THREADS else decoder,
    )
    torch.manual_seed(0)  # the same clips (random starts, order) for every decoder
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH_SIZE, num_workers=workers, shuffle=training
    )
    samples = 0
    for batch in loader:
        assert batch["video"].shape[1:] == (3, num_frames, CROP, CROP)
        assert "usable" not in batch or all(batch["usable"]), batch["error"]
        samples += len(batch["label"])
    seconds = time.perf_counter() - start
    del loader  # its workers have exited and been waited for: their CPU time is counted
    clips = samples / dataset.num_views
    return clips / seconds, clips / (_children_cpu_seconds() - cpu_start)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pyav_stream_with_ffmpeg_threads(container):
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 0  # FFmpeg's default: as many threads as cores, up to 16
    return stream


def timed(paths: list[str], mode: str, decoder: str, workers: int) -> tuple[float, float]:
    """:func:`clips_per_second`, with PyAV's threading switched for the PyAV-threads variant
    (the DataLoader's forked workers inherit the switch)."""
    if decoder != PYAV_FFMPEG_THREADS:
        return clips_per_second(paths, mode, decoder, workers)
    ours = video_io._pyav_stream
    video_io._pyav_stream = _pyav_stream_with_ffmpeg_threads
    try:
        return clips_per_second(paths, mode, decoder, workers)
    finally:
        video_io._pyav_stream = ours


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machine", required=True, help='e.g. "2-core CPU sandbox, no GPU"')
    parser.add_argument("--videos", type=int, default=4, help="distinct videos per size")
    parser.add_argument("--repeat", type=int, default=2, help="times each is listed")
    parser.add_argument("--rounds", type=int, default=2, help="passes of every decoder, interleaved")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work-dir", default="/tmp/ats_video_decoder_benchmark")
    parser.add_argument("--out", help="write the results as markdown here")
    args = parser.parse_args(argv)

    cpu = [name for name in video_io.DEFAULT_ORDER if not video_io.why_unavailable(name)]
    decoders = [*cpu, PYAV_FFMPEG_THREADS]
    missing = {name: video_io.why_unavailable(name) for name in video_io.DEFAULT_ORDER if name not in cpu}
    paths = {size: write_videos(args.work_dir, size, args.videos) * args.repeat for size in SIZES}
    bitrates = {
        size: np.mean([os.path.getsize(p) * 8 / SECONDS / 1000 for p in set(paths[size])])
        for size in SIZES
    }
    rows = [(size, mode, workers) for size in SIZES for mode in MODES for workers in args.workers]
    best = {(row, decoder): (0.0, 0.0) for row in rows for decoder in decoders}
    load_before = os.getloadavg()[0]
    for round_index in range(args.rounds):
        for row_index, row in enumerate(rows):
            shift = (round_index + row_index) % len(decoders)
            for decoder in decoders[shift:] + decoders[:shift]:
                wall, cpu_rate = timed(paths[row[0]], row[1], decoder, row[2])
                best[row, decoder] = tuple(map(max, best[row, decoder], (wall, cpu_rate)))
                print(
                    f"round {round_index} {row} {decoder}: {wall:.2f} clips/s, "
                    f"{cpu_rate:.2f} clips per CPU-second", flush=True,
                )

    tables, geomeans = [], []
    for measure, name in [(0, "clips per second"), (1, "clips per CPU-second of the workers")]:
        table, geomean = _table(best, rows, decoders, measure)
        tables += [f"**{name}** (in brackets: the ratio to PyAV in the same row)", "", *table, ""]
        geomeans.append(geomean)
    order = sorted(cpu, key=lambda d: -geomeans[1][d])
    versions = ", ".join(
        f"{module} {version(module)}" for module in ["torch", "av", "decord", "torchcodec"]
    )
    lines = [
        "# Decoder throughput: PyAV, decord, torchcodec",
        "",
        f"Machine: {args.machine} ({os.cpu_count()} CPUs). {versions}, Python "
        f"{platform.python_version()}. 1-minute load average before and after: {load_before:.1f} "
        f"and {os.getloadavg()[0]:.1f}.",
        "",
        f"Data: per size, {args.videos} synthetic Kinetics-like {SECONDS}-second H.264 videos "
        f"(libx264 crf 23, keyframe every 250 frames; camera shake and grain), each listed "
        f"{args.repeat} times: "
        + "; ".join(
            f"{SIZES[s][1]}x{SIZES[s][0]} at {SIZES[s][2]} fps ({bitrates[s]:.0f} kb/s)" for s in SIZES
        )
        + ".",
        "",
        "Clips through `KineticsDataset` and a DataLoader (batches of "
        f"{BATCH_SIZE}, crop {CROP}, worker start-up included), the best of {args.rounds} "
        "interleaved passes, per second of the pass and per second of CPU time its workers "
        "used (which other work on a shared machine disturbs far less); the default order "
        "follows the second. A test clip is its 3 views. "
        f"`{PYAV_FFMPEG_THREADS}`: PyAV with FFmpeg's default threading instead of "
        "one thread per decoder. Command: "
        f'`python benchmarks/decoders.py --machine "{args.machine}" --out benchmarks/decoders.md`.',
        "",
    ]
    lines += [f"Not measured: {name}: {reason}" for name, reason in missing.items()]
    lines += ["", *tables, f"Order: {', '.join(order)}"]
    print_and_write("\n".join(lines) + "\n", args.out)
    return 0


def _table(best: dict, rows: list, decoders: list, measure: int) -> tuple[list[str], dict]:
    """Markdown rows of one measure (0: per second, 1: per CPU-second) with each decoder's
    ratio to PyAV, and the geometric mean of each decoder's ratios."""
    ratio = {(row, d): best[row, d][measure] / best[row, "pyav"][measure] for row in rows for d in decoders}
    geomean = {
        d: math.exp(sum(math.log(ratio[row, d]) for row in rows) / len(rows)) for d in decoders
    }
    lines = ["| short side | clip | workers | " + " | ".join(decoders) + " |", "|---|---|---|" + "---|" * len(decoders)]
    for row in rows:
        cells = [f"{best[row, d][measure]:.2f} ({ratio[row, d]:.2f})" for d in decoders]
        lines.append(f"| {row[0]} | {row[1]} | {row[2]} | " + " | ".join(cells) + " |")
    lines.append("| | geometric mean of the ratios | | " + " | ".join(f"{geomean[d]:.2f}" for d in decoders) + " |")
    return lines, geomean


if __name__ == "__main__":
    sys.exit(main())
