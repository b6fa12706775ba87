"""ATS core and the DeiT path, checked against naive per-image code written from the paper."""

import math

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
import torch.nn.functional as F
from paper import naive_budget, naive_sample
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from ats_video import apply_ats, kept_tokens
from ats_video.ats import (
    ATSConfig,
    cls_attention,
    resolve_budget,
    sample_tokens,
    select_shared,
    select_tokens,
    random_tokens,
    significance_scores,
    topk_tokens,
)
from ats_video.models.timesformer import timesformer
from ats_video.patch.common import drop_path
from ats_video.tokens import Layout

TINY = dict(img_size=32, patch_size=4, embed_dim=48, depth=6, num_heads=3, num_classes=10)
ATS_BLOCKS = (2, 3, 4, 5)


# ---------------------------------------------------------------- references from the paper


def reference_logits(model, image, blocks, k):
    """One image through a timm ViT with ATS in ``blocks``, from the paper's equations.

    Builds the full attention matrix, scores with Eq. 3, samples with ``naive_sample`` and keeps
    the CLS, the other prefix tokens and the sampled tokens in their original order.
    """
    p = model.num_prefix_tokens
    x = model._pos_embed(model.patch_embed(image[None]))[0]  # [L, D]
    for i, block in enumerate(model.blocks):
        heads = block.attn.num_heads
        qkv = block.attn.qkv(block.norm1(x)).view(len(x), 3, heads, -1).permute(1, 2, 0, 3)
        q, k_, v = qkv  # [H, L, d]
        attn = (q @ k_.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1)  # [H, L, L]
        rows = list(range(len(x)))
        if i in blocks:
            weighted = attn[:, 0, p:] * v[:, p:].norm(dim=-1)  # [H, N]
            scores = (weighted / weighted.sum(-1, keepdim=True)).sum(0)
            kept = naive_sample(scores, naive_budget(k, len(x) - p))
            rows = list(range(p)) + [p + j for j in sorted(kept)]
        out = (attn[:, rows] @ v).transpose(0, 1).reshape(len(rows), -1)
        x = x[rows] + block.attn.proj(out)
        x = x + block.mlp(block.norm2(x))
    return model.forward_head(model.norm(x)[None])[0]


def tiny_model(cls, sharpen=True):
    torch.manual_seed(0)
    model = cls(**TINY).eval()
    if sharpen:  # random init attends almost uniformly; larger q, k make scores (and K') vary
        for block in model.blocks:
            block.attn.qkv.weight.data[: 2 * TINY["embed_dim"]] *= 6
    return model


# ---------------------------------------------------------------- the pure functions


def test_significance_scores_match_eq3():
    torch.manual_seed(0)
    cls_attn = torch.rand(2, 3, 7).softmax(-1)
    v = torch.randn(2, 3, 7, 5)
    got = significance_scores(cls_attn.transpose(1, 2), v.norm(dim=-1).transpose(1, 2), num_prefix_tokens=2)
    for b in range(2):
        for j in range(5):
            want = sum(
                cls_attn[b, h, 2 + j] * v[b, h, 2 + j].norm()
                / sum(cls_attn[b, h, 2 + i] * v[b, h, 2 + i].norm() for i in range(5))
                for h in range(3)
            )
            assert got[b, j].item() == pytest.approx(want.item(), rel=1e-5)
    assert got.sum(-1).tolist() == pytest.approx([3.0, 3.0], rel=1e-5)  # each head sums to 1


def test_sample_tokens_matches_naive_sampler():
    torch.manual_seed(0)
    scores = torch.rand(16, 30) ** 4  # skewed, so duplicates happen
    for k in [1, 5, 30, 47]:
        keep = sample_tokens(scores, k)
        for row, mask in zip(scores, keep):
            assert set(mask.nonzero().flatten().tolist()) == naive_sample(row, k)


def test_dominant_token_is_kept_alone():
    scores = torch.zeros(2, 10)
    scores[0, 3] = 5.0
    scores[1, 9] = 1.0
    keep = sample_tokens(scores, 10)
    assert keep.sum(-1).tolist() == [1, 1]
    assert keep[0, 3] and keep[1, 9]


