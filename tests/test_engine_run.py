"""tools/run_net.py end to end, on a tiny TimeSformer and videos written here: train then test,
exact resumption, two processes under torchrun, unusable videos, fine-tuning from an official
checkpoint, and the errors a user meets first."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ats_video  # noqa: F401  (before timm)
from ats_video.data.video_io import write_video
from ats_video.families import create_model
from ats_video.flops import count_gflops

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_net", ROOT / "tools" / "run_net.py")
run_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_net)

COLOURS = [(200, 40, 40), (40, 180, 40), (40, 40, 200)]  # the easy task: the clip's tint
TINY_MODEL = dict(patch_size=8, embed_dim=48, depth=4, num_heads=3)


def write_tinted_video(path, label, seed):
    """12 frames of 48x64 noise around the class colour, with a bright square moving across."""
    rng = np.random.default_rng(seed)
    frames = np.clip(
        np.array(COLOURS[label]) + rng.normal(0, 40, (12, 48, 64, 3)) + rng.uniform(-40, 40, 3),
        0,
        255,
    ).astype(np.uint8)
    for t in range(12):
        frames[t, 20:28, 4 * t : 4 * t + 8] = 255
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(str(path), frames, fps=12)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """train.csv: 3 classes x 6 videos and one unusable; val.csv: 3 x 3; test.csv: val's
    videos with a missing and an undecodable one among them (11 videos)."""
    root = tmp_path_factory.mktemp("tinted")
    lines = {"train": [], "val": []}
    for split, per_class in (("train", 6), ("val", 3)):
        for label in range(3):
            for n in range(per_class):
                name = f"{split}/class{label}/{n}.mp4"
                write_tinted_video(root / name, label, [len(split), label, n])
                lines[split].append(f"{name} {label}")
    (root / "train" / "broken.mp4").write_bytes(os.urandom(2000))
    lines["train"].insert(5, "train/broken.mp4 1")
    test = lines["val"][:4] + ["val/missing.mp4 2"] + lines["val"][4:7] + ["train/broken.mp4 1"]
    test += lines["val"][7:]
    for name, rows in (("train", lines["train"]), ("val", lines["val"]), ("test", test)):
        (root / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_data(data_dir):
    """The settings of ``data_dir``'s clips: 4 frames of 32 px, decoded in the process."""
    return {
        "DATA.PATH_TO_DATA_DIR": data_dir,
        "DATA.TEST_LIST": "test.csv",
        "DATA.NUM_FRAMES": 4,
        "DATA.SAMPLING_RATE": 3,
        "DATA.TRAIN_JITTER_SCALES": "[32, 40]",
        "DATA.TRAIN_CROP_SIZE": 32,
        "DATA.TEST_CROP_SIZE": 32,
        "DATA.DECODING_BACKEND": "pyav",
        "DATA_LOADER.NUM_WORKERS": 0,
    }


