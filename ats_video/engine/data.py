"""Data for the engine: one sample layout for videos and images, randomness drawn from
(seed, epoch, index), and loaders that shard over processes.

Exact resumption needs every random draw of an epoch to follow from the run's seed and the
epoch, never from what the process did before. So:

- the order of the training samples is ``DistributedSampler``'s, a function of (seed, epoch);
- each training sample is made under a random state seeded from (seed, epoch, index), for
  torch, numpy and Python's ``random`` alike, then the caller's state is put back
  (:class:`EngineDataset`); this covers the video transforms (torch) and timm's image
  augmentation (Python's ``random``) without touching the datasets;
- the model's own randomness (stochastic depth, dropout) is reseeded from (seed, epoch,
  iteration, rank) before every iteration (:func:`seed_iteration`);
- mixing a batch (mixup) draws under a seed of (seed, epoch, rank, iteration)
  (:func:`mixup_seed`);
- an epoch can start at any batch (:func:`set_epoch`), so a run stopped mid-epoch resumes
  with the batches it had not yet trained on, without reading the ones it had.

Test and validation samples are sharded without padding (:class:`ShardSampler`): each process
takes one contiguous slice of the views, so every view is seen exactly once whatever the
number of processes, and consecutive views (the crops of one clip) reach the same worker, which
decodes their clip once. ``DistributedSampler`` would repeat samples to even out the shards.
"""

from __future__ import annotations

import itertools
import random
from contextlib import contextmanager
from typing import Iterator, List

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ats_video.data.lists import VideoRecord
from ats_video.engine.preemption import ignore_stop_signals

_SAMPLE_STREAM, _MODEL_STREAM, _MIXUP_STREAM = 0, 1, 2


def derive_seed(*keys: int) -> int:
    """A well-mixed 64-bit seed from non-negative integers (seed, epoch, index, ...)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0])


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Runs the body with torch, numpy and Python random seeded from ``seed``, then restores
    the caller's states, so the body's draws neither depend on nor change them."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


def seed_iteration(seed: int, epoch: int, iteration: int, rank: int) -> None:
    """Seeds this process's own random draws (stochastic depth, dropout) for one iteration."""
    torch.manual_seed(derive_seed(seed, epoch, _MODEL_STREAM, rank, iteration))


def mixup_seed(seed: int, epoch: int, rank: int, iteration: int) -> int:
    """The seed of process ``rank``'s batch mixing at ``iteration`` of ``epoch``."""
    return derive_seed(seed, epoch, _MIXUP_STREAM, rank, iteration)


class EngineDataset(Dataset):
    """A Kinetics-style or ImageNet dataset as the engine reads it.

    Every sample is ``{"inputs", "label", "video_index", "view_index", "usable", "error",
    "num_replaced"}``: a video's ``(C, T, H, W)`` clip or an image's ``(C, H, W)``, and the
    bookkeeping of :class:`ats_video.data.KineticsDataset` (an image is a one-view video
    that is always usable). ``videos`` lists every video (or image) as a ``VideoRecord``.

    With ``seed`` given, sample ``index`` of epoch ``e`` (:meth:`set_epoch`) is drawn under
    the random state :func:`derive_seed` ``(seed, e, index)``.
    """

    def __init__(self, dataset: Dataset, seed: int | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.num_views = getattr(dataset, "num_views", 1)
        if hasattr(dataset, "videos"):
            self.videos: List[VideoRecord] = list(dataset.videos)
        else:  # torchvision ImageFolder
            self.videos = [VideoRecord(path, label) for path, label in dataset.samples]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if self.seed is None:
            sample = self.dataset[index]
        else:
            with seeded(derive_seed(self.seed, self.epoch, _SAMPLE_STREAM, index)):
                sample = self.dataset[index]
        inputs = sample["video"] if "video" in sample else sample["image"]
        return {
            "inputs": inputs,
            "label": sample["label"],
            "video_index": sample.get("video_index", index),
            "view_index": sample.get("view_index", 0),
            "usable": sample.get("usable", True),
            "error": sample.get("error", ""),
            "num_replaced": sample.get("num_replaced", 0),
        }


class ShardSampler(Sampler[int]):
    """Process ``rank``'s contiguous slice of ``range(length)``; the slices of all processes
    cover every index exactly once (sizes differ by at most one ``group``, no padding). Slices
    start at multiples of ``group`` (a clip's crops), so that no clip is split over processes."""

    def __init__(self, length: int, rank: int, world_size: int, group: int = 1) -> None:
        groups = -(-length // group)
        start, stop = (min(length, groups * r // world_size * group) for r in (rank, rank + 1))
        self.indices = range(start, stop)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochSampler(DistributedSampler):
    """``DistributedSampler``'s order for the epoch, from sample ``start`` of this process's
    share on (0: the whole epoch)."""

    start = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


def train_loader(
    dataset: EngineDataset,
    *,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    num_workers: int,
    pin_memory: bool,
    drop_last: bool = False,
) -> DataLoader:
    """Shuffled training batches of this process (``batch_size`` per process); call
    :func:`set_epoch` before each epoch. ``drop_last`` drops an epoch's last, incomplete batch
    (mixup needs even batches); ValueError when that leaves no batch at all."""
    sampler = EpochSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    # workers are not persistent: each epoch's workers get a copy of the dataset with its epoch
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=ignore_stop_signals,
    )
    if not len(loader):
        raise ValueError(
            f"no complete batch of {batch_size} in the {len(sampler)} training samples of "
            f"process {rank}, and incomplete ones are dropped (mixup): lower TRAIN.BATCH_SIZE"
        )
    return loader


def set_epoch(loader: DataLoader, epoch: int, first_batch: int = 0) -> None:
    """Sets the epoch of a :func:`train_loader`'s order and augmentation, and the batch it
    starts at (the batches before it are skipped, not read)."""
    loader.sampler.set_epoch(epoch)
    loader.sampler.start = first_batch * loader.batch_size
    loader.dataset.set_epoch(epoch)


def eval_loader(
    dataset: EngineDataset,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    num_workers: int,
    pin_memory: bool,
    group: int = 1,
) -> DataLoader:
    """Batches of this process's shard of the samples, in order. With ``group`` (a clip's
    crops, consecutive samples), the batch size is rounded up to a multiple of it: a batch, and
    so one worker, holds whole clips, each decoded once."""
    return DataLoader(
        dataset,
        batch_size=-(-batch_size // group) * group,
        sampler=ShardSampler(len(dataset), rank, world_size, group),
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=ignore_stop_signals,
    )
