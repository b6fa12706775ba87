"""XViT: a video transformer with space-time mixing attention.

Follows Bulat et al., "Space-time Mixing Attention for Video Transformer", NeurIPS 2021
(arXiv 2106.05968), and the layout and forward of its official release
(github.com/1adrianb/video-transformers, branch main). Every frame runs through a ViT with its
own CLS token. In each block's attention, the keys and values of two slices of
``dim // shift_div`` channels are taken from the same spatial position in frames t+1 and t-1
(zeros past the ends of the frame's shift group), so a query attends jointly over space and a
local window in time at the cost of spatial attention (the paper's Eq. 7). A small temporal
transformer (the release's "vit" consensus) reads the per-frame CLS tokens and classifies.

Layout of the released models, which this module reproduces (state-dict keys: the release's with
``base_model.`` stripped from the backbone; the temporal head keeps the name ``consensus``):
- backbone: ``cls_token``, ``pos_embed`` [1, 1 + N, D] (CLS included) built for 224 x 224,
  ``temp_embed`` [1, F, 1, D], ``patch_embed.proj``, ``blocks.i.{norm1, attn.qkv, attn.proj,
  norm2, mlp.fc1, mlp.fc2}``, ``norm`` (LayerNorm eps 1e-6, qkv bias);
- the backbone's classifier is a dropout on each frame's CLS feature (``head_drop`` here);
- ``consensus``: ``cls_token``, ``temporal_encoder.j`` (ViT blocks without qkv bias, LayerNorm
  eps 1e-5), ``mlp_head`` = LayerNorm, Linear, GELU, Dropout, Linear (indices 0, 1, 4).

Three sizes that the release keeps apart, and so does this module:
- the shift group (``shift_group``, the release's ``XVIT.NUM_SEGMENTS``): frames mix keys and
  values only within runs of this many consecutive frames. Kinetics-600: 16 frames in groups of
  8 (frames 7 and 8 see zeros from each other, as at a clip's ends); SSv2: one group of 16;
- the time embedding's length (``temp_embed_frames``, the backbone's own ``num_frames``, 8 in
  the release's builder, which does not pass the clip's): ``temp_embed`` holds that many
  entries and is added to every run of that many consecutive frames, whatever the shift group;
- the size ``pos_embed`` is built for (``pos_embed_img_size``, 224 in the release): for any
  other crop the release resizes it at every forward (:func:`rescale_pos_embed`).

NOTE: the release's dropout after the position embedding is its backbone ``drop_rate``, which
its builder sets to 0; ``pos_drop_rate`` defaults to 0 here too, and ``drop_rate`` is the
release's ``MODEL.DROPOUT_RATE`` (each frame's CLS feature and inside the temporal head).
NOTE: the release's checkpoint also holds ``new_fc.{weight,bias}``, a classifier its forward
never uses with the "vit" consensus; :func:`checkpoint_filter_fn` skips those two keys and says so.
NOTE: an unmerged pull request to the release ("Fix temp embed") passes the clip's frame count to
the backbone, which gives ``temp_embed`` one entry per frame; that is ``temp_embed_frames=16``
here. The presets follow main.
NOTE: the paper's summary token and its other temporal-attention variants are not part of the
released model and are not implemented.
"""

import logging
import math
from functools import partial
from typing import Callable, Dict, Mapping, Optional, Set

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block as ViTBlock
from timm.models.vision_transformer import init_weights_vit_timm
from torch import Tensor, nn

from ats_video.models.embeddings import resizable, resize_pos_embed, resize_time_embed
from ats_video.models.from_image import block_range, is_image_vit, keep_model_init

_logger = logging.getLogger(__name__)

# keys of the release's checkpoint that its forward never reads (see the module docstring)
UNUSED_OFFICIAL_KEYS = ("new_fc.weight", "new_fc.bias")
BACKBONE_PREFIX = "base_model."


def temporal_shift(x: Tensor, fold: int) -> Tensor:
    """Space-time mixing of keys or values within one group of frames.

    Args:
        x: [B, T, P, C] features of P positions in each of T frames; channels in (head, dim) order.
        fold: channels ``[0, fold)`` are taken from frame t+1 and ``[fold, 2 fold)`` from frame
            t-1 at the same position; zeros where that frame lies outside the group.
    Returns:
        [B, T, P, C].
    """
    ahead = F.pad(x[:, 1:, :, :fold], (0, 0, 0, 0, 0, 1))
    behind = F.pad(x[:, :-1, :, fold : 2 * fold], (0, 0, 0, 0, 1, 0))
    return torch.cat([ahead, behind, x[..., 2 * fold :]], dim=-1)


