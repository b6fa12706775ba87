"""The registry of model families, read by ``apply_ats`` (here), ``load_checkpoint`` and the
builder.

A family is a model class and what the project knows about it: the architectures it builds by
name, the paper's default ATS blocks, the ATS modes it has, the function that puts ATS into it
and the function that maps its checkpoints. A new backbone is one more entry here.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import timm
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ats_video.ats import ATSConfig, Budget
from ats_video.models.timesformer import PRESETS as TIMESFORMER_PRESETS
from ats_video.models.timesformer import TimeSformer
from ats_video.models.timesformer import checkpoint_filter_fn as timesformer_checkpoint_filter
from ats_video.models.timesformer import to_official as timesformer_to_official
from ats_video.models.xvit import PRESETS as XVIT_PRESETS
from ats_video.models.xvit import XViT
from ats_video.models.xvit import checkpoint_filter_fn as xvit_checkpoint_filter
from ats_video.models.xvit import to_official as xvit_to_official
from ats_video.models.vit import checkpoint_filter_fn as vit_checkpoint_filter
from ats_video.patch import timesformer as timesformer_patch
from ats_video.patch import vit as vit_patch
from ats_video.patch import xvit as xvit_patch
from ats_video.tokens import KeptTokens

StateDict = Dict[str, Tensor]


@dataclass(frozen=True)
class Family:
    """One model family.

    name: a short name ("timesformer", "xvit", "vit").
    model_type: the class every model of the family is an instance of.
    presets: architecture name -> constructor taking keyword arguments; timm's ViTs are built by
        timm from any of its names instead (see :func:`create_model`).
    default_blocks: depth -> the paper's 0-indexed ATS blocks (its "stages").
    modes: the ATS modes available ("frame" is the default; video adds "shared").
    apply_ats: (model, {block: ATSConfig}, mode) -> the model, with ATS put in place.
    checkpoint_filter: (state dict, model) -> the state dict in the model's keys and shapes.
    forward_macs: (model, kept, batch size) -> [B] float64 multiply-adds per sample of a forward
        that kept ``kept`` (see :func:`ats_video.flops.gflops_as_run`).
    to_official: state dict -> the same weights in the official release's keys (None: the
        family's own keys are the release's, as timm's ViTs).
    """

    name: str
    model_type: type
    presets: Mapping[str, Callable[..., nn.Module]]
    default_blocks: Callable[[int], Tuple[int, ...]]
    modes: Tuple[str, ...]
    apply_ats: Callable[..., nn.Module]
    checkpoint_filter: Callable[[StateDict, nn.Module], StateDict]
    forward_macs: Callable[[nn.Module, Sequence[KeptTokens], int], Tensor]
    to_official: Optional[Callable[[StateDict], StateDict]] = None


FAMILIES: Tuple[Family, ...] = (
    Family(
        name="timesformer",
        model_type=TimeSformer,
        presets=TIMESFORMER_PRESETS,
        default_blocks=lambda depth: tuple(range(3, min(depth, 6))),
        modes=("frame", "shared"),
        apply_ats=timesformer_patch.apply_ats_timesformer,
        forward_macs=timesformer_patch.forward_macs,
        checkpoint_filter=timesformer_checkpoint_filter,
        to_official=timesformer_to_official,
    ),
    Family(
        name="xvit",
        model_type=XViT,
        presets=XVIT_PRESETS,
        default_blocks=lambda depth: tuple(range(3, depth)),
        modes=("frame", "shared"),
        apply_ats=xvit_patch.apply_ats_xvit,
        forward_macs=xvit_patch.forward_macs,
        checkpoint_filter=xvit_checkpoint_filter,
        to_official=xvit_to_official,
    ),
    Family(
        name="vit",
        model_type=VisionTransformer,
        presets={},
        default_blocks=lambda depth: tuple(range(3, depth)),
        modes=("frame",),
        apply_ats=vit_patch.apply_ats_vit,
        forward_macs=vit_patch.forward_macs,
        checkpoint_filter=vit_checkpoint_filter,
    ),
)


def family_of(model: nn.Module) -> Family:
    """The family of ``model`` (with or without ATS); TypeError naming the supported ones."""
    for family in FAMILIES:
        if isinstance(model, family.model_type):
            return family
    supported = ", ".join(f.model_type.__name__ for f in FAMILIES)
    raise TypeError(f"{type(model).__name__} is not a supported model; supported: {supported}")


def video_architectures() -> Tuple[str, ...]:
    """Every architecture name the video families build."""
    return tuple(name for family in FAMILIES for name in family.presets)


def create_model(arch: str, **kwargs) -> nn.Module:
    """Builds architecture ``arch`` with random weights.

    Args:
        arch: a video preset or generic name ("timesformer", "xvit", see
            :func:`video_architectures`), or the name of a timm ViT / DeiT.
        kwargs: the constructor's keyword arguments (video: num_frames, img_size, num_classes,
            drop_path_rate, patch_size, embed_dim, depth, num_heads, ...; timm: timm's).
    Raises:
        ValueError naming ``arch`` and what is available when it is neither.
    """
    constructor: Optional[Callable[..., nn.Module]] = next(
        (f.presets[arch] for f in FAMILIES if arch in f.presets), None
    )
    if constructor is not None:
        return constructor(**kwargs)
    if timm.is_model(arch):
        model = timm.create_model(arch, **kwargs)
        if isinstance(model, VisionTransformer):
            return model
        raise ValueError(f"architecture {arch!r} is a timm {type(model).__name__}, not a ViT / DeiT")
    raise ValueError(
        f"unknown architecture {arch!r}: expected one of {sorted(video_architectures())} "
        "or a timm ViT / DeiT name (e.g. deit_small_patch16_224)"
    )


def apply_ats(
    model: nn.Module,
    blocks: Optional[Iterable[int]] = None,
    k: Optional[Budget] = None,
    *,
    mode: str = "frame",
    selector: str = "sample",
) -> nn.Module:
    """Puts ATS into the given 0-indexed ``blocks`` of ``model`` and returns the model.

    Args:
        model: a timm VisionTransformer / DeiT (plain or distilled), a TimeSformer or an XViT.
        blocks: the ATS blocks; default the paper's (DeiT and XViT: 3 to the last; TimeSformer:
            3 to 5).
        k: the budget K of every ATS block: an int, or a float ratio rho of the tokens entering
            the block, K = max(floor(rho * N + 0.5), 8). Default: the model's initial number of
            patch tokens (per frame for video; DeiT-S and 224-px video models: 196) in every ATS
            block however few tokens enter it, as the paper ("K=197 in case of DeiT-S") and the
            official code do; the reduction then comes from tokens picked more than once.
        mode: for video, "frame" (each frame keeps its own tokens) or "shared" (one set of
            positions for the whole clip). Images have one frame: "frame".
        selector: "sample" (inverse transform sampling), "topk" (the paper's ablation) or
            "random" (a uniform sample of K tokens, seeded by each frame's scores: a baseline).
    """
    family = family_of(model)
    if mode not in family.modes:
        raise ValueError(f"ATS mode {mode!r} is not available for {type(model).__name__}; choose from {family.modes}")
    depth = len(model.blocks)
    blocks = family.default_blocks(depth) if blocks is None else tuple(sorted(set(blocks)))
    for i in blocks:
        if not 0 <= i < depth:
            raise ValueError(f"ATS block {i} out of range: the model has blocks 0..{depth - 1}")
    config = ATSConfig(model.patch_embed.num_patches if k is None else k, selector)
    return family.apply_ats(model, {i: config for i in blocks}, mode)
