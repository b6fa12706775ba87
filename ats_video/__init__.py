"""ats-video: the Adaptive Token Sampler (Fayyaz et al., ECCV 2022) for video and image transformers."""

from ats_video import compat  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"
