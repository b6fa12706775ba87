"""tools/predict.py and tools/visualize.py as a user runs them: videos of several sizes, frame
rates and containers written here, a broken one, checkpoints in the official layouts from
random weights; printed top-5 with names, features, exit codes, and pictures whose dimmed
patches are read back from their pixels and compared with what the model kept."""

import functools
import importlib.util
import json
import os
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import ats_video  # noqa: F401  (before timm)
from ats_video import kept_tokens, vis
from ats_video.build import build_dataset, build_model
from ats_video.config import load_config
from ats_video.data.video_io import decoding_order, write_video
from ats_video.families import create_model
from ats_video.flops import count_gflops

ROOT = Path(__file__).resolve().parent.parent


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


predict_tool, visualize_tool = load_tool("predict"), load_tool("visualize")

CLASSES = ["archery", "bowling", "cartwheel", "dribbling", "eating", "juggling"]
TINY = dict(patch_size=8, embed_dim=48, depth=4, num_heads=3)
SCALE = 3  # vis.default_scale of a 32-px crop: tiles of 96 px


def moving_square(num_frames, height, width, seed):
    """Noise around a colour with a bright square crossing it: frames differ, so each frame
    keeps its own tokens."""
    rng = np.random.default_rng(seed)
    frames = np.clip(rng.normal(110, 45, (num_frames, height, width, 3)), 0, 255).astype(np.uint8)
    side = min(height, width) // 3
    for t in range(num_frames):
        x = (width - side) * t // max(num_frames - 1, 1)
        frames[t, height // 3 : height // 3 + side, x : x + side] = (250, 240, 60)
    return frames


def write_avi(path, frames, fps):
    """An MPEG-4 Part 2 video in an AVI container."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three videos (mp4 64x48 at 30 fps, a portrait avi 48x80 at 12 fps, mp4 100x56 at 25
    fps), a broken one, class names and a TimeSformer checkpoint in the official layout."""
    root = tmp_path_factory.mktemp("predict")
    write_video(str(root / "wide.mp4"), moving_square(24, 48, 64, 0), fps=30)
    write_avi(root / "tall.avi", moving_square(14, 80, 48, 1), fps=12)
    write_video(str(root / "odd size.mp4"), moving_square(30, 56, 100, 2), fps=25)
    (root / "broken.mp4").write_bytes(os.urandom(3000))
    (root / "classids.json").write_text(json.dumps({name: i for i, name in enumerate(CLASSES)}))
    torch.manual_seed(0)
    model = create_model("timesformer", num_frames=4, img_size=32, num_classes=6, **TINY)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"epoch": 15, "model_state": state, "optimizer_state": {}, "cfg": "TRAIN: {}"},
        root / "TimeSformer_divST_8x32_224_K400.pyth",
    )
    return root


def videos(files):
    return [str(files / name) for name in ("wide.mp4", "tall.avi", "odd size.mp4")]


def options(**overrides):
    values = {
        "DATA.NUM_FRAMES": 4,
        "DATA.SAMPLING_RATE": 3,
        "DATA.TRAIN_JITTER_SCALES": "[32, 40]",
        "DATA.TRAIN_CROP_SIZE": 32,
        "DATA.TEST_CROP_SIZE": 32,
        "MODEL.ARCH": "timesformer",
        "MODEL.PATCH_SIZE": 8,
        "MODEL.EMBED_DIM": 48,
        "MODEL.DEPTH": 4,
        "MODEL.NUM_HEADS": 3,
        "MODEL.NUM_CLASSES": 6,
        "ATS.BLOCKS": "[1, 3]",
        "ATS.K": 6,  # of 16 tokens per frame
        **overrides,
    }
    return [str(x) for item in values.items() for x in item]


def tool_args(files, *extra, **overrides):
    return ["--cfg", "", "--checkpoint", str(files / "TimeSformer_divST_8x32_224_K400.pyth"),
            "--class-names", str(files / "classids.json"), *extra, *options(**overrides)]  # fmt: skip