def test_uniform_scores_with_k_equal_n_keep_all():
    assert sample_tokens(torch.ones(3, 196), 196).all()


def test_kept_count_never_exceeds_budget():
    torch.manual_seed(1)
    scores = torch.rand(64, 50) ** 3
    for k in [1, 8, 25, 50]:
        counts = sample_tokens(scores, k).sum(-1)
        assert (counts >= 1).all() and (counts <= k).all()


def test_per_sample_budgets():
    torch.manual_seed(2)
    scores = torch.rand(4, 20)
    ks = torch.tensor([1, 5, 20, 3])
    keep = sample_tokens(scores, ks)
    for row, k, mask in zip(scores, ks, keep):
        assert set(mask.nonzero().flatten().tolist()) == naive_sample(row, int(k))


def test_rows_do_not_depend_on_each_other():
    torch.manual_seed(3)
    scores = torch.rand(32, 40) ** 2
    batched = sample_tokens(scores, 17)
    alone = torch.cat([sample_tokens(row[None], 17) for row in scores])
    assert torch.equal(batched, alone)
    assert torch.equal(sample_tokens(scores, 17), batched)  # deterministic


def test_all_zero_scores_keep_tokens_without_nan():
    keep = sample_tokens(torch.zeros(2, 12), 4)
    assert (keep.sum(-1) == 4).all()
    keep = sample_tokens(torch.zeros(1, 12), 1)
    assert keep.sum() == 1


def test_budget_above_token_count():
    keep = sample_tokens(torch.rand(3, 5), 40)
    assert keep.all()  # 40 grid points over 5 tokens of comparable mass


def test_half_precision_chooses_as_float32():
    torch.manual_seed(4)
    scores = (torch.rand(8, 100) ** 3).half()
    assert torch.equal(sample_tokens(scores, 50), sample_tokens(scores.float(), 50))


def test_topk_keeps_highest_scores_and_breaks_ties_by_index():
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.9, 0.5]])
    assert topk_tokens(scores, 2).tolist() == [[False, True, False, True, False]]
    assert topk_tokens(scores, torch.tensor([9])).all()


def test_budget_rule():
    n = torch.tensor([196, 100, 10, 5])
    assert resolve_budget(0.5, n).tolist() == [98, 50, 8, 8]
    assert resolve_budget(0.25, torch.tensor([10])).tolist() == [8]  # floor of 8
    assert resolve_budget(0.5, torch.tensor([21])).tolist() == [11]  # 10.5 rounds up
    assert resolve_budget(30, n).tolist() == [30] * 4
    for bad in [0, -3, 0.0, 1.5, "8", True]:
        with pytest.raises((ValueError, TypeError)):
            resolve_budget(bad, n)


# ---------------------------------------------------------------- the DeiT path


@pytest.mark.parametrize("cls", [VisionTransformer, VisionTransformerDistilled])
@pytest.mark.parametrize("k", [1.0, 0.4, 20])
def test_model_matches_reference_per_image(cls, k):
    model = tiny_model(cls).double()
    images = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    apply_ats(model, ATS_BLOCKS, k)
    with torch.no_grad():
        got = model(images)
        want = torch.stack([reference_logits(model, image, ATS_BLOCKS, k) for image in images])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [VisionTransformer, VisionTransformerDistilled])
