"""tools/clutter_study.py: the parts that run without a trained model (the study itself runs
twelve multi-view tests of the demo's model; docs/SYNTHETIC.md holds a run of it)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("clutter_study", ROOT / "tools" / "clutter_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def test_the_pictured_clip_is_the_first_of_its_class(tmp_path):
    listed = tmp_path / "val_clutter3.csv"
    listed.write_text("val/a/1.mp4 0\nval/b/2.mp4 3\nval/b/3.mp4 3\n")
    assert study.first_clip(listed, 3) == "val/b/2.mp4 3"
    with pytest.raises(SystemExit, match="no video of class 5"):
        study.first_clip(listed, 5)


def test_missing_weights_and_too_few_videos_are_refused_first(tmp_path, capsys):
    with pytest.raises(SystemExit):
        study.parse_args(["--checkpoint", str(tmp_path / "none.pyth")])
    assert "none.pyth: no such file (python tools/demo.py makes it)" in capsys.readouterr().err
    weights = tmp_path / "w.pyth"
    weights.write_bytes(b"")
    with pytest.raises(SystemExit):
        study.parse_args(["--checkpoint", str(weights), "--per-class", "3"])
    assert "--per-class must be at least 4" in capsys.readouterr().err
