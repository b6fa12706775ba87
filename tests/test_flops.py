"""FLOP counts as run: published figures, fvcore, and what the kept counts imply."""

import ats_video  # noqa: F401  (before timm)
import pytest
import timm
import torch
from fvcore.nn import FlopCountAnalysis
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from ats_video import apply_ats
from ats_video.flops import count_gflops

TINY = dict(img_size=32, patch_size=4, embed_dim=48, depth=6, num_heads=3, num_classes=10)


def fvcore_gflops(model, images):
    analysis = FlopCountAnalysis(model, images)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    norms = analysis.by_operator().get("layer_norm", 0)  # fvcore counts norms; the papers do not
    return (analysis.total() - norms) / 1e9


def test_deit_small_matches_published_figure_and_fvcore():
    model = timm.create_model("deit_small_patch16_224").eval()
    images = torch.randn(1, 3, 224, 224)
    ours = count_gflops(model, images).item()
    assert ours == pytest.approx(4.6, abs=0.05)  # DeiT paper, Table 1
    for block in model.blocks:  # unfused attention: fvcore sees its matmuls
        block.attn.fused_attn = False
    assert ours == pytest.approx(fvcore_gflops(model, images), rel=1e-6)


def implied_gflops(model, counts, num_classes):
    """Multiply-adds of one sample given the tokens each ATS block kept, from the architecture."""
    d, p = model.embed_dim, model.num_prefix_tokens
    n = model.patch_embed.num_patches
    patch = model.patch_embed.proj
    total = n * d * patch.in_channels * patch.kernel_size[0] * patch.kernel_size[1]
    tokens = p + n
    for i, block in enumerate(model.blocks):
        rows = p + counts[i] if i in counts else tokens
        hidden = block.mlp.fc1.out_features
        total += tokens * 3 * d * d  # qkv for every input token
        if i in counts:
            total += tokens * d  # the CLS attention row that scores the tokens
        total += 2 * rows * tokens * d  # attention of the kept rows over all keys
        total += rows * d * d + 2 * rows * d * hidden  # projection and MLP on kept rows
        tokens = rows
    heads = 2 if isinstance(model, VisionTransformerDistilled) else 1
    return (total + heads * d * num_classes) / 1e9


@pytest.mark.parametrize("cls", [VisionTransformer, VisionTransformerDistilled])
def test_ats_flops_follow_kept_counts(cls):
    torch.manual_seed(0)
    model = cls(**TINY).eval()
    for block in model.blocks:
        block.attn.qkv.weight.data *= 6  # varied kept counts
    apply_ats(model, [2, 4, 5], 0.6)
    images = torch.randn(4, 3, 32, 32)
    counted = count_gflops(model, images)
    with torch.no_grad():
        model(images)
    for b in range(len(images)):
        counts = {r.block: r.count[b].item() for r in model.ats_kept}
        assert counted[b].item() == pytest.approx(implied_gflops(model, counts, 10), rel=1e-9)
    plain = count_gflops(cls(**TINY).eval(), images[:1]).item()
    assert counted.max().item() < plain
