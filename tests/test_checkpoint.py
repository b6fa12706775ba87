"""load_checkpoint's errors, common to every model family."""

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ats_video import load_checkpoint

DEIT = dict(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)


def test_error_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "deit_wrong_head.pth"
    torch.save({"model": VisionTransformer(**DEIT, num_classes=5).state_dict()}, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(VisionTransformer(**DEIT, num_classes=10), path)
    text = str(err.value)
    assert str(path) in text
    assert "head.weight: checkpoint (5, 48), model (10, 48)" in text
