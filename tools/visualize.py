"""Draws what ATS keeps in videos: one picture per video, and optionally an animation.

    python tools/visualize.py VIDEO... --cfg CFG --out DIR [--checkpoint FILE] [KEY VALUE ...]
    python tools/visualize.py --list data/synthetic/val.csv --limit 8 --cfg CFG --out DIR
    python tools/visualize.py VIDEO --cfg CFG --out DIR --animate gif --block 5 ATS.MODE shared

The picture of a video, DIR/<video name>.png, shows its centre view (the middle clip's centre
crop) as the model saw it: the input frames on top, then a row per ATS block, each tile the
frame with the patches that block dropped dimmed and captioned with the tokens kept in that
frame. Per frame (ATS.MODE frame) each tile of a row has its own pattern; shared (ATS.MODE
shared) the pattern is the same in every frame of a row. An image model (DATA.DATASET imagenet,
image files) gives one column. --animate gif (or mp4) also writes DIR/<video name>_block<N>.gif,
the frames with the kept tokens of block N (--block; default the last ATS block) outlined.

Videos are read, sampled and predicted as tools/predict.py does (same weights, class names,
--views and KEY VALUE overrides); --list takes a `path label` list with the config's
DATA.PATH_LABEL_SEPARATOR (paths relative to DATA.PATH_PREFIX, else to the list's folder, where
tools/run_net.py would take DATA.PATH_TO_DATA_DIR), and the label goes into the
title. Exit status: 0 when every video was read, 1 when one or more could not be.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import os
import sys

from ats_video import vis
from ats_video.build import ats_blocks
from ats_video.data.lists import read_video_list
from ats_video.inference import (
    centre_view,
    file_tool_parser,
    kept_token_picture,
    num_views,
    parse_file_tool_args,
    run_files,
    tool_model,
    unique_stems,
)


def parse_args(argv=None):
    parser = file_tool_parser(__doc__)
    parser.add_argument("--out", required=True, help="directory for the pictures")
    parser.add_argument("--list", help="a `path label` video list (as DATA.TEST_LIST)")
    parser.add_argument("--limit", type=int, help="only the first N videos of --list")
    parser.add_argument("--animate", choices=("gif", "mp4"), help="also write an animation")
    parser.add_argument("--block", type=int, help="the ATS block the animation outlines "
                        "(default: the last)")  # fmt: skip
    parser.add_argument("--fps", type=float, default=4, help="animation frame rate (default 4)")
    args = parse_file_tool_args(parser, argv)
    if not args.videos and not args.list:
        parser.error("give videos, or a list of them with --list")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.fps <= 0:
        parser.error(f"--fps must be above 0, got {args.fps}")
    if args.block is not None and not args.animate:
        parser.error("--block chooses the block an animation outlines: give --animate too")
    return args


def usage_error(message: str) -> None:
    """Exits with status 2, as a wrong command line does (1 says a video could not be read)."""
    print(f"visualize.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def listed_videos(path: str, data, names=None, limit=None) -> list:
    """(path, label) of the first ``limit`` videos of a ``path label`` list, read with the
    config's ``data`` settings (DATA.PATH_LABEL_SEPARATOR; paths under DATA.PATH_PREFIX, else
    under the list's folder)."""
    videos = read_video_list(path, prefix=data.PATH_PREFIX or os.path.dirname(path),
                             separator=data.PATH_LABEL_SEPARATOR, class_names=names)  # fmt: skip
    return videos[:limit] if limit else videos


def main(argv=None) -> int:
    args = parse_args(argv)
    loaded = tool_model(args)
    cfg = loaded.cfg
    labels = {path: None for path in args.videos}
    if args.list:
        labels.update(listed_videos(args.list, cfg.DATA, loaded.names, args.limit))
    paths = list(labels)
    blocks = ats_blocks(cfg, loaded.model)
    if args.animate and not blocks:
        usage_error("--animate: the model has no ATS block (ATS.ENABLE False)")
    args.block = blocks[-1] if args.block is None and blocks else args.block
    if args.animate and args.block not in blocks:
        usage_error(f"--block {args.block}: not an ATS block of this model; they are {blocks}")
    print(f"{loaded.about}, weights {loaded.checkpoint}: {len(paths)} videos")
    os.makedirs(args.out, exist_ok=True)
    stems = dict(zip(paths, unique_stems(paths)))
    failed = 0
    for n, result in enumerate(run_files(cfg, loaded.model, paths, args.views), 1):
        head = f"[{n}/{len(paths)}] {result.path}"
        if result.error:
            print(f"{head}: cannot be read: {result.error}", flush=True)
            failed += 1
            continue
        picture = kept_token_picture(cfg, result, about=loaded.about, views=args.views,
                                     names=loaded.names, label=labels[result.path])  # fmt: skip
        path = os.path.join(args.out, stems[result.path] + ".png")
        vis.save_png(path, picture)
        written = [path]
        if args.animate:
            written.append(write_animation(cfg, result, args, stems[result.path]))
        print(f"{head}: {', '.join(written)}", flush=True)
    print(f"{len(paths) - failed} of {len(paths)} videos drawn in {args.out}")
    return 1 if failed else 0


def write_animation(cfg, result, args, stem: str) -> str:
    """DIR/<stem>_block<N>.<gif|mp4>: the centre view with block N's kept tokens outlined."""
    block = args.block
    kept = next(record for record in result.prediction.kept if record.block == block)
    view = centre_view(*num_views(cfg, args.views))
    frames = vis.view_frames(result.views[view], cfg.DATA.MEAN, cfg.DATA.STD)
    images = vis.kept_token_animation(frames, kept.mask[view].numpy(), block=block)
    path = os.path.join(args.out, f"{stem}_block{block}.{args.animate}")
    vis.save_animation(path, images, fps=args.fps)
    return path


if __name__ == "__main__":
    sys.exit(main())
