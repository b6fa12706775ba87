"""Loading and saving checkpoints: the official releases and this project's own files.

A file is always read with ``torch.load(..., map_location="cpu", weights_only=True)``: a
checkpoint holds tensors and plain values, and loading one never runs code. The state dict is
found inside whichever container the file uses:

- SlowFast, used by the official TimeSformer ``.pyth``: ``{"epoch", "model_state",
  "optimizer_state", "cfg"}``; this project's own files (:func:`save_checkpoint`) use the same
  container with ``"format": "ats_video"`` and ``"arch": <model class>`` beside the entries;
- timm and the DeiT release: ``{"model": state_dict}``; others: ``{"state_dict": state_dict}``;
- a bare state dict.

Then the model family's own mapping function (one per family, as in timm) renames keys and
resizes position and time embeddings; it does nothing else. The result is checked here, the
same way for every family, and loaded strictly: every missing, unexpected and wrongly shaped key
is named in one error, which names the file too. ATS adds no parameters, so a model
loads the same before and after ``apply_ats``. For fine-tuning on another label set,
``fresh_classifier=True`` keeps the model's own classifier where the file's has another shape.
"""

import logging
import os
import socket
from typing import Any, BinaryIO, Callable, Dict, List, Mapping, Tuple, Union

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


def classifier_keys(model: nn.Module) -> List[str]:
    """The state-dict keys of ``model``'s classifier (``get_classifier()``, every family has it)."""
    head = {id(t) for t in model.get_classifier().state_dict(keep_vars=True).values()}
    return [k for k, t in model.state_dict(keep_vars=True).items() if id(t) in head]


def read_checkpoint(path: PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ValueError naming the file when it is
    not a readable checkpoint (empty, truncated, text, or holding objects other than tensors
    and plain values)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(path)}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # how torch.load fails depends on how the file is broken
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "no data"
        raise ValueError(
            f"{os.fspath(path)}: not a readable checkpoint ({type(err).__name__}: {reason})"
        ) from err


def load_checkpoint(
    model: nn.Module, path: PathLike, *, fresh_classifier: bool = False
) -> Dict[str, Any]:
    """Loads a checkpoint file into ``model`` strictly, mapping official formats.

    Args:
        model: a TimeSformer, an XViT or a timm ViT/DeiT, with or without ATS.
        path: an official TimeSformer ``.pyth``, XViT ``.pth``, DeiT/timm ``.pth``, or a file
            written by :func:`save_checkpoint`.
        fresh_classifier: for fine-tuning on another label set: where the file's classifier
            has other shapes than the model's (another class count), keep the model's freshly
            initialised classifier, with a warning naming its keys. Every other key still
            loads strictly.
    Returns:
        The file's other entries (e.g. ``epoch``, ``optimizer_state``, ``cfg``), for resuming.
    Raises:
        ValueError naming the file: unreadable, or every missing, unexpected and wrongly
        shaped key.
    """
    family = family_of(model)
    checkpoint = read_checkpoint(path)
    try:
        state_dict, extra = split_checkpoint(checkpoint)
        arch = family.model_type.__name__
        if extra.get("format") == FORMAT and extra.get("arch") != arch:
            raise ValueError(f"it holds a {extra.get('arch')}, not a {arch}")
        state_dict = family.checkpoint_filter(state_dict, model)
        if fresh_classifier:
            state_dict = _keep_fresh_classifier(model, state_dict, path)
        check_state_dict(model, state_dict)
    except ValueError as err:
        # the messages above describe the contents; the reader also needs to know which file
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    model.load_state_dict(state_dict, strict=True)
    _logger.info("loaded %s into %s", os.fspath(path), type(model).__name__)
    return extra


def _keep_fresh_classifier(model: nn.Module, state_dict: StateDict, path: PathLike) -> StateDict:
    """``state_dict`` with the model's own classifier tensors where the file's differ in shape."""
    target = model.state_dict()
    keys = classifier_keys(model)
    mismatched = [k for k in keys if k in state_dict and state_dict[k].shape != target[k].shape]
    if not mismatched:
        return state_dict
    shapes = ", ".join(
        f"{k} {tuple(state_dict[k].shape)} -> {tuple(target[k].shape)}" for k in mismatched
    )
    _logger.warning(
        "%s: the classifier has another shape (another class count); re-initialised: %s",
        os.fspath(path),
        shapes,
    )
    return {**state_dict, **{k: target[k] for k in mismatched}}


def save_checkpoint(model: nn.Module, path: PathLike, **extra: Any) -> None:
    """Writes this project's format, SlowFast's container: ``{"format", "arch", "model_state",
    **extra}``, atomically.

    ``extra`` holds anything else worth keeping (epoch, optimizer state, config as a string);
    it must be loadable with ``weights_only=True`` (tensors, numbers, strings, lists, dicts).
    The file is written under a temporary name beside ``path``, unique to this process
    (``.NAME.HOST.PID.partial``: two runs writing the same name never share one), and renamed
    when complete, so a crash mid-write never leaves a partial file under ``path``.
    """
    arch = family_of(model).model_type.__name__
    contents = {"format": FORMAT, "arch": arch, "model_state": model.state_dict(), **extra}
    write_atomically(path, lambda f: torch.save(contents, f))


def write_atomically(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write`` on a file beside ``path`` under a temporary name (``.NAME.partial``) and
    renames it to ``path`` when complete, so a crash mid-write never leaves a partial file
    under ``path``."""
    path = os.fspath(path)
    partial = os.path.join(
        os.path.dirname(path),
        f".{os.path.basename(path)}.{socket.gethostname()}.{os.getpid()}.partial",
    )
    with open(partial, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
