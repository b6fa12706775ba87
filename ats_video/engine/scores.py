"""What the multi-view test keeps besides its accuracy: the scores, per-class accuracy and the
confusion matrix.

PySlowFast saves its test's predictions and labels (``TEST.SAVE_RESULTS_PATH``), so that
checkpoint ensembles, other metrics or re-scoring need no second test. Here every test writes

- ``test_scores.npz`` (numpy's archive, read with ``numpy.load`` alone; see :func:`save_scores`):
  the per-video scores with labels and paths, and with ``TEST.SAVE_VIEW_SCORES`` every view's;
- ``test_per_class.csv``: per class, its videos, top-1 accuracy and the class its videos are
  most often taken for;
- ``test_confusion.png``: the confusion matrix, each row normalised over the true class's
  videos.

Mean class accuracy is the mean over the classes that have test videos of each class's top-1
accuracy (Kinetics' validation set is nearly balanced, so it sits close to top-1; on a
long-tailed set they part).
"""

from __future__ import annotations

import csv
import os
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ats_video.checkpoint import write_atomically

if TYPE_CHECKING:  # matplotlib is imported only where the figure is drawn
    from matplotlib.figure import Figure

    from ats_video.engine.evaluate import Evaluation

SCORES_FILE = "test_scores.npz"
PER_CLASS_FILE = "test_per_class.csv"
CONFUSION_FILE = "test_confusion.png"
# above this many classes the picture carries class indices only, not names
MAX_NAMED_CLASSES = 40


def confusion_matrix(scores: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """[V, C] scores and [V] labels -> [C, C] long: row = true class, column = top-1 class."""
    predicted = scores.argmax(dim=1)
    flat = labels.long() * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """[C, C] confusion -> [C] top-1 accuracy in percent per true class (NaN: no videos)."""
    videos = confusion.sum(dim=1).double()
    return 100.0 * confusion.diagonal().double() / videos  # 0 / 0 = NaN for an absent class


def mean_class_accuracy(confusion: Tensor) -> float:
    """The mean top-1 accuracy of the classes that have videos (NaN when none has)."""
    accuracy = per_class_accuracy(confusion)
    present = ~accuracy.isnan()
    return accuracy[present].mean().item() if present.any() else float("nan")


def save_scores(
    path: str,
    *,
    scores: Tensor,
    labels: Tensor,
    paths: Sequence[str],
    usable: Tensor,
    class_names: Optional[Sequence[str]],
    view_scores: Optional[Tensor] = None,
) -> None:
    """Writes ``test_scores.npz``, which ``numpy.load(path)`` reads without pickle:

    - ``scores`` float32 [V, C]: each listed video's ensemble of its views' softmax scores
      (``TEST.ENSEMBLE_METHOD``), in list order; zeros for an unusable video;
    - ``labels`` int64 [V]; ``paths`` str [V]; ``usable`` bool [V] (False: a view could not be
      read, and the video is out of the accuracy);
    - ``class_names`` str [C], or [0] when the test set names no classes;
    - with ``view_scores``: float32 [V, views, C], every view's softmax scores, view =
      ``clip_index * NUM_SPATIAL_CROPS + crop_index``; NaN for a view that was not run.
    """
    arrays = dict(
        scores=scores.float().numpy(),
        labels=labels.long().numpy(),
        paths=np.array(list(paths), dtype=str),
        usable=usable.bool().numpy(),
        class_names=np.array(list(class_names or []), dtype=str),
    )
    if view_scores is not None:
        arrays["view_scores"] = view_scores.float().numpy()
    write_atomically(path, lambda f: np.savez_compressed(f, **arrays))


def class_label(index: int, class_names: Optional[Sequence[str]]) -> str:
    return class_names[index] if class_names else str(index)


def write_per_class(path: str, confusion: Tensor, class_names: Optional[Sequence[str]]) -> None:
    """``test_per_class.csv``: ``class,name,videos,top1,most_confused_with,times``, a row per
    class (``top1`` empty for a class without videos; the last two empty when none of its
    videos was taken for another class)."""
    accuracy = per_class_accuracy(confusion).tolist()
    others = confusion.clone()
    others.fill_diagonal_(-1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "name", "videos", "top1", "most_confused_with", "times"])
        for c, row in enumerate(others.tolist()):
            worst = max(range(len(row)), key=row.__getitem__)
            confused = row[worst] > 0
            writer.writerow(
                [
                    c,
                    class_label(c, class_names),
                    int(confusion[c].sum()),
                    "" if np.isnan(accuracy[c]) else f"{accuracy[c]:.2f}",
                    class_label(worst, class_names) if confused else "",
                    row[worst] if confused else "",
                ]
            )


def confusion_figure(
    confusion: Tensor, class_names: Optional[Sequence[str]], *, title: str
) -> "Figure":
    """The confusion matrix as a picture: rows true classes, columns predicted, each row as a
    fraction of its class's videos (white: 0, dark: all); named axes up to
    ``MAX_NAMED_CLASSES`` classes, indices beyond."""
    from matplotlib.figure import Figure

    c = confusion.shape[0]
    videos = confusion.sum(dim=1, keepdim=True).clamp(min=1)
    fraction = (confusion.double() / videos).numpy()
    side = min(4.0 + 0.25 * c, 16.0)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class's videos")
    if c <= MAX_NAMED_CLASSES:
        names = [class_label(i, class_names) for i in range(c)]
        ax.set_xticks(range(c), names, rotation=90, fontsize=8)
        ax.set_yticks(range(c), names, fontsize=8)
        if c <= 12:  # few classes: the counts fit in the cells
            for (i, j), n in np.ndenumerate(confusion.numpy()):
                if n:
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                            color="white" if fraction[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class (top-1)")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    return fig


def write_score_outputs(
    output_dir: str,
    evaluation: "Evaluation",
    paths: Sequence[str],
    class_names: Optional[Sequence[str]],
    *,
    title: str,
) -> list[str]:
    """Writes ``test_scores.npz``, ``test_per_class.csv`` and ``test_confusion.png`` of a
    test under ``output_dir``; returns their paths."""
    names = (SCORES_FILE, PER_CLASS_FILE, CONFUSION_FILE)
    written = [os.path.join(output_dir, name) for name in names]
    save_scores(
        written[0],
        scores=evaluation.scores,
        labels=evaluation.labels,
        paths=paths,
        usable=evaluation.usable,
        class_names=class_names,
        view_scores=evaluation.view_scores,
    )
    confusion = evaluation.confusion()
    write_per_class(written[1], confusion, class_names)
    figure = confusion_figure(confusion, class_names, title=title)
    figure.savefig(written[2], dpi=110)
    return written
