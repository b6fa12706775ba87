"""ats-video: the Adaptive Token Sampler (Fayyaz et al., ECCV 2022) for video and image transformers."""

from ats_video import compat  # noqa: F401  (must run before anything imports torchvision)
from ats_video.checkpoint import load_checkpoint, save_checkpoint
from ats_video.families import apply_ats
from ats_video.tokens import KeptTokens, kept_tokens

__all__ = ["KeptTokens", "apply_ats", "kept_tokens", "load_checkpoint", "save_checkpoint"]
__version__ = "0.1.0"
