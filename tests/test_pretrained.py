"""Starting TimeSformer and XViT from an ImageNet ViT as the releases do, and exporting this
project's checkpoints in the releases' layouts."""

import importlib.util
from pathlib import Path

import ats_video  # noqa: F401, I001  (before timm: repairs torchvision imports where needed)
import pytest
import timm
import torch

from ats_video import load_checkpoint
from ats_video.checkpoint import save_checkpoint
from ats_video.models.timesformer import timesformer
from ats_video.models.xvit import xvit

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("export", ROOT / "tools" / "export_official.py")
export_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export_tool)

SIZES = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
BLOCK_KEYS = [  # a ViT block's tensors, as timm and the releases name them
    f"{layer}.{p}"
    for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for p in ("weight", "bias")
]


def image_vit_file(tmp_path):
    """A timm ViT with 10 ImageNet-like classes, saved as the DeiT / timm releases do."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10, **SIZES)
    path = tmp_path / "vit.pth"
    torch.save({"model": vit.state_dict()}, path)
    return vit.eval(), path


def test_timesformer_starts_from_an_image_vit_as_load_pretrained_does(tmp_path, caplog):
    vit, path = image_vit_file(tmp_path)
    torch.manual_seed(1)
    model = timesformer(num_frames=4, num_classes=7, **SIZES)
    with caplog.at_level("INFO"):
        load_checkpoint(model, path, fresh_classifier=True)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "temporal_attn <- attn and temporal_norm1 <- norm1 in blocks 0-3" in logged
    assert "time_embed, temporal_fc in blocks 0-3" in logged
    ours, image = model.state_dict(), vit.state_dict()
    for i in range(4):
        for key in BLOCK_KEYS:
            assert torch.equal(ours[f"blocks.{i}.{key}"], image[f"blocks.{i}.{key}"]), key
        for key in BLOCK_KEYS[:6]:  # norm1, attn.qkv, attn.proj -> their temporal twins
            temporal = key.replace("norm1", "temporal_norm1").replace("attn.", "temporal_attn.")
            assert torch.equal(ours[f"blocks.{i}.{temporal}"], image[f"blocks.{i}.{key}"]), key
        if i:
            assert not ours[f"blocks.{i}.temporal_fc.weight"].any()
    assert not ours["time_embed"].any()
    # with block 0's temporal_fc zero too, a clip of one repeated frame is the ViT's image
    torch.nn.init.zeros_(model.blocks[0].temporal_fc.weight)
    torch.nn.init.zeros_(model.blocks[0].temporal_fc.bias)
    frame = torch.randn(2, 3, 32, 32)
    clip = frame[:, :, None].expand(-1, -1, 4, -1, -1)
    with torch.no_grad():
        video = model.forward_head(model.eval().forward_features(clip), pre_logits=True)
        still = vit.forward_head(vit.forward_features(frame), pre_logits=True)
    torch.testing.assert_close(video, still, rtol=1e-4, atol=1e-5)


def test_xvit_starts_from_an_image_vit(tmp_path, caplog):
    vit, path = image_vit_file(tmp_path)
    torch.manual_seed(1)
    model = xvit(num_frames=4, num_classes=7, **SIZES)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level("INFO"):
        load_checkpoint(model, path)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "XViT from an image ViT: the backbone (blocks 0-3) from the ViT" in logged
    assert "head.weight, head.bias dropped" in logged
    ours, image = model.state_dict(), vit.state_dict()
    for key in ["cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight"] + [
        f"blocks.{i}.{k}" for i in range(4) for k in BLOCK_KEYS
    ]:
        assert torch.equal(ours[key], image[key]), key
    for key in ours:
        if key == "temp_embed" or key.startswith("consensus."):
            assert torch.equal(ours[key], fresh[key]), key


def timesformer_official_keys(depth):
    """The release's TimeSformer state-dict keys (docs: DESIGN's list), under ``model.``."""
    block = BLOCK_KEYS + [
        f"{layer}.{p}"
        for layer in ("temporal_norm1", "temporal_attn.qkv", "temporal_attn.proj", "temporal_fc")
        for p in ("weight", "bias")
    ]
    keys = ["cls_token", "pos_embed", "time_embed", "patch_embed.proj.weight",
            "patch_embed.proj.bias", "norm.weight", "norm.bias", "head.weight", "head.bias"]
    keys += [f"blocks.{i}.{k}" for i in range(depth) for k in block]
    return sorted("model." + k for k in keys)


@pytest.mark.parametrize("family", ["timesformer", "xvit"])
def test_export_writes_the_official_layout_and_loads_back(tmp_path, family):
    build = timesformer if family == "timesformer" else xvit
    torch.manual_seed(2)
    model = build(num_frames=4, num_classes=7, **SIZES)
    ours = tmp_path / "checkpoint_epoch_00002.pyth"
    save_checkpoint(model, ours, epoch=2, cfg="")
    official = tmp_path / "official.pyth"
    assert "in the official layout" in export_tool.export(str(ours), str(official))
    saved = torch.load(official, weights_only=True)
    assert saved["epoch"] == 2
    keys = sorted(saved["model_state"])
    if family == "timesformer":
        assert keys == timesformer_official_keys(4)
    else:
        backbone = [k for k in keys if k.startswith("base_model.")]
        assert {k.removeprefix("base_model.") for k in backbone} == {
            k for k in model.state_dict() if not k.startswith("consensus.")
        }
        assert saved["model_state"]["new_fc.weight"].shape == (7, 48)
    again = build(num_frames=4, num_classes=7, **SIZES)
    load_checkpoint(again, official)  # through the official-format mapping, strictly
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_export_refuses_a_file_that_is_not_ours(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"model": timesformer(num_frames=4, **SIZES).state_dict()}, path)
    with pytest.raises(ValueError, match="not a checkpoint of this project"):
        export_tool.export(str(path), str(tmp_path / "out.pyth"))
