"""What every model family shares: the registry, the default budget, empty batches, and the
kept-token record read through DDP and torch.compile wrappers."""

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
import torch.distributed as dist
from timm.models.vision_transformer import VisionTransformer

from ats_video import apply_ats, kept_tokens
from ats_video.families import FAMILIES, create_model, family_of
from ats_video.flops import gflops_as_run
from ats_video.models import TimeSformer, XViT

VIDEO = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=7)
MODELS = {  # name: (builder, input shape without the batch, modes)
    "deit": (lambda: VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=7),
             (3, 32, 32), ["frame"]),
    "timesformer": (lambda: create_model("timesformer", **VIDEO), (3, 4, 32, 32), ["frame", "shared"]),
    "xvit": (lambda: create_model("xvit", **VIDEO), (3, 4, 32, 32), ["frame", "shared"]),
}
CASES = [(name, mode) for name, (_, _, modes) in MODELS.items() for mode in [None, *modes]]


def build(name, mode, seed=0):
    torch.manual_seed(seed)
    model = MODELS[name][0]().eval()
    return model if mode is None else apply_ats(model, [1, 2], 5, mode=mode)


def test_registry():
    assert [f.name for f in FAMILIES] == ["timesformer", "xvit", "vit"]
    assert isinstance(create_model("timesformer", **VIDEO), TimeSformer)
    assert isinstance(create_model("xvit", **VIDEO), XViT)
    assert family_of(create_model("deit_tiny_patch16_224", img_size=32)).name == "vit"
    with pytest.raises(ValueError, match="unknown architecture 'resnet_9000'"):
        create_model("resnet_9000")
    with pytest.raises(ValueError, match="not a ViT"):
        create_model("resnet18")
    with pytest.raises(TypeError, match="Linear is not a supported model"):
        family_of(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", MODELS)
def test_default_budget_is_the_initial_patch_count_in_every_block(name):
    """The paper's and the official code's K: the initial patch tokens (16 here), not a ratio of
    the tokens entering each block, so blocks keep what repeated picks leave of K = 16."""
    model = apply_ats(build(name, None), [1, 2, 3])
    assert {config.k for config in model.ats_blocks.values()} == {16}
    with torch.no_grad():
        model(torch.randn(2, *MODELS[name][1]))
    for record in kept_tokens(model):
        assert (record.count >= 1).all() and (record.count <= 16).all()


@pytest.mark.parametrize("name, mode", CASES)
def test_empty_batch(name, mode):
    model = build(name, mode)
    with torch.no_grad():
        logits = model(torch.randn(0, *MODELS[name][1]))
    assert logits.shape == (0, 7)
    kept = kept_tokens(model)
    assert len(kept) == (0 if mode is None else 2) and all(r.count.shape[0] == 0 for r in kept)
    assert gflops_as_run(model, kept, 0).shape == (0,)


@pytest.mark.parametrize("name, mode", CASES)
def test_bfloat16_autocast(name, mode):
    model = build(name, mode)
    x = torch.randn(3, *MODELS[name][1])
    with torch.no_grad():
        want = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
    assert got.shape == want.shape and got.isfinite().all()
    assert (got.float() - want).abs().max() < 0.1 * want.abs().max()


@pytest.fixture
def process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", MODELS)
def test_kept_tokens_through_ddp(name, process_group):
    model = build(name, MODELS[name][2][-1])
    x = torch.randn(3, *MODELS[name][1])
    with torch.no_grad():
        model(x)
        want = kept_tokens(model)
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        wrapped(x)
    got = kept_tokens(wrapped)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        assert a.block == b.block and torch.equal(a.count, b.count) and torch.equal(a.positions, b.positions)
