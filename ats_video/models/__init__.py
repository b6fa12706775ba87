"""Video backbones (TimeSformer, XViT) and what the project adds to timm's ViT / DeiT."""

from ats_video.models.timesformer import (
    TimeSformer,
    timesformer,
    timesformer_base_8x224,
    timesformer_hr_16x448,
    timesformer_l_96x224,
)
from ats_video.models.xvit import (
    XViT,
    xvit,
    xvit_base_8x224_k400,
    xvit_base_16x224_k600,
    xvit_base_16x224_ssv2,
)

__all__ = [
    "TimeSformer",
    "XViT",
    "timesformer",
    "timesformer_base_8x224",
    "timesformer_hr_16x448",
    "timesformer_l_96x224",
    "xvit",
    "xvit_base_8x224_k400",
    "xvit_base_16x224_k600",
    "xvit_base_16x224_ssv2",
]