def options(data_dir, output_dir, **overrides):
    """KEY VALUE pairs for a tiny TimeSformer (4 frames of 32 px) on ``data_dir``."""
    values = {
        **tiny_data(data_dir),
        "MODEL.ARCH": "timesformer",
        "MODEL.PATCH_SIZE": 8,
        "MODEL.EMBED_DIM": 48,
        "MODEL.DEPTH": 4,
        "MODEL.NUM_HEADS": 3,
        "MODEL.NUM_CLASSES": 3,
        "MODEL.DROP_PATH_RATE": 0.1,
        "ATS.ENABLE": False,
        "SOLVER.OPTIMIZING_METHOD": "adamw",
        "SOLVER.BASE_LR": 0.003,
        "SOLVER.WEIGHT_DECAY": 0.05,
        "SOLVER.MAX_EPOCH": 3,
        "TRAIN.BATCH_SIZE": 6,
        "TEST.BATCH_SIZE": 4,
        "TENSORBOARD.ENABLE": False,
        "LOG_PERIOD": 2,
        "OUTPUT_DIR": output_dir,
        **overrides,
    }
    return [str(x) for item in values.items() for x in item]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A run that trains 3 epochs without ATS and runs the 1x3 test; its OUTPUT_DIR."""
    out = tmp_path_factory.mktemp("trained")
    run_net.main(options(data_dir, out, **{"TENSORBOARD.ENABLE": True}))
    return out


def ats_test_settings(trained):
    """Settings that test the trained weights with ATS at K = 6 of 16 tokens per frame."""
    return {
        "TRAIN.ENABLE": False,
        "TEST.CHECKPOINT_FILE_PATH": trained / "checkpoints" / "checkpoint_epoch_00003.pyth",
        "ATS.ENABLE": True,
        "ATS.K": 6,
    }


def test_train_then_test_learns_the_easy_task(trained, data_dir):
    results = json.loads((trained / "test_results.json").read_text())
    assert results["top1"] >= 80.0, results  # chance: 33%
    assert (results["num_videos"], results["num_usable_videos"], results["num_views"]) == (11, 9, 3)
    assert results["views"] == "1x3" and results["ats"]["ENABLE"] is False
    assert results["checkpoint"] == str(trained / "checkpoints" / "checkpoint_epoch_00003.pyth")
    assert results["kept_tokens"] == {}
    assert not (trained / "kept_tokens_histogram.png").exists()  # no ATS, no histogram
    assert "no kept-token histogram" in (trained / "log.txt").read_text()
    log = read_jsonl(trained / "log.jsonl")
    train_rows = [r for r in log if r["split"] == "train"]
    assert [r["iter"] for r in train_rows if r["epoch"] == 1] == [2, 4]  # 19 videos, 6 a batch
    assert all(
        {"loss", "lr", "clips_per_s", "data_time", "kept_tokens"} <= set(r) for r in train_rows
    )
    epochs = [r for r in log if r["split"] == "train_epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert all(r["replaced"] >= 1 for r in epochs)  # the unusable training video, each epoch
    assert [r["epoch"] for r in log if r["split"] == "val"] == [1, 2, 3]
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    config = run_net.load_config(str(trained / "config.yaml"))  # the run's config reads back
    assert config.OUTPUT_DIR == str(trained) and config.SOLVER.BASE_LR == 0.003
    assert (
        "clip-level (one centred view per video; not the multi-view test)"
        in (trained / "log.txt").read_text()
    )


def test_unusable_test_videos_are_named_everywhere(trained, data_dir):
    results = json.loads((trained / "test_results.json").read_text())
    named = {Path(u["path"]).name: u["reason"] for u in results["unusable"]}
    assert sorted(named) == ["broken.mp4", "missing.mp4"] and all(named.values())
    rows = read_csv(trained / "test_predictions.csv")
    listed = (data_dir / "test.csv").read_text().split("\n")[:-1]
    assert [
        Path(r["path"]).relative_to(data_dir).as_posix() + f" {r['label']}" for r in rows
    ] == listed
    for row in rows:
        broken = Path(row["path"]).name in named
        assert row["usable"] == str(not broken)
        assert (row["top1"], row["top5"]) == ("", "") if broken else len(row["top5"].split()) == 3
        if not broken:
            assert row["top1"] == row["top5"].split()[0]
    log = (trained / "log.txt").read_text()
    assert "2 of 11 test videos unusable" in log
    assert all(str(data_dir / name) in log for name in ("val/missing.mp4", "train/broken.mp4"))


def test_checkpoints_hold_what_resuming_needs_and_load_weights_only(trained):
    checkpoint = torch.load(
        trained / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True
    )
    assert checkpoint["epoch"] == 2 and checkpoint["format"] == "ats_video"
    assert {"model_state", "optimizer_state", "scaler_state", "cfg"} <= set(checkpoint)
    assert "BASE_LR: 0.003" in checkpoint["cfg"]
    assert sorted(os.listdir(trained / "checkpoints")) == [
        f"checkpoint_epoch_0000{e}.pyth" for e in (1, 2, 3)
    ]


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(data_dir, tmp_path, monkeypatch):
    # ATS on, stochastic depth on and a loader worker: every source of randomness is in play
    settings = {
        "ATS.ENABLE": True,
        "ATS.K": 10,
        "SOLVER.MAX_EPOCH": 2,
        "TEST.ENABLE": False,
        "DATA_LOADER.NUM_WORKERS": 1,
        "TRAIN.EVAL_PERIOD": 5,
    }
    run_net.main(options(data_dir, tmp_path / "straight", **settings))

    real_save = run_net.save_training_checkpoint

    def save_then_die(output_dir, epoch, *args):
        path = real_save(output_dir, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt  # killed right after the first checkpoint
        return path

    monkeypatch.setattr(run_net, "save_training_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_net.main(options(data_dir, tmp_path / "resumed", **settings))
    monkeypatch.undo()
    checkpoints = tmp_path / "resumed" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["checkpoint_epoch_00001.pyth"]
    (checkpoints / ".checkpoint_epoch_00002.pyth.partial").write_bytes(b"a crash mid-write")
    torch.manual_seed(12345)  # whatever the process did before must not matter,
    settings["DATA_LOADER.NUM_WORKERS"] = 0  # nor how many loader workers the restart has
    run_net.main(options(data_dir, tmp_path / "resumed", **settings))

    straight, resumed = (
        torch.load(
            tmp_path / run / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True
        )
        for run in ("straight", "resumed")
    )
    for key, value in straight["model_state"].items():
        assert torch.equal(resumed["model_state"][key], value), key
    for index, state in straight["optimizer_state"]["state"].items():
        for name, value in state.items():
            assert torch.equal(resumed["optimizer_state"]["state"][index][name], value), (
                index,
                name,
            )
    losses = [
        [
            r["loss"]
            for r in read_jsonl(tmp_path / run / "log.jsonl")
            if r["split"] == "train" and r["epoch"] == 2
        ]
        for run in ("straight", "resumed")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    log = (tmp_path / "resumed" / "log.txt").read_text()
    assert "resumed from" in log and "checkpoint_epoch_00001.pyth after epoch 1" in log


def test_two_processes_give_the_predictions_of_one(trained, data_dir, tmp_path):
    # 11 videos x 3 views = 33 views over 2 processes: one video's views are split between them
    settings = ats_test_settings(trained)
    run_net.main(options(data_dir, tmp_path / "one", **settings))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "tools" / "run_net.py"), *options(data_dir, tmp_path / "two", **settings),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (read_csv(tmp_path / run / "test_predictions.csv") for run in ("one", "two"))
    assert one == two
    one, two = (
        json.loads((tmp_path / run / "test_results.json").read_text()) for run in ("one", "two")
    )
    for key in ("top1", "top5", "num_videos", "num_usable_videos", "unusable", "tokens_per_clip"):
        assert one[key] == two[key], key
    assert one["kept_tokens"].keys() == two["kept_tokens"].keys() == {"3"}
    assert two["kept_tokens"]["3"] == pytest.approx(one["kept_tokens"]["3"], rel=1e-9)
    assert one["kept_tokens"]["3"] < 4 * 16  # K = 6 of 16 tokens per frame, 4 frames
    # beside test_results.json, the histogram of kept tokens per view: from the views of both
    # processes it is the same picture as from one
    one, two = (
        np.asarray(Image.open(tmp_path / run / "kept_tokens_histogram.png").convert("RGB"))
        for run in ("one", "two")
    )
    assert one.shape[1] >= 600 and np.array_equal(one, two)
    assert f"wrote {tmp_path / 'one' / 'kept_tokens_histogram.png'}" in (tmp_path / "one" / "log.txt").read_text()


def test_official_checkpoint_fine_tunes_with_only_the_head_new(data_dir, tmp_path, caplog):
    # an official TimeSformer .pyth: SlowFast's container, keys prefixed "model.", 5 classes
    # and 8 frames (the time embedding is resized to this run's 4)
    torch.manual_seed(0)
    official = create_model("timesformer", num_frames=8, img_size=32, num_classes=5, **TINY_MODEL)
    path = tmp_path / "TimeSformer_divST_8x32_224_K400.pyth"
    state = {f"model.{k}": v for k, v in official.state_dict().items()}
    torch.save({"epoch": 15, "model_state": state, "optimizer_state": {}, "cfg": "TRAIN: {}"}, path)
    settings = {
        "TRAIN.CHECKPOINT_FILE_PATH": path,
        "SOLVER.BASE_LR": 0.0,  # no update: what was loaded is what is saved
        "SOLVER.MAX_EPOCH": 1,
        "TEST.ENABLE": False,
        "ATS.ENABLE": True,
    }
    with caplog.at_level("WARNING"):
        run_net.main(options(data_dir, tmp_path / "run", **settings))
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "re-initialised: head.weight (5, 48) -> (3, 48), head.bias (5,) -> (3,)" in warnings
    assert "time_embed" in warnings
    tuned = torch.load(
        tmp_path / "run" / "checkpoints" / "checkpoint_epoch_00001.pyth", weights_only=True
    )
    for key, value in official.state_dict().items():
        if key.startswith("head."):
            assert tuned["model_state"][key].shape[0] == 3
        elif key != "time_embed":
            assert torch.equal(tuned["model_state"][key], value), key


def test_a_missing_data_directory_is_named(data_dir, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="DATA.PATH_TO_DATA_DIR: no directory '/no/such/k400'"
    ):
        run_net.main(options(data_dir, tmp_path, **{"DATA.PATH_TO_DATA_DIR": "/no/such/k400"}))


def test_unknown_keys_and_missing_weights_are_named(data_dir, tmp_path):
    with pytest.raises(KeyError, match="SOLVER.BASE_LRR"):
        run_net.main(options(data_dir, tmp_path, **{"SOLVER.BASE_LRR": 0.1}))
    config = tmp_path / "typo.yaml"
    config.write_text("TRAIN:\n  BATCHSIZE: 8\n")
    with pytest.raises(KeyError, match="TRAIN.BATCHSIZE"):
        run_net.main(["--cfg", str(config)])
    with pytest.raises(FileNotFoundError, match="TEST.CHECKPOINT_FILE_PATH is empty"):
        run_net.main(options(data_dir, tmp_path / "nothing", **{"TRAIN.ENABLE": False}))


def test_gflops_per_view_are_the_views_as_run(trained, data_dir, tmp_path):
    settings = ats_test_settings(trained)
    run_net.main(options(data_dir, tmp_path, **settings))
    results = json.loads((tmp_path / "test_results.json").read_text())
    # the same model and views, counted by forwarding each view alone
    cfg = run_net.load_config("", options(data_dir, tmp_path, **settings))
    model = run_net.build_model(cfg).eval()
    run_net.load_checkpoint(model, settings["TEST.CHECKPOINT_FILE_PATH"])
    dataset = run_net.build_dataset(cfg, "test")
    views = torch.stack(
        [s["video"] for s in (dataset[i] for i in range(len(dataset))) if s["usable"]]
    )
    as_run = count_gflops(model, views).mean().item()
    plain = create_model(
        "timesformer", num_frames=4, img_size=32, num_classes=3, **TINY_MODEL
    ).eval()
    without = count_gflops(plain, views[:1]).item()
    assert results["gflops_per_view"]["as_run"] == pytest.approx(as_run, rel=0.02)
    assert results["gflops_per_view"]["without_ats"] == pytest.approx(without, rel=0.02)
    assert as_run < without


def test_bf16_autocast_trains_and_tests_on_a_cpu(data_dir, tmp_path):
    settings = {
        "TRAIN.MIXED_PRECISION": "bf16",
        "SOLVER.MAX_EPOCH": 1,
        "ATS.ENABLE": True,
        "ATS.K": 6,
    }
    run_net.main(options(data_dir, tmp_path, **settings))
    losses = [r["loss"] for r in read_jsonl(tmp_path / "log.jsonl") if r["split"] == "train"]
    assert losses and all(np.isfinite(losses))
    assert json.loads((tmp_path / "test_results.json").read_text())["num_usable_videos"] == 9
    with pytest.raises(ValueError, match="TRAIN.MIXED_PRECISION: fp16 needs a GPU"):
        run_net.main(options(data_dir, tmp_path / "fp16", **{"TRAIN.MIXED_PRECISION": "fp16"}))


def test_the_test_saves_scores_per_class_accuracy_and_a_confusion_matrix(trained):
    results = json.loads((trained / "test_results.json").read_text())
    with np.load(trained / "test_scores.npz") as f:  # numpy alone, no pickle
        saved = dict(f)
    assert set(saved) == {"scores", "labels", "paths", "usable", "class_names"}
    assert saved["scores"].shape == (11, 3) and saved["scores"].dtype == np.float32
    rows = read_csv(trained / "test_predictions.csv")
    assert saved["paths"].tolist() == [r["path"] for r in rows]
    assert saved["labels"].tolist() == [int(r["label"]) for r in rows]
    assert saved["usable"].tolist() == [r["usable"] == "True" for r in rows]
    usable = saved["usable"]
    top1 = saved["scores"][usable].argmax(1)
    assert results["top1"] == pytest.approx(100 * (top1 == saved["labels"][usable]).mean())
    # 1x3 summed softmax scores: each usable row sums to 3 views
    np.testing.assert_allclose(saved["scores"][usable].sum(1), 3.0, rtol=1e-5)
    per_class = read_csv(trained / "test_per_class.csv")
    recall = [
        100 * (top1[saved["labels"][usable] == c] == c).mean() for c in range(3)
    ]
    assert [float(r["top1"]) for r in per_class] == pytest.approx(recall, abs=0.01)
    assert results["mean_class_accuracy"] == pytest.approx(np.mean(recall))
    assert "mean class accuracy" in (trained / "log.txt").read_text()
    assert Image.open(trained / "test_confusion.png").size[0] > 300


def test_view_scores_are_saved_when_asked_and_sum_to_the_video_scores(trained, data_dir, tmp_path):
    out = tmp_path / "views"
    settings = {
        "TRAIN.ENABLE": False,
        "TEST.CHECKPOINT_FILE_PATH": trained / "checkpoints" / "checkpoint_epoch_00003.pyth",
        "TEST.SAVE_VIEW_SCORES": True,
        "TEST.NUM_ENSEMBLE_VIEWS": 2,
    }
    run_net.main(options(data_dir, out, **settings))
    with np.load(out / "test_scores.npz") as f:
        views, scores, usable = f["view_scores"], f["scores"], f["usable"]
    assert views.shape == (11, 6, 3)
    assert np.isnan(views[~usable]).any() and not np.isnan(views[usable]).any()
    np.testing.assert_allclose(views[usable].sum(1), scores[usable], rtol=1e-5)


def resumable_copy(trained, out):
    """``out`` holding the trained run's last checkpoint, as if that run had written it."""
    (out / "checkpoints").mkdir(parents=True)
    name = "checkpoint_epoch_00003.pyth"
    (out / "checkpoints" / name).write_bytes((trained / "checkpoints" / name).read_bytes())
    return out


