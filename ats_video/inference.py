"""One video (or image) at a time through a model, as the multi-view test sees it.

The path shared by ``tools/predict.py``, ``tools/visualize.py`` and anyone who wants the
predictions, features, GFLOPs and kept tokens of files they name, rather than of a list:

1. :func:`load_model`: the config's model (``ats_video.build.build_model``, ATS as ``cfg.ATS``
   says) with a checkpoint that :func:`ats_video.load_checkpoint` reads: an official
   TimeSformer ``.pyth``, XViT ``.pth``, DeiT ``.pth`` or this project's own;
2. :func:`read_views`: a video in any container, codec, size and frame rate that the
   installed decoders read, made into the config's test views (``TEST.NUM_ENSEMBLE_VIEWS`` clips x
   ``TEST.NUM_SPATIAL_CROPS`` crops) or its centre view (one centred clip, the centre crop: what
   the clip-level validation reads) by the dataset the multi-view test uses
   (:func:`ats_video.build.build_video_dataset`), so the frames, crops and normalisation are the
   test's own; an image (``DATA.DATASET imagenet``) gets the ImageNet evaluation transform;
3. :func:`predict`: one forward of a video's views, giving the ensemble of their softmax scores
   (``TEST.ENSEMBLE_METHOD``: the mean or the max over the views), the pre-logits features (the
   CLS embedding after the final norm, ``forward_head(..., pre_logits=True)``; XViT: its temporal
   head's hidden layer), GFLOPs as run and what each ATS block kept.

NOTE: the views of a video go through the model as one batch, and in full precision whatever
``TRAIN.MIXED_PRECISION`` says (the multi-view test uses its autocast).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode
from PIL import Image
from torch import Tensor, nn

from ats_video import vis
from ats_video.build import build_model, build_video_dataset, describe_ats
from ats_video.checkpoint import load_checkpoint
from ats_video.config import load_config
from ats_video.data.imagenet import imagenet_eval_transform
from ats_video.data.lists import VideoRecord, read_class_names
from ats_video.data.video_io import UnusableVideoError
from ats_video.engine.checkpoints import last_checkpoint
from ats_video.flops import gflops_as_run
from ats_video.tokens import KeptTokens, kept_tokens

# what a user names the views -> the dataset split that makes them: the config's test views, or
# the clip-level validation's one view (a centred clip, the centre crop)
VIEWS = {"test": "test", "center": "val"}


def checkpoint_file(cfg: CfgNode, checkpoint: Optional[str] = None) -> str:
    """The weights to use: ``checkpoint``, else ``TEST.CHECKPOINT_FILE_PATH``, else the last
    checkpoint in ``OUTPUT_DIR`` (as the multi-view test chooses). FileNotFoundError naming all
    three when there is none."""
    path = checkpoint or cfg.TEST.CHECKPOINT_FILE_PATH or last_checkpoint(cfg.OUTPUT_DIR)
    if not path:
        raise FileNotFoundError(
            f"no weights: give --checkpoint, or TEST.CHECKPOINT_FILE_PATH, or an OUTPUT_DIR "
            f"whose checkpoints/ holds one (OUTPUT_DIR {cfg.OUTPUT_DIR!r} holds none)"
        )
    return path


def load_model(cfg: CfgNode, checkpoint: str, device: torch.device) -> nn.Module:
    """The config's model with ``checkpoint`` loaded strictly, in eval mode on ``device``."""
    model = build_model(cfg)
    load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def class_names(cfg: CfgNode, path: Optional[str] = None) -> Optional[List[str]]:
    """The class names from ``path`` (a JSON list or ``{name: index}``), else from
    ``DATA.CLASS_NAMES_FILE`` under ``DATA.PATH_TO_DATA_DIR``; None where neither is given.

    Raises:
        FileNotFoundError naming the file and the key it came from; ValueError when the file
        does not name exactly ``MODEL.NUM_CLASSES`` classes.
    """
    source = "--class-names"
    if not path and cfg.DATA.CLASS_NAMES_FILE:
        path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.CLASS_NAMES_FILE)
        source = "DATA.PATH_TO_DATA_DIR + DATA.CLASS_NAMES_FILE"
    if not path:
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{source}: no class-name file {path!r}")
    names = read_class_names(path)
    if len(names) != cfg.MODEL.NUM_CLASSES:
        raise ValueError(
            f"{path}: {len(names)} class names for a model of MODEL.NUM_CLASSES "
            f"{cfg.MODEL.NUM_CLASSES}"
        )
    return names


def view_split(views: str) -> str:
    """The split whose samples are the views ``views`` names ("test" or "center")."""
    if views not in VIEWS:
        raise ValueError(f"views must be one of {sorted(VIEWS)}, got {views!r}")
    return VIEWS[views]


def num_views(cfg: CfgNode, views: str) -> tuple[int, int]:
    """(clips, crops) of a video for ``views``: "test" (the config's) or "center" (1 x 1)."""
    if view_split(views) == "val" or cfg.DATA.DATASET == "imagenet":
        return 1, 1
    return cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS


