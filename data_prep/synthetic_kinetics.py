"""Writes a small synthetic action dataset in Kinetics format, for demos and tests.

Each class is a way a light shape moves (along an axis, around a circle, in size, blinking, not
at all) over a darker background from a plain colour to clutter (ats_video/data/synthetic.py); a
small model learns it in minutes on a CPU. Output, under --out:

    train/<class name>/<youtube_id>_<start:06d>_<end:06d>.mp4    (and val/)
    train.csv, val.csv        `relative/path label` lines (DATA.PATH_TO_DATA_DIR = --out)
    train_clutter<L>.csv, val_clutter<L>.csv
                              the same, of the videos with background clutter level L: 0 plain,
                              1 gradient, 2 gradient and noise, 3 noise and distractor shapes
    classids.json             {class name: index}
    annotations/train.csv, annotations/validate.csv
                              official-style CSVs (label, youtube_id, time_start, time_end,
                              split, is_cc), for trying data_prep/kinetics_lists.py

Deterministic: a video depends only on --seed, its split, class and number. Safe to run again:
videos already written are kept; a run with other settings into the same --out is refused.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import csv
import io
import json
import math
import os
import string
import sys

import numpy as np
from tqdm import tqdm

from ats_video.data.files import replacing, write_text_atomic
from ats_video.data.synthetic import CLUTTER_LEVELS, SYNTHETIC_CLASSES, render_action
from ats_video.data.video_io import write_video
from ats_video.data.workers import Terminated, exit_status, worker_pool

SPLITS = {"train": "train", "val": "validate"}  # our list name: official annotation file name
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--classes",
        type=int,
        default=len(SYNTHETIC_CLASSES),
        help=f"number of classes, at most {len(SYNTHETIC_CLASSES)} (default: all)",
    )
    parser.add_argument("--train-per-class", type=int, default=48)
    parser.add_argument("--val-per-class", type=int, default=12)
    parser.add_argument("--frames", type=int, default=48, help="frames per video (default 48)")
    parser.add_argument("--fps", type=int, default=12, help="frame rate (default 12)")
    parser.add_argument("--size", default="128x96", help="WIDTHxHEIGHT, even (default 128x96)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    args = parser.parse_args(argv)
    if not 1 <= args.classes <= len(SYNTHETIC_CLASSES):
        parser.error(f"--classes must be in 1..{len(SYNTHETIC_CLASSES)}")
    try:
        args.width, args.height = (int(x) for x in args.size.split("x"))
    except ValueError:
        parser.error(f"--size must look like 128x96, got {args.size!r}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def plan(args) -> list[dict]:
    """Every video to write: split, class, path and annotation fields."""
    videos = []
    for split_index, split in enumerate(SPLITS):
        per_class = args.train_per_class if split == "train" else args.val_per_class
        for label in range(args.classes):
            for number in range(per_class):
                seed = [args.seed, split_index, label, number]
                rng = np.random.default_rng(seed + [1])
                youtube_id = "".join(rng.choice(list(_ID_ALPHABET), 11))
                start = int(rng.integers(0, 300))
                end = start + math.ceil(args.frames / args.fps)
                name = SYNTHETIC_CLASSES[label]
                videos.append(
                    {
                        "split": split,
                        "label": label,
                        "seed": seed,
                        # Clutter cycles within a class so every class spans plain to cluttered.
                        "clutter": number % CLUTTER_LEVELS,
                        "path": f"{split}/{name}/{youtube_id}_{start:06d}_{end:06d}.mp4",
                        "row": [
                            name,
                            youtube_id,
                            start,
                            end,
                            "train" if split == "train" else "val",
                            0,
                        ],
                    }
                )
    return videos


def write_one(video: dict, args) -> None:
    path = os.path.join(args.out, video["path"])
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = render_action(
        video["label"],
        seed=video["seed"],
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        clutter=video["clutter"],
    )
    with replacing(path) as partial:  # a kill mid-write never leaves a file that looks done
        write_video(partial, frames, fps=args.fps)


def csv_text(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def list_text(videos: list[dict]) -> str:
    """The ``path label`` lines of ``videos``."""
    return "".join(f"{v['path']} {v['label']}\n" for v in videos)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    settings = {
        k: v for k, v in vars(args).items() if k not in ("out", "workers", "width", "height")
    }
    settings_path = os.path.join(args.out, "synthetic_settings.json")
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            previous = json.load(f)
        if previous != settings:
            print(
                f"{args.out} holds a dataset made with other settings ({previous}); "
                "choose another --out or delete it",
                file=sys.stderr,
            )
            return 1
    write_text_atomic(settings_path, json.dumps(settings, indent=1) + "\n")

    videos = plan(args)
    todo = [v for v in videos if not os.path.exists(os.path.join(args.out, v["path"]))]
    try:
        with worker_pool(args.workers) as pool:
            jobs = [pool.submit(write_one, video, args) for video in todo]
            for job in tqdm(
                jobs,
                desc="writing videos",
                unit="video",
                initial=len(videos) - len(todo),
                total=len(videos),
            ):
                job.result()
    except (KeyboardInterrupt, Terminated) as error:
        print("interrupted; run again to write the rest", file=sys.stderr)
        return exit_status(error)

    names = SYNTHETIC_CLASSES[: args.classes]
    write_text_atomic(
        os.path.join(args.out, "classids.json"),
        json.dumps({name: i for i, name in enumerate(names)}, indent=1) + "\n",
    )
    os.makedirs(os.path.join(args.out, "annotations"), exist_ok=True)
    for split, official in SPLITS.items():
        rows = [v for v in videos if v["split"] == split]
        write_text_atomic(os.path.join(args.out, f"{split}.csv"), list_text(rows))
        for level in range(CLUTTER_LEVELS):
            write_text_atomic(
                os.path.join(args.out, f"{split}_clutter{level}.csv"),
                list_text([v for v in rows if v["clutter"] == level]),
            )
        header = ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]
        write_text_atomic(
            os.path.join(args.out, "annotations", f"{official}.csv"),
            csv_text([header, *(v["row"] for v in rows)]),
        )
    print(
        f"{len(videos)} videos ({len(videos) - len(todo)} already there), {args.classes} classes "
        f"in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
