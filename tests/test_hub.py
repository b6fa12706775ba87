"""hubconf.py: every entry loads from a clone with torch.hub, with ATS and a strict checkpoint."""

import importlib.util
from pathlib import Path

import pytest
import torch

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video import apply_ats, save_checkpoint
from ats_video.families import create_model

REPO = str(Path(__file__).resolve().parents[1])
SMALL = dict(img_size=32, embed_dim=48, depth=4, num_heads=3, num_classes=5)
ENTRIES = {  # entry: (architecture, clip or image shape, the entry's extra small sizes)
    "timesformer_base_8x224_ats": ("timesformer_base_8x224", (3, 2, 32, 32), dict(num_frames=2)),
    "timesformer_hr_16x448_ats": ("timesformer_hr_16x448", (3, 2, 32, 32), dict(num_frames=2)),
    "timesformer_l_96x224_ats": ("timesformer_l_96x224", (3, 2, 32, 32), dict(num_frames=2)),
    "xvit_base_16x224_k600_ats": (
        "xvit_base_16x224_k600", (3, 4, 32, 32),
        dict(num_frames=4, shift_group=2, temp_embed_frames=2, pos_embed_img_size=32),
    ),
    "xvit_base_16x224_ssv2_ats": (
        "xvit_base_16x224_ssv2", (3, 4, 32, 32),
        dict(num_frames=4, shift_group=4, temp_embed_frames=2, pos_embed_img_size=32),
    ),
    "deit_small_patch16_224_ats": ("deit_small_patch16_224", (3, 32, 32), dict(patch_size=8)),
}  # fmt: skip


@pytest.fixture(autouse=True)
def hub_dir(tmp_path):
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield
    torch.hub.set_dir(before)


def test_the_hub_lists_every_entry():
    # what torch.hub.list shows (it reads GitHub repositories only): hubconf's public callables
    spec = importlib.util.spec_from_file_location("hubconf", Path(REPO) / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert sorted(entries) == sorted(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES)
def test_an_entry_loads_its_checkpoint_strictly_and_applies_ats(entry, tmp_path):
    arch, shape, sizes = ENTRIES[entry]
    torch.manual_seed(0)
    plain = create_model(arch, **SMALL, **sizes).eval()
    path = tmp_path / f"{arch}.pyth"
    save_checkpoint(plain, path)
    url = path.as_uri() if entry.startswith("deit") else None  # a URL is downloaded once

    model = torch.hub.load(
        REPO, entry, source="local", checkpoint=url or str(path), k=2, **SMALL, **sizes
    ).eval()
    reference = apply_ats(plain, k=2)  # the paper's blocks: 3 of 4 blocks here
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    if url:
        assert (Path(torch.hub.get_dir()) / "checkpoints" / path.name).is_file()

    torch.save({"model_state": {"no such key": torch.zeros(1)}}, tmp_path / "wrong.pyth")
    with pytest.raises(ValueError, match="wrong.pyth"):
        torch.hub.load(REPO, entry, source="local", checkpoint=str(tmp_path / "wrong.pyth"), **SMALL, **sizes)


def test_ats_options_reach_apply_ats():
    model = torch.hub.load(
        REPO, "deit_small_patch16_224_ats", source="local", blocks=[1], selector="topk",
        **SMALL, patch_size=8,
    )  # fmt: skip
    reference = create_model("deit_small_patch16_224", **SMALL, patch_size=8)
    reference.load_state_dict(model.state_dict())
    apply_ats(reference, blocks=[1], selector="topk")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))


def test_pretrained_video_entries_name_the_official_file():
    with pytest.raises(ValueError, match="checkpoint=.*TimeSformer_divST_8x32_224_K400.pyth"):
        torch.hub.load(REPO, "timesformer_base_8x224_ats", source="local", pretrained=True)

