"""XViT and its space-time ATS, checked against naive per-frame code written from the official release.

The reference below reads a state dict in the release's layout (``base_model.`` / ``consensus.``
keys, as github.com/1adrianb/video-transformers saves its ``XVIT``, unused ``new_fc`` included)
and runs the release's forward token by token, in the order of its code: ``vit.py``'s
``VisionTransformer.forward_features`` (pos_embed resized in every forward for another crop, the
time embedding added per run of the backbone's own ``num_frames``), ``temporal_shift.py``'s
``TemporalShift`` on keys and values (groups of ``XVIT.NUM_SEGMENTS`` frames, slices of
``dim // XVIT.SHIFT_DIV`` channels), and ``head_helper.py``'s ``VitHead``. With ATS it scores,
samples and keeps tokens per frame as Fayyaz et al. describe, and shifts by spatial position with
zeros for dropped tokens. It shares no code with the model.
"""

import logging
import math

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
import torch.nn.functional as F
from paper import naive_budget, naive_sample

from ats_video import apply_ats, kept_tokens, load_checkpoint, save_checkpoint
from ats_video.flops import count_gflops, gflops_as_run
from ats_video.models.xvit import (
    MixingAttention,
    checkpoint_filter_fn,
    xvit,
    xvit_base_16x224_k600,
    xvit_base_16x224_ssv2,
)
from ats_video.patch.xvit import shift_by_position
from ats_video.tokens import Layout, Tokens

# the Kinetics-600 layout in small: 4 frames shifted in groups of 2, a time embedding of 2 per run of 2
TINY = dict(img_size=32, patch_size=8, num_frames=4, shift_group=2, temp_embed_frames=2, embed_dim=48,
            depth=4, num_heads=3, num_classes=10, head_hidden_dim=40)
TINY_RELEASE = dict(NUM_SEGMENTS=2, SHIFT_DIV=8)
ATS_BLOCKS = (1, 2, 3)
K = 0.5  # with 16 patches per frame, K = 8 (the floor)
ATS_CASES = [None, "frame", "shared"]  # ATS off, per-frame sampling, shared positions

# The released layouts, from the release's configs (configs/Kinetics/xvit_B16_16x16_k600.yaml,
# configs/SSv2/xvit_B16_16x16.yaml): 16 frames; XVIT.NUM_SEGMENTS and XVIT.SHIFT_DIV. Its backbone
# is built without the clip's frame count, so temp_embed has VisionTransformer's default 8 entries.
RELEASED = {
    "k600": (xvit_base_16x224_k600, dict(NUM_SEGMENTS=8, SHIFT_DIV=8)),
    "ssv2": (xvit_base_16x224_ssv2, dict(NUM_SEGMENTS=16, SHIFT_DIV=4)),
}
RELEASED_TEMP_FRAMES = 8
# The presets at a tiny width. "crop": the Kinetics-600 preset with pos_embed built for 24 x 24
# (224 in the release) on 32 x 32 crops, so every forward resizes it (scale 4 / 3).
SMALL = dict(img_size=32, pos_embed_img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
             head_num_heads=3, num_classes=10, head_hidden_dim=40)
LAYOUTS = {
    "k600": ("k600", SMALL),
    "ssv2": ("ssv2", SMALL),
    "crop": ("k600", {**SMALL, "pos_embed_img_size": 24}),
}


# ---------------------------------------------------------------- an official checkpoint


def official_state(seed=0, temp_frames=TINY["temp_embed_frames"], num_classes=TINY["num_classes"],
                   depth=TINY["depth"], grid=TINY["img_size"] // TINY["patch_size"]):
    """Random weights under the release's key names (SlowFast ``model_state`` of ``XVIT``).

    ``temp_frames``: the backbone's ``num_frames``; ``grid``: pos_embed's side in patches.
    """
    g = torch.Generator().manual_seed(seed)
    d, p, c, hid = TINY["embed_dim"], TINY["patch_size"], num_classes, TINY["head_hidden_dim"]
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
    sd["base_model.pos_embed"] = rand(1, grid * grid + 1, d)
    sd["base_model.temp_embed"] = rand(1, temp_frames, 1, d)
    sd["base_model.patch_embed.proj.weight"] = rand(d, 3, p, p, scale=0.05)
    sd["base_model.patch_embed.proj.bias"] = rand(d, scale=0.05)
    for i in range(depth):
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
    """One query [D] over keys and values [n, D], per head: softmax(q k / sqrt(d)) v."""
    d = len(q) // heads
    out = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        logits = keys[:, sl] @ q[sl] / math.sqrt(d)
        a = torch.exp(logits - logits.max())
        out.append(a / a.sum() @ values[:, sl])
    return torch.cat(out)


def release_pos_embed(pos, crop, p):
    """vit.py: pos_embed [1 + s*s, D] is built for s*p pixels (224 in the release); for another crop
    the release resizes its grid in every forward with F.interpolate(scale_factor=(crop / 16) /
    (224 / 16), mode="bicubic") (16 there is the patch size) and keeps the CLS entry."""
    d, side = pos.shape[-1], math.isqrt(len(pos) - 1)
    if crop == side * p:
        return pos
    grid = pos[1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(crop / p) / (side * p / p), mode="bicubic")
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(-1, d)])