@functools.lru_cache(maxsize=None)
def reference(files, mode="frame"):
    """What the multi-view test computes for the three videos, from its own dataset: per video
    the views [3, C, T, H, W], the mean softmax [6], the mean pre-logits features [48], the
    kept masks of the views per ATS block; for the first, the GFLOPs of a view, counted."""
    overrides = {"ATS.MODE": mode}
    (files / "list.csv").write_text("".join(f"{p} 0\n" for p in videos(files)))
    cfg = load_config("", options(**overrides) + ["DATA.PATH_TO_DATA_DIR", str(files),
                                                  "DATA.TEST_LIST", "list.csv"])  # fmt: skip
    model = build_model(cfg).eval()
    ats_video.load_checkpoint(model, files / "TimeSformer_divST_8x32_224_K400.pyth")
    dataset = build_dataset(cfg, "test")
    out = []
    for v in range(3):
        views = torch.stack([dataset[3 * v + i]["video"] for i in range(3)])
        with torch.no_grad():
            tokens = model.forward_features(views)
            probs = model.forward_head(tokens).softmax(-1).mean(0)
            features = model.forward_head(tokens, pre_logits=True).mean(0)
        masks = {r.block: r.mask.numpy() for r in kept_tokens(model)}
        out.append(dict(views=views, probs=probs, features=features, masks=masks))
    out[0]["gflops"] = count_gflops(model, out[0]["views"]).mean().item()  # each view alone
    return out


def top5_printed(text, path):
    """The (probability, name) lines printed under ``path``."""
    lines = text.split(f"] {path}\n", 1)[1].splitlines()
    rows = [line.split("%  ") for line in lines[:5]]
    return [(float(p), name) for p, name in rows]


def test_predict_prints_the_tests_top5_with_names(files, capsys):
    code = predict_tool.main([*videos(files), str(files / "broken.mp4"), *tool_args(files)])
    out = capsys.readouterr()
    assert code == 1  # one video could not be read
    assert "[4/4] " + str(files / "broken.mp4") + f": cannot be read: {decoding_order()[0]}: " in out.out
    assert "3 of 4 videos read" in out.out and "cannot be read: " + str(files / "broken.mp4") in out.err
    want = reference(files)
    for path, ref in zip(videos(files), want):
        printed = top5_printed(out.out, path)
        values, indices = ref["probs"].topk(5)
        assert [name for _, name in printed] == [CLASSES[i] for i in indices]
        assert [p for p, _ in printed] == pytest.approx((100 * values).tolist(), abs=0.006)
    assert out.out.count("kept tokens per clip (of 64), mean over the views: block 1: ") == 3
    gflops = re.findall(r"GFLOPs per view: ([\d.e-]+) as run, ([\d.e-]+) without ATS", out.out)
    assert len(gflops) == 3 and all(float(plain) > float(as_run) for as_run, plain in gflops)
    assert float(gflops[0][0]) == pytest.approx(want[0]["gflops"], rel=2e-3)  # 4 digits printed


def test_predict_exits_0_when_every_video_is_read(files, capsys):
    assert predict_tool.main([*videos(files)[:2], *tool_args(files, "--views", "center")]) == 0
    assert "1x1 views per video" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_features_are_the_tests_pre_logits_one_row_per_video_read(files, tmp_path, suffix):
    path = tmp_path / f"features{suffix}"
    arguments = [*videos(files), str(files / "broken.mp4"), "--save-features", str(path)]
    assert predict_tool.main([*arguments, *tool_args(files)]) == 1
    if suffix == ".pt":
        saved = torch.load(path, weights_only=True)
        features, paths = saved["features"], saved["paths"]
        assert saved["views"] == "1x3" and saved["arch"] == "timesformer"
    else:
        saved = np.load(path)
        features, paths = torch.from_numpy(saved["features"]), saved["paths"].tolist()
    assert paths == videos(files) and features.shape == (3, 48)
    want = reference(files)
    torch.testing.assert_close(features, torch.stack([ref["features"] for ref in want]))


