"""Loader throughput: ats_video's KineticsDataset against PyTorchVideo's Kinetics, same files.

Writes --videos 10-second 340x256 30 fps H.264 clips with PyAV (synthetic moving shapes; the
decoder's cost does not depend on the content much), lists each of them --repeat times, and
times one pass of a DataLoader over the list for:

- train: 8x32 clips (8 frames every 32, TimeSformer's sampling; a 225-frame window at a random
  start), random short side in [256, 320], random 224 crop, flip, normalise;
- test: 1x3 views (one centred clip, short side to 224, left/centre/right 224 crops).

PyTorchVideo reads the same list with the same sampling: a random (or, for testing, centred)
clip of 225/30 s, ``UniformTemporalSubsample(8)`` (frames 0, 32, ..., 224 of the window), and
its own transforms; for testing, one decode serves the three crops (``augs_per_clip=3``).
Throughput is samples (clips or views) per second over one pass, worker start-up included (it
is small against a pass). Batches of 6.

    python benchmarks/loader_throughput.py --machine "2-core CPU sandbox, no GPU"
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import os
import platform
import sys
import time
from fractions import Fraction
from typing import Optional

import torch
import torchvision
from pytorchvideo.data import Kinetics
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler, RandomClipSampler
from pytorchvideo.transforms import (
    ApplyTransformToKey,
    Div255,
    Normalize,
    RandomShortSideScale,
    ShortSideScale,
    UniformCropVideo,
    UniformTemporalSubsample,
)

from ats_video.data.kinetics import KINETICS_MEAN, KINETICS_STD, KineticsDataset
from ats_video.data.lists import read_video_list
from ats_video.data.synthetic import SYNTHETIC_CLASSES, render_action
from ats_video.data.video_io import write_video

FPS, SECONDS, WIDTH, HEIGHT = 30, 10, 340, 256
NUM_FRAMES, SAMPLING_RATE, CROP = 8, 32, 224
SPAN = (NUM_FRAMES - 1) * SAMPLING_RATE + 1  # 225 frames
BATCH_SIZE = 6


def write_videos(directory: str, count: int, repeat: int) -> str:
    """Writes the videos (once) and a list naming each ``repeat`` times; returns the list."""
    os.makedirs(directory, exist_ok=True)
    lines = []
    for i in range(count):
        path = os.path.join(directory, f"video{i:02d}.mp4")
        if not os.path.exists(path):
            frames = render_action(
                i % len(SYNTHETIC_CLASSES), seed=[i], num_frames=FPS * SECONDS, height=HEIGHT, width=WIDTH
            )
            write_video(path + ".partial.mp4", frames, fps=FPS)
            os.replace(path + ".partial.mp4", path)
        lines.append(f"{path} {i % len(SYNTHETIC_CLASSES)}\n")
    list_path = os.path.join(directory, f"list_x{repeat}.txt")
    with open(list_path, "w") as f:
        f.writelines(lines * repeat)
    return list_path


def ours(list_path: str, mode: str, backend: str) -> torch.utils.data.Dataset:
    return KineticsDataset(
        read_video_list(list_path),
        training=mode == "train",
        num_frames=NUM_FRAMES,
        sampling_rate=SAMPLING_RATE,
        crop_size=CROP,
        num_ensemble_views=1,
        num_spatial_crops=3,
        decoding_backend=backend,
    )


class CentredClipSampler(ConstantClipsPerVideoSampler):
    """One centred clip and ``augs_per_clip`` views of it; PyTorchVideo's own starts at 0."""

    def __call__(self, last_clip_time, video_duration, annotation):
        info = super().__call__(last_clip_time, video_duration, annotation)
        shift = Fraction(max(Fraction(video_duration) - self._clip_duration, 0)) / 2
        return info._replace(
            clip_start_sec=info.clip_start_sec + shift, clip_end_sec=info.clip_end_sec + shift
        )


def pytorchvideo(list_path: str, mode: str, backend: str) -> torch.utils.data.IterableDataset:
    duration = Fraction(SPAN, FPS)
    common = [
        UniformTemporalSubsample(NUM_FRAMES),
        Div255(),
        Normalize(KINETICS_MEAN, KINETICS_STD),
    ]
    if mode == "train":
        sampler = RandomClipSampler(duration)
        transform = ApplyTransformToKey(
            "video",
            torchvision.transforms.Compose(
                [
                    *common,
                    RandomShortSideScale(256, 320),
                    torchvision.transforms.RandomCrop(CROP),
                    torchvision.transforms.RandomHorizontalFlip(),
                ]
            ),
        )
    else:
        sampler = CentredClipSampler(duration, clips_per_video=1, augs_per_clip=3)
        transform = torchvision.transforms.Compose(
            [
                ApplyTransformToKey(
                    "video", torchvision.transforms.Compose([*common, ShortSideScale(CROP)])
                ),
                UniformCropVideo(CROP),
            ]
        )
    return Kinetics(
        list_path,
        clip_sampler=sampler,
        video_sampler=torch.utils.data.RandomSampler
        if mode == "train"
        else torch.utils.data.SequentialSampler,
        transform=transform,
        decode_audio=False,
        decoder=backend,
    )


