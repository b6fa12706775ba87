"""TimeSformer: a video transformer with divided space-time attention.

Follows Bertasius, Wang and Torresani, "Is Space-Time Attention All You Need for Video
Understanding?" (ICML 2021, arXiv 2102.05095), with the parameter names of the official code
(facebookresearch/TimeSformer), so its released ``.pyth`` checkpoints map onto this model by
stripping their ``model.`` prefix (see :func:`checkpoint_filter_fn`).

A clip [B, C, T, H, W] becomes one CLS token and T x S patch tokens (S = h x w patches per
frame), kept in the layout ``b (t s) d``. Each block runs
1. temporal attention over the T frames at each spatial position (CLS takes no part), whose
   result passes through ``temporal_fc`` before its residual;
2. spatial attention within each frame, with a copy of CLS in every frame; the CLS outputs of
   the frames are averaged;
3. the MLP on every token.
This file is the plain backbone; ``ats_video.patch.timesformer`` puts ATS into it.

NOTE: stochastic depth draws one decision per clip for each residual branch. The official code
draws it per spatial position (temporal branch) and per frame (spatial branch) because it
applies DropPath to the reshaped tensors.
NOTE: a model takes clips of the size it was built for. The official code resizes pos_embed and
time_embed at every forward when the input differs; here :func:`checkpoint_filter_fn` resizes
them once, when a checkpoint is loaded.
"""

from functools import partial
from typing import Callable, Dict, Iterable, Optional, Set

import logging

import torch
from einops import rearrange, reduce, repeat
from timm.layers import Attention, DropPath, Mlp, trunc_normal_
from timm.models.vision_transformer import init_weights_vit_timm
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ats_video.models.embeddings import resizable, resize_pos_embed, resize_time_embed
from ats_video.models.from_image import block_range, is_image_vit, keep_model_init

LayerNorm = partial(nn.LayerNorm, eps=1e-6)
_logger = logging.getLogger(__name__)
OFFICIAL_PREFIX = "model."  # the release wraps its VisionTransformer as ``self.model``


