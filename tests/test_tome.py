"""Token merging (ToMe) in TimeSformer and XViT: the merge against naive code written from the
paper, and the video models on packed tokens (plain at r = 0, r tokens fewer per frame and
block, positions kept, batch-independent, GFLOPs as counted, configs)."""

import math

import ats_video  # noqa: F401  (before timm)
import pytest
import torch
import torch.nn.functional as F

from ats_video import apply_ats, kept_tokens
from ats_video.build import build_model, describe_ats
from ats_video.config import load_config
from ats_video.flops import count_gflops, gflops_as_run
from ats_video.merge import merge_tokens, proportional_qk
from ats_video.models.timesformer import timesformer
from ats_video.models.xvit import xvit
from ats_video.patch.tome import apply_tome
from ats_video.tokens import KeptTokens

VIDEO = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=7)
BUILD = {"timesformer": lambda: timesformer(**VIDEO), "xvit": lambda: xvit(**VIDEO, shift_group=2)}


def naive_merge(x, size, metric, r):
    """One sequence [n, D], CLS first: patches alternate A, B; each A token's most similar B
    token (cosine); the r best A tokens averaged into theirs, weighted by size."""
    a = list(range(1, len(x), 2))
    b = list(range(2, len(x), 2))
    unit = metric / metric.norm(dim=-1, keepdim=True)
    best = {i: max(b, key=lambda j: float(unit[i] @ unit[j])) for i in a}
    score = {i: float(unit[i] @ unit[best[i]]) for i in a}
    merged = sorted(a, key=lambda i: -score[i])[:r]
    total = {j: x[j] * size[j] for j in range(len(x)) if j not in merged}
    weight = {j: size[j].clone() for j in total}
    for i in merged:
        total[best[i]] = total[best[i]] + x[i] * size[i]
        weight[best[i]] = weight[best[i]] + size[i]
    left = sorted(total)
    return torch.stack([total[j] / weight[j] for j in left]), torch.stack([weight[j] for j in left]), left


def test_the_merge_equals_naive_code_from_the_paper():
    torch.manual_seed(0)
    x, metric = torch.randn(3, 10, 6, dtype=torch.float64), torch.randn(3, 10, 5, dtype=torch.float64)
    size = torch.randint(1, 4, (3, 10)).double()
    position = torch.arange(10).view(1, 10, 1).expand(3, 10, 3).clone()
    for r in (1, 3, 4):
        got, got_size, got_position = merge_tokens(x, size, position, metric, r)
        assert got.shape == (3, 10 - r, 6)
        for i in range(3):
            want, want_size, left = naive_merge(x[i], size[i], metric[i], r)
            torch.testing.assert_close(got[i], want)
            assert torch.equal(got_size[i], want_size) and got_position[i, :, 0].tolist() == left
            assert got_size[i].sum() == size[i].sum()  # every patch is still counted once
    capped, _, _ = merge_tokens(x, size, position, metric, 50)
    assert capped.shape[1] == 10 - 9 // 2  # r is capped at half the non-prefix tokens
    same = merge_tokens(x, size, position, metric, 0)
    assert all(a is b for a, b in zip(same, (x, size, position)))


def test_proportional_attention_adds_the_log_size_to_every_key():
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 7, 2, 8, dtype=torch.float64).unbind(0)
    size = torch.randint(1, 5, (7,)).double()
    q2, k2 = proportional_qk(q, k, size)
    got = F.scaled_dot_product_attention(q2.transpose(0, 1), k2.transpose(0, 1), v.transpose(0, 1))
    logits = q.transpose(0, 1) @ k.permute(1, 2, 0) / math.sqrt(8) + size.log()
    torch.testing.assert_close(got, logits.softmax(-1) @ v.transpose(0, 1))


@pytest.mark.parametrize("family", BUILD)
def test_merging_nothing_is_the_plain_model(family):
    torch.manual_seed(2)
    model = BUILD[family]().double().eval()
    clips = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        plain = model(clips)
        got = apply_tome(model, [1, 2], 0)(clips)
    torch.testing.assert_close(got, plain, rtol=1e-10, atol=1e-10)
    assert [r.count.tolist() for r in kept_tokens(model)] == [[[16] * 4] * 2] * 2