def test_a_features_file_of_another_kind_is_refused_before_any_work(files, capsys):
    with pytest.raises(SystemExit) as error:
        predict_tool.main([*videos(files), "--save-features", "f.csv", *tool_args(files)])
    assert error.value.code == 2 and "write a .pt or .npz file" in capsys.readouterr().err


def geometry(rows, cols, mode="frame", tile=32 * SCALE):
    """Where the tools' pictures put their tiles: 2 title lines, and for a clip the mode's line
    and the mode under each block's label."""
    mode = "\n" + vis.ROW_MODE[mode] if cols > 1 else ""
    labels = ["input"] + [f"block {b}{mode}" for b in range(rows - 1)]
    return vis.grid_geometry(rows=rows, cols=cols, tile=(tile, tile), row_labels=labels,
                             title_lines=["x"] * (3 if cols > 1 else 2), typeface=vis.font())  # fmt: skip


def picture_masks(picture, rows, cols, mode="frame", patches=4, tile=32 * SCALE):
    """The kept masks [rows - 1, T, h, w] read back from a picture's pixels: a patch is kept
    where its tile shows the input frame's pixels unchanged, dropped where they are dimmed to
    0.3 (anything else fails)."""
    layout = geometry(rows, cols, mode, tile)
    assert picture.shape[0] == layout.height  # these rows, and no more
    size = tile // patches

    def tile_at(row, col):
        top, left = layout.tile_origin(row, col)
        return picture[top : top + tile, left : left + tile].astype(int)

    masks = np.zeros((rows - 1, cols, patches, patches), dtype=bool)
    for col in range(cols):
        frame = tile_at(0, col)
        for row in range(1, rows):
            shown = tile_at(row, col)
            for i in range(patches):
                for j in range(patches):
                    cell = np.s_[i * size : (i + 1) * size, j * size : (j + 1) * size]
                    if np.array_equal(shown[cell], frame[cell]):
                        masks[row - 1, col, i, j] = True
                    else:
                        assert np.array_equal(shown[cell], (frame[cell] * 0.3).astype(int)), (row, col, i, j)
    return masks


@pytest.mark.parametrize("mode", ["frame", "shared"])
def test_pictures_dim_exactly_what_each_block_dropped(files, tmp_path, capsys, mode):
    out = tmp_path / "vis"
    code = predict_tool.main([*videos(files), "--save-vis", str(out),
                              *tool_args(files, **{"ATS.MODE": mode})])  # fmt: skip
    assert code == 0
    assert sorted(os.listdir(out)) == ["odd size.png", "tall.png", "wide.png"]
    want = reference(files, mode)
    differs = []
    for name, ref in zip(("wide", "tall", "odd size"), want):
        picture = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
        masks = picture_masks(picture, rows=3, cols=4, mode=mode)
        # the centre view (crop 1 of 3) as the model kept it in blocks 1 and 3
        assert np.array_equal(masks, np.stack([ref["masks"][1][1], ref["masks"][3][1]]))
        assert masks.sum((2, 3)).max() <= 6 and masks.sum() < masks.size  # K = 6 of 16
        same = all(np.array_equal(row[0], row[t]) for row in masks for t in range(4))
        differs.append(not same)
        # the input row is the centre view's frames as the test read them
        frames = vis.view_frames(ref["views"][1], (0.45,) * 3, (0.225,) * 3)
        top, left = geometry(rows=3, cols=4, mode=mode).tile_origin(0, 2)
        assert np.array_equal(picture[top : top + 96, left : left + 96], vis.upscale(frames[2], 3))
    # per frame, the frames of a clip keep different sets; shared, one set for all
    assert any(differs) if mode == "frame" else not any(differs)


