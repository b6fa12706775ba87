"""Data pipeline: Kinetics-style video lists and clips, ImageNet folders, synthetic actions.

- ``lists``: ``path label`` lists, class-name maps, folder-per-class trees.
- ``files``: finding videos in folder trees by one rule, writing outputs atomically.
- ``workers``: process pools for the data_prep scripts that stop at once when interrupted.
- ``video_io``: decoding chosen frames (PyAV, decord, torchcodec, each the others' fallback), writing mp4s.
- ``sampling``: temporal clip positions as frame indices.
- ``transforms``: spatial ops on (C, T, H, W) tensors.
- ``kinetics``: the video dataset, train clips and multi-view test samples.
- ``imagenet``: ImageNet class folders with DeiT's transforms.
- ``synthetic``: rendered actions for demos and tests.
"""

from ats_video.data.imagenet import (
    ImageNetFolder,
    imagenet_eval_transform,
    imagenet_train_transform,
)
from ats_video.data.kinetics import KineticsDataset, UnusableVideos
from ats_video.data.lists import (
    VideoRecord,
    load_videos,
    read_class_names,
    read_video_list,
    scan_class_folders,
)
from ats_video.data.video_io import UnusableVideoError, read_frames, write_video

__all__ = [
    "ImageNetFolder",
    "KineticsDataset",
    "UnusableVideoError",
    "UnusableVideos",
    "VideoRecord",
    "imagenet_eval_transform",
    "imagenet_train_transform",
    "load_videos",
    "read_class_names",
    "read_frames",
    "read_video_list",
    "scan_class_folders",
    "write_video",
]
