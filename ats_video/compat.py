"""Import fixes for torchvision builds that do not match the installed torch.

Two known breakages, each repaired only when it actually occurs, so on a normal CUDA machine
(matching torch and torchvision) this module changes nothing:

1. A torchvision wheel built for CUDA, installed beside a CPU-only torch, cannot load its C++
   extension. ``import torchvision`` then fails in ``torchvision._meta_registrations`` with
   ``operator torchvision::nms does not exist``, because that file registers fake kernels for
   the extension's operators. Those registrations only serve ``torch.compile`` of the detection
   ops, which cannot run without the extension anyway, so we import torchvision without them.
   Everything this project uses (transforms, io helpers) is pure Python and works.
2. pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor``, which newer
   torchvision renamed ``_functional_tensor``. We register the old name as an alias.
3. timm's RandAugment (DeiT's ``rand-m9-mstd0.5-inc1``) posterizes to 0 bits at magnitude 10,
   which Pillow 13 refuses (``bits must be between or equal to 1 and 8``) and older Pillow
   turned into a black image; a training run would crash on about one image in 700. Where
   Pillow refuses 0 bits, timm's posterize op keeps its old result: a black image.

``ats_video`` imports this module first, so ``import ats_video`` before timm or pytorchvideo.
"""

import importlib
import sys
import types


def _import_torchvision() -> None:
    try:
        importlib.import_module("torchvision")
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations"
        )
        importlib.import_module("torchvision")


def _alias_functional_tensor() -> None:
    try:
        importlib.import_module("torchvision.transforms.functional_tensor")
    except ModuleNotFoundError:
        sys.modules["torchvision.transforms.functional_tensor"] = importlib.import_module(
            "torchvision.transforms._functional_tensor"
        )


def _posterize_zero_bits() -> None:
    from PIL import Image, ImageOps

    try:
        ImageOps.posterize(Image.new("RGB", (1, 1)), 0)
        return
    except ValueError:
        pass
    from timm.data import auto_augment

    timm_posterize = auto_augment.posterize

    def posterize(img, bits_to_keep, **kwargs):
        if bits_to_keep <= 0:  # what Pillow before 13 computed: every bit masked off
            return Image.new(img.mode, img.size)
        return timm_posterize(img, bits_to_keep, **kwargs)

    for name, op in auto_augment.NAME_TO_OP.items():
        if op is timm_posterize:
            auto_augment.NAME_TO_OP[name] = posterize


_import_torchvision()
_alias_functional_tensor()
_posterize_zero_bits()
