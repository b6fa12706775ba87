from setuptools import find_packages, setup

setup(
    name="ats_video",
    version="0.1.0",
    description="Adaptive Token Sampling (ATS) for efficient video and image transformers",
    packages=find_packages(include=["ats_video", "ats_video.*"]),
    python_requires=">=3.9",
    # Each lower bound is what the code needs; CI's second lane installs exactly these minimums
    # (tools/minimum_versions.py reads them from here) and runs a fast subset of the tests.
    # torch and torchvision are left without an upper pin so a user's own (CUDA) build is kept;
    # tools/setup.sh installs a matching pair only where none is present. torch 2.3 is the first
    # with torch.amp.GradScaler(device); CI can only install torch 2.13 (the CPU wheel at hand).
    install_requires=[
        "torch>=2.3",
        "torchvision",
        "timm>=1.0.28",  # timm.layers.Attention with its .gate (ats_video/patch/vit.py)
        "pytorchvideo>=0.1.5",
        "av>=12.0.0",  # PyAV: decodes everywhere, writes videos; the first with Python 3.11 wheels
        "einops>=0.6.0",
        "fvcore>=0.1.5.post20221221",
        "matplotlib",  # the plots of tools/run_net.py, sweep_budget.py and clutter_study.py
        "numpy>=1.24",
        "tensorboard",
        "tqdm",
    ],
    extras_require={
        "cluster": ["submitit"],  # tools/submit.py
        "test": ["pytest", "hypothesis", "transformers>=4.40", "submitit"],
        # Optional decoders (ats_video/data/video_io.py; README.md, "Video decoders"). decord has
        # wheels for x86_64 only (Linux, Windows, macOS before arm64); torchcodec must match the
        # installed torch and needs FFmpeg's shared libraries.
        "decord": ["decord>=0.6.0; platform_machine == 'x86_64' or platform_machine == 'AMD64'"],
        "torchcodec": ["torchcodec"],
    },
)