def rescale_pos_embed(pos_embed: Tensor, scale: float) -> Tensor:
    """The release's resize of a position embedding for another crop, run at every forward.

    Args:
        pos_embed: [1, 1 + g * g, D], the CLS entry first, then a g x g patch grid row by row.
        scale: ``F.interpolate``'s ``scale_factor`` for the grid; the release passes
            ``(crop / 16) / (224 / 16)``.
    Returns:
        [1, 1 + g' * g', D], g' = floor(g * scale) as ``F.interpolate`` rounds it: bicubic,
        ``align_corners=False``, no antialiasing, the coordinates mapped with ``scale`` itself;
        the CLS entry unchanged.
    """
    side = math.isqrt(pos_embed.shape[1] - 1)
    grid = rearrange(pos_embed[:, 1:], "1 (h w) d -> 1 d h w", h=side)
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    return torch.cat([pos_embed[:, :1], rearrange(grid, "1 d h w -> 1 (h w) d")], dim=1)


class MixingAttention(nn.Module):
    """Multi-head self-attention over a frame's tokens, with keys and values mixed in time.

    Takes [(B T), P, D] tokens of clips whose T frames form groups of ``num_frames`` consecutive
    frames; the shift runs within each group.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_frames: int,
        shift_div: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if shift_div < 2:
            raise ValueError(f"shift_div must be >= 2 (two shifted slices), got {shift_div}")
        self.num_heads = num_heads
        self.num_frames = num_frames
        self.fold = dim // shift_div
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        # timm Attention's layout (no q/k norms, no norm before proj), so that ATS treats
        # both alike; identities hold no parameters and leave the state dict unchanged
        self.q_norm, self.k_norm, self.norm = nn.Identity(), nn.Identity(), nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def mix(self, x: Tensor) -> Tensor:
        """[(B T), P, D] keys or values -> the same with the temporal slices shifted in."""
        x = rearrange(x, "(b t) p c -> b t p c", t=self.num_frames)
        return rearrange(temporal_shift(x, self.fold), "b t p c -> (b t) p c")

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        k, v = self.mix(k), self.mix(v)
        q, k, v = (rearrange(z, "n p (h c) -> n h p c", h=self.num_heads) for z in (q, k, v))
        dropout_p = self.attn_drop.p if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        return self.proj_drop(self.proj(rearrange(x, "n h p c -> n p (h c)")))


class Block(nn.Module):
    """A pre-norm transformer block whose attention is ``attn_layer`` (the release's layout)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        attn_layer: Callable[..., nn.Module],
        mlp_ratio: float = 4.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
    ):
        super().__init__()
        # timm Block's attribute names (layer scales are identities), so that ATS treats both alike
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(dim, num_heads, proj_drop=proj_drop)
        self.ls1, self.ls2 = nn.Identity(), nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class TemporalHead(nn.Module):
    """The release's "vit" consensus: a CLS token and a transformer over the per-frame CLS tokens.

    Takes [B, T, D] frame features and returns [B, num_classes] logits.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        depth: int,
        num_heads: int,
        hidden_dim: int,
        drop_rate: float,
    ):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # the release builds these blocks with its Block defaults: no qkv bias, LayerNorm eps 1e-5
        self.temporal_encoder = nn.Sequential(
            *[
                ViTBlock(dim, num_heads, qkv_bias=False, norm_layer=nn.LayerNorm)
                for _ in range(depth)
            ]
        )
        self.mlp_head = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(drop_rate),
            nn.Linear(hidden_dim, num_classes) if num_classes > 0 else nn.Identity(),
        )

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.temporal_encoder(x)[:, 0]
        return self.mlp_head[:-1](x) if pre_logits else self.mlp_head(x)


class XViT(nn.Module):
    """XViT on clips [B, C, T, H, W]; see the module docstring.

    ``forward_features`` returns [B, T, 1 + N, D] normalised tokens, CLS first in every frame;
    ``forward_head`` reads each frame's CLS and returns [B, num_classes] logits.

    Args (those that are not a ViT's usual ones):
        num_frames: T, the frames of every clip.
        shift_group: frames per shift group (the release's ``XVIT.NUM_SEGMENTS``); default T.
        shift_div: each shifted slice holds ``embed_dim // shift_div`` channels.
        temp_embed_frames: F, the entries of ``temp_embed`` [1, F, 1, D], added to every run of
            F consecutive frames (the release: its backbone's ``num_frames``, 8); default T.
        img_size: the crop the model takes.
        pos_embed_img_size: the image size ``pos_embed`` is built for (the release: 224); for
            another ``img_size`` it is resized at every forward as the release does; default
            ``img_size``.
        drop_rate: dropout on each frame's CLS feature and before the temporal head's last
            Linear (the release's ``MODEL.DROPOUT_RATE``).
        pos_drop_rate: dropout after the position embedding (0 in the release's builder).
        proj_drop_rate, attn_drop_rate, drop_path_rate: the backbone blocks' dropouts.
    """

    def __init__(
        self,
        *,
        num_frames: int = 16,
        shift_group: Optional[int] = None,
        shift_div: int = 8,
        temp_embed_frames: Optional[int] = None,
        img_size: int = 224,
        pos_embed_img_size: Optional[int] = None,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 600,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        head_depth: int = 1,
        head_num_heads: Optional[int] = None,
        head_hidden_dim: Optional[int] = None,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        shift_group = num_frames if shift_group is None else shift_group
        temp_embed_frames = num_frames if temp_embed_frames is None else temp_embed_frames
        for name, run in (("shift_group", shift_group), ("temp_embed_frames", temp_embed_frames)):
            if num_frames % run:
                raise ValueError(f"num_frames {num_frames} is not a multiple of {name} {run}")
        self.num_frames = num_frames
        self.shift_group = shift_group
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )
        pos_side = (pos_embed_img_size or img_size) // patch_size
        self.pos_embed_grid = (pos_side, pos_side)
        # the release's arithmetic, (crop / 16) / (224 / 16), with this model's sizes
        self.pos_embed_scale = None
        if pos_embed_img_size not in (None, img_size):
            self.pos_embed_scale = (img_size / patch_size) / (pos_embed_img_size / patch_size)
            side = int(pos_side * self.pos_embed_scale)  # how F.interpolate sizes its output
            grid = self.patch_embed.grid_size
            if (side, side) != tuple(grid):
                raise ValueError(
                    f"img_size {img_size}: resizing pos_embed by (img_size / patch_size) / "
                    f"(pos_embed_img_size / patch_size) = {self.pos_embed_scale!r} gives a "
                    f"{side}x{side} grid, but the image has {grid[0]}x{grid[1]} patches"
                )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_side * pos_side + 1, embed_dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, temp_embed_frames, 1, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)

        attn_layer = partial(
            MixingAttention,
            num_frames=shift_group,
            shift_div=shift_div,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop_rate,
        )
        # stochastic depth rises linearly over the blocks
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            [
                Block(
                    embed_dim,
                    num_heads,
                    attn_layer=attn_layer,
                    mlp_ratio=mlp_ratio,
                    proj_drop=proj_drop_rate,
                    drop_path=p,
                )
                for p in dpr
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head_hidden_size = head_hidden_dim or embed_dim
        self.consensus = TemporalHead(
            embed_dim,
            num_classes,
            depth=head_depth,
            num_heads=head_num_heads or num_heads,
            hidden_dim=self.head_hidden_size,
            drop_rate=drop_rate,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights_vit_timm)  # linear layers: truncated normal, std 0.02

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {"cls_token", "pos_embed", "temp_embed", "consensus.cls_token"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.consensus.mlp_head[-1]

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            raise ValueError("XViT pools with its temporal head; global_pool is not supported")
        self.num_classes = num_classes
        self.consensus.mlp_head[-1] = (
            nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        )

    def embed(self, x: Tensor) -> Tensor:
        """Clips [B, C, T, H, W] -> frame tokens [(B T), 1 + N, D], position and time embedded.

        ``temp_embed``'s F entries go to every run of F consecutive frames, as the release's
        reshape of its (B T) frames into rows of its backbone's ``num_frames`` puts them.
        """
        frames = x.shape[2]
        if frames != self.num_frames:
            raise ValueError(f"this XViT takes clips of {self.num_frames} frames, got {frames}")
        x = self.patch_embed(rearrange(x, "b c t h w -> (b t) c h w"))
        pos_embed = self.pos_embed
        if self.pos_embed_scale is not None:
            pos_embed = rescale_pos_embed(pos_embed, self.pos_embed_scale)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos_embed
        # the release applies its dropout before adding the time embedding
        run = self.temp_embed.shape[1]
        x = rearrange(self.pos_drop(x), "(n f) p d -> n f p d", f=run) + self.temp_embed
        return rearrange(x, "n f p d -> (n f) p d")

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return rearrange(self.norm(x), "(b t) p d -> b t p d", t=self.num_frames)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.consensus(self.head_drop(x[:, :, 0]), pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def xvit(**kwargs) -> XViT:
    """XViT with the given keyword arguments (see :class:`XViT`).

    The defaults are a ViT-B/16 on 16 frames at 224 in one shift group, with one time embedding
    per frame; the presets below hold the released models' settings.
    """
    return XViT(**kwargs)


# the released B/16's settings common to its Kinetics-600 and SSv2 models
_RELEASED_B16 = dict(
    num_frames=16,
    temp_embed_frames=8,  # the backbone's default num_frames; the builder does not pass the clip's
    img_size=224,
    pos_embed_img_size=224,
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    head_depth=1,
    head_num_heads=12,
    head_hidden_dim=768,
    drop_rate=0.5,  # MODEL.DROPOUT_RATE; no dropout in the backbone
)


def xvit_base_16x224_k600(**kwargs) -> XViT:
    """The released XViT-B/16, 16 frames at 224, Kinetics-600 (``xvit_b16_16_k600.pth``).

    Its config ``configs/Kinetics/xvit_B16_16x16_k600.yaml``: 16 frames shifted in two groups of 8
    (``NUM_SEGMENTS: 8``), ``SHIFT_DIV: 8``, 600 classes; ``temp_embed`` of 8 entries.
    """
    config = dict(_RELEASED_B16, shift_group=8, shift_div=8, num_classes=600)
    return XViT(**{**config, **kwargs})


def xvit_base_16x224_ssv2(**kwargs) -> XViT:
    """The released XViT-B/16, 16 frames at 224, Something-Something-v2 (``xvit_b16_16_ss2.pth``).

    Its config ``configs/SSv2/xvit_B16_16x16.yaml``: 16 frames in one shift group
    (``NUM_SEGMENTS: 16``), ``SHIFT_DIV: 4`` (half the key and value channels come from the
    neighbouring frames), 174 classes; ``temp_embed`` of 8 entries, added to frames 0-7 and again
    to frames 8-15.
    """
    config = dict(_RELEASED_B16, shift_group=16, shift_div=4, num_classes=174)
    return XViT(**{**config, **kwargs})


def xvit_base_8x224_k400(**kwargs) -> XViT:
    """XViT-B/16 on 8 frames at 224 for Kinetics-400: the XViT paper's "X-ViT (8x)" (its
    Table 5: 78.5 top-1, 425 GFLOPs over 1x3 views), the model of the ATS paper's Kinetics-400
    XViT row. The release has no checkpoint of it (its models are the 16-frame Kinetics-600 and
    SSv2 ones); its layout here is the released Kinetics-600 model's on 8 frames: one shift
    group of 8 (the release's ``NUM_SEGMENTS: 8``), ``SHIFT_DIV: 8``, ``temp_embed`` of 8
    entries, 400 classes.
    """
    config = dict(_RELEASED_B16, num_frames=8, shift_group=8, shift_div=8, num_classes=400)
    return XViT(**{**config, **kwargs})


# architecture name -> constructor, for the family registry and configs (MODEL.ARCH)
PRESETS = {
    "xvit": xvit,
    "xvit_base_16x224_k600": xvit_base_16x224_k600,
    "xvit_base_16x224_ssv2": xvit_base_16x224_ssv2,
    "xvit_base_8x224_k400": xvit_base_8x224_k400,
}


# ---------------------------------------------------------------- official checkpoints


def _fit_temp_embed(embed: Tensor, frames: int) -> Tensor:
    """A checkpoint's time embedding [1, F', 1, D] -> [1, frames, 1, D].

    The embedding is added to every run of as many frames as it has entries, so two changes keep
    the forward as it was: repeating it when F' divides ``frames`` (the release's 8 entries for a
    model built with one per frame), and keeping one run when the F' entries repeat with period
    ``frames`` (this project's older files, which stored the release's 8 tiled to 16). Any other
    length is interpolated along time (linear), an approximation; each change is logged.
    """
    have = embed.shape[1]
    if frames % have == 0:
        _logger.warning(
            "temp_embed tiled: temp_embed from %d to %d frames (repeated; same forward)",
            have,
            frames,
        )
        return embed.repeat(1, frames // have, 1, 1)
    if have % frames == 0 and torch.equal(embed, embed[:, :frames].repeat(1, have // frames, 1, 1)):
        _logger.warning(
            "temp_embed untiled: temp_embed from %d to %d frames (equal runs; same forward)",
            have,
            frames,
        )
        return embed[:, :frames]
    resized = resize_time_embed(
        rearrange(embed, "1 t 1 d -> 1 t d"), frames, mode="linear", name="temp_embed"
    )
    return rearrange(resized, "1 t d -> 1 t 1 d")


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: XViT) -> Dict[str, Tensor]:
    """Maps an official XViT state dict (or this project's own) onto ``model``'s keys and shapes.

    The one place that knows the release's layout: strips ``module.`` and ``base_model.``,
    skips the release's unused ``new_fc`` classifier (with a warning), and starts the video
    part afresh from an image ViT's state dict (:func:`from_image_vit`). The release's
    ``pos_embed`` (built for 224) and ``temp_embed`` (8 entries) load as they are into the
    presets, at any crop. Only when sizes differ from the model's, ``pos_embed`` is resized in
    2-D (bicubic, antialiased, once) and ``temp_embed`` fitted by :func:`_fit_temp_embed`, each
    with a warning. A key that maps to none of ``model``'s passes under its name in the file, so
    the strict check of :func:`ats_video.load_checkpoint` names it as the file does.

    Args:
        state_dict: the checkpoint's state dict (``load_checkpoint`` takes it out of its container).
        model: the XViT to load into; its shapes are the targets.
    Returns:
        The mapped state dict.
    """
    target = model.state_dict()
    out: Dict[str, Tensor] = {}
    skipped = []
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if name in UNUSED_OFFICIAL_KEYS:
            skipped.append(key)
            continue
        name = name.removeprefix(BACKBONE_PREFIX)
        out[name if name in target else key] = value
    if is_image_vit(out, ("temp_embed", "consensus.")):
        out = from_image_vit(out, model)
    if skipped:
        _logger.warning(
            "XViT checkpoint: skipped %s (unused by the official model's forward)",
            ", ".join(skipped),
        )
    if resizable(out.get("pos_embed"), target["pos_embed"]):
        out["pos_embed"] = resize_pos_embed(out["pos_embed"], model.pos_embed_grid)
    if resizable(out.get("temp_embed"), target["temp_embed"]):
        out["temp_embed"] = _fit_temp_embed(out["temp_embed"], target["temp_embed"].shape[1])
    return out


def from_image_vit(state_dict: Dict[str, Tensor], model: XViT) -> Dict[str, Tensor]:
    """An ImageNet ViT's state dict -> an XViT's, as the release starts from one (its
    ``XVIT.BASE_MODEL``): the ViT's weights are the backbone (space-time mixing has no weights
    of its own), its ImageNet classifier ``head`` is dropped (the classifier here is the
    temporal head's), and ``temp_embed`` (zeros) and the temporal head ``consensus`` keep the
    model's initialisation. Logs what came from what.
    """
    head = [k for k in state_dict if k.startswith("head.")]
    out = {k: v for k, v in state_dict.items() if k not in head}
    kept = keep_model_init(out, model, lambda k: k == "temp_embed" or k.startswith("consensus."))
    _logger.info(
        "XViT from an image ViT: the backbone (%s) from the ViT, its classifier %s dropped; "
        "from the model's initialisation: temp_embed and the temporal head (%d tensors)",
        block_range(list(out)),
        ", ".join(head) or "(none)",
        len(kept),
    )
    return out


def to_official(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """This project's XViT state dict -> the release's: the backbone under ``base_model.``, the
    temporal head as ``consensus``, and the release's ``new_fc`` classifier, which its forward
    never reads (zeros of the release's shape, [classes, embed_dim], for a strict load)."""
    out = {
        (key if key.startswith("consensus.") else BACKBONE_PREFIX + key): value
        for key, value in state_dict.items()
    }
    classes = state_dict["consensus.mlp_head.4.weight"].shape[0]
    dim = state_dict["norm.weight"].shape[0]
    out["new_fc.weight"] = torch.zeros(classes, dim)
    out["new_fc.bias"] = torch.zeros(classes)
    return out