@pytest.mark.parametrize("family", BUILD)
def test_merging_takes_r_tokens_of_every_frame_in_every_block(family):
    torch.manual_seed(3)
    model = BUILD[family]().double().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    apply_tome(model, [1, 2], 3)
    clips = torch.randn(3, 3, 4, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits = model(clips)
        records = kept_tokens(model)
        alone = model(clips[2:])
    assert logits.shape == (3, 7) and model.state_dict().keys() == state.keys()
    assert [r.block for r in records] == [1, 2]
    for record, left in zip(records, (13, 10)):
        assert record.count.tolist() == [[left] * 4] * 3
        t, h, w = record.positions.unbind(-1)  # in (t, h, w) order, one token per position
        assert bool((t >= 0).all() and (h < 4).all() and (w < 4).all())
        flat = (t * 4 + h) * 4 + w
        assert bool((flat[:, 1:] > flat[:, :-1]).all())
    torch.testing.assert_close(alone, logits[2:], rtol=1e-9, atol=1e-9)  # whatever else is in the batch
    # gradients reach the weights through the merges
    model.train()
    model(clips).sum().backward()
    assert all(p.grad is not None for p in model.blocks[3].parameters())


@pytest.mark.parametrize("family", BUILD)
def test_computed_gflops_equal_the_counted_ones(family):
    torch.manual_seed(4)
    model = BUILD[family]().double().eval()
    clips = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    plain = count_gflops(model, clips[:1]).item()
    apply_tome(model, [1, 2], 2)
    counted = count_gflops(model, clips)
    with torch.no_grad():
        model(clips)
    assert torch.allclose(gflops_as_run(model, kept_tokens(model), 2), counted, rtol=1e-12, atol=0)
    assert counted.max() < plain
    assert gflops_as_run(model, [], 1).item() == pytest.approx(plain, rel=1e-12)  # without merging
    # on a GPU the records live on the model's device: the figures are computed there (the meta
    # device makes any mix with CPU tensors an error, as CUDA does)
    on_meta = [KeptTokens(r.block, r.count.to("meta"), r.positions.to("meta"), r.grid) for r in kept_tokens(model)]
    assert gflops_as_run(model, on_meta, 2).device.type == "meta"


def test_bad_arguments_are_named():
    model = BUILD["timesformer"]()
    with pytest.raises(ValueError, match="r must be an integer >= 0"):
        apply_tome(model, [1], -1)
    with pytest.raises(ValueError, match="block 4 out of range"):
        apply_tome(model, [4], 1)
    with pytest.raises(ValueError, match="has ATS"):
        apply_tome(apply_ats(BUILD["xvit"](), [1], 4), [1], 1)
    with pytest.raises(TypeError, match="TimeSformer and XViT"):
        apply_tome(torch.nn.Linear(2, 2), [1], 1)


TINY = ["MODEL.ARCH", "timesformer", "MODEL.PATCH_SIZE", "8", "MODEL.EMBED_DIM", "48", "MODEL.DEPTH", "4",
        "MODEL.NUM_HEADS", "3", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "ATS.BLOCKS", "[1, 2]"]  # fmt: skip


def test_the_config_selects_merging_and_checks_its_r():
    cfg = load_config("", [*TINY, "ATS.SELECTOR", "tome", "ATS.TOME_R", "2"])
    model = build_model(cfg)
    assert model.tome_blocks == {1: 2, 2: 2} and describe_ats(cfg, model) == "ToMe r=2 in blocks 1, 2"
    random = load_config("", [*TINY, "ATS.SELECTOR", "random", "ATS.K", "5"])
    assert describe_ats(random, build_model(random)) == "ATS K=5 in blocks 1, 2, per frame, random"
    for opts, key in (
        (["ATS.SELECTOR", "tome"], "ATS.TOME_R: must be an integer >= 1"),
        (["ATS.TOME_R", "2"], "ATS.TOME_R: is token merging's r"),
        (["ATS.SELECTOR", "tome", "ATS.TOME_R", "2", "ATS.K", "4"], "ATS.K, ATS.RATIO"),
        (["ATS.SELECTOR", "tome", "ATS.TOME_R", "2", "ATS.MODE", "shared"], "ATS.MODE"),
        (["ATS.SELECTOR", "tome", "ATS.TOME_R", "2", "MODEL.ARCH", "deit_tiny_patch16_224"], "ATS.SELECTOR"),
    ):
        with pytest.raises(ValueError, match=key):
            load_config("", [*TINY, *opts])
