"""Every shipped config reads strictly and builds its model; the ATS keys reach apply_ats."""

from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import pytest
import torch

from ats_video.build import ats_blocks, build_model, describe_ats
from ats_video.config import get_cfg

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml"))


def config(path=None, *overrides):
    cfg = get_cfg()
    if path:
        cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(overrides))
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds_its_model(path):
    cfg = config(path)
    with torch.device("meta"):  # real sizes, no memory or init time
        model = build_model(cfg)
    assert model.num_classes == cfg.MODEL.NUM_CLASSES
    assert sorted(model.ats_blocks) == list(cfg.ATS.BLOCKS)
    video = cfg.DATA.DATASET == "kinetics"
    assert getattr(model, "num_frames", 1) == (cfg.DATA.NUM_FRAMES if video else 1)


def test_budget_keys():
    with torch.device("meta"):
        by_ratio = build_model(config(None, "MODEL.ARCH", "deit_tiny_patch16_224", "ATS.RATIO", "0.5"))
        fixed = build_model(config(None, "MODEL.ARCH", "deit_tiny_patch16_224", "ATS.K", "50", "ATS.SELECTOR", "topk"))
        plain = build_model(config(None, "MODEL.ARCH", "deit_tiny_patch16_224", "ATS.ENABLE", "False"))
    assert {c.k for c in by_ratio.ats_blocks.values()} == {0.5}
    assert {(c.k, c.selector) for c in fixed.ats_blocks.values()} == {(50, "topk")}
    assert not hasattr(plain, "ats_blocks")


def test_bad_config_is_named():
    with pytest.raises(AssertionError, match="Non-existent key: ATS.BUDGET"):
        config(None, "ATS.BUDGET", "3")
    with pytest.raises(ValueError, match="MODEL.ARCH: unknown architecture 'resnet_9000'"):
        build_model(config(None, "MODEL.ARCH", "resnet_9000"))
    with pytest.raises(ValueError, match="mode 'shared'"):
        build_model(config(None, "MODEL.ARCH", "deit_tiny_patch16_224", "ATS.MODE", "shared"))


def test_ats_in_words_names_the_budget_blocks_and_mode():
    def words(*overrides):
        cfg = config(None, *overrides)
        with torch.device("meta"):
            model = build_model(cfg)
        return ats_blocks(cfg, model), describe_ats(cfg, model)

    assert words() == ([3, 4, 5], "ATS default K=196 in blocks 3-5, per frame")  # TimeSformer-B
    assert words("ATS.K", "98", "ATS.BLOCKS", "[5, 3]", "ATS.MODE", "shared") == (
        [3, 5], "ATS K=98 in blocks 3, 5, shared"
    )
    assert words("MODEL.ARCH", "deit_tiny_patch16_224", "ATS.RATIO", "0.5", "ATS.SELECTOR", "topk") == (
        list(range(3, 12)), "ATS ratio 0.5 in blocks 3-11, top-K"
    )  # an image model has no mode
    assert words("ATS.BLOCKS", "[4]") == ([4], "ATS default K=196 in block 4, per frame")
    assert words("ATS.ENABLE", "False") == ([], "no ATS")