@pytest.mark.parametrize("selector", ["sample", "topk", "random"])
def test_batch_results_equal_single_image_results(cls, selector):
    model = apply_ats(tiny_model(cls), ATS_BLOCKS, 0.6, selector=selector)
    torch.manual_seed(5)
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        batched = model(images)
        kept_batched = [r.count for r in kept_tokens(model)]
        masks = {r.block: r.mask for r in kept_tokens(model)}
        alone = []
        for image in images:
            alone.append(model(image[None]))
            for record, counts in zip(kept_tokens(model), kept_batched):
                assert torch.equal(record.count[0], counts[len(alone) - 1])
                assert torch.equal(record.mask[0], masks[record.block][len(alone) - 1])
    counts = torch.stack(kept_batched)
    if selector == "sample":  # top-K keeps exactly K everywhere; sampling must exercise padding
        assert (counts != counts[:, :1]).any(), "the test needs samples with different kept counts"
    torch.testing.assert_close(batched, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_padding_never_reaches_real_tokens():
    model = apply_ats(tiny_model(VisionTransformer), ATS_BLOCKS, 0.6)
    torch.manual_seed(6)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        model(images)
    # every row beyond a sample's count is padding: position -1, and the counts match the positions
    for record in kept_tokens(model):
        assert record.grid == (1, 8, 8) and record.count.shape == (3, 1)
        assert torch.equal((record.positions[..., 0] >= 0).sum(-1), record.count[:, 0])
        assert torch.equal(record.mask.flatten(1).sum(-1), record.count[:, 0])
        for positions, count in zip(record.positions, record.count[:, 0]):
            real = positions[:count, 1] * 8 + positions[:count, 2]
            assert (positions[:count, 0] == 0).all() and (positions[count:] == -1).all()
            assert torch.equal(real, real.sort().values)  # original order kept
            assert (real < 64).all() and len(set(real.tolist())) == count


def test_kept_indices_shrink_through_blocks():
    model = apply_ats(tiny_model(VisionTransformer), ATS_BLOCKS, 0.5)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert [r.block for r in kept_tokens(model)] == list(ATS_BLOCKS)
    for earlier, later in zip(kept_tokens(model), kept_tokens(model)[1:]):
        assert not (later.mask & ~earlier.mask).any()
        assert (later.count <= earlier.count).all()


def test_default_budget_keeps_every_token_when_scores_are_uniform():
    model = tiny_model(VisionTransformer, sharpen=False)
    for block in model.blocks:  # zero queries and keys: uniform CLS attention
        block.attn.qkv.weight.data[: 2 * TINY["embed_dim"]] = 0
        block.attn.qkv.bias.data[: 2 * TINY["embed_dim"]] = 0
        block.attn.qkv.weight.data[2 * TINY["embed_dim"] :] = 0
        block.attn.qkv.bias.data[2 * TINY["embed_dim"] :] = 1  # equal value norms
    apply_ats(model)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert [r.count.item() for r in kept_tokens(model)] == [64] * 3


@pytest.mark.parametrize("cls", [VisionTransformer, VisionTransformerDistilled])
def test_checkpoint_loads_strictly_before_and_after(cls, tmp_path):
    model = tiny_model(cls)
    path = tmp_path / "deit.pth"
    torch.save({"model": model.state_dict()}, path)
    keys = list(model.state_dict())
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]

    fresh = cls(**TINY)
    fresh.load_state_dict(state, strict=True)
    apply_ats(fresh, ATS_BLOCKS, 0.5)
    assert list(fresh.state_dict()) == keys
    fresh.load_state_dict(state, strict=True)
    assert sum(b.numel() for b in fresh.buffers()) == sum(b.numel() for b in model.buffers())


