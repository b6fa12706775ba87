"""load_checkpoint and save_checkpoint, common to every model family: errors naming the file and
the keys, unreadable files, a fresh classifier for fine-tuning, atomic writes."""

import ats_video  # noqa: F401  (before timm: repairs torchvision imports where needed)
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ats_video import load_checkpoint
from ats_video.checkpoint import classifier_keys, save_checkpoint
from ats_video.families import create_model

DEIT = dict(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)


def test_error_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "deit_wrong_head.pth"
    torch.save({"model": VisionTransformer(**DEIT, num_classes=5).state_dict()}, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(VisionTransformer(**DEIT, num_classes=10), path)
    text = str(err.value)
    assert str(path) in text
    assert "head.weight: checkpoint (5, 48), model (10, 48)" in text


# ------------------------------------------------------------- unreadable files, fine-tuning


TINY_VIDEO = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
FAMILIES = {
    # name -> (builder of a tiny model with n classes, its classifier's keys)
    "timesformer": (
        lambda n: create_model("timesformer", **TINY_VIDEO, num_classes=n),
        ["head.weight", "head.bias"],
    ),
    "xvit": (
        lambda n: create_model("xvit", **TINY_VIDEO, num_classes=n),
        ["consensus.mlp_head.4.weight", "consensus.mlp_head.4.bias"],
    ),
    "deit": (lambda n: VisionTransformer(**DEIT, num_classes=n), ["head.weight", "head.bias"]),
}


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "pickled object"])
def test_unreadable_file_is_named(tmp_path, kind):
    path = tmp_path / f"{kind}.pyth"
    good = tmp_path / "good.pyth"
    torch.save({"model_state": VisionTransformer(**DEIT).state_dict()}, good)
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        torch.save({"model_state": VisionTransformer(**DEIT).state_dict(), "code": print}, path)
    with pytest.raises(ValueError, match=f"^{path}: not a readable checkpoint"):
        load_checkpoint(VisionTransformer(**DEIT), path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pyth: no such checkpoint file"):
        load_checkpoint(VisionTransformer(**DEIT), tmp_path / "nothing.pyth")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_classifier_keys(family):
    build, keys = FAMILIES[family]
    assert classifier_keys(build(5)) == keys


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fresh_classifier_keeps_every_other_key_strict(tmp_path, family, caplog):
    build, keys = FAMILIES[family]
    torch.manual_seed(0)
    source = build(5)
    path = tmp_path / "five_classes.pth"
    torch.save({"model": source.state_dict()}, path)
    torch.manual_seed(1)
    target = build(3)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    with caplog.at_level("WARNING"):
        load_checkpoint(target, path, fresh_classifier=True)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert str(path) in warning and all(key in warning for key in keys)
    for key, value in target.state_dict().items():
        expected = fresh[key] if key in keys else source.state_dict()[key]
        assert torch.equal(value, expected), key
    with pytest.raises(ValueError, match="wrong shape"):
        load_checkpoint(build(3), path)  # without fresh_classifier: strict
    # only the classifier may differ: a backbone key missing is still an error
    state = {k: v for k, v in source.state_dict().items() if k != "cls_token"}
    torch.save(state, path)
    with pytest.raises(ValueError, match="missing \\(1\\): cls_token"):
        load_checkpoint(build(3), path, fresh_classifier=True)


def test_save_is_atomic_and_weights_only(tmp_path, monkeypatch):
    model = VisionTransformer(**DEIT)
    path = tmp_path / "checkpoint_epoch_00001.pyth"
    save_checkpoint(
        model, path, epoch=1, optimizer_state={"state": {}, "param_groups": []}, cfg="A: 1\n"
    )
    saved = torch.load(path, weights_only=True)
    assert saved["format"] == "ats_video" and saved["epoch"] == 1 and "model_state" in saved
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path, epoch=2)
    assert path.read_bytes() == before  # the complete older file is untouched