def test_resuming_honours_a_changed_weight_decay_and_says_so(trained, data_dir, tmp_path):
    out = resumable_copy(trained, tmp_path / "resumed")
    changed = {"SOLVER.MAX_EPOCH": 4, "SOLVER.WEIGHT_DECAY": 0.01, "TEST.ENABLE": False}
    run_net.main(options(data_dir, out, **changed))
    saved = torch.load(out / "checkpoints" / "checkpoint_epoch_00004.pyth", weights_only=True)
    decays = sorted({g["weight_decay"] for g in saved["optimizer_state"]["param_groups"]})
    assert decays == [0.0, 0.01]  # norms, biases and embeddings: none; the rest: the new value
    log = (out / "log.txt").read_text()
    line = next(line for line in log.splitlines() if "resuming with settings changed" in line)
    assert "SOLVER.MAX_EPOCH 3 -> 4" in line and "SOLVER.WEIGHT_DECAY 0.05 -> 0.01" in line


def test_resuming_with_another_optimizer_is_refused_naming_the_key(trained, data_dir, tmp_path):
    out = resumable_copy(trained, tmp_path / "sgd")
    settings = {"SOLVER.MAX_EPOCH": 4, "SOLVER.OPTIMIZING_METHOD": "sgd"}
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZING_METHOD 'adamw' -> 'sgd'"):
        run_net.main(options(data_dir, out, **settings))