def test_training_step_updates_every_parameter():
    import timm

    torch.manual_seed(0)
    model = apply_ats(timm.create_model("deit_tiny_patch16_224", num_classes=5), k=0.5).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(torch.randn(2, 3, 224, 224)), torch.tensor([1, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged
    assert kept_tokens(model)[-1].count.max() < 196


def test_gradient_checkpointing_gives_the_same_gradients():
    model = apply_ats(tiny_model(VisionTransformer), ATS_BLOCKS, 0.5).train()
    images = torch.randn(3, 3, 32, 32)
    grads = []
    for enable in [False, True]:
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        model(images).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_bad_arguments_are_named():
    model = tiny_model(VisionTransformer)
    with pytest.raises(ValueError, match="block 6 out of range"):
        apply_ats(model, [6])
    with pytest.raises(ValueError, match="selector"):
        apply_ats(model, [3], selector="uniform")
    with pytest.raises(ValueError, match="ratio"):
        apply_ats(model, [3], k=2.0)
    with pytest.raises(ValueError, match="shared"):
        apply_ats(model, [3], mode="shared")
    with pytest.raises(ValueError, match="global_pool"):
        apply_ats(VisionTransformer(**TINY, global_pool="avg"), [3])
    with pytest.raises(TypeError, match="Linear"):
        apply_ats(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("cls", [VisionTransformer, VisionTransformerDistilled])
def test_without_ats_blocks_the_model_is_unchanged(cls):
    model = tiny_model(cls)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(images)
        got = apply_ats(model, blocks=[])(images)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert kept_tokens(model) == []


def test_stochastic_depth_drops_whole_samples():
    torch.manual_seed(0)
    model = VisionTransformer(**TINY, drop_path_rate=0.5)
    apply_ats(model, ATS_BLOCKS, 0.5).train()
    block = model.blocks[-1]
    layout = Layout.from_lengths(torch.randint(1, 11, (8,)))
    rows = torch.ones(layout.num_rows, TINY["embed_dim"])
    dropped = drop_path(block.drop_path1, rows, layout.sequence_of_rows(), 8)
    for sample, n in zip(layout.pad(dropped), layout.lengths):
        assert len(set(sample[:n].flatten().tolist())) == 1  # one draw for all its rows
    assert set(dropped.unique().tolist()) == {0.0, 1 / (1 - block.drop_path1.drop_prob)}
    model(torch.randn(4, 3, 32, 32)).sum().backward()  # trains with dropped paths


def test_shared_selection_keeps_one_set_of_positions_per_clip():
    torch.manual_seed(7)
    scores = torch.rand(2, 4, 30) ** 4
    valid = torch.rand(2, 4, 30) > 0.2
    keep = select_shared(scores, valid, ATSConfig(10))
    assert not (keep & ~valid).any()
    chosen = keep.any(1)
    assert torch.equal(keep, chosen[:, None] & valid)  # the same positions wherever present
    # frames weigh equally: the clip's scores are the sum of the per-frame normalised scores
    frame_scores = scores.masked_fill(~valid, 0)
    clip = (frame_scores / frame_scores.sum(-1, keepdim=True)).sum(1)
    assert torch.equal(chosen, select_tokens(clip, valid.any(1), ATSConfig(10)))


def test_scores_are_float32_under_autocast():
    q, k = torch.randn(40, 3, 8), torch.randn(40, 3, 8)
    for layout in [Layout.dense(2, 20, q.device), Layout.from_lengths(torch.tensor([25, 15]))]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            row = cls_attention(q, k, layout)
        assert row.dtype == torch.float32
        torch.testing.assert_close(row, cls_attention(q, k, layout))
        for i, (start, n) in enumerate(zip(layout.offsets.tolist(), layout.lengths.tolist())):
            want = (torch.einsum("nhd,hd->hn", k[start : start + n], q[start]) / 8**0.5).softmax(-1)
            torch.testing.assert_close(row[i, :n].T, want)
            assert (row[i, n:] == 0).all()


def test_empty_batch():
    assert sample_tokens(torch.zeros(0, 5), 3).shape == (0, 5)


def test_every_block_must_be_supported():
    from timm.layers import DiffAttention
    from timm.models.vision_transformer import ResPostBlock

    for kwargs in [dict(attn_layer=DiffAttention), dict(block_fn=ResPostBlock)]:
        with pytest.raises(ValueError, match="block 0 is a"):
            apply_ats(VisionTransformer(**TINY, **kwargs), [3])


def test_timm_intermediates_refuse_to_skip_ats():
    model = apply_ats(tiny_model(VisionTransformer), ATS_BLOCKS)
    with pytest.raises(NotImplementedError, match="ATS"):
        model.forward_intermediates(torch.randn(1, 3, 32, 32))


def test_counting_flops_keeps_the_last_readout():
    from ats_video.flops import count_gflops

    model = apply_ats(tiny_model(VisionTransformer), ATS_BLOCKS, 0.5)
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32))
    kept = kept_tokens(model)
    count_gflops(model, torch.randn(2, 3, 32, 32))
    after = kept_tokens(model)
    assert after[0].count.shape == (3, 1)
    assert all(torch.equal(a.count, b.count) and torch.equal(a.positions, b.positions) for a, b in zip(kept, after))


# ---------------------------------------------------------------- properties and edges


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# scores from a few levels (exact ties and zeros) to skewed floats
score_rows = st.integers(1, 40).flatmap(
    lambda n: st.lists(
        st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0, 1e3, allow_subnormal=False)),
        min_size=n, max_size=n,
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(score_rows, min_size=1, max_size=4).filter(lambda rows: len({len(r) for r in rows}) == 1),
       st.integers(1, 200))
