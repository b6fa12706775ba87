"""The Kinetics video dataset: train clips, multi-view test samples, unusable videos, loaders."""

import logging

import pytest
import torch
from videos import (
    decoder_params,
    frame_numbers,
    write_broken_video,
    write_counter_video,
    write_cut_video,
)

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data.kinetics import KineticsDataset, UnusableVideos
from ats_video.data.lists import VideoRecord
from ats_video.data.video_io import decoding_order

MEAN, STD = (0.45,) * 3, (0.225,) * 3
SMALL = dict(
    num_frames=4, sampling_rate=3, crop_size=32, jitter_scales=(48, 56), mean=MEAN, std=STD
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three counter videos (40, 30 and 6 frames; one portrait) and an unusable one."""
    root = tmp_path_factory.mktemp("kinetics")
    good = [
        write_counter_video(str(root / "a.mp4"), 40),
        write_counter_video(str(root / "riding a bike" / "b.mp4"), 30, height=64, width=48),
        write_counter_video(str(root / "c.mp4"), 6),
    ]
    broken = write_broken_video(str(root / "broken.mp4"), "garbage")
    return [VideoRecord(path, label) for label, path in enumerate(good)] + [VideoRecord(broken, 3)]


@pytest.mark.parametrize("backend", decoder_params())
def test_train_clip_is_strided_and_augmented(videos, backend):
    dataset = KineticsDataset(videos[:2], training=True, decoding_backend=backend, **SMALL)
    assert len(dataset) == 2
    torch.manual_seed(0)
    starts = set()
    for _ in range(30):
        sample = dataset[0]
        assert sample["video"].shape == (3, 4, 32, 32) and sample["video"].dtype == torch.float32
        assert (sample["label"], sample["video_index"], sample["view_index"]) == (0, 0, 0)
        assert sample["num_replaced"] == 0
        numbers = frame_numbers(sample["video"], MEAN, STD)
        assert numbers == list(range(numbers[0], numbers[0] + 10, 3))
        starts.add(numbers[0])
    assert starts <= set(range(31)) and len(starts) > 10  # random starts over all of 0..30


def test_short_video_repeats_last_frame(videos):
    dataset = KineticsDataset(videos[2:3], training=True, **SMALL)
    assert frame_numbers(dataset[0]["video"], MEAN, STD) == [0, 3, 5, 5]


def test_test_views_are_deterministic_and_indexed(videos):
    dataset = KineticsDataset(
        videos[:2], training=False, num_ensemble_views=3, num_spatial_crops=3, **SMALL
    )
    assert len(dataset) == 2 * 9 and dataset.num_views == 9
    samples = [dataset[i] for i in range(len(dataset))]
    assert [(s["video_index"], s["view_index"]) for s in samples] == [
        (v, i) for v in range(2) for i in range(9)
    ]
    # PyTorchVideo's keys: the clip and the crop ("augmentation") of each view
    assert [(s["clip_index"], s["aug_index"]) for s in samples[:9]] == [
        (c, a) for c in range(3) for a in range(3)
    ]
    assert {s["video_name"] for s in samples} == {"a.mp4", "b.mp4"}
    assert all(s["usable"] and s["error"] == "" for s in samples)
    # Clip starts spread from the first frame to the last possible one (40 - 10 = 30).
    assert [frame_numbers(samples[c * 3]["video"], MEAN, STD)[0] for c in range(3)] == [0, 15, 30]
    # Three crops per clip: the same frames, left to right (green ramps along the long side).
    green = [samples[i]["video"][1].mean().item() for i in range(3)]
    assert green[0] < green[1] < green[2]
    # Portrait video: the crops run top to bottom.
    green = [samples[9 + i]["video"][1].mean().item() for i in range(3)]
    assert green[0] < green[1] < green[2]
    again = KineticsDataset(
        videos[:2], training=False, num_ensemble_views=3, num_spatial_crops=3, **SMALL
    )
    assert all(torch.equal(again[i]["video"], samples[i]["video"]) for i in range(len(dataset)))


def test_single_view_is_centred_centre_crop(videos):
    dataset = KineticsDataset(
        videos[:1], training=False, num_ensemble_views=1, num_spatial_crops=1, **SMALL
    )
    sample = dataset[0]
    assert len(dataset) == 1 and sample["video"].shape == (3, 4, 32, 32)
    assert frame_numbers(sample["video"], MEAN, STD) == [15, 18, 21, 24]


@pytest.mark.parametrize("backend", decoder_params())
def test_views_of_a_cut_video_spread_over_the_frames_it_holds(videos, tmp_path, backend):
    # The header promises 40 frames, the file holds 25: the last view ends at frame 24 rather
    # than repeating it in place of frames 30 to 39.
    cut = write_cut_video(str(tmp_path / "cut.mp4"), videos[0].path, 25)
    dataset = KineticsDataset(
        [VideoRecord(cut, 0)], training=False, num_ensemble_views=2, num_spatial_crops=1,
        decoding_backend=backend, **SMALL,
    )  # fmt: skip
    assert [frame_numbers(dataset[i]["video"], MEAN, STD) for i in range(2)] == [
        [0, 3, 6, 9],
        [15, 18, 21, 24],
    ]


def test_unusable_training_video_is_replaced_counted_and_logged(videos, caplog):
    dataset = KineticsDataset(videos, training=True, **SMALL)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        sample = dataset[3]
    assert sample["num_replaced"] >= 1 and sample["video_index"] != 3
    assert sample["label"] == videos[sample["video_index"]].label
    assert "unusable video" in caplog.text and "broken.mp4" in caplog.text
    # Known unusable: replaced again without a second decode attempt or log line.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert dataset[3]["num_replaced"] >= 1
    assert "broken.mp4" not in caplog.text


def test_training_gives_up_on_data_that_is_all_broken(videos):
    dataset = KineticsDataset(videos[3:], training=True, max_replacements=2, **SMALL)
    with pytest.raises(
        RuntimeError, match="3 videos in a row were unusable, the last .*broken.mp4"
    ):
        dataset[0]


def test_unusable_test_video_is_reported_not_dropped(videos, tmp_path, caplog):
    missing = VideoRecord(str(tmp_path / "gone.mp4"), 0)
    dataset = KineticsDataset(
        [videos[0], videos[3], missing],
        training=False,
        num_ensemble_views=2,
        num_spatial_crops=1,
        **SMALL,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    unusable = UnusableVideos(dataset)
    kept = []
    with caplog.at_level(logging.WARNING):
        for batch in loader:
            keep = unusable.update(batch)
            kept += batch["video_index"][keep].tolist()
            assert batch["video"].shape[1:] == (3, 4, 32, 32)
    assert len(dataset) == 6 and kept == [0, 0]
    assert unusable.names() == [videos[3].path, missing.path]
    summary = unusable.summary()
    assert summary.splitlines()[0] == "2 of 3 test videos unusable:"
    assert f"broken.mp4: {decoding_order()[0]}: " in summary and "gone.mp4: no such file" in summary
    unusable.write(str(tmp_path / "unusable.txt"))
    lines = open(tmp_path / "unusable.txt").read().splitlines()
    assert [line.split("\t")[0] for line in lines] == unusable.names()
    assert "unusable test video" in caplog.text


def test_summary_without_failures_and_merge(videos):
    dataset = KineticsDataset(videos, training=False, num_spatial_crops=1, **SMALL)
    unusable = UnusableVideos(dataset)
    assert unusable.summary() == "0 of 4 test videos unusable"
    unusable.merge({3: "bad"})
    assert unusable.names() == [videos[3].path]


def test_workers_and_distributed_sampler_cover_every_view(videos):
    dataset = KineticsDataset(
        videos, training=False, num_ensemble_views=2, num_spatial_crops=3, **SMALL
    )
    seen = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=2, rank=rank, shuffle=False
        )
        loader = torch.utils.data.DataLoader(dataset, batch_size=5, sampler=sampler, num_workers=2)
        for batch in loader:
            seen += list(
                zip(
                    batch["video_index"].tolist(),
                    batch["view_index"].tolist(),
                    batch["usable"].tolist(),
                )
            )
    assert {(v, i) for v, i, _ in seen} == {(v, i) for v in range(4) for i in range(6)}
    assert {v for v, _, usable in seen if not usable} == {3}


def test_training_loader_with_workers(videos):
    dataset = KineticsDataset(videos, training=True, **SMALL)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, shuffle=True)
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == 4
    assert sum(b["num_replaced"].sum().item() for b in batches) >= 1
    assert all(b["video"].shape[1:] == (3, 4, 32, 32) for b in batches)


def test_bad_arguments(videos):
    with pytest.raises(ValueError, match="num_crops must be 1 or 3"):
        KineticsDataset(videos, training=False, num_spatial_crops=2, **SMALL)
    with pytest.raises(ValueError, match="decoding_backend must be one of"):
        KineticsDataset(videos, training=True, decoding_backend="opencv", **SMALL)
    with pytest.raises(ValueError, match="no videos"):
        KineticsDataset([], training=True)
    with pytest.raises(IndexError):
        KineticsDataset(videos, training=True, **SMALL)[4]


def test_pytorchvideo_dict_transforms_apply_unchanged(videos):
    from pytorchvideo.transforms import ApplyTransformToKey, RemoveKey, UniformTemporalSubsample
    from torchvision.transforms import Compose

    transform = Compose([ApplyTransformToKey("video", UniformTemporalSubsample(2)), RemoveKey("view_index")])
    dataset = KineticsDataset(videos[:1], training=True, transform=transform, **SMALL)
    sample = dataset[0]
    assert sample["video"].shape == (3, 2, 32, 32) and "view_index" not in sample
    assert (sample["video_name"], sample["video_index"], sample["clip_index"], sample["aug_index"]) == (
        "a.mp4", 0, 0, 0,
    )