def centre_view(clips: int, crops: int) -> int:
    """The index of the middle clip's centre crop among ``clips x crops`` views (the view index
    of the test: ``clip * crops + crop``)."""
    return clips // 2 * crops + crops // 2


def read_views(cfg: CfgNode, path: str, views: str = "test") -> Tensor:
    """The views of the video (or, for ``DATA.DATASET imagenet``, the image) at ``path``.

    Returns:
        videos: [V, C, T, H, W] float, normalised, V = clips x crops in the test's view order
        (``clip * crops + crop``); images: [1, C, H, W].
    Raises:
        UnusableVideoError naming the file and why it cannot be read.
    """
    split = view_split(views)
    if cfg.DATA.DATASET == "imagenet":
        return read_image(cfg, path)[None]
    dataset = build_video_dataset(cfg, [VideoRecord(path, 0)], split)
    samples = [dataset[i] for i in range(len(dataset))]
    for sample in samples:
        if not sample["usable"]:
            raise UnusableVideoError(path, sample["error"])
    return torch.stack([sample["video"] for sample in samples])


def read_image(cfg: CfgNode, path: str) -> Tensor:
    """An image file as the ImageNet evaluation reads it: [C, H, W] float, normalised."""
    if not os.path.isfile(path):
        raise UnusableVideoError(path, "no such file")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except Exception as error:  # PIL raises several kinds for files that are not images
        raise UnusableVideoError(path, f"PIL: {type(error).__name__}: {error}") from error
    data = cfg.DATA
    transform = imagenet_eval_transform(
        crop_size=data.TEST_CROP_SIZE, resize_size=data.TEST_RESIZE_SIZE, mean=data.MEAN, std=data.STD
    )
    return transform(image)


@dataclass
class Prediction:
    """One video through the model.

    probs: [C] the views' softmax scores combined (mean or max over the views).
    features: [D] pre-logits features, the mean over the views.
    gflops: [V] float64 GFLOPs of each view as run.
    gflops_without_ats: GFLOPs of a view of the same model without ATS.
    kept: one :class:`KeptTokens` per ATS block (empty without ATS), the batch being the V
        views: ``count`` [V, T], ``mask`` [V, T, h, w].
    """

    probs: Tensor
    features: Tensor
    gflops: Tensor
    gflops_without_ats: float
    kept: List[KeptTokens]

    def top(self, k: int = 5) -> List[tuple[int, float]]:
        """The ``k`` most probable classes as (index, probability), best first."""
        values, indices = self.probs.topk(min(k, len(self.probs)))
        return list(zip(indices.tolist(), values.tolist()))

    def kept_per_clip(self) -> dict[int, float]:
        """ATS block -> mean kept patch tokens per view (clip)."""
        return {r.block: r.count.sum(1).double().mean().item() for r in self.kept}


def predict(model: nn.Module, views: Tensor, *, ensemble: str = "sum") -> Prediction:
    """Forwards a video's ``views`` ([V, C, T, H, W] or images [V, C, H, W]) as one batch.

    ``ensemble``: "sum" (reported as the mean, a probability) or "max" of the views' softmax
    scores, as ``TEST.ENSEMBLE_METHOD``; the order of the classes is the test's either way.
    """
    if ensemble not in ("sum", "max"):
        raise ValueError(f"ensemble must be 'sum' or 'max', got {ensemble!r}")
    device = next(model.parameters()).device
    with torch.inference_mode():
        tokens = model.forward_features(views.to(device))
        features = model.forward_head(tokens, pre_logits=True).float()
        probs = model.forward_head(tokens).float().softmax(dim=-1)
    kept = kept_tokens(model)
    combined = probs.mean(0) if ensemble == "sum" else probs.amax(0)
    return Prediction(
        probs=combined.cpu(),
        features=features.mean(0).cpu(),
        gflops=gflops_as_run(model, kept, len(views)),
        gflops_without_ats=gflops_as_run(model, [], 1)[0].item(),
        kept=[_to_cpu(record) for record in kept],
    )


def _to_cpu(record: KeptTokens) -> KeptTokens:
    return KeptTokens(record.block, record.count.cpu(), record.positions.cpu(), record.grid)


def unique_stems(paths: Sequence[str]) -> List[str]:
    """A file-name stem per path, unique among them: ``a/x.mp4``, ``b/x.avi`` -> ``x``, ``x_2``."""
    stems: List[str] = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0] or "video"
        name, n = stem, 1
        while name in stems:
            n += 1
            name = f"{stem}_{n}"
        stems.append(name)
    return stems


# ---------------------------------------------------------------- for the tools

_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*")


def run_printed(command: Sequence[str], what: str, cwd: Optional[str] = None) -> None:
    """Prints ``what`` and ``command`` (``python ...``, as one could type it), runs it with this
    interpreter, and exits naming ``what`` and the exit status when it fails."""
    print(f"\n=== {what}\n$ {shlex.join(command)}", flush=True)
    done = subprocess.run([sys.executable, *command[1:]], cwd=cwd)
    if done.returncode:
        raise SystemExit(f"{what}: failed (exit status {done.returncode})")


