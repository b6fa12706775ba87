"""XViT and its space-time ATS, checked against naive per-frame code written from the paper.

The reference below reads an official-layout state dict (``base_model.`` / ``consensus.`` keys)
and runs Bulat et al.'s space-time mixing attention (Eq. 7) token by token, with the release's
grouping of frames for the shift and its "vit" consensus head; with ATS it scores, samples and
keeps tokens per frame as Fayyaz et al. describe, and shifts by spatial position with zeros for
dropped tokens. It shares no code with the model.
"""

import logging
import math

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
from paper import naive_budget, naive_sample

from ats_video import apply_ats, kept_tokens
from ats_video.flops import count_gflops, gflops_as_run
from ats_video import load_checkpoint
from ats_video.models.xvit import MixingAttention, checkpoint_filter_fn, xvit, xvit_base_16x224_k600
from ats_video.patch.xvit import shift_by_position
from ats_video.tokens import Layout, Tokens

TINY = dict(img_size=32, patch_size=8, num_frames=4, shift_group=2, embed_dim=48, depth=4, num_heads=3,
            num_classes=10, head_hidden_dim=40)
ATS_BLOCKS = (1, 2, 3)
K = 0.5  # with 16 patches per frame, K = 8 (the floor)
ATS_CASES = [None, "frame", "shared"]  # ATS off, per-frame sampling, shared positions


# ---------------------------------------------------------------- an official checkpoint


