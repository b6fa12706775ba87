"""Loading and saving checkpoints: the official releases and this project's own files.

A file is always read with ``torch.load(..., map_location="cpu", weights_only=True)``: a
checkpoint holds tensors and plain values, and loading one never runs code. The state dict is
found inside whichever container the file uses:

- this project's own: ``{"format": "ats_video", "arch": <model class>, "model": state_dict, ...}``,
  written by :func:`save_checkpoint`; any other entries (epoch, optimizer state, config) sit
  beside ``model``;
- SlowFast, used by the official TimeSformer ``.pyth``: ``{"epoch", "model_state",
  "optimizer_state", "cfg"}``;
- timm and the DeiT release: ``{"model": state_dict}``; others: ``{"state_dict": state_dict}``;
- a bare state dict.

Then the model family's own mapping function (one per family, as in timm) renames keys and
resizes position and time embeddings; it does nothing else. The result is checked here, the
same way for every family, and loaded strictly: every missing, unexpected and wrongly shaped key
is named in one error, which names the file too. ATS adds no parameters, so a model
loads the same before and after ``apply_ats``.
"""

import logging
import os
from typing import Any, Dict, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

from ats_video.families import family_of

_logger = logging.getLogger(__name__)

FORMAT = "ats_video"
StateDict = Dict[str, Tensor]
PathLike = Union[str, os.PathLike]


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(v, Tensor) for v in obj.values())
    )


def split_checkpoint(checkpoint: Mapping[str, Any]) -> Tuple[StateDict, Dict[str, Any]]:
    """A loaded checkpoint file -> (its state dict, its other entries)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"a checkpoint must hold a dict, this one holds a {type(checkpoint).__name__}"
        )
    if _is_state_dict(checkpoint):
        return dict(checkpoint), {}
    for key in ("model_state", "model", "state_dict"):
        if _is_state_dict(checkpoint.get(key)):
            return dict(checkpoint[key]), {k: v for k, v in checkpoint.items() if k != key}
    raise ValueError(
        "no state dict found: expected a bare state dict or one under 'model_state', 'model' "
        f"or 'state_dict'; the file has keys {sorted(checkpoint)}"
    )


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Raises ValueError naming every missing, unexpected and wrongly shaped key."""
    target = model.state_dict()
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)}"
        for k, v in state_dict.items()
        if k in target and v.shape != target[k].shape
    ]
    if missing or unexpected or wrong:
        lines = [f"checkpoint does not match {type(model).__name__}:"]
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        raise ValueError("\n".join(lines))


def load_checkpoint(model: nn.Module, path: PathLike) -> Dict[str, Any]:
    """Loads a checkpoint file into ``model`` strictly, mapping official formats.

    Args:
        model: a TimeSformer, an XViT or a timm ViT/DeiT, with or without ATS.
        path: an official TimeSformer ``.pyth``, XViT ``.pth``, DeiT/timm ``.pth``, or a file
            written by :func:`save_checkpoint`.
    Returns:
        The file's other entries (e.g. ``epoch``, ``optimizer_state``, ``cfg``), for resuming.
    Raises:
        ValueError naming the file and every missing, unexpected and wrongly shaped key.
    """
    family = family_of(model)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    try:
        state_dict, extra = split_checkpoint(checkpoint)
        arch = family.model_type.__name__
        if extra.get("format") == FORMAT and extra.get("arch") != arch:
            raise ValueError(f"it holds a {extra.get('arch')}, not a {arch}")
        state_dict = family.checkpoint_filter(state_dict, model)
        check_state_dict(model, state_dict)
    except ValueError as err:
        # the messages above describe the contents; the reader also needs to know which file
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    model.load_state_dict(state_dict, strict=True)
    _logger.info("loaded %s into %s", os.fspath(path), type(model).__name__)
    return extra


def save_checkpoint(model: nn.Module, path: PathLike, **extra: Any) -> None:
    """Writes this project's format: ``{"format", "arch", "model", **extra}``.

    ``extra`` holds anything else worth keeping (epoch, optimizer state, config as a string);
    it must be loadable with ``weights_only=True`` (tensors, numbers, strings, lists, dicts).
    """
    arch = family_of(model).model_type.__name__
    torch.save({"format": FORMAT, "arch": arch, "model": model.state_dict(), **extra}, path)
