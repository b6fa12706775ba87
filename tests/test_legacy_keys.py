"""The keys of PySlowFast, TimeSformer and XViT: every unknown key named at once with what to
use instead, tools/port_config.py on the official YAMLs, and the table in docs/ENGINE.md."""

import importlib.util
from pathlib import Path

import pytest

import ats_video  # noqa: F401  (before timm)
from ats_video.config import UnknownKeysError, load_config
from ats_video.legacy_keys import FOREIGN_KEYS, key_table
from official_configs import TIMESFORMER_DIVST_8X32_224, XVIT_B16_16X16_K600

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("port_config", ROOT / "tools" / "port_config.py")
port_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(port_tool)

TIMESFORMER_FOREIGN = [
    "TRAIN.DATASET",
    "DATA.INPUT_CHANNEL_NUM",
    "TIMESFORMER.ATTENTION_TYPE",
    "MODEL.MODEL_NAME",
    "MODEL.LOSS_FUNC",
    "MODEL.DROPOUT_RATE",
    "TEST.DATASET",
    "NUM_GPUS",
    "NUM_SHARDS",
]


def test_every_unknown_key_is_named_at_once_with_what_to_use(tmp_path):
    path = tmp_path / "official.yaml"
    path.write_text(TIMESFORMER_DIVST_8X32_224)
    with pytest.raises(UnknownKeysError) as error:
        load_config(str(path), ["SOLVER.BASE_LRR", "0.1"])
    lines = str(error.value).splitlines()
    named = [line.split(":")[0].strip() for line in lines if line.startswith("  ") and ":" in line]
    assert named == [*TIMESFORMER_FOREIGN, "SOLVER.BASE_LRR"]
    text = str(error.value)
    assert "TRAIN.DATASET: here `DATA.DATASET`, same meaning" in text
    assert "NUM_GPUS: torchrun starts the processes: `torchrun --nproc_per_node N`" in text
    assert "SOLVER.BASE_LRR: not a key of this project" in text
    assert "tools/port_config.py" in text


def test_the_official_timesformer_config_ports_to_a_plain_timesformer(tmp_path, capsys):
    official = tmp_path / "TimeSformer_divST_8x32_224.yaml"
    official.write_text(TIMESFORMER_DIVST_8X32_224)
    ported = tmp_path / "ours.yaml"
    assert port_tool.main([str(official), "-o", str(ported)]) == 0
    cfg = load_config(str(ported))
    assert (cfg.MODEL.ARCH, cfg.ATS.ENABLE, cfg.DATA.DATASET) == ("timesformer", False, "kinetics")
    assert (cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.STEPS) == (1e-4, [0, 11, 14])  # 1e-4 a float
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.MODEL.NUM_CLASSES) == (8, 32, 400)
    printed = capsys.readouterr().out
    assert "MODEL.ARCH 'vit' -> 'timesformer'" in printed
    assert "dropped NUM_GPUS 8" in printed and ported.read_text().startswith("# ported from")


def test_xvit_settings_the_engine_lacks_are_refused_all_at_once(tmp_path, capsys):
    official = tmp_path / "xvit_B16_16x16_k600.yaml"
    official.write_text(XVIT_B16_16X16_K600)
    assert port_tool.main([str(official), "-o", str(tmp_path / "x.yaml")]) == 2
    refused = capsys.readouterr().err
    for key in ("DATA.AUTOAUGMENT True", "DATA.AUTO_AUGMENT v0", "LOSS_FUNC 'smooth_cross_entropy'",
                "TRAIN.LABEL_SMOOTHING 0.3"):
        assert key in refused
    # without those three, it is the released Kinetics-600 model; STEPS/LRS go (cosine)
    trimmed = "\n".join(
        line for line in XVIT_B16_16X16_K600.splitlines()
        if not line.strip().startswith(("MIXUP_ALPHA", "AUTOAUGMENT", "LOSS_FUNC"))
    )
    official.write_text(trimmed)
    ported = tmp_path / "ours.yaml"
    assert port_tool.main([str(official), "-o", str(ported)]) == 0
    cfg = load_config(str(ported))
    assert (cfg.MODEL.ARCH, cfg.SOLVER.STEPS, cfg.SOLVER.LRS) == ("xvit_base_16x224_k600", [], [])
    assert (cfg.DATA.MEAN, cfg.SOLVER.WARMUP_EPOCHS) == ([0.5, 0.5, 0.5], 5.0)


def test_the_docs_show_the_key_table():
    docs = (ROOT / "docs" / "ENGINE.md").read_text()
    assert key_table() in docs
    assert len({entry.key for entry in FOREIGN_KEYS}) == len(FOREIGN_KEYS)
