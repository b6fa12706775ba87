"""FLOP counts as run: published figures, fvcore, and what the kept counts imply."""

import ats_video  # noqa: F401  (before timm)
import pytest
import timm
import torch
from fvcore.nn import FlopCountAnalysis
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from ats_video import apply_ats, kept_tokens
from ats_video.tokens import KeptTokens
from ats_video.flops import count_gflops, gflops_as_run
from ats_video.models import timesformer, timesformer_base_8x224, xvit

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


def sharpened(model):
    """Random weights far from the init: peaked CLS attention, so kept counts vary."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.double().eval()


VIDEO = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=7)
CASES = {  # name: (model builder, input shape, apply_ats arguments or None)
    "deit": (lambda: VisionTransformer(**TINY), (3, 32, 32), dict(blocks=[2, 4, 5], k=0.6)),
    "deit-distilled": (lambda: VisionTransformerDistilled(**TINY), (3, 32, 32), dict(blocks=[2, 4, 5], k=0.6)),
    "deit-plain": (lambda: VisionTransformer(**TINY), (3, 32, 32), None),
    "timesformer-frame": (lambda: timesformer(**VIDEO), (3, 4, 32, 32), dict(blocks=[1, 2], k=5)),
    "timesformer-shared": (lambda: timesformer(**VIDEO), (3, 4, 32, 32), dict(blocks=[1, 2], k=5, mode="shared")),
    "timesformer-plain": (lambda: timesformer(**VIDEO), (3, 4, 32, 32), None),
    "xvit-frame": (lambda: xvit(**VIDEO, shift_group=2), (3, 4, 32, 32), dict(blocks=[1, 3], k=6)),
    "xvit-shared": (lambda: xvit(**VIDEO), (3, 4, 32, 32), dict(blocks=[1, 2], k=0.5, mode="shared")),
    "xvit-plain": (lambda: xvit(**VIDEO), (3, 4, 32, 32), None),
}


@pytest.mark.parametrize("name", CASES)
def test_computed_gflops_equal_the_counted_ones(name):
    """gflops_as_run from the kept-token record equals FlopCounterMode's count of each sample."""
    build, shape, ats = CASES[name]
    torch.manual_seed(0)
    model = sharpened(build())
    x = torch.randn(4, *shape, dtype=torch.float64)
    plain = count_gflops(model, x[:1]).item()
    assert gflops_as_run(model, [], 1).item() == pytest.approx(plain, rel=1e-12)
    if ats is not None:
        apply_ats(model, **ats)
    counted = count_gflops(model, x)
    with torch.no_grad():
        model(x)
    kept = kept_tokens(model)
    assert torch.allclose(gflops_as_run(model, kept, len(x)), counted, rtol=1e-12, atol=0)
    if ats is not None:
        assert len(counted.unique()) > 1, "the case needs samples that keep different counts"
        assert counted.max() < plain
        assert gflops_as_run(model, [], 1).item() == pytest.approx(plain, rel=1e-12)  # without ATS


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[2] is not None])
def test_computed_gflops_stay_on_the_records_device(name):
    """On a GPU the kept-token records live on the model's device: the per-sample figures must be
    computed there, never mixed with tensors made on the CPU (the meta device makes any such mix
    an error here, as CUDA does)."""
    build, shape, ats = CASES[name]
    torch.manual_seed(0)
    model = apply_ats(sharpened(build()), **ats)
    with torch.no_grad():
        model(torch.randn(2, *shape, dtype=torch.float64))
    on_cpu = kept_tokens(model)
    on_meta = [KeptTokens(r.block, r.count.to("meta"), r.positions.to("meta"), r.grid) for r in on_cpu]
    gflops = gflops_as_run(model, on_meta, 2)
    assert gflops.device.type == "meta" and gflops.shape == (2,)
    assert gflops_as_run(model, on_cpu, 2).device.type == "cpu"


def test_computed_gflops_of_the_released_sizes():
    with torch.device("meta"):
        deit = timm.create_model("deit_small_patch16_224")
        base = timesformer_base_8x224()
    assert gflops_as_run(deit, [], 1).item() == pytest.approx(4.6, abs=0.05)
    assert gflops_as_run(base, [], 2).tolist() == pytest.approx([195.8] * 2, abs=0.05)
