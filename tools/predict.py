"""Runs a trained model on video files: the top-5 classes with names and probabilities, the
GFLOPs as run and the tokens each ATS block kept; optionally the kept-token picture of each
video and the pre-logits features.

    python tools/predict.py VIDEO... --cfg CFG [--checkpoint FILE] [--class-names FILE]
        [--views {test,center}] [--save-vis DIR] [--save-features FILE] [KEY VALUE ...]

    python tools/predict.py clip.mp4 other.avi --cfg configs/Kinetics/TimeSformer_divST_8x32_224_ATS.yaml \\
        --checkpoint TimeSformer_divST_8x32_224_K400.pyth --class-names k400_classids.json ATS.K 100

A video may be in any container and codec that the installed decoders read (PyAV, decord,
torchcodec), at any size and frame rate: it is sampled, cropped and normalised as the multi-view
test does (the config's TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views, or with --views
center one centred clip and the centre crop), and the views' softmax scores are combined as TEST.ENSEMBLE_METHOD says
(sum: their mean is printed). With an image config (DATA.DATASET imagenet) the files are images.
The weights: --checkpoint, else TEST.CHECKPOINT_FILE_PATH, else the last checkpoint in
OUTPUT_DIR; an official TimeSformer .pyth, XViT .pth, DeiT .pth or this project's own. Class
names: --class-names (a JSON list or {name: index}), else DATA.CLASS_NAMES_FILE under
DATA.PATH_TO_DATA_DIR, else indices. KEY VALUE pairs override the config (ATS.K 6,
ATS.MODE shared, ATS.ENABLE False, ...).

--save-vis DIR writes DIR/<video name>.png, the kept-token picture of the centre view.
--save-features FILE writes the pre-logits features (the CLS embedding after the final norm;
XViT: its temporal head's hidden layer), the mean over a video's views, one row per video read:
a .pt file holds {"paths", "features" [N, D], "arch", "checkpoint", "views"}; an .npz file
holds the arrays "paths" and "features".

A video that cannot be read is named with the reason and the others go on. Exit status: 0 when
every video was read, 1 when one or more could not be, 2 for a wrong command line.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import os
import sys

import numpy as np
import torch

from ats_video import vis
from ats_video.engine.evaluate import kept_tokens_text
from ats_video.inference import (
    class_name,
    file_tool_parser,
    kept_token_picture,
    num_views,
    parse_file_tool_args,
    run_files,
    tool_model,
    unique_stems,
)

FEATURE_FORMATS = (".pt", ".npz")


def parse_args(argv=None):
    parser = file_tool_parser(__doc__)
    parser.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    parser.add_argument("--save-vis", metavar="DIR", help="write the kept-token pictures here")
    parser.add_argument("--save-features", metavar="FILE",
                        help="write the pre-logits features (.pt or .npz)")  # fmt: skip
    args = parse_file_tool_args(parser, argv)
    if not args.videos:
        parser.error("no videos given")
    if args.save_features and not os.path.isdir(os.path.dirname(args.save_features) or "."):
        parser.error(f"--save-features {args.save_features}: no such folder")
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    if args.save_features and not args.save_features.endswith(FEATURE_FORMATS):
        parser.error(f"--save-features {args.save_features}: write a {' or '.join(FEATURE_FORMATS)} file")
    return args


def save_features(path: str, paths: list, features: torch.Tensor, **about) -> None:
    """One row of ``features`` [N, D] per entry of ``paths``, as .pt or .npz."""
    if path.endswith(".npz"):
        np.savez(path, paths=np.array(paths), features=features.numpy())
    else:
        torch.save({"paths": paths, "features": features, **about}, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    loaded = tool_model(args)
    cfg, names = loaded.cfg, loaded.names
    clips, crops = num_views(cfg, args.views)
    print(f"{loaded.about}, weights {loaded.checkpoint}; {clips}x{crops} views per video")
    if args.save_vis:
        os.makedirs(args.save_vis, exist_ok=True)
    read, failed, features = [], [], []
    stems = dict(zip(args.videos, unique_stems(args.videos)))
    for n, result in enumerate(run_files(cfg, loaded.model, args.videos, args.views), 1):
        head = f"[{n}/{len(args.videos)}] {result.path}"
        if result.error:
            print(f"{head}: cannot be read: {result.error}", flush=True)
            failed.append(result)
            continue
        prediction = result.prediction
        print(head)
        for index, probability in prediction.top(args.top):
            print(f"  {100 * probability:6.2f}%  {class_name(index, names)}")
        print(
            f"  GFLOPs per view: {prediction.gflops.mean().item():.4g} as run, "
            f"{prediction.gflops_without_ats:.4g} without ATS"
        )
        if prediction.kept:
            tokens = prediction.kept[0].mask[0].numel()
            kept = kept_tokens_text(prediction.kept_per_clip())
            print(f"  kept tokens per clip (of {tokens}), mean over the views: {kept}")
        if args.save_vis:
            picture = kept_token_picture(cfg, result, about=loaded.about, views=args.views,
                                         names=names)  # fmt: skip
            path = os.path.join(args.save_vis, stems[result.path] + ".png")
            vis.save_png(path, picture)
            print(f"  picture: {path}")
        sys.stdout.flush()
        read.append(result.path)
        features.append(prediction.features)
    if args.save_features and features:
        save_features(args.save_features, read, torch.stack(features), arch=cfg.MODEL.ARCH,
                      checkpoint=loaded.checkpoint, views=f"{clips}x{crops}")  # fmt: skip
        print(f"features of {len(read)} videos ({features[0].numel()} each): {args.save_features}")
    elif args.save_features:
        print(f"no features written to {args.save_features}: no video was read")
    print(f"{len(read)} of {len(args.videos)} videos read")
    for result in failed:
        print(f"  cannot be read: {result.path}: {result.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
