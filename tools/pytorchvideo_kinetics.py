"""An ATS model on clips from PyTorchVideo's own ``pytorchvideo.data.Kinetics``.

For users who keep their PyTorchVideo pipeline: PyTorchVideo reads the list, samples the clips
and transforms them; ats_video supplies only the model (``create_model``, ``load_checkpoint``,
``apply_ats``), which takes the batch's ``video`` (B, C, T, H, W) as it comes. Prints, per clip,
PyTorchVideo's keys (``video_name``, ``clip_index``, ``aug_index``), the top class and the mean
number of tokens ATS kept per frame.

    python tools/pytorchvideo_kinetics.py val.txt --arch timesformer_base_8x224 \\
        --checkpoint TimeSformer_divST_8x32_224_K400.pyth --k 98

NOTE: slower than the project's own loader (docs/DATA.md, "Loader throughput";
benchmarks/loader_throughput.md): PyTorchVideo's clips are spans of seconds, so it decodes and
converts to float every frame of the span before ``UniformTemporalSubsample`` keeps a few.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import ast
import sys
from fractions import Fraction

import torch
import torchvision
from pytorchvideo.data import Kinetics, make_clip_sampler
from pytorchvideo.transforms import (
    ApplyTransformToKey,
    Div255,
    Normalize,
    ShortSideScale,
    UniformTemporalSubsample,
)

from ats_video import apply_ats, kept_tokens, load_checkpoint
from ats_video.data.kinetics import KINETICS_MEAN, KINETICS_STD
from ats_video.families import create_model


def pytorchvideo_clips(
    list_path: str, *, num_frames: int, sampling_rate: int, fps: float, crop_size: int,
    decoder: str = "pyav",
) -> Kinetics:
    """PyTorchVideo's Kinetics over ``list_path`` (``path label`` lines): consecutive clips of
    ``num_frames`` frames every ``sampling_rate`` (at ``fps``), short side scaled to
    ``crop_size``, centre crop, TimeSformer's normalisation."""
    clip_seconds = Fraction((num_frames - 1) * sampling_rate + 1) / Fraction(fps)
    transform = ApplyTransformToKey(
        "video",
        torchvision.transforms.Compose(
            [
                UniformTemporalSubsample(num_frames),
                Div255(),
                Normalize(KINETICS_MEAN, KINETICS_STD),
                ShortSideScale(crop_size),
                torchvision.transforms.CenterCrop(crop_size),
            ]
        ),
    )
    return Kinetics(
        list_path,
        clip_sampler=make_clip_sampler("uniform", clip_seconds),
        video_sampler=torch.utils.data.SequentialSampler,
        transform=transform,
        decode_audio=False,
        decoder=decoder,
    )


def model_argument(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a Python literal value, e.g. ``img_size=224``."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not a Python literal") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("list", help="a `path label` list, as PyTorchVideo's Kinetics reads it")
    parser.add_argument("--arch", default="timesformer_base_8x224")
    parser.add_argument("--checkpoint", help="an official file or one of this project's")
    parser.add_argument("--k", type=float, help="ATS budget: an int, or a ratio below 1")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--sampling-rate", type=int, default=32)
    parser.add_argument("--fps", type=float, default=30, help="the videos' frame rate")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--decoder", default="pyav", choices=["pyav", "decord", "torchvision"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model-arg", type=model_argument, action="append", default=[],
                        help="KEY=VALUE for the model's constructor (e.g. num_classes=600)")
    args = parser.parse_args(argv)

    model = create_model(args.arch, **dict(args.model_arg))
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    k = None if args.k is None else (args.k if args.k < 1 else int(args.k))
    model = apply_ats(model, k=k).eval()
    clips = pytorchvideo_clips(
        args.list, num_frames=args.frames, sampling_rate=args.sampling_rate, fps=args.fps,
        crop_size=args.crop, decoder=args.decoder,
    )
    loader = torch.utils.data.DataLoader(clips, batch_size=args.batch_size)
    for batch in loader:
        with torch.no_grad():
            probabilities = model(batch["video"]).softmax(-1)
        # per clip: kept tokens per frame, averaged over the frames and the ATS blocks
        kept = torch.stack([record.count.float().mean(1) for record in kept_tokens(model)]).mean(0)
        top, classes = probabilities.max(-1)
        for i, name in enumerate(batch["video_name"]):
            print(
                f"{name} clip {int(batch['clip_index'][i])} aug {int(batch['aug_index'][i])}: "
                f"class {int(classes[i])} ({100 * float(top[i]):.1f}%), label "
                f"{int(batch['label'][i])}, {float(kept[i]):.1f} tokens kept per frame"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