def reference(sd, clip, release=TINY_RELEASE, ats_blocks=(), k=K, mode="frame"):
    """Logits of one clip [C, T, H, W] and the kept positions {block: [sorted list per frame]}.

    ``release``: the release's XVIT.NUM_SEGMENTS and XVIT.SHIFT_DIV; the crop is the clip's size,
    the backbone's ``num_frames`` is temp_embed's length in ``sd``.
    """
    w = {n: v.double() for n, v in sd.items()}
    b = lambda name: w["base_model." + name]  # noqa: E731
    d, heads = b("cls_token").shape[-1], TINY["num_heads"]
    p = b("patch_embed.proj.weight").shape[-1]
    group, fold = release["NUM_SEGMENTS"], d // release["SHIFT_DIV"]
    frames, crop = clip.shape[1], clip.shape[-1]
    gw = crop // p
    pos_embed = release_pos_embed(b("pos_embed")[0], crop, p)
    # x.view(-1, num_frames, ...) + temp_embed: the release's rows of its backbone's num_frames
    # frames start at every clip's first frame, so frame t gets entry t % num_frames
    temp = b("temp_embed")[0, :, 0]

    # tokens[t] maps a position (0: CLS, s + 1: patch s in row-major order) to its vector;
    # the dropout after the position embedding has p = 0 in the release (its builder's drop_rate=0)
    tokens = []
    for t in range(frames):
        frame = {0: b("cls_token")[0, 0] + pos_embed[0] + temp[t % len(temp)]}
        for s in range(gw * gw):
            i, j = divmod(s, gw)
            patch = clip[:, t, i * p : (i + 1) * p, j * p : (j + 1) * p].reshape(-1)
            e = b("patch_embed.proj.weight").reshape(d, -1) @ patch + b("patch_embed.proj.bias")
            frame[s + 1] = e + pos_embed[s + 1] + temp[t % len(temp)]
        tokens.append(frame)

    kept = {}
    for n in range(len({name.split(".")[2] for name in w if name.startswith("base_model.blocks.")})):
        pre = f"blocks.{n}."
        q, key, val = [], [], []
        for frame in tokens:
            qkv = {pos: b(pre + "attn.qkv.weight") @ layer_norm(z, b(pre + "norm1.weight"), b(pre + "norm1.bias"), 1e-6)
                   + b(pre + "attn.qkv.bias") for pos, z in frame.items()}
            q.append({pos: v[:d] for pos, v in qkv.items()})
            key.append({pos: v[d : 2 * d] for pos, v in qkv.items()})
            val.append({pos: v[2 * d :] for pos, v in qkv.items()})

        def mixed(src, t, pos):
            # TemporalShift: frames form runs of NUM_SEGMENTS; channels [0, fold) come from frame
            # t+1 and [fold, 2 fold) from t-1 of the same run, at the same position; else zeros
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
            frame_keys = torch.stack([keys[t][x] for x in order])
            frame_vals = torch.stack([vals[t][x] for x in order])
            frame = {}
            for pos in outputs[t]:
                o = attend(q[t][pos], frame_keys, frame_vals, heads)
                y = tokens[t][pos] + b(pre + "attn.proj.weight") @ o + b(pre + "attn.proj.bias")
                hdn = gelu(b(pre + "mlp.fc1.weight") @ layer_norm(y, b(pre + "norm2.weight"), b(pre + "norm2.bias"), 1e-6)
                           + b(pre + "mlp.fc1.bias"))
                frame[pos] = y + b(pre + "mlp.fc2.weight") @ hdn + b(pre + "mlp.fc2.bias")
            new.append(frame)
        tokens = new

    # the "vit" consensus (VitHead): a transformer block over [CLS, frame CLS features], then the
    # MLP head; the dropouts before and inside it are inactive in eval mode
    c = lambda name: w["consensus." + name]  # noqa: E731
    seq = [c("cls_token")[0, 0]] + [layer_norm(f[0], b("norm.weight"), b("norm.bias"), 1e-6) for f in tokens]
    pre = "temporal_encoder.0."
    y = [layer_norm(z, c(pre + "norm1.weight"), c(pre + "norm1.bias"), 1e-5) for z in seq]
    qkv = [c(pre + "attn.qkv.weight") @ z for z in y]
    ks, vs = [v[d : 2 * d] for v in qkv], [v[2 * d :] for v in qkv]
    z = seq[0] + c(pre + "attn.proj.weight") @ attend(qkv[0][:d], torch.stack(ks), torch.stack(vs), heads) + c(pre + "attn.proj.bias")
    hdn = gelu(c(pre + "mlp.fc1.weight") @ layer_norm(z, c(pre + "norm2.weight"), c(pre + "norm2.bias"), 1e-5)
               + c(pre + "mlp.fc1.bias"))
    z = z + c(pre + "mlp.fc2.weight") @ hdn + c(pre + "mlp.fc2.bias")
    z = gelu(c("mlp_head.1.weight") @ layer_norm(z, c("mlp_head.0.weight"), c("mlp_head.0.bias"), 1e-5)
             + c("mlp_head.1.bias"))
    return c("mlp_head.4.weight") @ z + c("mlp_head.4.bias"), kept


