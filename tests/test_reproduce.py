"""docs/REPRODUCE.md: every row's config costs the paper's GFLOPs without ATS, and every
command there parses and loads its config."""

import importlib.util
import math
import re
import shlex
from pathlib import Path

import pytest
import torch

import ats_video  # noqa: F401  (before timm)
from ats_video.build import build_model
from ats_video.config import load_config
from ats_video.flops import gflops_as_run

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "REPRODUCE.md").read_text()
spec = importlib.util.spec_from_file_location("run_net", ROOT / "tools" / "run_net.py")
run_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_net)


def table_rows():
    """(row, config, paper GFLOPs without ATS, views, GFLOPs per view counted here) of the
    table's rows."""
    rows = []
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[1].startswith("`configs/"):
            without = float(cells[3].split("->")[0].replace(",", ""))
            views = math.prod(int(n) for n in cells[4].split("x"))  # "1x3" -> 3, "1" -> 1
            rows.append((cells[0], cells[1].strip("`"), without, views, float(cells[5])))
    return rows


ROWS = table_rows()


def test_the_table_has_every_row_of_the_paper():
    assert [row[0] for row in ROWS] == [
        "TimeSformer-L, Kinetics-400",
        "TimeSformer-HR, Kinetics-600",
        "XViT-B/16 8 frames, Kinetics-400",
        "XViT-B/16 16 frames, Kinetics-600, off the shelf",
        "XViT-B/16 16 frames, Kinetics-600, fine-tuned",
        "DeiT-S, ImageNet",
    ]


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_each_config_costs_the_papers_gflops_per_view_without_ats(row):
    _, config, paper, views, stated = row
    cfg = load_config(str(ROOT / config))
    with torch.device("meta"):  # shapes only: the count is computed, not run
        model = build_model(cfg)
    per_view = gflops_as_run(model, [], 1).item()  # no kept-token record: the model without ATS
    assert per_view == pytest.approx(paper / views, rel=0.01)
    assert per_view == pytest.approx(stated, abs=0.05)  # the figure the table states
    assert views == cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS


def doc_commands():
    """The argument lists of the ``python tools/run_net.py`` commands in the doc's bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", DOC, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.startswith("python tools/run_net.py"):
                commands.append(shlex.split(command)[2:])
    return commands


COMMANDS = doc_commands()


def test_every_row_has_its_three_commands():
    configs = {args[args.index("--cfg") + 1] for args in COMMANDS}
    assert configs == {row[1] for row in ROWS}
    assert len(COMMANDS) == 3 * len(configs)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[1:2] + a[-1:]))
def test_every_command_parses_and_loads_its_config(args):
    parsed = run_net.parse_args(args)
    cfg = load_config(str(ROOT / parsed.cfg_file), parsed.opts)
    assert cfg.ATS.ENABLE
    if cfg.TRAIN.ENABLE:  # fine-tuning from the official weights
        assert "/" not in cfg.TRAIN.CHECKPOINT_FILE_PATH and cfg.OUTPUT_DIR.endswith("_tuned")
    elif "/" not in cfg.TEST.CHECKPOINT_FILE_PATH:  # the official weights, off the shelf
        assert cfg.OUTPUT_DIR.endswith("_off_the_shelf")
    else:  # the last checkpoint of the fine-tuning
        run = cfg.OUTPUT_DIR.removesuffix("_test")
        last = f"{run}/checkpoints/checkpoint_epoch_{cfg.SOLVER.MAX_EPOCH:05d}.pyth"
        assert cfg.TEST.CHECKPOINT_FILE_PATH == last


def test_xvit_configs_carry_the_release_recipe():
    """The XViT release's Kinetics recipe (configs/Kinetics/xvit_B16_16x16_k{400,600}.yaml)."""
    for name in ("XViT_B16_16x16_224_K600_ATS.yaml", "XViT_B16_8x32_224_K400_ATS.yaml"):
        cfg = load_config(str(ROOT / "configs" / "Kinetics" / name))
        assert cfg.SOLVER.WEIGHT_DECAY == 1e-5  # the release's, not TimeSformer's 1e-4
        assert (cfg.TRAIN.MIXUP_ALPHA, cfg.TRAIN.LABEL_SMOOTHING) == (0.4, 0.3)
        assert cfg.DATA.AUTO_AUGMENT == "v0"
        assert (list(cfg.DATA.MEAN), list(cfg.DATA.STD)) == ([0.5] * 3, [0.5] * 3)
        assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.BATCH_SIZE) == (1.5e-6, 10, 64)
        assert list(cfg.ATS.BLOCKS) == list(range(3, 12))
