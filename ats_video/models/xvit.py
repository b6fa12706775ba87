"""XViT: a video transformer with space-time mixing attention.

Follows Bulat et al., "Space-time Mixing Attention for Video Transformer", NeurIPS 2021
(arXiv 2106.05968), and the layout of its official release (github.com/1adrianb/video-transformers).
Every frame runs through a ViT with its own CLS token. In each block's attention, the keys and
values of two slices of ``dim // shift_div`` channels are taken from the same spatial position in
frames t+1 and t-1 (zeros past the ends), so a query attends jointly over space and a local
window in time at the cost of spatial attention (the paper's Eq. 7). A small temporal
transformer (the release's "vit" consensus) reads the per-frame CLS tokens and classifies.

Layout of the released model, which this module reproduces (state-dict keys: the release's with
``base_model.`` stripped from the backbone; the temporal head keeps the name ``consensus``):
- backbone: ``cls_token``, ``pos_embed`` [1, 1 + N, D] (CLS included), ``temp_embed``
  [1, T, 1, D] added to every token of a frame, ``patch_embed.proj``, ``blocks.i.{norm1,
  attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm`` (LayerNorm eps 1e-6, qkv bias);
- the backbone's classifier is a dropout on each frame's CLS feature (``head_drop`` here);
- ``consensus``: ``cls_token``, ``temporal_encoder.j`` (ViT blocks without qkv bias, LayerNorm
  eps 1e-5), ``mlp_head`` = LayerNorm, Linear, GELU, Dropout, Linear (indices 0, 1, 4).
The released Kinetics-600 model takes 16 frames but shifts within groups of 8 (its
``NUM_SEGMENTS: 8``): frames 7 and 8 see zeros from each other, as at a clip's ends
(``shift_group``); the temporal head sees all 16 CLS tokens.

NOTE: the official code reshapes ``(B T)`` with a fixed ``num_frames`` that two stored versions
of its model builder set differently (8 by default, or the clip's 16), so the released
``temp_embed`` may have 8 or 16 entries; :func:`checkpoint_filter_fn` accepts both (8 entries
are tiled over the two groups, which is what the official forward computes in that case).
NOTE: the release's checkpoint also holds ``new_fc.{weight,bias}``, a classifier its forward
never uses with the "vit" consensus; :func:`checkpoint_filter_fn` skips those two keys and says so.
NOTE: the paper's summary token and its other temporal-attention variants are not part of the
released model and are not implemented.
"""

import logging
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
    """

    def __init__(
        self,
        *,
        num_frames: int = 16,
        shift_group: Optional[int] = None,
        shift_div: int = 8,
        img_size: int = 224,
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
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        shift_group = num_frames if shift_group is None else shift_group
        if num_frames % shift_group:
            raise ValueError(
                f"num_frames {num_frames} is not a multiple of shift_group {shift_group}"
            )
        self.num_frames = num_frames
        self.shift_group = shift_group
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, num_frames, 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

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
        """Clips [B, C, T, H, W] -> frame tokens [(B T), 1 + N, D] with position and time embeddings."""
        batch, _, frames = x.shape[:3]
        if frames != self.num_frames:
            raise ValueError(f"this XViT takes clips of {self.num_frames} frames, got {frames}")
        x = self.patch_embed(rearrange(x, "b c t h w -> (b t) c h w"))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        # the release applies its dropout before adding the time embedding
        x = rearrange(self.pos_drop(x), "(b t) p d -> b t p d", t=frames) + self.temp_embed
        return rearrange(x, "b t p d -> (b t) p d")

    def forward_features(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
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
    """XViT with the given keyword arguments (see :class:`XViT`); defaults are the B/16 release's."""
    return XViT(**kwargs)


def xvit_base_16x224_k600(**kwargs) -> XViT:
    """The released XViT-B/16, 16 frames at 224, Kinetics-600 (``xvit_b16_16_k600.pth``).

    Its 16 frames are shifted in two groups of 8 (the release's ``NUM_SEGMENTS: 8``); the
    dropout before and inside the temporal head is the release's ``DROPOUT_RATE: 0.5``.
    """
    config = dict(
        num_frames=16,
        shift_group=8,
        shift_div=8,
        img_size=224,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        num_classes=600,
        head_depth=1,
        head_num_heads=12,
        head_hidden_dim=768,
        drop_rate=0.5,
    )
    return XViT(**{**config, **kwargs})


# architecture name -> constructor, for the family registry and configs (MODEL.ARCH)
PRESETS = {"xvit": xvit, "xvit_base_16x224_k600": xvit_base_16x224_k600}


# ---------------------------------------------------------------- official checkpoints


def _fit_temp_embed(embed: Tensor, num_frames: int, shift_group: int) -> Tensor:
    """[1, T', 1, D] time embedding -> [1, num_frames, 1, D]."""
    frames = embed.shape[1]
    if frames == shift_group and num_frames % frames == 0:
        # the release reshapes (B T) by its own num_frames and adds the embedding to each group
        _logger.warning(
            "XViT checkpoint: temp_embed of %d frames tiled over %d groups of %d frames",
            frames,
            num_frames // frames,
            frames,
        )
        return embed.repeat(1, num_frames // frames, 1, 1)
    resized = resize_time_embed(
        rearrange(embed, "1 t 1 d -> 1 t d"), num_frames, mode="linear", name="temp_embed"
    )
    return rearrange(resized, "1 t d -> 1 t 1 d")


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: XViT) -> Dict[str, Tensor]:
    """Maps an official XViT state dict (or this project's own) onto ``model``'s keys and shapes.

    The one place that knows the release's layout: strips ``module.`` and ``base_model.``,
    skips the release's unused ``new_fc`` classifier (with a warning), resizes ``pos_embed`` in
    2-D and ``temp_embed`` along time when sizes differ (and says so). A key that maps to none of
    ``model``'s passes under its name in the file, so the strict check of
    :func:`ats_video.models.load_checkpoint` names it as the file does.

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
    if skipped:
        _logger.warning(
            "XViT checkpoint: skipped %s (unused by the official model's forward)",
            ", ".join(skipped),
        )
    if resizable(out.get("pos_embed"), target["pos_embed"]):
        out["pos_embed"] = resize_pos_embed(out["pos_embed"], model.patch_embed.grid_size)
    if resizable(out.get("temp_embed"), target["temp_embed"]):
        out["temp_embed"] = _fit_temp_embed(out["temp_embed"], model.num_frames, model.shift_group)
    return out
