"""TimeSformer: equality with Hugging Face, space-time ATS against a per-clip reference written
from the paper, batch invariance, checkpoints in the official layouts, gradients and FLOPs."""

import logging
import math
from collections import defaultdict

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
import torch.nn.functional as F
from paper import naive_budget, naive_sample
from timm.models.vision_transformer import VisionTransformer

from ats_video import apply_ats, kept_tokens, load_checkpoint, save_checkpoint
from ats_video.flops import count_gflops, gflops_as_run
from ats_video.models import (
    timesformer,
    timesformer_base_8x224,
    timesformer_hr_16x448,
    timesformer_l_96x224,
)
from ats_video.patch.timesformer import block_forward, clip_positions
from ats_video.tokens import Layout, Tokens

TINY = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=7)
ATS_BLOCKS = (1, 2)  # block 3 then runs temporal attention over tokens dropped unevenly
FRAMES, GRID = 4, (4, 4)
MODES = ["frame", "shared"]


def tiny_model(seed=0, **kwargs):
    """Random weights far from the init: every parameter matters (temporal_fc starts at zero)
    and the CLS attention is peaked enough that kept counts vary between frames and clips."""
    torch.manual_seed(seed)
    model = timesformer(**{**TINY, **kwargs}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def clips(batch, seed=1, dtype=torch.float32):
    return torch.randn(batch, 3, FRAMES, 32, 32, generator=torch.Generator().manual_seed(seed)).to(dtype)


def official_pyth(state_dict, path):
    """Writes a state dict as the official TimeSformer release does (SlowFast, ``model.`` prefix)."""
    torch.save(
        {
            "epoch": 15,
            "model_state": {f"model.{k}": v for k, v in state_dict.items()},
            "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.005, "params": [0]}]},
            "cfg": "TRAIN:\n  ENABLE: True\n",
        },
        path,
    )


# ---------------------------------------------------------------- reference from the paper


def heads(attn, x):
    """Full attention matrices [H, L, L] and values [H, L, d] of one sequence x [L, D]."""
    q, k, v = attn.qkv(x).view(len(x), 3, attn.num_heads, -1).permute(1, 2, 0, 3)
    return (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1), v


def outputs(attn, a, v, rows):
    """Projected attention outputs of the query rows ``rows``."""
    return attn.proj((a[:, rows] @ v).transpose(0, 1).reshape(len(rows), -1))


def frame_scores(a, v):
    """Eq. 3 for the non-CLS tokens of one frame: per-head normalised, summed over heads."""
    weighted = a[:, 0, 1:] * v[:, 1:].norm(dim=-1)
    return (weighted / weighted.sum(-1, keepdim=True)).sum(0)


def reference(model, clip, blocks, k, mode):
    """One clip through TimeSformer with ATS, with loops over frames and positions.

    Tokens live in a dict {(t, s): vector}; a dropped token is simply absent. Returns the logits
    and, for each ATS block, the set of kept (t, h, w).
    """
    s_count, w = GRID[0] * GRID[1], GRID[1]
    x = model.embed(clip[None])[0]
    cls = x[0]
    tokens = {(t, s): x[1 + t * s_count + s] for t in range(FRAMES) for s in range(s_count)}
    kept_sets = {}
    for i, block in enumerate(model.blocks):
        # temporal attention: each position over the frames where it is present
        updated = {}
        for s in range(s_count):
            frames = [t for t in range(FRAMES) if (t, s) in tokens]
            if frames:
                seq = torch.stack([tokens[t, s] for t in frames])
                a, v = heads(block.temporal_attn, block.temporal_norm1(seq))
                out = block.temporal_fc(outputs(block.temporal_attn, a, v, list(range(len(frames)))))
                updated.update({(t, s): tokens[t, s] + o for t, o in zip(frames, out)})
        tokens = updated

        # spatial attention: CLS copied into every frame
        frames = {}
        for t in range(FRAMES):
            positions = sorted(s for (u, s) in tokens if u == t)
            seq = torch.stack([cls] + [tokens[t, s] for s in positions])
            frames[t] = (positions, *heads(block.attn, block.norm1(seq)))
        kept = {t: positions for t, (positions, _, _) in frames.items()}
        if i in blocks and mode == "frame":
            for t, (positions, a, v) in frames.items():
                chosen = naive_sample(frame_scores(a, v), naive_budget(k, len(positions)))
                kept[t] = [positions[j] for j in sorted(chosen)]
        elif i in blocks:  # shared: frame-normalised scores summed over frames, one set
            total = defaultdict(float)
            for positions, a, v in frames.values():
                scores = frame_scores(a, v)
                for s, score in zip(positions, scores / scores.sum()):
                    total[s] += score.item()
            positions = sorted(total)
            chosen = naive_sample([total[s] for s in positions], naive_budget(k, len(positions)))
            kept = {t: [positions[j] for j in sorted(chosen)] for t in frames}
        cls_outs, tokens_after = [], {}
        for t, (positions, a, v) in frames.items():
            out = outputs(block.attn, a, v, [0] + [1 + positions.index(s) for s in kept[t]])
            cls_outs.append(out[0])
            tokens_after.update({(t, s): tokens[t, s] + o for s, o in zip(kept[t], out[1:])})
        cls = cls + torch.stack(cls_outs).mean(0)
        tokens = tokens_after
        if i in blocks:
            kept_sets[i] = {(t, s // w, s % w) for (t, s) in tokens}

        cls = cls + block.mlp(block.norm2(cls))
        tokens = {key: x + block.mlp(block.norm2(x)) for key, x in tokens.items()}
    return model.head(model.norm(cls)), kept_sets


# ---------------------------------------------------------------- the backbone


def hf_to_official(state_dict):
    """Hugging Face TimeSformer names -> the official release's names."""
    renames = [
        ("timesformer.embeddings.cls_token", "cls_token"),
        ("timesformer.embeddings.position_embeddings", "pos_embed"),
        ("timesformer.embeddings.time_embeddings", "time_embed"),
        ("timesformer.embeddings.patch_embeddings.projection", "patch_embed.proj"),
        ("timesformer.encoder.layer.", "blocks."),
        ("temporal_attention.attention.qkv", "temporal_attn.qkv"),
        ("temporal_attention.output.dense", "temporal_attn.proj"),
        ("temporal_dense", "temporal_fc"),
        ("temporal_layernorm", "temporal_norm1"),
        ("attention.attention.qkv", "attn.qkv"),
        ("attention.output.dense", "attn.proj"),
        ("layernorm_before", "norm1"),
        ("layernorm_after", "norm2"),
        ("intermediate.dense", "mlp.fc1"),
        ("output.dense", "mlp.fc2"),
        ("timesformer.layernorm", "norm"),
        ("classifier", "head"),
    ]
    out = {}
    for key, value in state_dict.items():
        for old, new in renames:
            key = key.replace(old, new)
        out[key] = value
    return out


def test_logits_equal_hugging_face_through_official_checkpoint(tmp_path):
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    config = TimesformerConfig(
        image_size=32, patch_size=8, num_frames=FRAMES, hidden_size=48, num_hidden_layers=4,
        num_attention_heads=3, intermediate_size=192, num_labels=7,
    )
    torch.manual_seed(0)
    hf = TimesformerForVideoClassification(config).eval()
    with torch.no_grad():
        for p in hf.parameters():  # random, and far from the init (LayerNorms included)
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path / "TimeSformer_divST_tiny.pyth"
    official_pyth(hf_to_official(hf.state_dict()), path)

    model = timesformer(**TINY).eval()
    extra = load_checkpoint(model, path)
    assert extra["epoch"] == 15 and "optimizer_state" in extra
    x = clips(3)
    with torch.no_grad():
        want = hf(pixel_values=x.transpose(1, 2)).logits  # HF takes [B, T, C, H, W]
        got = model(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
        apply_ats(model, blocks=[])  # the patched model with no ATS block computes the same
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_presets_match_the_official_configs():
    with torch.device("meta"):
        for build, frames, size in [
            (timesformer_base_8x224, 8, 224),
            (timesformer_hr_16x448, 16, 448),
            (timesformer_l_96x224, 96, 224),
        ]:
            model = build()
            assert (model.num_frames, model.patch_embed.img_size) == (frames, size)
            assert model.time_embed.shape == (1, frames, 768)
            assert model.pos_embed.shape == (1, 1 + (size // 16) ** 2, 768)
            assert (len(model.blocks), model.blocks[0].attn.num_heads, model.num_classes) == (12, 12, 400)


def test_model_face():
    model = tiny_model()
    assert model.no_weight_decay() == {"pos_embed", "cls_token", "time_embed"}
    feats = model.forward_features(clips(2))
    assert feats.shape == (2, 1 + FRAMES * 16, 48)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 48)
    model.reset_classifier(3)
    assert model(clips(2)).shape == (2, 3) and model.num_classes == 3
    with pytest.raises(ValueError, match="takes 4 frames"):
        model(torch.randn(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="32x32 frames"):
        model(torch.randn(1, 3, 4, 48, 48))


# ---------------------------------------------------------------- space-time ATS


def test_packed_block_equals_plain_block():
    model = tiny_model()
    with torch.no_grad():
        x = model.embed(clips(2))
        position = clip_positions(FRAMES, GRID, x.device).repeat(2, 1)
        tokens = Tokens(x.flatten(0, 1), Layout.dense(2, x.shape[1], x.device), position)
        groups = Layout.dense(2 * FRAMES, 1 + GRID[0] * GRID[1], x.device)
        got, got_groups = block_forward(model.blocks[1], tokens, groups, FRAMES, GRID, None)
        want = model.blocks[1](x, FRAMES)
    torch.testing.assert_close(got.x, want.flatten(0, 1))
    assert torch.equal(got.position, position) and got_groups is groups


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1.0, 0.5, 5])
def test_ats_matches_reference_per_clip(mode, k):
    model = apply_ats(tiny_model().double(), ATS_BLOCKS, k, mode=mode)
    x = clips(3, dtype=torch.float64)
    with torch.no_grad():
        got = model(x)
        records = kept_tokens(model)
        for b in range(len(x)):
            want, kept = reference(model, x[b], ATS_BLOCKS, k, mode)
            torch.testing.assert_close(got[b], want, rtol=1e-9, atol=1e-9)
            for record in records:
                positions = {tuple(p) for p in record.positions[b].tolist() if p[0] >= 0}
                assert positions == kept[record.block]


ATS_SETTINGS = [None, ("frame", "sample"), ("shared", "sample"), ("frame", "topk")]


@pytest.mark.parametrize("setting", ATS_SETTINGS, ids=["off", "frame", "shared", "frame-topk"])
def test_batch_results_equal_single_clip_results(setting):
    model = tiny_model()
    if setting is not None:
        apply_ats(model, ATS_BLOCKS, 5, mode=setting[0], selector=setting[1])
    x = clips(5)
    with torch.no_grad():
        batched = model(x)
        kept = [r.mask for r in kept_tokens(model)]
        for b in range(len(x)):
            torch.testing.assert_close(model(x[b : b + 1]), batched[b : b + 1], rtol=1e-5, atol=1e-5)
            for record, mask in zip(kept_tokens(model), kept):
                assert torch.equal(record.mask[0], mask[b])
    if setting == ("frame", "sample"):  # padding must be exercised: frames keep different counts
        counts = torch.stack([r.count for r in kept_tokens(model) if r.block == ATS_BLOCKS[-1]])
        assert len(counts.unique()) > 1


@pytest.mark.parametrize("mode", MODES)
def test_kept_record(mode):
    model = apply_ats(tiny_model(), ATS_BLOCKS, 5, mode=mode)
    with torch.no_grad():
        feats = model.forward_features(clips(3))
    assert [r.block for r in kept_tokens(model)] == list(ATS_BLOCKS)
    for record in kept_tokens(model):
        assert record.mask.shape == (3, FRAMES, *GRID) and record.count.shape == (3, FRAMES)
        assert torch.equal(record.mask.flatten(2).sum(-1), record.count)
        assert ((record.count >= 1) & (record.count <= 5)).all()
        for b in range(3):
            real = record.positions[b][record.positions[b, :, 0] >= 0]
            assert len(real) == record.count[b].sum()
            assert record.mask[b][tuple(real.T)].all()
            flat = real[:, 0] * 16 + real[:, 1] * 4 + real[:, 2]
            assert torch.equal(flat, flat.sort().values)  # (t, h, w) order
        if mode == "shared":  # one set of positions in every frame
            assert (record.mask == record.mask[:, :1]).all()
    for earlier, later in zip(kept_tokens(model), kept_tokens(model)[1:]):
        assert not (later.mask & ~earlier.mask).any()
    # forward_features keeps the plain layout: zero rows at dropped tokens
    dropped = ~kept_tokens(model)[-1].mask.flatten(1)
    assert (feats[:, 1:][dropped] == 0).all() and (feats[:, 1:][~dropped] != 0).any(-1).all()


def test_state_dict_unchanged_and_checkpoint_loads_before_and_after_ats(tmp_path):
    model = tiny_model()
    path = tmp_path / "official.pyth"
    official_pyth(model.state_dict(), path)
    fresh = timesformer(**TINY)
    load_checkpoint(fresh, path)
    keys = list(fresh.state_dict())
    apply_ats(fresh, mode="shared")  # default blocks of a 4-block model: 3
    assert list(fresh.state_dict()) == keys and not list(fresh.buffers())
    load_checkpoint(fresh, path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    with torch.no_grad():
        fresh.eval()(clips(1))
    assert [r.block for r in kept_tokens(fresh)] == [3]


@pytest.mark.parametrize("mode", MODES)
def test_fine_tuning_step_reaches_every_parameter(mode):
    model = apply_ats(tiny_model(drop_path_rate=0.1), ATS_BLOCKS, 5, mode=mode).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(0)
    loss = F.cross_entropy(model(clips(2)), torch.tensor([1, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    optimizer.step()
    assert not [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert kept_tokens(model)[-1].count.max() <= 5


def test_gradient_checkpointing_gives_the_same_gradients():
    model = apply_ats(tiny_model(), ATS_BLOCKS, 5).train()
    grads = []
    for enable in [False, True]:
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        inputs = clips(2)
        torch.manual_seed(1)  # the same stochastic-depth draws in both runs
        model(inputs).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_bad_ats_arguments_are_named():
    with pytest.raises(ValueError, match="mode 'joint'"):
        apply_ats(tiny_model(), mode="joint")
    with pytest.raises(ValueError, match="block 4 out of range"):
        apply_ats(tiny_model(), [4])


# ---------------------------------------------------------------- checkpoints


def test_mismatched_checkpoint_names_every_bad_key(tmp_path):
    state = tiny_model().state_dict()
    del state["blocks.1.temporal_fc.bias"]
    state["blocks.0.attn.extra"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(10, 48)
    path = tmp_path / "bad.pyth"
    official_pyth(state, path)
    with pytest.raises(ValueError) as error:
        load_checkpoint(timesformer(**TINY), path)
    message = str(error.value)
    assert "missing (1): blocks.1.temporal_fc.bias" in message
    assert "unexpected (1): blocks.0.attn.extra" in message
    assert "head.weight: checkpoint (10, 48), model (7, 48)" in message


def test_embeddings_are_resized_and_said_so(tmp_path, caplog):
    source = tiny_model()
    path = tmp_path / "small.pyth"
    official_pyth(source.state_dict(), path)
    target = timesformer(**{**TINY, "num_frames": 8, "img_size": 64})  # 8 frames, 8x8 grid
    with caplog.at_level(logging.WARNING):
        load_checkpoint(target, path)
    assert "pos_embed from a 4x4 to a 8x8 patch grid" in caplog.text
    assert "time_embed from 4 to 8 frames" in caplog.text

    old, new = source.pos_embed.detach(), target.pos_embed.detach()
    assert torch.equal(new[:, 0], old[:, 0])  # CLS entry kept
    grid = old[0, 1:].T.reshape(1, 48, 4, 4)
    want = F.interpolate(grid, size=(8, 8), mode="bicubic", antialias=True)  # as timm resizes
    torch.testing.assert_close(new[0, 1:], want.reshape(48, 64).T)
    assert torch.equal(target.time_embed[0], source.time_embed[0].repeat_interleave(2, 0))  # nearest
    with torch.no_grad():
        assert target(torch.randn(1, 3, 8, 64, 64)).isfinite().all()


def test_own_format_round_trip(tmp_path):
    model = apply_ats(tiny_model(), ATS_BLOCKS, 5)
    path = tmp_path / "ours.pth"
    save_checkpoint(model, path, epoch=2, cfg="MODEL:\n  ARCH: timesformer\n")
    fresh = timesformer(**TINY).eval()
    extra = load_checkpoint(fresh, path)
    assert extra == {"format": "ats_video", "arch": "TimeSformer", "epoch": 2, "cfg": "MODEL:\n  ARCH: timesformer\n"}
    with torch.no_grad():
        torch.testing.assert_close(apply_ats(fresh, ATS_BLOCKS, 5)(clips(2)), model(clips(2)))
    deit = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=7)
    with pytest.raises(ValueError, match="holds a TimeSformer"):
        load_checkpoint(deit, path)


def test_deit_checkpoint_loads(tmp_path):
    kwargs = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=7)
    torch.manual_seed(0)
    model = VisionTransformer(**kwargs)
    path = tmp_path / "deit.pth"
    torch.save({"model": model.state_dict()}, path)
    fresh = apply_ats(VisionTransformer(**kwargs), [1], 0.5)
    load_checkpoint(fresh, path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(timesformer(**TINY), path)


# ---------------------------------------------------------------- FLOPs


def test_timesformer_base_counts_196_gflops_per_view():
    with torch.device("meta"):
        model = timesformer_base_8x224().eval()
        x = torch.empty(1, 3, 8, 224, 224)
    assert count_gflops(model, x).item() == pytest.approx(196, abs=0.5)  # paper: 0.59 TFLOPs / 3 views
    assert gflops_as_run(model, [], 1).item() == pytest.approx(count_gflops(model, x).item(), rel=1e-12)
