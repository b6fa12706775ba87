"""ats-video: the Adaptive Token Sampler (Fayyaz et al., ECCV 2022) for video and image transformers."""

from ats_video import compat  # noqa: F401  (must run before anything imports torchvision)
from ats_video.patch import apply_ats

__all__ = ["apply_ats"]
__version__ = "0.1.0"
