"""The test's scores: confusion matrix, per-class and mean class accuracy, the per-class table
and the scores file, on hand-made scores."""

import csv
import math

import numpy as np
import torch

import ats_video  # noqa: F401  (before timm)
from ats_video.engine.scores import (
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    save_scores,
    write_per_class,
)

# 6 videos of class 0 (5 right, one taken for class 2), 2 of class 1 (both taken for 0), no
# video of class 2: top-1 5/8, but mean class accuracy (5/6 + 0/2) / 2, class 2 absent
LABELS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
PREDICTED = torch.tensor([0, 0, 0, 0, 0, 2, 0, 0])
SCORES = torch.nn.functional.one_hot(PREDICTED, 3).float() * 0.8 + 0.1


def test_mean_class_accuracy_weighs_classes_alike_and_skips_absent_ones():
    confusion = confusion_matrix(SCORES, LABELS, 3)
    assert confusion.tolist() == [[5, 0, 1], [2, 0, 0], [0, 0, 0]]
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:2].tolist() == [100 * 5 / 6, 0.0] and math.isnan(accuracy[2])
    assert math.isclose(mean_class_accuracy(confusion), 100 * (5 / 6 + 0) / 2)


def test_per_class_table_names_classes_and_their_worst_confusion(tmp_path):
    path = tmp_path / "per_class.csv"
    write_per_class(str(path), confusion_matrix(SCORES, LABELS, 3), ["run", "jump", "swim"])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [(r["name"], r["videos"], r["top1"], r["most_confused_with"], r["times"]) for r in rows]
    assert cells == [
        ("run", "6", "83.33", "swim", "1"),
        ("jump", "2", "0.00", "run", "2"),
        ("swim", "0", "", "", ""),
    ]


def test_the_scores_file_loads_with_numpy_alone(tmp_path):
    path = tmp_path / "test_scores.npz"
    views = torch.rand(8, 2, 3)
    save_scores(
        str(path),
        scores=SCORES,
        labels=LABELS,
        paths=[f"v{i}.mp4" for i in range(8)],
        usable=torch.ones(8, dtype=torch.bool),
        class_names=["run", "jump", "swim"],
        view_scores=views,
    )
    with np.load(path, allow_pickle=False) as f:
        assert f["paths"].tolist()[-1] == "v7.mp4" and f["class_names"].tolist()[0] == "run"
        np.testing.assert_array_equal(f["view_scores"], views.numpy())
        np.testing.assert_array_equal(f["labels"], LABELS.numpy())
    assert not list(tmp_path.glob(".*partial*"))