# ---------------------------------------------------------------- helpers


def loaded_model(tmp_path, mode=None, seed=0):
    sd = official_state(seed)
    write_official(tmp_path / "xvit.pth", sd)
    model = xvit(**TINY).eval()
    load_checkpoint(model, tmp_path / "xvit.pth")
    if mode is not None:
        apply_ats(model, ATS_BLOCKS, K, mode=mode)
    return model, sd


def clips(n, seed=1, frames=TINY["num_frames"], size=TINY["img_size"]):
    return torch.randn(n, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def kept_positions(model, clip_index):
    """{block: [sorted patch positions kept in each frame]} from ``kept_tokens(model)``."""
    out = {}
    for record in kept_tokens(model):
        frames, _, gw = record.mask.shape[1:]
        pos = record.positions[clip_index]
        pos = pos[pos[:, 0] >= 0]
        out[record.block] = [sorted(int(h) * gw + int(w) for t_, h, w in pos.tolist() if t_ == t)
                             for t in range(frames)]
    return out


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", ATS_CASES)
def test_model_matches_reference(tmp_path, mode):
    model, sd = loaded_model(tmp_path, mode)
    x = clips(2)
    with torch.no_grad():
        logits = model(x)
    for i in range(len(x)):
        expected, kept = reference(sd, x[i].double(), TINY_RELEASE, ATS_BLOCKS if mode else (), K, mode or "frame")
        torch.testing.assert_close(logits[i].double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
        if mode is not None:
            assert kept_positions(model, i) == kept
    if mode == "frame":  # the case is worth its name only if frames keep different sets
        assert any(len({tuple(f) for f in frames}) > 1 for frames in kept_positions(model, 0).values())


@pytest.mark.parametrize("mode", ATS_CASES)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_released_layouts_match_the_release(tmp_path, layout, mode):
    """The presets at a tiny width, on 16 frames, equal the release's forward, in float64.

    The file in the release's layout loads strictly and unchanged: temp_embed keeps its 8
    entries and pos_embed its built size, whatever the crop.
    """
    name, size = LAYOUTS[layout]
    preset, release = RELEASED[name]
    sd = official_state(temp_frames=RELEASED_TEMP_FRAMES, depth=size["depth"],
                        grid=size["pos_embed_img_size"] // size["patch_size"])
    write_official(tmp_path / "xvit.pth", sd)
    model = preset(**size).eval()
    load_checkpoint(model, tmp_path / "xvit.pth")
    for key, value in model.state_dict().items():
        source = key if key.startswith("consensus.") else "base_model." + key
        assert torch.equal(value, sd[source]), key
    blocks = (0,)  # not the last block: the tokens it drops change what the next block computes
    if mode is not None:
        apply_ats(model, blocks, K, mode=mode)
    x = clips(1, frames=16, size=size["img_size"]).double()
    with torch.no_grad():
        logits = model.double()(x)[0]
    expected, kept = reference(sd, x[0], release, blocks if mode else (), K, mode or "frame")
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12 * expected.abs().max().item())
    if mode is not None:
        assert kept_positions(model, 0) == kept


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


def test_checkpoint_fits_embeddings_of_other_sizes(caplog):
    sd = official_state()  # pos_embed of a 4 x 4 grid, temp_embed of 2 entries
    model = xvit(**{**TINY, "img_size": 48, "temp_embed_frames": 4})  # a 6 x 6 pos_embed, 4 entries
    with caplog.at_level(logging.WARNING):
        out = checkpoint_filter_fn(sd, model)
    assert out["pos_embed"].shape == (1, 37, 48)
    assert torch.equal(out["pos_embed"][:, 0], sd["base_model.pos_embed"][:, 0])
    # added per run of its length, so repeating the embedding leaves the forward as it was
    assert torch.equal(out["temp_embed"], sd["base_model.temp_embed"].repeat(1, 2, 1, 1))
    assert "pos_embed resized" in caplog.text and "temp_embed tiled" in caplog.text
    # equal runs (this project's older files stored the release's entries tiled): one run kept
    tiled = {**sd, "base_model.temp_embed": sd["base_model.temp_embed"].repeat(1, 2, 1, 1)}
    assert torch.equal(checkpoint_filter_fn(tiled, xvit(**TINY))["temp_embed"], sd["base_model.temp_embed"])
    # anything else is interpolated along time, and said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = checkpoint_filter_fn(official_state(temp_frames=4), xvit(**TINY))
    assert out["temp_embed"].shape == (1, 2, 1, 48) and "temp_embed interpolated" in caplog.text


def test_older_files_of_this_project_load_with_the_same_logits(tmp_path):
    """Files saved before temp_embed kept the release's shape hold its entries tiled over the clip."""
    sd = official_state()
    write_official(tmp_path / "xvit.pth", sd)
    old_layout = xvit(**{**TINY, "temp_embed_frames": TINY["num_frames"]}).eval()
    load_checkpoint(old_layout, tmp_path / "xvit.pth")
    save_checkpoint(old_layout, tmp_path / "old.pth", epoch=3)
    model = xvit(**TINY).eval()
    assert load_checkpoint(model, tmp_path / "old.pth")["epoch"] == 3
    with torch.no_grad():
        torch.testing.assert_close(model(clips(2)), old_layout(clips(2)), rtol=0, atol=0)


@pytest.mark.parametrize("preset", [xvit_base_16x224_k600, xvit_base_16x224_ssv2])
def test_presets_hold_the_release_parameters_and_dropouts(preset):
    """The release's builder: temp_embed of 8 entries and pos_embed for 224 at any crop; no
    dropout in the backbone (its drop_rate=0: none after the position embedding either), and
    MODEL.DROPOUT_RATE 0.5 on each frame's CLS feature and in VitHead's MLP."""
    with torch.device("meta"):  # shapes only
        for crop in (224, 448):
            model = preset(img_size=crop)
            assert model.pos_embed.shape == (1, 197, 768) and model.temp_embed.shape == (1, 8, 1, 768)
    active = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and m.p > 0}
    assert active == {"head_drop": 0.5, "consensus.mlp_head.3": 0.5}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="multiple of shift_group"):
        xvit(**{**TINY, "shift_group": 3})
    with pytest.raises(ValueError, match="multiple of temp_embed_frames 3"):
        xvit(**{**TINY, "temp_embed_frames": 3})
    with torch.device("meta"), pytest.raises(ValueError, match="img_size 976: .* 60x60 grid, .* 61x61"):
        xvit_base_16x224_k600(img_size=976)  # floor(14 * (61 / 14)) is 60 in floating point
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


@pytest.mark.parametrize("preset", [xvit_base_16x224_k600, xvit_base_16x224_ssv2])
def test_flops_of_the_released_size(preset):
    """XViT-B/16 at 224 costs 16 frames x one ViT-B/16 image (17.6 GFLOPs), plus a tiny head."""
    with torch.device("meta"):  # shapes only: counting needs no real weights or pixels
        model = preset().eval()
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
