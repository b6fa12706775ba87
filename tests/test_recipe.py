"""XViT's training recipe in the engine: AutoAugment drawn once per clip, label smoothing and
mixup through timm, and their defaults (bad values: test_config.py; a tiny training run with
all three: test_engine_run.py)."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ats_video  # noqa: F401  (before timm)
from ats_video.build import build_objective
from ats_video.config import load_config
from ats_video.data.augment import auto_augment_clip, auto_augment_transform
from ats_video.data.transforms import VideoTrainTransform
from ats_video.engine.data import EngineDataset, train_loader
from ats_video.engine.objective import Objective


def textured_frame(seed):
    """A 48x64 RGB frame with structure, so that geometric and colour ops change it."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frame[10:30, 5:40] = (250, 30, 30)
    return torch.from_numpy(frame)


def test_auto_augment_draws_once_per_clip():
    """Equal frames stay equal however the policy draws, and the draws do change frames; timm's
    transform applied frame by frame without the shared draws does not keep them equal."""
    transform = auto_augment_transform("v0", 224)
    clip = textured_frame(0).expand(6, -1, -1, -1).contiguous()
    changed, per_frame_differs = 0, 0
    for seed in range(12):
        random.seed(seed)
        np.random.seed(seed)
        out = auto_augment_clip(clip, transform)
        assert out.shape == clip.shape and out.dtype == torch.uint8
        assert all(torch.equal(out[0], frame) for frame in out)
        changed += not torch.equal(out[0], clip[0])
        frames = [np.asarray(transform(Image.fromarray(f.numpy()))) for f in clip]
        per_frame_differs += any(not np.array_equal(frames[0], f) for f in frames)
    assert changed >= 6 and per_frame_differs >= 6


def test_auto_augment_clip_is_the_transform_of_each_frame_under_one_draw():
    transform = auto_augment_transform("original", 64)
    clip = torch.stack([textured_frame(s) for s in range(3)])
    random.seed(5)
    np.random.seed(5)
    out = auto_augment_clip(clip, transform)
    for frame, augmented in zip(clip, out):
        random.seed(5)
        np.random.seed(5)
        expected = np.asarray(transform(Image.fromarray(frame.numpy())))
        assert np.array_equal(augmented.numpy(), expected)


def test_train_transform_with_auto_augment():
    transform = VideoTrainTransform(
        crop_size=32, jitter_scales=(32, 40), mean=(0.5,) * 3, std=(0.5,) * 3, auto_augment="v0"
    )
    video = transform(torch.stack([textured_frame(s) for s in range(4)]))
    assert video.shape == (3, 4, 32, 32) and video.dtype == torch.float32
    assert "auto_augment=v0" in repr(transform)
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'v9'"):
        VideoTrainTransform(
            crop_size=32, jitter_scales=(32, 40), mean=(0,) * 3, std=(1,) * 3, auto_augment="v9"
        )


def test_label_smoothing_is_the_release_loss():
    logits, labels = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2])
    objective = Objective(num_classes=7, label_smoothing=0.3)
    inputs = torch.randn(5, 3)
    assert objective.targets(inputs, labels, epoch=0, iteration=0) == (inputs, labels)
    log_probs = F.log_softmax(logits, -1)
    nll = -log_probs.gather(1, labels[:, None]).squeeze(1)
    expected = (0.7 * nll + 0.3 * -log_probs.mean(-1)).mean()  # the XViT release's formula
    assert objective(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    plain = Objective(num_classes=7)
    assert plain(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_mixup_blends_pairs_and_targets_and_repeats_for_the_same_step():
    objective = Objective(num_classes=4, mixup_alpha=0.4, label_smoothing=0.3, seed=7, rank=1)
    assert objective.mixes
    clips, labels = torch.randn(6, 3, 2, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    mixed, targets = objective.targets(clips.clone(), labels, epoch=2, iteration=5)
    # lam from the targets: the label's own share is (1 - 0.3) lam + 0.3 / 4 (plus its partner's)
    own = F.one_hot(labels, 4).float()
    partner = F.one_hot(labels.flip(0), 4).float()
    smooth = lambda y: 0.7 * y + 0.3 / 4  # noqa: E731
    lam = ((targets - smooth(partner)) / (smooth(own) - smooth(partner))).nan_to_num()[0, 0].item()
    assert 0 <= lam <= 1
    assert torch.allclose(targets, lam * smooth(own) + (1 - lam) * smooth(partner), atol=1e-6)
    assert torch.allclose(mixed, lam * clips + (1 - lam) * clips.flip(0), atol=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    again, _ = objective.targets(clips.clone(), labels, epoch=2, iteration=5)
    assert torch.equal(again, mixed)  # the step alone decides the draw: resumes exactly
    other = [objective.targets(clips.clone(), labels, epoch=2, iteration=i)[0] for i in range(6, 9)]
    assert any(not torch.equal(o, mixed) for o in other)
    loss = objective(torch.randn(6, 4), targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="even number of clips"):
        objective.targets(clips[:5], labels[:5], epoch=0, iteration=0)


def test_build_objective_refuses_odd_batches_per_process_with_mixup():
    cfg = load_config("", ["TRAIN.MIXUP_ALPHA", "0.4", "TRAIN.BATCH_SIZE", "6"])
    assert build_objective(cfg, rank=0, batch_size=6).mixes
    with pytest.raises(ValueError, match="^TRAIN.BATCH_SIZE: mixup"):
        build_objective(cfg, rank=0, batch_size=3)  # 6 clips over 2 processes
    assert not build_objective(load_config(""), rank=0, batch_size=3).mixes


class Images(torch.utils.data.Dataset):
    samples = [(f"{i}.JPEG", i % 2) for i in range(7)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return {"image": torch.full((3, 2, 2), float(index)), "label": self.samples[index][1]}


def test_mixup_loader_drops_the_incomplete_batch_and_names_a_batch_too_large():
    options = dict(seed=0, rank=0, world_size=1, num_workers=0, pin_memory=False)
    loader = train_loader(EngineDataset(Images(), seed=0), batch_size=4, drop_last=True, **options)
    assert [len(batch["label"]) for batch in loader] == [4]  # 7 images: the last 3 dropped
    assert len(train_loader(EngineDataset(Images(), seed=0), batch_size=4, **options)) == 2
    with pytest.raises(ValueError, match="no complete batch of 8 in the 7 training samples"):
        train_loader(EngineDataset(Images(), seed=0), batch_size=8, drop_last=True, **options)


def test_recipe_keys_are_off_by_default():
    cfg = load_config("")
    assert cfg.DATA.AUTO_AUGMENT == ""
    assert (cfg.TRAIN.MIXUP_ALPHA, cfg.TRAIN.LABEL_SMOOTHING) == (0.0, 0.0)