def samples_per_second(dataset, workers: int) -> float:
    """Samples per second over one pass, worker start-up included."""
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        num_workers=workers,
        shuffle=isinstance(dataset, KineticsDataset) and dataset.training,
    )
    count = 0
    for batch in loader:
        assert batch["video"].shape[1:] == (3, NUM_FRAMES, CROP, CROP)
        count += len(batch["label"])
    return count / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machine", required=True, help='e.g. "2-core CPU sandbox, no GPU"')
    parser.add_argument("--videos", type=int, default=12, help="distinct videos (default 12)")
    parser.add_argument("--repeat", type=int, default=4, help="times each is listed (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["decord", "pyav"])
    parser.add_argument("--work-dir", default="/tmp/ats_video_loader_benchmark")
    parser.add_argument("--out", help="write the results as markdown here")
    parser.add_argument("--note", default="", help="a remark for the results, e.g. on the load")
    args = parser.parse_args(argv)

    list_path = write_videos(args.work_dir, args.videos, args.repeat)
    load_before = os.getloadavg()[0]
    num_listed = args.videos * args.repeat
    rows = []
    for backend in args.backends:
        for mode in ["train", "test"]:
            for workers in args.workers:
                speeds = {}
                for name, build in [("pytorchvideo", pytorchvideo), ("ats_video", ours)]:
                    speeds[name] = samples_per_second(build(list_path, mode, backend), workers)
                    print(
                        f"{backend} {mode} workers={workers} {name}: {speeds[name]:.2f}/s",
                        flush=True,
                    )
                rows.append((backend, mode, workers, speeds["pytorchvideo"], speeds["ats_video"]))

    lines = [
        "# Loader throughput: ats_video vs PyTorchVideo",
        "",
        f"Machine: {args.machine} ({os.cpu_count()} CPUs). torch {torch.__version__}, "
        f"pytorchvideo 0.1.5, decord {version('decord')}, PyAV {version('av')}, "
        f"Python {platform.pythonversion()}. 1-minute load average before and after: "
        f"{load_before:.1f} and {os.getloadavg()[0]:.1f}. {args.note}".rstrip(),
        "",
        f"Data: {args.videos} synthetic {SECONDS}-second {WIDTH}x{HEIGHT} {FPS} fps H.264 videos "
        f"(libx264, crf 23, keyframe every 250 frames), each listed {args.repeat} times "
        f"({num_listed} training clips or {num_listed * 3} test views per pass).",
        "",
        f"Train: {NUM_FRAMES}x{SAMPLING_RATE} clips (a random {SPAN}-frame window), short side "
        f"random in [256, 320], random {CROP} crop, flip, normalise. Test: 1x3 views (centred "
        f"clip, short side {CROP}, 3 crops). Batches of {BATCH_SIZE}; samples per second over one "
        "pass, worker start-up included. PyTorchVideo: "
        "`pytorchvideo.data.Kinetics` with `RandomClipSampler` (test: a centred "
        "`ConstantClipsPerVideoSampler` with `augs_per_clip=3`, one decode for 3 crops), "
        "`UniformTemporalSubsample(8)` and its own transforms; "
        f'command: `python benchmarks/loader_throughput.py --machine "{args.machine}"`.',
        "",
        "Where the difference comes from: PyTorchVideo's clips are spans of seconds, so its "
        f"decoders return every frame of the {SPAN}-frame window as float32 (about "
        f"{SPAN * WIDTH * HEIGHT * 3 * 4 / 2**20:.0f} MiB per clip) before "
        f"`UniformTemporalSubsample` keeps {NUM_FRAMES}; ats_video asks the decoder for the "
        f"{NUM_FRAMES} frame indices and keeps them as uint8 until they are scaled.",
        "",
        "| decoder | mode | workers | PyTorchVideo (samples/s) | ats_video (samples/s) "
        "| speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for backend, mode, workers, theirs, mine in rows:
        lines.append(
            f"| {backend} | {mode} | {workers} | {theirs:.2f} | {mine:.2f} | {mine / theirs:.1f}x |"
        )
    print_and_write("\n".join(lines) + "\n", args.out)
    return 0


def print_and_write(text: str, path: Optional[str]) -> None:
    """Prints the report, and writes it to ``path`` when given."""
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text)


def version(module: str) -> str:
    """``module.__version__``, or why it is not known."""
    try:
        return getattr(__import__(module), "__version__", "?")
    except Exception:  # torchcodec raises RuntimeError where it cannot load
        return "not loadable"


if __name__ == "__main__":
    sys.exit(main())
