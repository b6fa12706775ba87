"""tools/pytorchvideo_kinetics.py: an ATS model on samples of pytorchvideo.data.Kinetics itself."""

import importlib.util
import re
from pathlib import Path

from videos import write_counter_video

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

TOOL = Path(__file__).resolve().parents[1] / "tools" / "pytorchvideo_kinetics.py"
spec = importlib.util.spec_from_file_location("pytorchvideo_kinetics", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_an_ats_model_runs_on_pytorchvideo_kinetics_clips(tmp_path, capsys):
    paths = [write_counter_video(str(tmp_path / f"v{i}.mp4"), num_frames=40) for i in range(2)]
    (tmp_path / "list.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(paths)))
    model_args = ["img_size=32", "num_frames=4", "embed_dim=48", "depth=4", "num_heads=3", "num_classes=3"]
    code = tool.main(
        [str(tmp_path / "list.txt"), "--arch", "timesformer_base_8x224", "--frames", "4",
         "--sampling-rate", "4", "--crop", "32", "--k", "2", "--batch-size", "2",
         *[arg for pair in zip(["--model-arg"] * len(model_args), model_args) for arg in pair]]
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    # 40 frames at 30 fps, clips of 13 frames: PyTorchVideo's uniform sampler gives 3 per video
    pattern = r"(v[01]\.mp4) clip (\d) aug 0: class \d \(\d+\.\d%\), label (\d), (\d+\.\d) tokens kept"
    found = [re.match(pattern, line).groups() for line in lines]
    assert [(name, int(clip)) for name, clip, _, _ in found] == [
        (f"v{v}.mp4", c) for v in range(2) for c in range(3)
    ]
    assert all(label == name[1] for name, _, label, _ in found)
    assert all(0 < float(kept) <= 2 for *_, kept in found)  # K = 2 of the 4 patches of a frame
