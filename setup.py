from setuptools import find_packages, setup

setup(
    name="ats_video",
    version="0.1.0",
    description="Adaptive Token Sampling (ATS) for efficient video and image transformers",
    packages=find_packages(include=["ats_video", "ats_video.*"]),
    python_requires=">=3.9",
    # torch and torchvision are left unpinned so a user's own (CUDA) build is kept;
    # tools/setup.sh installs a matching pair only where none is present.
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=1.0.15",
        "pytorchvideo>=0.1.5",
        "av",
        "decord",
        "einops",
        "fvcore",
        "matplotlib",  # the plots of tools/run_net.py, sweep_budget.py and clutter_study.py
        "numpy",
        "tensorboard",
        "tqdm",
    ],
    extras_require={
        "cluster": ["submitit"],  # tools/submit.py
        "test": ["pytest", "hypothesis", "transformers>=4.40", "submitit"],
    },
)