def test_sampler_is_the_papers_for_any_scores_and_budget(rows, k):
    scores = torch.tensor(rows, dtype=torch.float64)
    keep = sample_tokens(scores, k)
    for row, mask in zip(rows, keep):
        kept = set(mask.nonzero().flatten().tolist())
        assert kept == naive_sample(row, k)
        assert 1 <= len(kept) <= k
    # each row alone gives what it gives in the batch
    assert torch.equal(torch.cat([sample_tokens(r[None], k) for r in scores]), keep)


@settings(max_examples=100, deadline=None)
@given(score_rows, st.integers(1, 60))
def test_topk_keeps_min_of_k_and_n_highest(row, k):
    keep = topk_tokens(torch.tensor([row], dtype=torch.float64), k)[0]
    assert keep.sum() == min(k, len(row))
    if keep.sum() < len(row):
        assert min(v for v, m in zip(row, keep) if m) >= max(v for v, m in zip(row, keep) if not m)


@pytest.mark.parametrize("selector", [sample_tokens, topk_tokens, random_tokens])
def test_bad_scores_and_budgets_are_errors(selector):
    good = torch.rand(2, 10)
    for bad in [float("nan"), float("inf"), -1.0]:
        scores = good.clone()
        scores[1, 3] = bad
        with pytest.raises(ValueError, match="finite and non-negative"):
            selector(scores, 5)
    for k in [0, -2, torch.tensor([3, 0])]:
        with pytest.raises(ValueError, match="K must be >= 1"):
            selector(good, k)
    for k in [0, -3, 0.0, -0.5, 1.5, 0.5j]:
        with pytest.raises((ValueError, TypeError)):
            ATSConfig(k)


def test_scores_keep_float64_inputs_in_float64():
    """The wider of the input's type and float32: float64 models are scored in float64."""
    q, k, v = (torch.randn(20, 3, 8, dtype=torch.float64) for _ in range(3))
    layout = Layout.dense(2, 10, q.device)
    cls_attn = cls_attention(q, k, layout)
    scores = significance_scores(cls_attn, layout.pad(v.norm(dim=-1)), 1)
    assert cls_attn.dtype == scores.dtype == torch.float64
    assert significance_scores(cls_attn.half(), layout.pad(v.norm(dim=-1)).half(), 1).dtype == torch.float32


def test_backends_agree_and_varlen_needs_cuda_half():
    from ats_video.tokens import attention, attention_backend

    torch.manual_seed(0)
    layout = Layout.from_lengths(torch.tensor([5, 3, 7]))
    q, k, v = (torch.randn(layout.num_rows, 2, 4) for _ in range(3))
    with attention_backend("sequential"):
        want = attention(q, k, v, layout, layout)
    for name in ("auto", "padded"):
        with attention_backend(name):
            torch.testing.assert_close(attention(q, k, v, layout, layout), want)
    with attention_backend("varlen"), pytest.raises(RuntimeError, match="cannot run here: it runs on CUDA only"):
        attention(q, k, v, layout, layout)


