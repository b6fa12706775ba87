"""A run's config against the config a checkpoint was made with, so settings never mix
silently.

Every checkpoint of this project (and PySlowFast's, TimeSformer's) stores its run's config as
YAML text under ``cfg``. Two moments read it:

- resuming (:func:`check_resume`): a setting that the checkpoint's state cannot follow is
  refused, naming the keys (another optimizer: its state holds the other method's buffers;
  another model: its weights do not fit); every other changed key is honoured and logged. The
  optimizer's state restores the hyperparameters the checkpoint was made with, so
  :func:`keep_optimizer_settings` puts the config's back (weight decay, momentum, Nesterov,
  betas); the learning rate follows the schedule at every iteration anyway.
- testing (:func:`test_mismatch`): where the test's ATS, frames, sampling, crop or
  normalisation differ from the training run's, one line says so, so a checkpoint tuned at one
  budget is never tested at another unawares.

The stored config is read with ``torch.load(mmap=True)``: the weights stay on disk.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import yaml

from ats_video.checkpoint import read_checkpoint
from ats_video.config import flatten

logger = logging.getLogger(__name__)

# keys whose change a resumed run cannot honour, and why
REFUSED_ON_RESUME = {
    "SOLVER.OPTIMIZING_METHOD": "the optimizer state holds the other method's buffers",
    "MODEL.ARCH": "the weights belong to the other architecture",
    "MODEL.NUM_CLASSES": "the classifier has the other class count",
    "MODEL.PATCH_SIZE": "the weights have the other size",
    "MODEL.EMBED_DIM": "the weights have the other size",
    "MODEL.DEPTH": "the weights have the other size",
    "MODEL.NUM_HEADS": "the weights have the other size",
}
# what a test compares with the training run's config
TEST_KEYS = (
    "ATS.ENABLE",
    "ATS.BLOCKS",
    "ATS.K",
    "ATS.RATIO",
    "ATS.MODE",
    "ATS.SELECTOR",
    "DATA.NUM_FRAMES",
    "DATA.SAMPLING_RATE",
    "DATA.TRAIN_CROP_SIZE",
    "DATA.TEST_CROP_SIZE",
    "DATA.MEAN",
    "DATA.STD",
)
Change = Tuple[str, Any, Any]  # key, checkpoint's value, this run's value



def stored_config(path: str) -> Optional[Dict[str, Any]]:
    """The flattened config stored in checkpoint ``path`` (None when it stores none)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files in torch's legacy (pre-1.6, not zip) format cannot be mapped
        checkpoint = read_checkpoint(path)
    text = checkpoint.get("cfg") if isinstance(checkpoint, Mapping) else None
    if not isinstance(text, str):
        return None
    tree = yaml.safe_load(text)
    return flatten(tree) if isinstance(tree, Mapping) else None


def changes(stored: Mapping[str, Any], cfg, keys=None) -> List[Change]:
    """The keys (all of ``cfg``'s, or ``keys``) whose value differs between ``stored`` and
    ``cfg``; keys the stored config lacks (another project's, an older version's) are skipped."""
    current = flatten(yaml.safe_load(cfg.dump()))  # lists as YAML reads them, as ``stored``
    return [
        (key, stored[key], current[key])
        for key in (keys or current)
        if key in stored and key in current and stored[key] != current[key]
    ]


def _describe(found: List[Change]) -> str:
    return "; ".join(f"{key} {old!r} -> {new!r}" for key, old, new in found)


def check_resume(path: str, cfg) -> None:
    """Compares the run's config with the one checkpoint ``path`` was saved with: raises
    ValueError naming every key that a resumed run cannot honour, and logs the others."""
    stored = stored_config(path)
    if stored is None:
        logger.warning(f"{path} stores no config: the run's settings cannot be compared with it")
        return
    found = changes(stored, cfg)
    refused = [change for change in found if change[0] in REFUSED_ON_RESUME]
    if refused:
        reasons = "; ".join(
            f"{key} {old!r} -> {new!r} ({REFUSED_ON_RESUME[key]})" for key, old, new in refused
        )
        raise ValueError(
            f"cannot resume from {path} with these settings changed: {reasons}. Put them back, "
            "or start a new run: another OUTPUT_DIR with TRAIN.CHECKPOINT_FILE_PATH "
            f"{path} (or TRAIN.AUTO_RESUME False)"
        )
    if found:
        logger.info(f"resuming with settings changed since {path}, honoured: {_describe(found)}")


@contextmanager
def keep_optimizer_settings(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Loading an optimizer's state also loads the hyperparameters it was saved with; this
    puts the optimizer's own (the run's config) back afterwards, group by group."""
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    yield
    if len(settings) != len(optimizer.param_groups):
        raise ValueError(
            f"the checkpoint's optimizer has {len(optimizer.param_groups)} parameter groups, "
            f"the run's {len(settings)}"
        )
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)


def test_mismatch(path: str, cfg) -> Optional[str]:
    """One line naming each of :data:`TEST_KEYS` whose test value differs from the config
    stored in checkpoint ``path`` (None when all agree or it stores no config)."""
    stored = stored_config(path)
    found = changes(stored, cfg, TEST_KEYS) if stored else []
    if not found:
        return None
    return (
        f"testing with settings other than {path} was trained with (training -> test): "
        f"{_describe(found)}"
    )