class PatchEmbed(nn.Module):
    """Frames to patch tokens with one 2-D convolution shared by all frames.

    [B, C, T, H, W] -> [B, T, S, D], S = (H / patch) x (W / patch).
    """

    def __init__(
        self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        if (h, w) != (self.img_size, self.img_size):
            raise ValueError(
                f"this model takes {self.img_size}x{self.img_size} frames, got {h}x{w}"
            )
        x = self.proj(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) d gh gw -> b t (gh gw) d", t=t)


class DividedSpaceTimeBlock(nn.Module):
    """One TimeSformer block: temporal attention, then spatial attention, then the MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        norm_layer: Callable[..., nn.Module] = LayerNorm,
        attn_layer: Callable[..., nn.Module] = Attention,
    ):
        super().__init__()
        attention = partial(
            attn_layer,
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.temporal_norm1 = norm_layer(dim)
        self.temporal_attn = attention()
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = norm_layer(dim)
        self.attn = attention()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """[B, 1 + T*S, D] -> [B, 1 + T*S, D], CLS first, patches as ``(t s)``."""
        cls, patches = x[:, :1], x[:, 1:]
        t = num_frames

        xt = rearrange(patches, "b (t s) d -> (b s) t d", t=t)
        res = rearrange(self.temporal_attn(self.temporal_norm1(xt)), "(b s) t d -> b (t s) d", s=patches.shape[1] // t)
        # the official order: stochastic depth before temporal_fc, whose bias is always added
        patches = patches + self.temporal_fc(self.drop_path(res))

        xs = torch.cat(
            [
                repeat(cls, "b 1 d -> (b t) 1 d", t=t),
                rearrange(patches, "b (t s) d -> (b t) s d", t=t),
            ],
            dim=1,
        )
        res = self.attn(self.norm1(xs))
        res = torch.cat(
            [
                reduce(res[:, :1], "(b t) 1 d -> b 1 d", "mean", t=t),
                rearrange(res[:, 1:], "(b t) s d -> b (t s) d", t=t),
            ],
            dim=1,
        )
        x = torch.cat([cls, patches], dim=1) + self.drop_path(res)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TimeSformer(nn.Module):
    """TimeSformer with divided space-time attention, on clips [B, C, T, H, W]."""

    def __init__(
        self,
        *,
        num_frames: int = 8,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 400,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer: Callable[..., nn.Module] = LayerNorm,
        act_layer: Callable[..., nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.time_drop = nn.Dropout(drop_rate)

        # stochastic depth grows with depth; on the CPU so that a model can be built on "meta"
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            [
                DividedSpaceTimeBlock(
                    embed_dim,
                    num_heads,
                    mlp_ratio,
                    qkv_bias,
                    drop_rate,
                    attn_drop_rate,
                    rates[i],
                    act_layer,
                    norm_layer,
                )
                for i in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights_vit_timm)  # linear layers: truncated normal, std 0.02
        # temporal attention starts as the identity in all blocks but the first, as officially,
        # so a model initialised from an image ViT first computes what the ViT does per frame
        for block in self.blocks[1:]:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {"pos_embed", "cls_token", "time_embed"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool not in (None, "token"):
            raise ValueError("TimeSformer reads its CLS token: global_pool must be 'token'")
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def embed(self, x: Tensor) -> Tensor:
        """Clips [B, C, T, H, W] -> tokens [B, 1 + T*S, D] with space and time embeddings."""
        if x.shape[2] != self.num_frames:
            raise ValueError(f"this model takes {self.num_frames} frames, got {x.shape[2]}")
        patches = self.pos_drop(self.patch_embed(x) + self.pos_embed[:, None, 1:])
        patches = self.time_drop(patches + rearrange(self.time_embed, "1 t d -> 1 t 1 d"))
        cls = self.pos_drop((self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1))
        return torch.cat([cls, rearrange(patches, "b t s d -> b (t s) d")], dim=1)

    def forward_blocks(self, x: Tensor, blocks: Iterable[nn.Module]) -> Tensor:
        """Tokens [B, 1 + T*S, D] through ``blocks`` (some of ``self.blocks``, in order)."""
        for block in blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, self.num_frames, use_reentrant=False)
            else:
                x = block(x, self.num_frames)
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """Clips [B, C, T, H, W] -> normalised tokens [B, 1 + T*S, D], CLS first."""
        return self.norm(self.forward_blocks(self.embed(x), self.blocks))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Tokens [B, L, D] -> logits [B, num_classes] (or the CLS features [B, D])."""
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def timesformer(**kwargs) -> TimeSformer:
    """A TimeSformer; every keyword argument of :class:`TimeSformer` may be given."""
    return TimeSformer(**kwargs)


def timesformer_base_8x224(**kwargs) -> TimeSformer:
    """TimeSformer (ViT-B/16), 8 frames sampled every 32, 224 px: the released K400 "base" model."""
    return TimeSformer(**{"num_frames": 8, "img_size": 224, **kwargs})


def timesformer_hr_16x448(**kwargs) -> TimeSformer:
    """TimeSformer-HR (ViT-B/16), 16 frames sampled every 16, 448 px."""
    return TimeSformer(**{"num_frames": 16, "img_size": 448, **kwargs})


def timesformer_l_96x224(**kwargs) -> TimeSformer:
    """TimeSformer-L (ViT-B/16), 96 frames sampled every 4, 224 px."""
    return TimeSformer(**{"num_frames": 96, "img_size": 224, **kwargs})


# architecture name -> constructor, for the family registry and configs (MODEL.ARCH)
PRESETS = {
    "timesformer": timesformer,
    "timesformer_base_8x224": timesformer_base_8x224,
    "timesformer_hr_16x448": timesformer_hr_16x448,
    "timesformer_l_96x224": timesformer_l_96x224,
}


def _strip_prefix(state_dict: Dict[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def checkpoint_filter_fn(state_dict: Dict[str, Tensor], model: TimeSformer) -> Dict[str, Tensor]:
    """Maps a TimeSformer state dict (official ``.pyth`` or this project's) onto ``model``.

    Strips the official wrapper's ``model.`` prefix, initialises the temporal part from an
    image ViT's state dict (:func:`from_image_vit`), resizes ``pos_embed`` over the 2-D patch
    grid (bicubic, the CLS entry kept) and ``time_embed`` along time (nearest, as the official
    code does), and logs a warning for each resize. Other keys pass unchanged, so a strict load
    afterwards reports anything that does not match.
    """
    state_dict = _strip_prefix(_strip_prefix(dict(state_dict), "module."), "model.")
    if is_image_vit(state_dict, ("time_embed", "blocks.0.temporal")):
        state_dict = from_image_vit(state_dict, model)
    if resizable(state_dict.get("pos_embed"), model.pos_embed):
        state_dict["pos_embed"] = resize_pos_embed(
            state_dict["pos_embed"], model.patch_embed.grid_size
        )
    if resizable(state_dict.get("time_embed"), model.time_embed):
        # nearest, as the official code resizes time_embed
        state_dict["time_embed"] = resize_time_embed(
            state_dict["time_embed"], model.num_frames, mode="nearest", name="time_embed"
        )
    return state_dict


def from_image_vit(state_dict: Dict[str, Tensor], model: TimeSformer) -> Dict[str, Tensor]:
    """An ImageNet ViT's state dict -> a TimeSformer's, as the release's ``load_pretrained``
    initialises divided space-time attention: each block's ``temporal_attn`` and
    ``temporal_norm1`` are copies of its ``attn`` and ``norm1``; ``time_embed`` (zeros) and
    ``temporal_fc`` (zeros in every block but the first) keep the model's initialisation. The
    ViT's ``pos_embed`` is resized afterwards like any other's; its ImageNet classifier is what
    ``fresh_classifier`` replaces. Logs what came from what.

    NOTE: the release resizes an image ViT's ``pos_embed`` along the flattened patch sequence
    (nearest); here it is resized over the 2-D patch grid (bicubic), as for video checkpoints.
    """
    out = dict(state_dict)
    copied = []
    for key, value in state_dict.items():
        for spatial, temporal in ((".attn.", ".temporal_attn."), (".norm1.", ".temporal_norm1.")):
            if key.startswith("blocks.") and spatial in key:
                out[key.replace(spatial, temporal)] = value.clone()
                copied.append(key)
    kept = keep_model_init(out, model, lambda k: k == "time_embed" or ".temporal_fc." in k)
    _logger.info(
        "TimeSformer from an image ViT, as the release's load_pretrained: temporal_attn <- attn "
        "and temporal_norm1 <- norm1 in %s (%d tensors); from the model's initialisation "
        "(temporal_fc zero in blocks 1 on): %s",
        block_range(copied),
        len(copied),
        f"time_embed, temporal_fc in {block_range(kept)}" if "time_embed" in kept else kept,
    )
    return out


def to_official(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """This project's TimeSformer state dict -> the release's: its key names are the release's,
    under the ``model.`` prefix of the release's wrapper."""
    return {OFFICIAL_PREFIX + key: value for key, value in state_dict.items()}