def test_auto_on_cuda_is_what_the_recorded_gpu_run_chose():
    """The default that has been tested: benchmarks/gpu.md holds the GPU run that chose it."""
    from pathlib import Path

    from ats_video import tokens

    report = (Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.md").read_text()
    assert tokens.AUTO_ON_CUDA == "varlen" and "| varlen |" in report and "H200" in report


@pytest.mark.parametrize("head_size, dtypes, reason", [
    (64, ("float32",) * 3, "float16 or bfloat16"),
    (64, ("bfloat16", "float32", "bfloat16"), "of one type"),
    (60, ("bfloat16",) * 3, "multiple of 8"),
    (264, ("float16",) * 3, "multiple of 8 up to 256"),
])
def test_varlen_names_what_it_needs(monkeypatch, head_size, dtypes, reason):
    """Every requirement of the flash kernel is checked before it is called (a GPU of compute
    capability 8.0 is simulated: the checks are read from the tensors, not run on them)."""
    from ats_video import tokens

    if tokens.varlen_attn is None:
        pytest.skip(f"torch {torch.__version__} has no varlen attention")
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    q, k, v = (torch.zeros(3, 2, head_size, dtype=getattr(torch, d)) for d in dtypes)
    assert reason in tokens.varlen_unusable(q, k, v, 0.0)
    good = [torch.zeros(3, 2, 64, dtype=torch.bfloat16)] * 3
    assert tokens.varlen_unusable(*good, 0.0) is None
    assert "dropout" in tokens.varlen_unusable(*good, 0.1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert "8.0 or newer" in tokens.varlen_unusable(*good, 0.0)


# ---------------------------------------------------------------- the random baseline


def test_random_keeps_exactly_k_of_the_real_tokens_whatever_the_batch():
    torch.manual_seed(11)
    scores = torch.rand(5, 12) + 0.01
    budgets = torch.tensor([1, 4, 12, 20, 7])
    keep = random_tokens(scores, budgets)
    assert keep.sum(-1).tolist() == [1, 4, 12, 12, 7]
    assert torch.equal(random_tokens(scores, budgets), keep)  # repeatable
    # each row alone, or in another batch with padding after its real tokens: the same tokens
    padded = torch.cat([torch.rand(2, 15) + 0.01, F.pad(scores, (0, 3))])
    together = random_tokens(padded, torch.cat([torch.tensor([3, 9]), budgets]))
    assert torch.equal(together[2:, :12], keep)
    # padding (score 0) comes last: only a budget beyond the real tokens reaches it
    assert together[2:, 12:].any(-1).tolist() == [False, False, False, True, False]
    for row, k, want in zip(scores, budgets, keep):
        assert torch.equal(random_tokens(row[None], int(k))[0], want)
    # different rows draw different sets
    assert len({tuple(row.tolist()) for row in random_tokens(torch.rand(20, 12) + 0.01, 4)}) > 15


def test_random_is_uniform_and_blind_to_the_scores():
    torch.manual_seed(12)
    scores = torch.rand(3000, 16).pow(4)  # peaked, as a trained model's
    keep = random_tokens(scores, 4)
    frequency = keep.double().mean(0)  # each position: 4 / 16 of the time
    assert (frequency - 0.25).abs().max() < 0.05, frequency
    best = keep.gather(1, scores.argmax(-1, keepdim=True)).double().mean()
    assert abs(best - 0.25) < 0.04, best  # the most significant token is kept no more often


def test_random_in_a_video_model_keeps_k_tokens_per_frame():
    torch.manual_seed(13)
    model = apply_ats(timesformer(num_frames=3, img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2,
                                  num_classes=4), [1, 2], 5, selector="random").eval()  # fmt: skip
    clips = torch.randn(3, 3, 3, 32, 32)
    with torch.no_grad():
        model(clips)
        records = kept_tokens(model)
        model(clips[1:2])
    for together, alone in zip(records, kept_tokens(model)):
        assert together.count.tolist() == [[5, 5, 5]] * 3
        assert torch.equal(together.mask[1], alone.mask[0])
    assert not torch.equal(records[0].mask[0], records[0].mask[1])  # another clip, another draw
