"""The project imports cleanly with this machine's CPU torch and CUDA-built torchvision."""

import importlib


def test_imports():
    import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

    for name in ["timm", "pytorchvideo.data", "pytorchvideo.transforms", "torchvision.transforms"]:
        importlib.import_module(name)


def test_randaugment_posterize_to_zero_bits_gives_a_black_image():
    import ats_video  # noqa: F401  (its compat module keeps Pillow 13 from refusing 0 bits)
    from PIL import Image
    from timm.data.auto_augment import NAME_TO_OP

    image = Image.new("RGB", (4, 4), (200, 100, 50))
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        assert NAME_TO_OP[name](image, 0).getpixel((0, 0)) == (0, 0, 0)
        assert NAME_TO_OP[name](image, 4).getpixel((0, 0)) == (192, 96, 48)
