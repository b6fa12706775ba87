"""tools/sweep_budget.py: the budget grammar, and a sweep of a tiny TimeSformer that writes its
table, rows and plot from the multi-view tests it runs."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from videos import write_counter_video

import ats_video  # noqa: F401  (before timm)
from ats_video.config import load_config
from ats_video.families import create_model

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("sweep_budget", ROOT / "tools" / "sweep_budget.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def test_budgets_are_none_default_an_integer_or_a_ratio():
    parse = sweep.parse_budget
    assert parse("none", 16).options == ("ATS.ENABLE", "False")
    assert (parse("default", 16).label, parse("default", 16).kind) == ("default K=16", "k")
    assert parse("default", 16).options[-4:] == ("ATS.K", "0", "ATS.RATIO", "0.0")
    assert (parse("6", 16).label, parse("6", 16).name) == ("K=6", "k6")
    assert parse("6", 16).options[-4:] == ("ATS.K", "6", "ATS.RATIO", "0.0")
    assert (parse("0.50", 16).label, parse("0.50", 16).name, parse("1.0", 16).kind) == (
        "ratio 0.5", "ratio0.5", "ratio"
    )
    for bad in ("0", "-3", "1.5", "0.0", "half", "6.x"):
        with pytest.raises(ValueError, match=f"budget '{bad}': expected none, default"):
            parse(bad, 16)
    assert sweep.default_budgets(16) == ["none", "default", "12", "8", "4", "0.7", "0.5"]
    assert sweep.default_budgets(196) == ["none", "default", "147", "98", "49", "0.7", "0.5"]


def test_budgets_end_at_the_first_config_key():
    args = sweep.parse_args(["--cfg", "c.yaml", "--budgets", "none", "0.5", "6",
                             "DATA.PATH_TO_DATA_DIR", "/data/k400", "OUTPUT_DIR", "runs"])  # fmt: skip
    assert args.budgets == ["none", "0.5", "6"]
    assert args.opts == ["DATA.PATH_TO_DATA_DIR", "/data/k400", "OUTPUT_DIR", "runs"]
    args = sweep.parse_args(["--cfg", "c.yaml", "--budgets", "6", "--out", "o", "ATS.MODE", "shared"])
    assert (args.budgets, args.opts, args.out) == (["6"], ["ATS.MODE", "shared"], "o")


def test_the_configs_budget_is_named_by_its_token():
    for opts, token in (([], "default"), (["ATS.K", "4"], "4"), (["ATS.RATIO", "0.7"], "0.7"),
                        (["ATS.ENABLE", "False", "ATS.K", "4"], "none")):  # fmt: skip
        assert sweep.config_budget(load_config("", opts)) == token


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """6 counter videos in 3 classes, listed in val.csv, and a tiny official checkpoint."""
    root = tmp_path_factory.mktemp("sweep")
    lines = []
    for i in range(6):
        write_counter_video(str(root / f"v{i}.mp4"), num_frames=20, height=40, width=56)
        lines.append(f"v{i}.mp4 {i % 3}")
    (root / "val.csv").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    model = create_model("timesformer", num_frames=4, img_size=32, num_classes=3, patch_size=8,
                         embed_dim=48, depth=4, num_heads=3)  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "model_state": state, "optimizer_state": {}, "cfg": ""}, root / "tiny.pyth")
    return root


def tiny(data_dir):
    """KEY VALUE pairs: a tiny TimeSformer (4 frames of 32 px) with ATS.K 4 in blocks 2, 3,
    tested on ``data_dir``."""
    return [
        "DATA.PATH_TO_DATA_DIR", str(data_dir), "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "4",
        "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.TRAIN_CROP_SIZE", "32",
        "DATA.TEST_CROP_SIZE", "32", "DATA.DECODING_BACKEND", "pyav", "DATA_LOADER.NUM_WORKERS", "0",
        "MODEL.ARCH", "timesformer", "MODEL.PATCH_SIZE", "8", "MODEL.EMBED_DIM", "48",
        "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "3", "MODEL.NUM_CLASSES", "3",
        "ATS.BLOCKS", "[2, 3]", "ATS.K", "4", "TENSORBOARD.ENABLE", "False",
    ]  # fmt: skip


def test_a_sweep_writes_its_table_rows_and_plot(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # for the run_net processes it starts
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    opts = tiny(data_dir)
    out = tmp_path / "sweep"
    code = sweep.main(["--cfg", "", "--checkpoint", str(data_dir / "tiny.pyth"),
                       "--budgets", "none", "--out", str(out), *opts])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "=== [2/2] K=4\n$ python " in printed  # the config's budget, added, and its command
    rows = json.loads((out / "sweep.json").read_text())
    assert [(r["budget"], r["configured"]) for r in rows] == [("no ATS", False), ("K=4", True)]
    for row, name in zip(rows, ("no_ats", "k4")):
        results = json.loads((out / name / "test_results.json").read_text())
        assert row["top1"] == results["top1"] and row["top5"] == results["top5"]
        assert row["gflops_per_view"] == results["gflops_per_view"]["as_run"]
        assert row["kept_tokens"] == results["kept_tokens"]
        assert results["ats"]["K"] == 4 and results["ats"]["ENABLE"] == (name == "k4")
    assert rows[0]["gflops_per_view"] > rows[1]["gflops_per_view"]
    assert rows[0]["kept_tokens"] == {} and 0 < rows[1]["kept_tokens"]["3"] <= 4 * 4
    table = (out / "sweep.md").read_text().splitlines()
    assert table[0] == (
        "| budget | top-1 (%) | top-5 (%) | views | GFLOPs per view | "
        "mean kept tokens per clip after blocks 2, 3 (of 64) |"
    )
    assert table[2].startswith("| no ATS | ") and table[2].endswith("| all (no ATS) |")
    assert table[3].startswith("| K=4 (the config's) | ")
    assert f"| {rows[1]['gflops_per_view']:.4f} |" in table[3]
    assert (out / "k4" / "kept_tokens_histogram.png").exists()
    assert not (out / "no_ats" / "kept_tokens_histogram.png").exists()
    with Image.open(out / "sweep.png") as plot:
        assert plot.width >= 700 and plot.height >= 450


def test_a_wrong_budget_is_named_before_any_test(data_dir, capsys):
    with pytest.raises(SystemExit, match="--budgets: budget 'half': expected none, default"):
        sweep.main(["--cfg", "", "--checkpoint", str(data_dir / "tiny.pyth"), "--budgets", "none",
                    "half", *tiny(data_dir)])  # fmt: skip
    assert "===" not in capsys.readouterr().out


def test_a_failing_test_stops_the_sweep_and_names_it(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    code = sweep.main(["--cfg", "", "--checkpoint", str(data_dir / "tiny.pyth"), "--budgets",
                       "none", "--out", str(tmp_path), *tiny(tmp_path / "nowhere")])  # fmt: skip
    assert code != 0
    assert f"the test of budget no ATS failed (exit status {code}); its log: {tmp_path}/no_ats/log.txt" in capsys.readouterr().err
