"""Kinetics-400/600 (and any ``path label`` video list) as a map-style dataset.

Training: one sample per video, a random clip (:mod:`ats_video.data.sampling`) with
scale jitter, crop and flip (:mod:`ats_video.data.transforms`). Testing: one sample per view,
``num_ensemble_views`` clips spread evenly x ``num_spatial_crops`` crops, deterministic, each
carrying its ``video_index`` and ``view_index = clip_index * num_spatial_crops + crop_index``
so that the test loop sums the view scores per video, as in PySlowFast.

Unusable videos (missing, empty, undecodable) never stop a run and never vanish silently:

- training: a random other video takes the place of one that fails; the failure is logged
  with the video's name and the sample's ``num_replaced`` counts it, so the training loop can
  total the replacements of an epoch across workers.
- testing: the sample is still produced, with ``usable`` False, the reason in ``error`` and a
  zero video, so the default collate keeps working; :class:`UnusableVideos` collects them
  from the batches and names them in a list and a summary.

NOTE: PyTorchVideo's ``LabeledVideoDataset`` is an iterable dataset that skips a failing video
after logging it at debug level only; this one is map-style, so it has a length and works with
``DistributedSampler`` and any number of workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import torch

from ats_video.data.files import write_text_atomic
from ats_video.data.lists import VideoRecord
from ats_video.data.sampling import clip_indices, clip_span, random_clip_start, uniform_clip_start
from ats_video.data.transforms import VideoTestTransform, VideoTrainTransform
from ats_video.data.video_io import BACKENDS, UnusableVideoError, read_frames

logger = logging.getLogger(__name__)

# TimeSformer's normalisation (PySlowFast's DATA.MEAN / DATA.STD defaults).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


class KineticsDataset(torch.utils.data.Dataset):
    """Video clips for training, or multi-view samples for testing.

    Every sample is a dict, with PyTorchVideo's keys (so its dict transforms, such as
    ``ApplyTransformToKey``, apply to it unchanged) and the multi-view test's:

    - ``video``: float tensor (C, T, H, W), normalised, H = W = ``crop_size``.
    - ``label``: class index.
    - ``video_name``: the video's file name (in training, the one actually used).
    - ``video_index``: index of the video in ``videos`` (in training, the one actually used).
    - ``clip_index``: the test clip's index among the video's clips (0 in training).
    - ``aug_index``: the test crop's index among the clip's crops (0 in training).
    - ``view_index``: ``clip_index * num_spatial_crops + aug_index`` (0 in training).
    - training only: ``num_replaced``, unusable videos replaced to make this sample.
    - testing only: ``usable`` (bool) and ``error`` ("" when usable).

    Args:
        videos: labelled videos, e.g. from :func:`ats_video.data.lists.load_videos`.
        training: random clips and augmentation if True, deterministic views if False.
        num_frames: frames per clip.
        sampling_rate: stride between a clip's frames, in video frames.
        crop_size: output height and width.
        jitter_scales: [min, max] random short side in training; with one test crop, the short
            side is scaled to the min before the centre crop (with three, to ``crop_size``).
        mean, std: per-channel normalisation of [0, 1] pixel values.
        random_flip: horizontal flips in training.
        num_ensemble_views: test clips per video, spread evenly over it.
        num_spatial_crops: test crops per clip, 1 (centre) or 3 (along the long side).
        decoding_backend: one of :data:`ats_video.data.video_io.BACKENDS`: "auto" (the measured
            default order) or the decoder to try first.
        max_replacements: in training, how many replacements in a row to try before giving up
            (then the data is broken beyond a few bad files, and we raise).
        auto_augment: in training, a timm AutoAugment policy applied alike to every frame of a
            clip ("v0": XViT's recipe), or "" for none; see :mod:`ats_video.data.augment`.
        transform: applied to each sample dict last, as PyTorchVideo's datasets do with theirs
            (e.g. ``ApplyTransformToKey("video", ...)``).
    """

    def __init__(
        self,
        videos: Sequence[VideoRecord],
        *,
        training: bool,
        num_frames: int = 8,
        sampling_rate: int = 32,
        crop_size: int = 224,
        jitter_scales: Sequence[int] = (256, 320),
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        random_flip: bool = True,
        num_ensemble_views: int = 1,
        num_spatial_crops: int = 3,
        decoding_backend: str = "auto",
        max_replacements: int = 20,
        auto_augment: str = "",
        transform: Callable[[dict], dict] | None = None,
    ) -> None:
        if not videos:
            raise ValueError("no videos")
        if num_frames < 1 or sampling_rate < 1 or num_ensemble_views < 1:
            raise ValueError("num_frames, sampling_rate and num_ensemble_views must be >= 1")
        if decoding_backend not in BACKENDS:
            raise ValueError(
                f"decoding_backend must be one of {BACKENDS}, got {decoding_backend!r}"
            )
        self.videos = [VideoRecord(*video) for video in videos]
        self.training = training
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.num_ensemble_views = 1 if training else num_ensemble_views
        self.num_spatial_crops = 1 if training else num_spatial_crops
        self.decoding_backend = decoding_backend
        self.max_replacements = max_replacements
        self.sample_transform = transform
        if training:
            self.transform = VideoTrainTransform(
                crop_size=crop_size,
                jitter_scales=jitter_scales,
                mean=mean,
                std=std,
                flip=random_flip,
                auto_augment=auto_augment,
            )
        else:
            self.transform = VideoTestTransform(
                crop_size=crop_size,
                short_side=crop_size if num_spatial_crops > 1 else jitter_scales[0],
                num_crops=num_spatial_crops,
                mean=mean,
                std=std,
            )
        self._crop_size = crop_size
        # Per process: videos found unusable (not retried), and the last decoded test clip,
        # which the next crops of the same clip reuse when one worker gets consecutive views.
        self._unusable: dict[int, str] = {}
        self._last_clip: tuple[tuple[int, int], torch.Tensor] | None = None

    @property
    def num_views(self) -> int:
        """Samples per video: 1 in training, views per video in testing."""
        return self.num_ensemble_views * self.num_spatial_crops

    def __len__(self) -> int:
        return len(self.videos) * self.num_views

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if self.training:
            sample = self._train_sample(index)
        else:
            sample = self._test_sample(*divmod(index, self.num_views))
        return sample if self.sample_transform is None else self.sample_transform(sample)

    def _read_clip(self, video_index: int, clip_start: Callable[[int, int], int]) -> torch.Tensor:
        """uint8 frames (T, H, W, C) of the clip from ``clip_start(video_frames, clip_span)``."""
        span = clip_span(self.num_frames, self.sampling_rate)

        def select(video_frames: int) -> list[int]:
            return clip_indices(
                clip_start(video_frames, span),
                num_frames=self.num_frames,
                sampling_rate=self.sampling_rate,
                video_frames=video_frames,
            )

        return read_frames(self.videos[video_index].path, select, backend=self.decoding_backend)

    def _train_sample(self, video_index: int) -> dict:
        for num_replaced in range(self.max_replacements + 1):
            if video_index not in self._unusable:
                try:
                    frames = self._read_clip(video_index, random_clip_start)
                    break
                except UnusableVideoError as error:
                    self._unusable[video_index] = error.reason
                    logger.warning(
                        "unusable video %s (%s); a random video takes its place "
                        "(%d unusable found so far in this process)",
                        error.path,
                        error.reason,
                        len(self._unusable),
                    )
            failed = self.videos[video_index].path
            video_index = int(torch.randint(len(self.videos), (1,)))
        else:
            raise RuntimeError(
                f"{self.max_replacements + 1} videos in a row were unusable, the last {failed}; "
                "check the list with data_prep/check_videos.py"
            )
        return {
            "video": self.transform(frames),
            **self._keys(video_index, clip_index=0, aug_index=0),
            "num_replaced": num_replaced,
        }

    def _test_sample(self, video_index: int, view_index: int) -> dict:
        clip_index, crop_index = divmod(view_index, self.num_spatial_crops)
        sample = self._keys(video_index, clip_index=clip_index, aug_index=crop_index)
        try:
            frames = self._test_clip(video_index, clip_index)
        except UnusableVideoError as error:
            video = torch.zeros(3, self.num_frames, self._crop_size, self._crop_size)
            return {"video": video, **sample, "usable": False, "error": error.reason}
        return {"video": self.transform(frames, crop_index), **sample, "usable": True, "error": ""}

    def _keys(self, video_index: int, *, clip_index: int, aug_index: int) -> dict:
        video = self.videos[video_index]
        return {
            "label": video.label,
            "video_name": os.path.basename(video.path),
            "video_index": video_index,
            "clip_index": clip_index,
            "aug_index": aug_index,
            "view_index": clip_index * self.num_spatial_crops + aug_index,
        }

    def _test_clip(self, video_index: int, clip_index: int) -> torch.Tensor:
        key = (video_index, clip_index)
        if self._last_clip is not None and self._last_clip[0] == key:
            return self._last_clip[1]
        if video_index in self._unusable:
            raise UnusableVideoError(self.videos[video_index].path, self._unusable[video_index])

        def clip_start(video_frames: int, span: int) -> int:
            return uniform_clip_start(
                video_frames, span, clip_index=clip_index, num_clips=self.num_ensemble_views
            )

        try:
            frames = self._read_clip(video_index, clip_start)
        except UnusableVideoError as error:
            self._unusable[video_index] = error.reason
            logger.warning("unusable test video %s (%s)", error.path, error.reason)
            raise
        self._last_clip = (key, frames)
        return frames


class UnusableVideos:
    """Collects the unusable videos of a test run from its batches and names them.

    Usage in a test loop::

        unusable = UnusableVideos(dataset)
        for batch in loader:
            keep = unusable.update(batch)  # bool mask of the batch's usable samples
            ...                            # add the scores of batch[keep] per video
        logger.info(unusable.summary())
        unusable.write("unusable_videos.txt")

    A video counts as unusable when any of its views is; its name is its listed path. With
    several processes, gather ``failures`` (a dict) from each and :meth:`merge` them.
    """

    def __init__(self, dataset: KineticsDataset) -> None:
        self.dataset = dataset
        self.failures: dict[int, str] = {}

    def update(self, batch: dict) -> torch.Tensor:
        """Records a collated test batch's unusable samples; returns the mask of usable ones."""
        usable = torch.as_tensor(batch["usable"], dtype=torch.bool)
        for i in (~usable).nonzero().flatten().tolist():
            self.failures.setdefault(int(batch["video_index"][i]), batch["error"][i])
        return usable

    def merge(self, failures: dict[int, str]) -> None:
        """Adds another process's ``failures``."""
        for video_index, reason in failures.items():
            self.failures.setdefault(video_index, reason)

    def names(self) -> list[str]:
        """Paths of the unusable videos, in dataset order."""
        return [self.dataset.videos[i].path for i in sorted(self.failures)]

    def summary(self) -> str:
        """One line with the count, then one line per unusable video with the reason."""
        count, total = len(self.failures), len(self.dataset.videos)
        head = f"{count} of {total} test videos unusable"
        if not count:
            return head
        lines = [
            f"  {self.dataset.videos[i].path}: {self.failures[i]}" for i in sorted(self.failures)
        ]
        return "\n".join([head + ":", *lines])

    def write(self, path: str) -> None:
        """Writes ``path<TAB>reason`` per unusable video, whole or not at all."""
        text = "".join(
            f"{self.dataset.videos[i].path}\t{self.failures[i]}\n" for i in sorted(self.failures)
        )
        write_text_atomic(path, text)
