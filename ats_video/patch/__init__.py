"""``apply_ats``: puts the Adaptive Token Sampler into chosen blocks of a model, in place.

One entry point for every backbone; each backbone family has its own small patch module here,
listed in ``_FAMILIES`` with its default ATS blocks. The model's parameters, buffers and
state-dict keys never change. After a forward, ``model.ats_kept`` lists what each ATS block kept.
"""

from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ats_video.ats import ATSConfig, Budget
from ats_video.models.timesformer import TimeSformer
from ats_video.models.xvit import XViT
from ats_video.patch.timesformer import apply_ats_timesformer
from ats_video.patch.vit import apply_ats_vit
from ats_video.patch.xvit import apply_ats_xvit

DEFAULT_K = 1.0  # K = N in every ATS block: the paper's default, reduction from duplicates alone


class Family(NamedTuple):
    model_type: type
    # the paper's ATS "stages" for a model of the given depth
    default_blocks: Callable[[int], Tuple[int, ...]]
    # (model, {block: config}, mode) -> model
    apply: Callable[[nn.Module, Dict[int, ATSConfig], str], nn.Module]
    modes: Tuple[str, ...]


_FAMILIES: List[Family] = [
    Family(VisionTransformer, lambda depth: tuple(range(3, depth)), apply_ats_vit, ("frame",)),
    Family(
        TimeSformer,
        lambda depth: tuple(range(3, min(depth, 6))),
        apply_ats_timesformer,
        ("frame", "shared"),
    ),
    Family(XViT, lambda depth: tuple(range(3, depth)), apply_ats_xvit, ("frame", "shared")),
]


def apply_ats(
    model: nn.Module,
    blocks: Optional[Iterable[int]] = None,
    k: Budget = DEFAULT_K,
    *,
    mode: str = "frame",
    selector: str = "sample",
) -> nn.Module:
    """Puts ATS into the given 0-indexed ``blocks`` of ``model`` and returns the model.

    Args:
        model: a timm VisionTransformer / DeiT (plain or distilled), a TimeSformer or an XViT.
        blocks: the ATS blocks; default the paper's (DeiT and XViT: 3 to the last; TimeSformer:
            3 to 5).
        k: the budget K per ATS block: an int, or a float ratio rho of the tokens entering the
            block, K = max(floor(rho * N + 0.5), 8). The default 1.0 is K = N.
        mode: for video, "frame" (each frame keeps its own tokens) or "shared" (one set of
            positions for the whole clip). Images have one frame: "frame".
        selector: "sample" (inverse transform sampling) or "topk" (the paper's ablation).
    """
    family = next((f for f in _FAMILIES if isinstance(model, f.model_type)), None)
    if family is None:
        supported = ", ".join(f.model_type.__name__ for f in _FAMILIES)
        raise TypeError(f"apply_ats does not know {type(model).__name__}; supported: {supported}")
    if mode not in family.modes:
        raise ValueError(f"ATS mode {mode!r} is not available for {type(model).__name__}; choose from {family.modes}")
    depth = len(model.blocks)
    blocks = family.default_blocks(depth) if blocks is None else tuple(sorted(set(blocks)))
    for i in blocks:
        if not 0 <= i < depth:
            raise ValueError(f"ATS block {i} out of range: the model has blocks 0..{depth - 1}")
    config = ATSConfig(k, selector)
    return family.apply(model, {i: config for i in blocks}, mode)