def test_a_test_at_other_settings_than_training_says_so_in_one_line(trained, data_dir, tmp_path):
    out = tmp_path / "mismatch"
    run_net.main(options(data_dir, out, **ats_test_settings(trained)))
    log = (out / "log.txt").read_text()
    lines = [line for line in log.splitlines() if "training -> test" in line]
    assert len(lines) == 1
    assert "ATS.ENABLE False -> True; ATS.K 0 -> 6" in lines[0]
    same = tmp_path / "same"
    checkpoint = ats_test_settings(trained)["TEST.CHECKPOINT_FILE_PATH"]
    run_net.main(
        options(data_dir, same, **{"TRAIN.ENABLE": False, "TEST.CHECKPOINT_FILE_PATH": checkpoint})
    )
    assert "training -> test" not in (same / "log.txt").read_text()


def test_the_official_timesformer_yaml_runs_after_port_config(data_dir, tmp_path):
    from official_configs import TIMESFORMER_DIVST_8X32_224

    official = tmp_path / "TimeSformer_divST_8x32_224.yaml"
    official.write_text(TIMESFORMER_DIVST_8X32_224)
    ported = tmp_path / "tsf.yaml"
    subprocess.run(
        [sys.executable, ROOT / "tools" / "port_config.py", official, "-o", ported], check=True
    )
    out = tmp_path / "run"
    tiny = {  # the data and a tiny model; everything else is the official file's
        **tiny_data(data_dir),
        **{f"MODEL.{k.upper()}": v for k, v in TINY_MODEL.items()},
        "MODEL.NUM_CLASSES": 3,
        "SOLVER.MAX_EPOCH": 1,
        "SOLVER.STEPS": "[0]",
        "SOLVER.LRS": "[1]",
        "TEST.ENABLE": True,
        "TENSORBOARD.ENABLE": False,
        "OUTPUT_DIR": out,
    }
    run_net.main(["--cfg", str(ported), *[str(x) for item in tiny.items() for x in item]])
    config = run_net.load_config(str(out / "config.yaml"))
    assert (config.MODEL.ARCH, config.ATS.ENABLE) == ("timesformer", False)
    assert config.SOLVER.BASE_LR == 0.005  # the official file's
    assert (out / "checkpoints" / "checkpoint_epoch_00001.pyth").exists()
    assert json.loads((out / "test_results.json").read_text())["num_videos"] == 11