def test_visualize_draws_a_list_with_labels_and_animations(files, tmp_path, capsys):
    listed = tmp_path / "val.csv"
    listed.write_text(f"{files / 'wide.mp4'} juggling\n{files / 'broken.mp4'} 2\n{files / 'tall.avi'} 1\n")
    out = tmp_path / "vis"
    code = visualize_tool.main(["--list", str(listed), "--out", str(out), "--animate", "gif",
                                *tool_args(files)])  # fmt: skip
    assert code == 1
    text = capsys.readouterr().out
    assert "broken.mp4: cannot be read" in text and "2 of 3 videos drawn" in text
    assert sorted(os.listdir(out)) == ["tall.png", "tall_block3.gif", "wide.png", "wide_block3.gif"]
    with Image.open(out / "wide_block3.gif") as gif:
        assert gif.n_frames == 4


def test_visualize_names_a_block_without_ats(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        visualize_tool.main([*videos(files)[:1], "--out", str(tmp_path), "--animate", "mp4",
                             "--block", "2", *tool_args(files)])  # fmt: skip
    assert stop.value.code == 2  # a wrong command line; 1 says a video could not be read
    assert "--block 2: not an ATS block of this model; they are [1, 3]" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--fps", "0"], "--fps must be above 0"),
    (["--block", "3"], "--block chooses the block an animation outlines"),
])  # fmt: skip
def test_visualize_refuses_options_that_cannot_work(files, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as stop:
        visualize_tool.main([*videos(files)[:1], "--out", str(tmp_path), *options, *tool_args(files)])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_an_image_model_predicts_images_and_draws_one_column(tmp_path, capsys):
    torch.manual_seed(0)
    deit = create_model("vit_tiny_patch16_224", img_size=32, num_classes=6, **TINY)
    torch.save({"model": deit.state_dict()}, tmp_path / "deit_tiny.pth")  # the DeiT release's
    Image.fromarray(moving_square(1, 40, 50, 3)[0]).save(tmp_path / "photo.png")
    (tmp_path / "not_an_image.jpg").write_bytes(b"\x00" * 100)
    settings = {
        "DATA.DATASET": "imagenet", "DATA.TEST_RESIZE_SIZE": 36, "MODEL.ARCH": "vit_tiny_patch16_224",
        "DATA.MEAN": "[0.485, 0.456, 0.406]", "DATA.STD": "[0.229, 0.224, 0.225]",
    }  # fmt: skip
    arguments = [str(tmp_path / "photo.png"), str(tmp_path / "not_an_image.jpg"),
                 "--cfg", "", "--checkpoint", str(tmp_path / "deit_tiny.pth"),
                 "--save-vis", str(tmp_path / "vis"), *options(**settings)]  # fmt: skip
    assert predict_tool.main(arguments) == 1
    out = capsys.readouterr().out
    assert "1x1 views per video" in out and "not_an_image.jpg: cannot be read: PIL: " in out
    names = [name for _, name in top5_printed(out, tmp_path / "photo.png")]
    assert len(names) == 5 and all(re.fullmatch(r"class [0-5]", n) for n in names)  # no names
    picture = np.asarray(Image.open(tmp_path / "vis" / "photo.png").convert("RGB"))
    masks = picture_masks(picture, rows=3, cols=1)
    assert masks.shape == (2, 1, 4, 4) and masks.sum((2, 3)).max() <= 6


def test_no_weights_are_named(files):
    with pytest.raises(FileNotFoundError, match="no weights: give --checkpoint"):
        predict_tool.main([*videos(files)[:1], "--cfg", "", *options(OUTPUT_DIR=str(files / "none"))])


def test_files_named_like_config_keys_are_files(tmp_path, monkeypatch):
    from ats_video.inference import split_files_and_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "IMG_0001.MOV").write_bytes(b"")  # a camera's name, written as a config key would be
    assert split_files_and_options(["a.mp4", "IMG_0001.MOV", "ATS.K", "6"]) == (
        ["a.mp4", "IMG_0001.MOV"], ["ATS.K", "6"]
    )
    assert split_files_and_options(["a.mp4", "GOPR0001.MP4"]) == (["a.mp4"], ["GOPR0001.MP4"])
