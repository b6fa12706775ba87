"""torch.hub entries: each released architecture with ATS, in the style of PyTorchVideo's hub.

    model = torch.hub.load("path/to/ats-video", "timesformer_base_8x224_ats", source="local",
                           checkpoint="TimeSformer_divST_8x32_224_K400.pyth", k=98)

Every entry is ``fn(pretrained=False, progress=True, checkpoint=None, **kwargs)``:

- ``checkpoint``: a path or URL (http, https, file) of the official file (or one this project
  wrote), loaded strictly by :func:`ats_video.load_checkpoint`; a URL is downloaded once into
  torch.hub's checkpoint folder, with a progress bar if ``progress``.
- ``pretrained=True`` without ``checkpoint``: DeiT-S takes timm's pretrained weights; the video
  models' official files are not fetched by a URL of ours, so the error names the file to pass.
- ``kwargs``: ``blocks``, ``k``, ``mode``, ``selector`` go to :func:`ats_video.apply_ats` (the
  paper's blocks and K by default); the rest to the model's constructor (``num_classes``,
  ``num_frames``, ``img_size``, ``drop_path_rate``, ...).

ATS adds no parameters, so a checkpoint loads the same before or after it is applied.
"""

import os
import urllib.parse

dependencies = ["torch", "torchvision", "timm", "einops"]

_ATS_KWARGS = ("blocks", "k", "mode", "selector")


def _checkpoint_path(checkpoint, progress):
    """A local path for ``checkpoint``: itself, or where its URL was downloaded to."""
    import torch

    if urllib.parse.urlparse(str(checkpoint)).scheme not in ("http", "https", "file"):
        return checkpoint
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(folder, os.path.basename(urllib.parse.urlparse(checkpoint).path))
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        torch.hub.download_url_to_file(checkpoint, path, progress=progress)
    return path


def _build(arch, official, pretrained, progress, checkpoint, kwargs):
    import ats_video  # first: it repairs torchvision imports where needed
    from ats_video.families import create_model

    ats_kwargs = {name: kwargs.pop(name) for name in _ATS_KWARGS if name in kwargs}
    timm_pretrained = pretrained and checkpoint is None and official is None
    if pretrained and checkpoint is None and official is not None:
        raise ValueError(
            f"{arch}: pretrained=True needs checkpoint=, the path or URL of the official "
            f"{official}"
        )
    model = create_model(arch, **({"pretrained": True} if timm_pretrained else {}), **kwargs)
    if checkpoint is not None:
        ats_video.load_checkpoint(model, _checkpoint_path(checkpoint, progress))
    return ats_video.apply_ats(model, **ats_kwargs)


def timesformer_base_8x224_ats(pretrained=False, progress=True, checkpoint=None, **kwargs):
    """TimeSformer (divided space-time, 8 frames every 32, 224 px) with ATS in blocks 3-5;
    official file: TimeSformer_divST_8x32_224_K400.pyth (or _K600)."""
    official = "TimeSformer_divST_8x32_224_K400.pyth"
    return _build("timesformer_base_8x224", official, pretrained, progress, checkpoint, kwargs)


def timesformer_hr_16x448_ats(pretrained=False, progress=True, checkpoint=None, **kwargs):
    """TimeSformer-HR (16 frames every 16, 448 px) with ATS in blocks 3-5; official file:
    TimeSformer_divST_16x16_448_K400.pyth (or _K600)."""
    official = "TimeSformer_divST_16x16_448_K400.pyth"
    return _build("timesformer_hr_16x448", official, pretrained, progress, checkpoint, kwargs)


def timesformer_l_96x224_ats(pretrained=False, progress=True, checkpoint=None, **kwargs):
    """TimeSformer-L (96 frames every 4, 224 px) with ATS in blocks 3-5; official file:
    TimeSformer_divST_96x4_224_K400.pyth (or _K600)."""
    official = "TimeSformer_divST_96x4_224_K400.pyth"
    return _build("timesformer_l_96x224", official, pretrained, progress, checkpoint, kwargs)


def xvit_base_16x224_k600_ats(pretrained=False, progress=True, checkpoint=None, **kwargs):
    """XViT-B/16 (16 frames, 224 px, Kinetics-600) with ATS in blocks 3-11; official file:
    xvit_b16_16_k600.pth."""
    official = "xvit_b16_16_k600.pth"
    return _build("xvit_base_16x224_k600", official, pretrained, progress, checkpoint, kwargs)


def xvit_base_16x224_ssv2_ats(pretrained=False, progress=True, checkpoint=None, **kwargs):
    """XViT-B/16 (16 frames, 224 px, Something-Something-v2) with ATS in blocks 3-11; official
    file: xvit_b16_16_ss2.pth."""
    official = "xvit_b16_16_ss2.pth"
    return _build("xvit_base_16x224_ssv2", official, pretrained, progress, checkpoint, kwargs)


def deit_small_patch16_224_ats(pretrained=False, progress=True, checkpoint=None, **kwargs):
    """DeiT-S/16 at 224 px with ATS in blocks 3-11 (the paper's DeiT-S + ATS); ``pretrained``
    without ``checkpoint`` takes timm's weights, or pass the DeiT release's
    deit_small_patch16_224-cd65a155.pth."""
    return _build("deit_small_patch16_224", None, pretrained, progress, checkpoint, kwargs)