def test_long_job_logs_eta_training_top1_and_the_whole_config(trained):
    log = (trained / "log.txt").read_text()
    lines = [line for line in log.splitlines() if " iter " in line and "loss" in line]
    assert lines
    assert all("top-1 " in line and ", ETA epoch " in line and ", run " in line for line in lines)
    assert "max mem" not in log  # a CPU run has no GPU memory to report
    rows = [r for r in read_jsonl(trained / "log.jsonl") if r["split"] == "train"]
    assert all(0 <= r["top1"] <= 100 and r["eta_epoch_s"] >= 0 for r in rows)
    last = rows[-1]  # the run's last iteration: nothing left
    assert last["eta_epoch_s"] == 0 and last["eta_run_s"] == 0
    assert rows[0]["eta_run_s"] > rows[0]["eta_epoch_s"] > 0
    # the whole config, into log.txt at the start
    assert f"config:\n{(trained / 'config.yaml').read_text()}" in log


def test_xvit_recipe_trains_with_autoaugment_mixup_and_label_smoothing(data_dir, tmp_path):
    """XViT's Kinetics recipe on a tiny XViT with ATS: it trains, and mixup, which pairs the
    clips of a batch, drops the epoch's last, incomplete batch."""
    settings = {
        "MODEL.ARCH": "xvit",
        "ATS.ENABLE": True,
        "ATS.K": 10,
        "DATA.AUTO_AUGMENT": "v0",
        "TRAIN.MIXUP_ALPHA": 0.4,
        "TRAIN.LABEL_SMOOTHING": 0.3,
        "SOLVER.MAX_EPOCH": 1,
        "TEST.ENABLE": False,
        "TRAIN.EVAL_PERIOD": 5,
    }
    run_net.main(options(data_dir, tmp_path, **settings))
    rows = [r for r in read_jsonl(tmp_path / "log.jsonl") if r["split"] == "train"]
    assert [r["iter"] for r in rows] == [2, 3]  # 19 videos, 6 a batch: 3 full batches
    assert all(np.isfinite(r["loss"]) and r["kept_tokens"] for r in rows)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["checkpoint_epoch_00001.pyth"]