def split_files_and_options(items: Sequence[str]) -> tuple[List[str], List[str]]:
    """A command line's ``FILE... [KEY VALUE ...]`` -> (files, KEY VALUE pairs): the options
    start at the first item written as a config key (``ATS.K``, ``OUTPUT_DIR``) that is not an
    existing file (a camera's ``IMG_0001.MOV`` is a file)."""
    start = next(
        (i for i, item in enumerate(items) if _CONFIG_KEY.fullmatch(item) and not os.path.exists(item)),
        len(items),
    )
    return list(items[:start]), list(items[start:])


def file_tool_parser(description: str) -> argparse.ArgumentParser:
    """The command line of a tool that runs a model on files: ``FILE... [KEY VALUE ...]``
    (``items``), ``--cfg``, ``--checkpoint``, ``--class-names``, ``--views``, ``--device``; the
    tool adds its own options. Parse it with :func:`parse_file_tool_args`."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", nargs="*", metavar="FILE [KEY VALUE]", help="videos (images "
                        "for an image config), then KEY VALUE pairs overriding the config")  # fmt: skip
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    parser.add_argument("--checkpoint", help="weights (default: TEST.CHECKPOINT_FILE_PATH, "
                        "else the last checkpoint in OUTPUT_DIR)")  # fmt: skip
    parser.add_argument("--class-names", help="JSON list of class names or {name: index} "
                        "(default: DATA.CLASS_NAMES_FILE)")  # fmt: skip
    parser.add_argument("--views", choices=sorted(VIEWS), default="test",
                        help="the config's test views (default) or the centre view")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def parse_file_tool_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Options may come between the files; ``videos`` and ``opts`` are the files and the
    KEY VALUE pairs."""
    args = parser.parse_intermixed_args(argv)
    args.videos, args.opts = split_files_and_options(args.items)
    return args


@dataclass
class ToolModel:
    """What a tool that runs files works with: the config, the model with its weights on the
    device, the checkpoint's path, the class names (None: indices) and ``about``, the model
    and its ATS in words."""

    cfg: CfgNode
    model: nn.Module
    checkpoint: str
    names: Optional[List[str]]
    about: str


def tool_model(args: argparse.Namespace) -> ToolModel:
    """The config, class names and model a :func:`file_tool_parser` command line names; log
    lines as :func:`quiet_logging` says."""
    quiet_logging()
    cfg = load_config(args.cfg_file, args.opts)
    names = class_names(cfg, args.class_names)
    checkpoint = checkpoint_file(cfg, args.checkpoint)
    model = load_model(cfg, checkpoint, torch.device(args.device))
    return ToolModel(cfg, model, checkpoint, names, f"{cfg.MODEL.ARCH}, {describe_ats(cfg, model)}")


@dataclass
class FileResult:
    """A file run through :func:`run_files`: its views and prediction, or why it could not
    be read (``error``)."""

    path: str
    views: Optional[Tensor] = None
    prediction: Optional[Prediction] = None
    error: str = ""


def run_files(
    cfg: CfgNode, model: nn.Module, paths: Sequence[str], views: str = "test"
) -> Iterator[FileResult]:
    """Each file's :func:`read_views` and :func:`predict`, in order; a file that cannot be read
    gives its reason instead, and the others go on."""
    for path in paths:
        try:
            inputs = read_views(cfg, path, views)
        except UnusableVideoError as error:
            yield FileResult(path, error=error.reason)
            continue
        yield FileResult(path, inputs, predict(model, inputs, ensemble=cfg.TEST.ENSEMBLE_METHOD))


def quiet_logging() -> None:
    """Warnings only, and none from the dataset about unusable videos: the tools name those
    themselves, once."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ats_video.data.kinetics").setLevel(logging.ERROR)


def class_name(index: int, names: Optional[Sequence[str]]) -> str:
    return names[index] if names else f"class {index}"


def kept_token_picture(
    cfg: CfgNode,
    result: FileResult,
    *,
    about: str,
    views: str = "test",
    names: Optional[Sequence[str]] = None,
    label: Optional[int] = None,
) -> np.ndarray:
    """The :func:`ats_video.vis.kept_token_grid` of a file's centre view (the middle clip's
    centre crop), titled with the file, the prediction (and ``label`` when known) and
    ``about`` (the model and its ATS)."""
    clips, crops = num_views(cfg, views)
    view = centre_view(clips, crops)
    prediction = result.prediction
    best, probability = prediction.top(1)[0]
    guess = f"predicted {class_name(best, names)} ({100 * probability:.1f}%)"
    if label is not None:
        guess += f", labelled {class_name(label, names)}"
    shown = f"{clips}x{crops} views, the centre one shown" if clips * crops > 1 else "1 view"
    gflops = prediction.gflops.mean().item()
    return vis.kept_token_grid(
        vis.view_frames(result.views[view], cfg.DATA.MEAN, cfg.DATA.STD),
        vis.view_masks(prediction.kept, view),
        mode=cfg.ATS.MODE,
        title=[
            os.path.basename(result.path) + ": " + guess,
            f"{about}; {shown}; {gflops:.4g} GFLOPs per view "
            f"({prediction.gflops_without_ats:.4g} without ATS)",
        ],
    )
