"""The project imports cleanly with this machine's CPU torch and CUDA-built torchvision."""

import importlib


def test_imports():
    import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

    for name in ["timm", "pytorchvideo.data", "pytorchvideo.transforms", "torchvision.transforms"]:
        importlib.import_module(name)
