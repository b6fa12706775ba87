"""The data_prep scripts, run in-process on files the tests write."""

import importlib.util
import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from videos import write_broken_video, write_counter_video, write_cut_video

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.build import build_dataset
from ats_video.config import get_cfg
from ats_video.data.imagenet import ImageNetFolder
from ats_video.data.lists import read_class_names, read_video_list
from ats_video.data.synthetic import SYNTHETIC_CLASSES, render_action
from ats_video.data.video_io import count_frames, read_frames

DATA_PREP = os.path.join(os.path.dirname(__file__), "..", "data_prep")
SCRIPTS = [
    "synthetic_kinetics",
    "kinetics_lists",
    "check_videos",
    "resize_videos",
    "imagenet_val_dirs",
]


def script(name):
    """The script as a module; registered so its worker processes can find its functions."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(DATA_PREP, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit:
        script(name).main(["--help"])
    assert exit.value.code == 0 and "usage:" in capsys.readouterr().out


SYNTHETIC_ARGS = ["--classes", "3", "--train-per-class", "2", "--val-per-class", "1",
                  "--frames", "16", "--size", "64x48", "--workers", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    assert script("synthetic_kinetics").main(["--out", out, *SYNTHETIC_ARGS]) == 0
    return out


def test_synthetic_kinetics_layout_and_rerun(synthetic, capsys):
    assert read_class_names(os.path.join(synthetic, "classids.json")) == list(SYNTHETIC_CLASSES[:3])
    train = read_video_list(os.path.join(synthetic, "train.csv"), prefix=synthetic)
    val = read_video_list(os.path.join(synthetic, "val.csv"), prefix=synthetic)
    assert [v.label for v in train] == [0, 0, 1, 1, 2, 2] and len(val) == 3
    assert re.fullmatch(r"[A-Za-z0-9_-]{11}_\d{6}_\d{6}\.mp4", os.path.basename(train[0].path))
    assert f"/train/{SYNTHETIC_CLASSES[0]}/" in train[0].path
    assert count_frames(train[0].path) == 16
    # Clutter cycles over each class's videos: levels 0 and 1 here, level 2 and 3 lists empty.
    by_level = [
        read_video_list(os.path.join(synthetic, f"train_clutter{level}.csv"), prefix=synthetic)
        if level < 2 else open(os.path.join(synthetic, f"train_clutter{level}.csv")).read()
        for level in range(4)
    ]  # fmt: skip
    assert by_level[0] == train[0::2] and by_level[1] == train[1::2] and by_level[2:] == ["", ""]
    mtime = os.path.getmtime(train[0].path)
    capsys.readouterr()
    assert script("synthetic_kinetics").main(["--out", synthetic, *SYNTHETIC_ARGS]) == 0
    assert "9 videos (9 already there)" in capsys.readouterr().out
    assert os.path.getmtime(train[0].path) == mtime
    assert script("synthetic_kinetics").main(["--out", synthetic, "--frames", "8"]) == 1


def actor_masks(frames):
    """Per frame, the pixels that differ from the top-left pixel (the plain background)."""
    return np.abs(frames.astype(int) - frames[0, 0, 0].astype(int)).sum(-1) > 30


def test_synthetic_actions_are_deterministic_and_move():
    def render(name, seed=1):
        return render_action(SYNTHETIC_CLASSES.index(name), seed=[seed], clutter=0)

    horizontal = render("moving horizontally")
    assert np.array_equal(horizontal, render("moving horizontally"))
    columns = [np.nonzero(m.any(0))[0].mean() for m in actor_masks(horizontal)]
    assert abs(columns[-1] - columns[0]) > 0.4 * horizontal.shape[2]  # it crossed much of the frame
    rows = [np.nonzero(m.any(1))[0].mean() for m in actor_masks(horizontal)]
    assert max(rows) - min(rows) < 1
    areas = actor_masks(render("changing size")).sum((1, 2))
    assert max(areas[0], areas[-1]) > 3 * min(areas[0], areas[-1])
    assert (actor_masks(render("blinking")).sum((1, 2)) == 0).any()  # off in some frames
    still = actor_masks(render("standing still"))
    assert (still == still[0]).all() and still[0].any()
    # Either way in time: over seeds, the motion runs both left-to-right and right-to-left.
    directions = set()
    for seed in range(8):
        masks = actor_masks(render("moving horizontally", seed))
        directions.add(np.nonzero(masks[-1].any(0))[0].mean() > np.nonzero(masks[0].any(0))[0].mean())
    assert directions == {True, False}


def test_synthetic_dataset_through_build_dataset_and_loader(synthetic):
    cfg = get_cfg()
    overrides = {
        "DATA.PATH_TO_DATA_DIR": synthetic,
        "DATA.CLASS_NAMES_FILE": "classids.json",
        "DATA.NUM_FRAMES": 4,
        "DATA.SAMPLING_RATE": 4,
        "DATA.TRAIN_JITTER_SCALES": [48, 56],
        "DATA.TRAIN_CROP_SIZE": 48,
        "DATA.TEST_CROP_SIZE": 48,
    }
    cfg.merge_from_list([x for item in overrides.items() for x in item])
    loader = torch.utils.data.DataLoader(build_dataset(cfg, "train"), batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["video"].shape == (3, 3, 4, 48, 48) and batch["num_replaced"].sum() == 0
    test = build_dataset(cfg, "test")
    assert len(test) == 9 and test[8]["usable"] and test[8]["label"] == 2


def test_kinetics_lists_from_annotations(synthetic, tmp_path, capsys):
    annotations = [os.path.join(synthetic, "annotations", f) for f in ["train.csv", "validate.csv"]]
    out = str(tmp_path / "lists")
    # A missing clip: hide the first training video from the scan.
    train_lines = open(os.path.join(synthetic, "train.csv")).read().splitlines(keepends=True)
    hidden = train_lines[0].rsplit(" ", 1)[0]
    os.rename(os.path.join(synthetic, hidden), os.path.join(synthetic, hidden + ".hidden"))
    try:
        assert (
            script("kinetics_lists").main(
                ["--annotations", *annotations, "--videos", synthetic, "--out", out]
            )
            == 0
        )
    finally:
        os.rename(os.path.join(synthetic, hidden + ".hidden"), os.path.join(synthetic, hidden))
    printed = capsys.readouterr().out
    assert "train.csv: 5 clips (written); 1 missing on disk" in printed
    assert open(os.path.join(out, "train.csv")).read() == "".join(train_lines[1:])
    assert (
        open(os.path.join(out, "val.csv")).read() == open(os.path.join(synthetic, "val.csv")).read()
    )
    assert json.load(open(os.path.join(out, "classids.json"))) == json.load(
        open(os.path.join(synthetic, "classids.json"))
    )
    assert os.path.basename(hidden)[:-4] in open(os.path.join(out, "missing_train.txt")).read()
    assert (
        script("kinetics_lists").main(
            ["--annotations", *annotations, "--videos", synthetic, "--out", out]
        )
        == 0
    )
    assert "train.csv: 6 clips (written); none missing" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(out, "missing_train.txt"))
    assert (
        script("kinetics_lists").main(
            ["--annotations", *annotations, "--videos", synthetic, "--out", out]
        )
        == 0
    )
    assert "train.csv: 6 clips (unchanged)" in capsys.readouterr().out
    # An annotation CSV saved with a BOM (Excel) still has its "label" column.
    bom = tmp_path / "bom" / "train.csv"
    bom.parent.mkdir()
    bom.write_bytes(b"\xef\xbb\xbf" + open(annotations[0], "rb").read())
    bom_out = str(tmp_path / "bom_lists")
    script("kinetics_lists").main(
        ["--annotations", str(bom), "--videos", synthetic, "--out", bom_out]
    )
    assert open(os.path.join(bom_out, "train.csv")).read() == "".join(train_lines)
    bad = tmp_path / "bad.csv"
    bad.write_text("label,youtube_id,time_start,time_end,split\nzumba,abc,1,11,holdout\n")
    with pytest.raises(SystemExit, match="bad.csv line 2: unknown split 'holdout'"):
        script("kinetics_lists").main(
            ["--annotations", str(bad), "--videos", synthetic, "--out", out]
        )


def test_check_videos_writes_broken_and_clean_lists(tmp_path, monkeypatch, capsys):
    good = write_counter_video(str(tmp_path / "v" / "good one.mp4"), 20)
    write_broken_video(str(tmp_path / "v" / "garbage.mp4"), "garbage")
    write_broken_video(str(tmp_path / "v" / "truncated.mp4"), "truncated", good)
    write_cut_video(str(tmp_path / "v" / "cut.mp4"), good, 12)  # decodes 12 frames, no error
    listing = tmp_path / "val.csv"
    listing.write_text(
        "v/good one.mp4,0\nv/garbage.mp4,1\n\nv/missing.mp4,1\nv/truncated.mp4,2\nv/cut.mp4,0\n"
    )
    check_videos = script("check_videos")
    assert check_videos.main([str(listing), "--workers", "2"]) == 0
    assert "5 videos, 4 broken" in capsys.readouterr().out
    assert (tmp_path / "val.clean.csv").read_text() == "v/good one.mp4,0\n"
    broken = dict(
        line.split("\t") for line in (tmp_path / "val.broken.txt").read_text().splitlines()
    )
    assert sorted(os.path.basename(p) for p in broken) == [
        "cut.mp4",
        "garbage.mp4",
        "missing.mp4",
        "truncated.mp4",
    ]
    assert broken[str(tmp_path / "v" / "missing.mp4")] == "no such file"
    assert broken[str(tmp_path / "v" / "cut.mp4")] == (
        "cut short: the header promises 20 frames, the file holds 12"
    )
    # A second run decodes nothing: every result comes from the cache.
    monkeypatch.setattr(check_videos, "count_frames", lambda *a, **k: pytest.fail("decoded again"))
    assert check_videos.main([str(listing), "--workers", "2"]) == 0
    assert (tmp_path / "val.clean.csv").read_text() == "v/good one.mp4,0\n"


def test_resize_videos(tmp_path, capsys):
    write_counter_video(str(tmp_path / "src" / "a" / "x.mp4"), 20, height=48, width=64)
    write_counter_video(str(tmp_path / "src" / "portrait.mp4"), 10, height=64, width=48)
    write_broken_video(str(tmp_path / "src" / "bad.mp4"), "garbage")
    argv = [
        "--src",
        str(tmp_path / "src"),
        "--dst",
        str(tmp_path / "dst"),
        "--short-side",
        "32",
        "--workers",
        "2",
    ]
    assert script("resize_videos").main(argv) == 1
    assert "3 videos: 2 resized, 0 already done, 1 failed" in capsys.readouterr().out
    out = str(tmp_path / "dst" / "a" / "x.mp4")
    assert read_frames(out, lambda n: [0]).shape == (1, 32, 42, 3) and count_frames(out) == 20
    assert read_frames(str(tmp_path / "dst" / "portrait.mp4"), lambda n: [9]).shape == (
        1,
        42,
        32,
        3,
    )
    assert "bad.mp4\t" in (tmp_path / "dst" / "resize_failures.txt").read_text()
    assert not os.path.exists(tmp_path / "dst" / "bad.mp4")
    mtime = os.path.getmtime(out)
    assert script("resize_videos").main(argv) == 1
    assert "0 resized, 2 already done, 1 failed" in capsys.readouterr().out
    assert os.path.getmtime(out) == mtime


@pytest.mark.parametrize("kaggle", [True, False])
def test_imagenet_val_dirs(tmp_path, kaggle, capsys):
    val = tmp_path / "val"
    os.makedirs(val)
    names = [f"ILSVRC2012_val_0000000{i}.JPEG" for i in range(1, 5)]
    for name in names:
        Image.new("RGB", (32, 32)).save(val / name)
    synsets = ["n01440764", "n01443537", "n01440764"]  # the fourth image has no label
    if kaggle:
        text = "ImageId,PredictionString\n" + "".join(
            f"{n[:-5]},{s} 1 2 3 4 {s} 5 6 7 8\n" for n, s in zip(names, synsets)
        )
    else:
        text = "".join(f"{n} {s}\n" for n, s in zip(names, synsets))
    (tmp_path / "labels.txt").write_text(text)
    argv = ["--val", str(val), "--labels", str(tmp_path / "labels.txt")]
    assert script("imagenet_val_dirs").main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "3 images moved; 3 images in class folders" in printed
        and "1 images have no label" in printed
    )
    assert sorted(os.listdir(val / "n01440764")) == [names[0], names[2]]
    assert script("imagenet_val_dirs").main(argv) == 0
    assert "0 images moved; 3 images in class folders" in capsys.readouterr().out
    assert len(ImageNetFolder(str(tmp_path), split="val")) == 3
    (tmp_path / "bad.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\n")
    with pytest.raises(SystemExit, match="bad.txt line 1: expected 'image nXXXXXXXX'"):
        script("imagenet_val_dirs").main(["--val", str(val), "--labels", str(tmp_path / "bad.txt")])


def test_kinetics_lists_names_the_line_of_a_bad_annotation(tmp_path):
    header = "label,youtube_id,time_start,time_end,split\n"
    for name, data, message in [
        ("latin1.csv", (header + "caf\u00e9,abc,1,11,train\n").encode("latin-1"),
         "latin1.csv line 2: not valid UTF-8"),
        ("short.csv", (header + "zumba,abc,1\n").encode(), "short.csv line 2: fewer fields"),
    ]:  # fmt: skip
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SystemExit, match=message):
            script("kinetics_lists").main(
                ["--annotations", str(tmp_path / name), "--videos", str(tmp_path), "--out",
                 str(tmp_path / "out")]
            )  # fmt: skip


def _annotations(path, rows):
    header = "label,youtube_id,time_start,time_end,split\n"
    path.write_text(header + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return str(path)


def test_kinetics_lists_never_renumber_an_existing_class_map(synthetic, tmp_path, capsys):
    lists = script("kinetics_lists")
    annotations = [os.path.join(synthetic, "annotations", f) for f in ["train.csv", "validate.csv"]]
    out = str(tmp_path / "lists")
    common = ["--videos", synthetic, "--out", out]
    assert lists.main(["--annotations", *annotations, *common]) == 0
    classids = open(os.path.join(out, "classids.json")).read()
    train = open(os.path.join(out, "train.csv")).read()
    # A second run on part of the annotations, here validation rows of the last two classes
    # only: the map keeps all three classes and their indices, as train.csv needs.
    rows = [r.split(",") for r in open(annotations[1]).read().splitlines()[1:]]
    names = list(SYNTHETIC_CLASSES[:3])
    part = _annotations(tmp_path / "part.csv", [r[:5] for r in rows if r[0] != names[0]])
    assert lists.main(["--annotations", part, *common]) == 0
    assert open(os.path.join(out, "classids.json")).read() == classids
    assert open(os.path.join(out, "train.csv")).read() == train
    val = read_video_list(os.path.join(out, "val.csv"), prefix=synthetic)
    assert [v.label for v in val] == [1, 2]
    # A class the map lacks is refused, naming it; --extend-classes appends it.
    new = _annotations(tmp_path / "new.csv", [[r[0] if i else "zebra", *r[1:5]]
                                              for i, r in enumerate(rows)])  # fmt: skip
    with pytest.raises(SystemExit, match=r"classes not in .*classids.json: \['zebra'\]"):
        lists.main(["--annotations", new, *common])
    assert open(os.path.join(out, "classids.json")).read() == classids
    assert lists.main(["--annotations", new, "--extend-classes", *common]) == 0
    assert read_class_names(os.path.join(out, "classids.json")) == [*names, "zebra"]
    # --classes that disagree with the map in --out are refused, naming the differences.
    other = tmp_path / "other.json"
    other.write_text(json.dumps([names[1], names[0], names[2], "zebra"]))
    with pytest.raises(SystemExit, match=rf"index 0: '{names[0]}' in .*, '{names[1]}' in"):
        lists.main(["--annotations", *annotations, "--classes", str(other), *common])


def test_check_videos_survives_a_torn_cache_line(tmp_path, monkeypatch):
    for name in ["a.mp4", "b.mp4"]:
        write_counter_video(str(tmp_path / "v" / name), 8)
    listing = tmp_path / "val.csv"
    listing.write_text("v/a.mp4 0\nv/b.mp4 1\n")
    check_videos = script("check_videos")
    assert check_videos.main([str(listing), "--workers", "1"]) == 0
    cache = tmp_path / ".val.check_cache.jsonl"
    # A kill in the middle of writing b.mp4's entry: a torn last line, no line break.
    lines = cache.read_text().splitlines(keepends=True)
    torn = next(line for line in lines if "b.mp4" in line)
    cache.write_text("".join(line for line in lines if line != torn) + torn[: len(torn) // 2])
    decoded = tmp_path / "decoded.txt"  # written by the worker processes

    def count_frames(path, **kwargs):
        with open(decoded, "a") as f:
            f.write(path + "\n")
        return 8

    monkeypatch.setattr(check_videos, "count_frames", count_frames)
    assert check_videos.main([str(listing), "--workers", "1"]) == 0
    assert decoded.read_text() == f"{tmp_path}/v/b.mp4\n"  # a.mp4 came from the cache
    assert (tmp_path / "val.clean.csv").read_text() == "v/a.mp4 0\nv/b.mp4 1\n"
    entries, whole = check_videos.read_cache(str(cache))
    assert whole and len(entries) == 2


def resize_argv(src, dst, *extra):
    return ["--src", str(src), "--dst", str(dst), "--short-side", "32", "--workers", "2", *extra]


def test_resize_videos_refuses_two_sources_for_one_output(tmp_path, capsys):
    # a.avi and a.mp4 would both become dst/a.mp4: the second overwrote the first, and the
    # summary said both were resized.
    write_counter_video(str(tmp_path / "src" / "a.mp4"), 6)
    shutil.copy(tmp_path / "src" / "a.mp4", tmp_path / "src" / "a.avi")
    write_counter_video(str(tmp_path / "src" / "b.mp4"), 6)
    resize_videos = script("resize_videos")
    assert resize_videos.main(resize_argv(tmp_path / "src", tmp_path / "dst")) == 1
    assert "3 videos: 1 resized, 0 already done, 2 failed" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "dst")) == ["b.mp4", "resize_failures.txt"]
    failures = (tmp_path / "dst" / "resize_failures.txt").read_text()
    assert f"{tmp_path}/src/a.avi\t" in failures and f"{tmp_path}/src/a.mp4\t" in failures
    assert "same output" in failures and f"{tmp_path}/dst/a.mp4" in failures


def test_resize_videos_follows_linked_class_folders(tmp_path, capsys):
    write_counter_video(str(tmp_path / "disk2" / "zumba" / "z.mp4"), 6)
    write_counter_video(str(tmp_path / "src" / "abseiling" / "a.mp4"), 6)
    os.symlink(tmp_path / "disk2" / "zumba", tmp_path / "src" / "zumba")
    assert script("resize_videos").main(resize_argv(tmp_path / "src", tmp_path / "dst")) == 0
    assert "2 videos: 2 resized, 0 already done, 0 failed" in capsys.readouterr().out
    assert count_frames(str(tmp_path / "dst" / "zumba" / "z.mp4")) == 6


@pytest.mark.parametrize(
    "dst, extra, message",
    [
        ("src", [], "--dst .* is --src or inside it"),
        ("src/resized", [], "--dst .* is --src or inside it"),
        ("dst", ["--short-side", "0"], "--short-side must be an even number of at least 16"),
        ("dst", ["--short-side", "255"], "--short-side must be an even number"),
        ("dst", ["--crf", "60"], "--crf must be in 0..51"),
        ("dst", ["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_resize_videos_refuses_arguments_that_lose_or_spoil_videos(
    tmp_path, capsys, dst, extra, message
):
    write_counter_video(str(tmp_path / "src" / "a.mp4"), 6)
    with pytest.raises(SystemExit) as exit:
        script("resize_videos").main(resize_argv(tmp_path / "src", tmp_path / dst, *extra))
    assert exit.value.code == 2 and re.search(message, capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "src" / "resize_failures.txt")
    assert sorted(os.listdir(tmp_path / "src")) == ["a.mp4"]


def test_resize_videos_refuses_a_missing_source_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        script("resize_videos").main(resize_argv(tmp_path / "nowhere", tmp_path / "dst"))
    assert exit.value.code == 2 and "--src" in capsys.readouterr().err


def test_resize_videos_refuses_a_source_cut_short(tmp_path, capsys):
    # Re-encoding would turn the 12 frames that decode into a whole-looking 12-frame video.
    good = write_counter_video(str(tmp_path / "full.mp4"), 20)
    write_cut_video(str(tmp_path / "src" / "cut.mp4"), good, 12)
    assert script("resize_videos").main(resize_argv(tmp_path / "src", tmp_path / "dst")) == 1
    assert "1 videos: 0 resized, 0 already done, 1 failed" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "dst" / "cut.mp4")
    assert "header promises 20 frames" in (tmp_path / "dst" / "resize_failures.txt").read_text()