def official_state(seed=0, temp_frames=TINY["num_frames"], num_classes=TINY["num_classes"]):
    """Random weights under the release's key names (SlowFast ``model_state`` of ``XVIT``)."""
    g = torch.Generator().manual_seed(seed)
    d, p, c, hid = TINY["embed_dim"], TINY["patch_size"], num_classes, TINY["head_hidden_dim"]
    s = (TINY["img_size"] // p) ** 2
    sd = {}

    def rand(*shape, scale=0.15, mean=0.0):
        return mean + scale * torch.randn(*shape, generator=g)

    def norm(name):
        sd[name + ".weight"], sd[name + ".bias"] = rand(d, scale=0.1, mean=1.0), rand(d, scale=0.1)

    def linear(name, n_out, n_in, bias=True, scale=0.15):
        sd[name + ".weight"] = rand(n_out, n_in, scale=scale)
        if bias:
            sd[name + ".bias"] = rand(n_out, scale=0.05)

    def block(prefix, qkv_bias, qk_scale):
        norm(prefix + "norm1")
        linear(prefix + "attn.qkv", 3 * d, d, bias=qkv_bias)
        sd[prefix + "attn.qkv.weight"][: 2 * d] *= qk_scale  # sharper attention: scores and K' vary
        linear(prefix + "attn.proj", d, d)
        norm(prefix + "norm2")
        linear(prefix + "mlp.fc1", 4 * d, d)
        linear(prefix + "mlp.fc2", d, 4 * d)

    sd["base_model.cls_token"] = rand(1, 1, d)
    sd["base_model.pos_embed"] = rand(1, s + 1, d)
    sd["base_model.temp_embed"] = rand(1, temp_frames, 1, d)
    sd["base_model.patch_embed.proj.weight"] = rand(d, 3, p, p, scale=0.05)
    sd["base_model.patch_embed.proj.bias"] = rand(d, scale=0.05)
    for i in range(TINY["depth"]):
        block(f"base_model.blocks.{i}.", qkv_bias=True, qk_scale=2.0)
    norm("base_model.norm")
    sd["consensus.cls_token"] = rand(1, 1, d)
    block("consensus.temporal_encoder.0.", qkv_bias=False, qk_scale=1.0)
    norm("consensus.mlp_head.0")
    linear("consensus.mlp_head.1", hid, d)
    linear("consensus.mlp_head.4", c, hid)
    linear("new_fc", c, d)  # in the release's files, never used by its forward
    return sd


def write_official(path, sd):
    torch.save({"epoch": 30, "model_state": sd, "optimizer_state": {}, "cfg": "MODEL:\n  ARCH: xvit\n"}, path)


# ---------------------------------------------------------------- the reference


def layer_norm(x, w, b, eps):
    mean = x.mean()
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean() + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def attend(q, keys, values, heads):
    """One query over a list of keys/values, per head: softmax(q k / sqrt(d)) v."""
    d = len(q) // heads
    out = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        logits = torch.stack([q[sl] @ k[sl] for k in keys]) / math.sqrt(d)
        a = torch.exp(logits - logits.max())
        a = a / a.sum()
        out.append(sum(a_j * v[sl] for a_j, v in zip(a, values)))
    return torch.cat(out)


def reference(sd, clip, ats_blocks=(), k=K, mode="frame"):
    """Logits of one clip [C, T, H, W] and the kept positions {block: [sorted list per frame]}."""
    w = {n: v.double() for n, v in sd.items()}
    b = lambda name: w["base_model." + name]  # noqa: E731
    d, heads, group, p = TINY["embed_dim"], TINY["num_heads"], TINY["shift_group"], TINY["patch_size"]
    fold = d // 8
    frames, gw = clip.shape[1], clip.shape[3] // p
    temp = b("temp_embed")[0, :, 0]

    # tokens[t] maps a position (0: CLS, s + 1: patch s in row-major order) to its vector
    tokens = []
    for t in range(frames):
        frame = {0: b("cls_token")[0, 0] + b("pos_embed")[0, 0] + temp[t % len(temp)]}
        for s in range(gw * gw):
            i, j = divmod(s, gw)
            patch = clip[:, t, i * p : (i + 1) * p, j * p : (j + 1) * p].reshape(-1)
            e = b("patch_embed.proj.weight").reshape(d, -1) @ patch + b("patch_embed.proj.bias")
            frame[s + 1] = e + b("pos_embed")[0, s + 1] + temp[t % len(temp)]
        tokens.append(frame)

    kept = {}
    for n in range(TINY["depth"]):
        pre = f"blocks.{n}."
        q, key, val = [], [], []
        for frame in tokens:
            qkv = {pos: b(pre + "attn.qkv.weight") @ layer_norm(z, b(pre + "norm1.weight"), b(pre + "norm1.bias"), 1e-6)
                   + b(pre + "attn.qkv.bias") for pos, z in frame.items()}
            q.append({pos: v[:d] for pos, v in qkv.items()})
            key.append({pos: v[d : 2 * d] for pos, v in qkv.items()})
            val.append({pos: v[2 * d :] for pos, v in qkv.items()})

        def mixed(src, t, pos):
            # channels [0, fold) from frame t+1, [fold, 2 fold) from t-1, same position, same group
            out = src[t][pos].clone()
            start = t // group * group
            ahead = src[t + 1].get(pos) if t + 1 < start + group else None
            behind = src[t - 1].get(pos) if t - 1 >= start else None
            out[:fold] = ahead[:fold] if ahead is not None else 0
            out[fold : 2 * fold] = behind[fold : 2 * fold] if behind is not None else 0
            return out

        keys = [{pos: mixed(key, t, pos) for pos in tokens[t]} for t in range(frames)]
        vals = [{pos: mixed(val, t, pos) for pos in tokens[t]} for t in range(frames)]

        outputs = [sorted(frame) for frame in tokens]
        if n in ats_blocks:
            scores = []
            for t in range(frames):
                patches = outputs[t][1:]
                dh = d // heads
                s = torch.zeros(len(patches), dtype=torch.float64)
                for h in range(heads):
                    sl = slice(h * dh, (h + 1) * dh)
                    logits = torch.stack([q[t][0][sl] @ keys[t][pos][sl] for pos in outputs[t]]) / math.sqrt(dh)
                    a = torch.softmax(logits, 0)[1:]
                    weighted = a * torch.stack([vals[t][pos][sl].norm() for pos in patches])
                    s += weighted / weighted.sum()
                scores.append(s)
            if mode == "frame":
                picks = [naive_sample(s, naive_budget(k, len(s))) for s in scores]
            else:  # every frame holds the same positions; one set for the clip
                total = sum(s / s.sum() for s in scores)
                picks = [naive_sample(total, naive_budget(k, len(total)))] * frames
            outputs = [[0] + [outputs[t][1:][j] for j in sorted(picks[t])] for t in range(frames)]
            kept[n] = [[pos - 1 for pos in o[1:]] for o in outputs]

        new = []
        for t in range(frames):
            order = sorted(tokens[t])
            frame = {}
            for pos in outputs[t]:
                o = attend(q[t][pos], [keys[t][x] for x in order], [vals[t][x] for x in order], heads)
                y = tokens[t][pos] + b(pre + "attn.proj.weight") @ o + b(pre + "attn.proj.bias")
                hdn = gelu(b(pre + "mlp.fc1.weight") @ layer_norm(y, b(pre + "norm2.weight"), b(pre + "norm2.bias"), 1e-6)
                           + b(pre + "mlp.fc1.bias"))
                frame[pos] = y + b(pre + "mlp.fc2.weight") @ hdn + b(pre + "mlp.fc2.bias")
            new.append(frame)
        tokens = new

    # the "vit" consensus: a transformer block over [CLS, frame CLS features], then the MLP head
    c = lambda name: w["consensus." + name]  # noqa: E731
    seq = [c("cls_token")[0, 0]] + [layer_norm(f[0], b("norm.weight"), b("norm.bias"), 1e-6) for f in tokens]
    pre = "temporal_encoder.0."
    y = [layer_norm(z, c(pre + "norm1.weight"), c(pre + "norm1.bias"), 1e-5) for z in seq]
    qkv = [c(pre + "attn.qkv.weight") @ z for z in y]
    ks, vs = [v[d : 2 * d] for v in qkv], [v[2 * d :] for v in qkv]
    z = seq[0] + c(pre + "attn.proj.weight") @ attend(qkv[0][:d], ks, vs, heads) + c(pre + "attn.proj.bias")
    hdn = gelu(c(pre + "mlp.fc1.weight") @ layer_norm(z, c(pre + "norm2.weight"), c(pre + "norm2.bias"), 1e-5)
               + c(pre + "mlp.fc1.bias"))
    z = z + c(pre + "mlp.fc2.weight") @ hdn + c(pre + "mlp.fc2.bias")
    z = gelu(c("mlp_head.1.weight") @ layer_norm(z, c("mlp_head.0.weight"), c("mlp_head.0.bias"), 1e-5)
             + c("mlp_head.1.bias"))
    return c("mlp_head.4.weight") @ z + c("mlp_head.4.bias"), kept


# ---------------------------------------------------------------- helpers


def loaded_model(tmp_path, mode=None, temp_frames=TINY["num_frames"], seed=0):
    sd = official_state(seed, temp_frames)
    write_official(tmp_path / "xvit.pth", sd)
    model = xvit(**TINY).eval()
    load_checkpoint(model, tmp_path / "xvit.pth")
    if mode is not None:
        apply_ats(model, ATS_BLOCKS, K, mode=mode)
    return model, sd


def clips(n, seed=1):
    return torch.randn(n, 3, TINY["num_frames"], TINY["img_size"], TINY["img_size"],
                       generator=torch.Generator().manual_seed(seed))


def kept_positions(model, clip_index):
    """{block: [sorted patch positions kept in each frame]} from ``kept_tokens(model)``."""
    gw = TINY["img_size"] // TINY["patch_size"]
    out = {}
    for record in kept_tokens(model):
        pos = record.positions[clip_index]
        pos = pos[pos[:, 0] >= 0]
        out[record.block] = [sorted(int(h) * gw + int(w) for t_, h, w in pos.tolist() if t_ == t)
                             for t in range(TINY["num_frames"])]
    return out


# ---------------------------------------------------------------- tests


# the last case: a release whose time embedding covers one shift group (see xvit.py)
@pytest.mark.parametrize("mode, temp_frames", [(m, TINY["num_frames"]) for m in ATS_CASES] + [(None, 2)])
def test_model_matches_reference(tmp_path, mode, temp_frames):
    model, sd = loaded_model(tmp_path, mode, temp_frames)
    x = clips(2)
    with torch.no_grad():
        logits = model(x)
    for i in range(len(x)):
        expected, kept = reference(sd, x[i].double(), ATS_BLOCKS if mode else (), K, mode or "frame")
        torch.testing.assert_close(logits[i].double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
        if mode is not None:
            assert kept_positions(model, i) == kept
    if mode == "frame":  # the case is worth its name only if frames keep different sets
        assert any(len({tuple(f) for f in frames}) > 1 for frames in kept_positions(model, 0).values())


@pytest.mark.parametrize("mode", ATS_CASES)
def test_batch_results_equal_single_clip_results(tmp_path, mode):
    model, _ = loaded_model(tmp_path, mode)
    x = torch.cat([clips(3), clips(1, seed=5) * 3])  # clips that keep different numbers of tokens
    with torch.no_grad():
        batch = model(x)
        counts = [r.count for r in kept_tokens(model)] if mode else []
        alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    if mode == "shared":
        assert all((c == c[:, :1]).all() for c in counts)
    if mode is not None:
        assert counts[-1].shape == (len(x), TINY["num_frames"]) and (counts[-1] <= 8).all()


@pytest.mark.parametrize("mode", ["frame", "shared"])
def test_ats_that_drops_nothing_changes_nothing(mode):
    """No ATS blocks, or a budget far above the token count: the padded path gives the plain logits."""
    torch.manual_seed(0)
    model = xvit(**TINY).eval()  # the default init attends evenly: every token gets a real share
    x = clips(2)
    with torch.no_grad():
        plain = model(x)
        apply_ats(model, (), mode=mode)
        none = model(x)
        apply_ats(model, ATS_BLOCKS, 1000, mode=mode)
        everything = model(x)
    assert all((r.count == 16).all() for r in kept_tokens(model))
    torch.testing.assert_close(none, plain, rtol=0, atol=0)
    torch.testing.assert_close(everything, plain, rtol=1e-5, atol=1e-6)


def test_shift_pairs_tokens_by_position_and_zero_fills_dropped_tokens():
    attn = MixingAttention(16, 2, num_frames=2, shift_div=8)  # fold 2: channels 0-1 from t+1, 2-3 from t-1
    # a 2x2 grid; frame 0 keeps positions 0, 2, 3; frame 1 keeps 1, 3 (position 3 at another rank)
    kept = [[0, 2, 3], [1, 3]]
    position = torch.tensor([[-1, -1, -1]] + [[0, s // 2, s % 2] for s in kept[0]]
                            + [[-1, -1, -1]] + [[1, s // 2, s % 2] for s in kept[1]])
    tokens = Tokens(torch.zeros(7, 16), Layout.from_lengths(torch.tensor([4, 3])), position)
    z = torch.arange(7 * 16, dtype=torch.float32).view(7, 2, 8) + 1  # [R, H, d]
    out = shift_by_position(z, tokens, attn, (2, 2)).flatten(1)
    z = z.flatten(1)
    # frame 0, position 3 (row 3) takes channels 0-1 from frame 1's position 3 (row 6)
    assert torch.equal(out[3, :2], z[6, :2])
    # frame 0, positions 0 and 2 were dropped in frame 1: zeros
    assert (out[1, :2] == 0).all() and (out[2, :2] == 0).all()
    # frame 1, position 1 was dropped in frame 0: zeros; position 3 takes frame 0's row 3
    assert (out[5, 2:4] == 0).all() and torch.equal(out[6, 2:4], z[3, 2:4])
    # CLS pairs with CLS; unshifted channels stay; the clip's ends get zeros
    assert torch.equal(out[0, :2], z[4, :2]) and torch.equal(out[4, 2:4], z[0, 2:4])
    assert torch.equal(out[:, 4:], z[:, 4:])
    assert (out[:4, 2:4] == 0).all() and (out[4:, :2] == 0).all()


@pytest.mark.parametrize("mode", ATS_CASES)
def test_training_step_reaches_every_parameter(tmp_path, mode):
    model, _ = loaded_model(tmp_path, mode)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = torch.nn.functional.cross_entropy(model(clips(2)), torch.tensor([1, 7]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_stochastic_depth_draws_per_frame_as_the_plain_model_does():
    torch.manual_seed(0)
    model = xvit(**{**TINY, "drop_path_rate": 0.5}).train()
    x = clips(3)
    torch.manual_seed(1)
    plain = model(x)
    apply_ats(model, ())  # the packed path, nothing dropped: the same random draws, frame by frame
    torch.manual_seed(1)
    torch.testing.assert_close(model(x), plain, rtol=0, atol=0)
    torch.manual_seed(2)
    assert not torch.equal(model(x), plain)


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    model, _ = loaded_model(tmp_path, "frame")
    x = clips(2)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ATS_CASES)
def test_checkpoint_loads_strictly_before_and_after_ats(tmp_path, mode, caplog):
    sd = official_state(3)
    write_official(tmp_path / "xvit.pth", sd)
    model = xvit(**TINY)
    keys = set(model.state_dict())
    if mode is not None:
        apply_ats(model, mode=mode)
        assert set(model.state_dict()) == keys
    with caplog.at_level(logging.WARNING):
        load_checkpoint(model, tmp_path / "xvit.pth")
    assert "new_fc.weight" in caplog.text  # the release's unused classifier is named, not dropped silently
    for name, value in model.state_dict().items():
        source = name if name.startswith("consensus.") else "base_model." + name
        assert torch.equal(value, sd[source]), name


def test_checkpoint_errors_name_every_mismatch(tmp_path):
    model = xvit(**TINY)
    sd = official_state()
    del sd["base_model.blocks.2.mlp.fc1.bias"]
    sd["base_model.blocks.0.attn.qkv.weight"] = torch.zeros(5, 5)
    sd["base_model.head.weight"] = torch.zeros(10, 48)
    write_official(tmp_path / "bad.pth", sd)
    with pytest.raises(ValueError) as err:
        load_checkpoint(model, tmp_path / "bad.pth")
    text = str(err.value)
    assert "missing (1): blocks.2.mlp.fc1.bias" in text
    assert "unexpected (1): base_model.head.weight" in text
    assert "blocks.0.attn.qkv.weight: checkpoint (5, 5), model (144, 48)" in text


def test_checkpoint_resizes_position_and_time_embeddings(tmp_path, caplog):
    sd = official_state()
    model = xvit(**{**TINY, "img_size": 48, "num_frames": 6, "shift_group": 3})
    with caplog.at_level(logging.WARNING):
        out = checkpoint_filter_fn(sd, model)
    assert out["pos_embed"].shape == (1, 37, 48) and out["temp_embed"].shape == (1, 6, 1, 48)
    assert torch.equal(out["pos_embed"][:, 0], sd["base_model.pos_embed"][:, 0])
    assert "pos_embed resized" in caplog.text and "temp_embed interpolated" in caplog.text
    # a release-style embedding of one shift group is tiled over the groups, exactly
    tiled = checkpoint_filter_fn(official_state(temp_frames=2), xvit(**TINY))["temp_embed"]
    assert torch.equal(tiled[:, :2], tiled[:, 2:])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="multiple of shift_group"):
        xvit(**{**TINY, "shift_group": 3})
    model = xvit(**TINY)
    with pytest.raises(ValueError, match="clips of 4 frames"):
        model(torch.zeros(1, 3, 2, 32, 32))
    with pytest.raises(ValueError, match="mode"):
        apply_ats(model, mode="tube")


def test_face_of_the_model():
    model = xvit(**TINY)
    assert model.no_weight_decay() >= {"cls_token", "pos_embed", "temp_embed"}
    feats = model.forward_features(clips(2))
    assert feats.shape == (2, 4, 17, 48)
    assert model.forward_head(feats, pre_logits=True).shape == (2, TINY["head_hidden_dim"])
    model.reset_classifier(5)
    assert model(clips(2)).shape == (2, 5) and model.num_classes == 5
    assert len(model.blocks) == TINY["depth"]


def test_flops_of_the_released_size():
    """XViT-B/16 at 224 costs 16 frames x one ViT-B/16 image (17.6 GFLOPs), plus a tiny head."""
    with torch.device("meta"):  # shapes only: counting needs no real weights or pixels
        model = xvit_base_16x224_k600().eval()
        x = torch.empty(1, 3, 16, 224, 224)
    assert 280 < count_gflops(model, x).item() < 282
    assert gflops_as_run(model, [], 1).item() == pytest.approx(count_gflops(model, x).item(), rel=1e-12)


def test_flops_follow_the_kept_tokens(tmp_path):
    model, _ = loaded_model(tmp_path)
    x = clips(2)
    full = count_gflops(model, x)
    apply_ats(model, ATS_BLOCKS, 8, mode="frame")
    kept = count_gflops(model, x)
    assert (kept < 0.75 * full).all()
