"""The multi-view test (and the clip-level validation, its one-view case) and its results.

Each sample is one view (clip x crop) of a video and carries its ``video_index``; the
softmax scores of a video's views are summed (or maxed) into one row per video, PySlowFast's
index arithmetic: ``scores[video_index] += softmax(logits)``. Processes test disjoint slices of
the views (:class:`ats_video.engine.data.ShardSampler`) and add their rows together, and every
video must then have been seen exactly ``num_views`` times: that is checked, not assumed.

Unusable views (a video that cannot be read) are never forwarded: a batch is cut to its
usable samples, and skipped when none is left. A video with an unusable view is named, and
left out of the accuracy.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ats_video.data.kinetics import UnusableVideos
from ats_video.engine.data import EngineDataset
from ats_video.engine.distributed import all_gather, all_reduce
from ats_video.engine.logs import finite_or_none
from ats_video.engine.scores import confusion_matrix, mean_class_accuracy
from ats_video.flops import gflops_as_run
from ats_video.tokens import kept_tokens

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What :func:`evaluate` found, the same on every process.

    scores: [V, C] per-video ensemble of the usable views' softmax scores.
    labels: [V] the videos' labels.
    usable: [V] bool, False for a video with an unusable view.
    unusable: those videos, with the reasons (every process's, merged).
    views_run: views forwarded (usable ones).
    kept_tokens: ATS block -> mean kept patch tokens per view (clip), over the views run.
    kept_per_view: ATS block -> [views_run] long, the kept patch tokens of each view run, in
        view order (the processes' slices one after the other), for the histogram.
    tokens_per_clip: patch tokens a clip has before any ATS block (None without ATS).
    gflops_per_view: mean GFLOPs per view as run; gflops_without_ats: the same model without
        ATS. NaN where unknown.
    view_scores: [V, views, C] every view's softmax scores (NaN for a view not run), when
        :func:`evaluate` was asked to keep them; else None.
    """

    scores: Tensor
    labels: Tensor
    usable: Tensor
    unusable: UnusableVideos
    views_run: int
    kept_tokens: Dict[int, float] = field(default_factory=dict)
    kept_per_view: Dict[int, Tensor] = field(default_factory=dict)
    tokens_per_clip: Optional[int] = None
    gflops_per_view: float = float("nan")
    gflops_without_ats: float = float("nan")
    view_scores: Optional[Tensor] = None

    def accuracy(self, k: int) -> float:
        """Top-``k`` accuracy in percent over the usable videos (NaN if there are none)."""
        if not self.usable.any():
            return float("nan")
        top = self.scores[self.usable].topk(min(k, self.scores.shape[1]), dim=1).indices
        hits = (top == self.labels[self.usable, None]).any(dim=1)
        return 100.0 * hits.double().mean().item()

    def confusion(self) -> Tensor:
        """[C, C] top-1 confusion matrix over the usable videos (row: true class)."""
        return confusion_matrix(
            self.scores[self.usable], self.labels[self.usable], self.scores.shape[1]
        )


def _take(batch: Tensor, rows: Optional[Tensor]) -> Tensor:
    """The given rows of a batch (all of it for None)."""
    return batch if rows is None else batch[rows]


def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    *,
    num_classes: int,
    ensemble: str,
    device: torch.device,
    autocast_dtype: Optional[torch.dtype],
    desc: str,
    show_progress: bool,
    keep_view_scores: bool = False,
) -> Evaluation:
    """Forwards this process's views of ``loader`` (an :class:`EngineDataset` sharded by a
    ``ShardSampler``), and combines the results of all processes; with ``keep_view_scores``
    the result holds every view's scores as well (``Evaluation.view_scores``).

    ``model`` must be the plain model, not a DistributedDataParallel wrapper (its forward
    would wait for the other processes, which may have fewer batches).
    """
    dataset: EngineDataset = loader.dataset
    num_videos = len(dataset.videos)
    scores = torch.zeros(num_videos, num_classes, device=device)
    views = torch.zeros(num_videos, dtype=torch.long, device=device)
    # every view is run by one process at most, so the processes' rows add up; NaN marks views
    # not run after the sum
    view_scores = view_ran = None
    if keep_view_scores:
        view_scores = torch.zeros(num_videos, dataset.num_views, num_classes, device=device)
        view_ran = torch.zeros(num_videos, dataset.num_views, dtype=torch.long, device=device)
    unusable = UnusableVideos(dataset)
    # added over the processes at the end: "views" run, their "gflops"
    stats: Counter = Counter()
    kept_per_view: Dict[int, List[Tensor]] = defaultdict(list)  # block -> per batch [views]
    tokens_per_clip = None
    gflops = torch.zeros((), dtype=torch.float64, device=device)
    # disable=None: a bar only where the output is a terminal, not in logs
    progress = tqdm(
        loader, desc=desc, unit="batch", leave=False, disable=None if show_progress else True
    )
    model.eval()
    with torch.inference_mode():
        for batch in progress:
            video_index = batch["video_index"].to(device)
            views.index_add_(0, video_index, torch.ones_like(video_index))
            keep = unusable.update(batch)
            if not keep.any():
                continue  # never forward an empty batch
            # the usable samples' rows, found on the CPU (where ``keep`` lives), so that cutting
            # the batch on the device waits for nothing; the batch is copied whole (from pinned
            # memory where the loader pins it)
            rows = None if keep.all() else keep.nonzero().squeeze(1).to(device)
            inputs = _take(batch["inputs"].to(device, non_blocking=True), rows)
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                logits = model(inputs)
            probs = logits.float().softmax(dim=-1)
            index = _take(video_index, rows)
            if ensemble == "sum":
                scores.index_add_(0, index, probs)
            else:
                # scores start at 0, below any probability
                scores.scatter_reduce_(0, index[:, None].expand_as(probs), probs, "amax")
            if view_scores is not None:
                view_index = _take(batch["view_index"].to(device), rows)
                view_scores[index, view_index] = probs
                view_ran[index, view_index] = 1
            kept = kept_tokens(model)
            for record in kept:
                kept_per_view[record.block].append(record.count.sum(dim=1).cpu())
                tokens_per_clip = record.grid[0] * record.grid[1] * record.grid[2]
            gflops = gflops + gflops_as_run(model, kept, len(inputs)).sum()  # read once, at the end
            stats["views"] += len(inputs)

    stats["gflops"] = gflops.item()
    all_reduce(scores, "sum" if ensemble == "sum" else "max")
    all_reduce(views)
    if view_scores is not None:
        all_reduce(view_scores)
        all_reduce(view_ran)
        view_scores = view_scores.cpu().masked_fill(view_ran.cpu()[..., None] == 0, float("nan"))
    seen = views.cpu()
    if not bool((seen == dataset.num_views).all()):
        wrong = (seen != dataset.num_views).nonzero().flatten()[:5].tolist()
        raise RuntimeError(
            f"videos {wrong} were seen {seen[wrong].tolist()} times, not {dataset.num_views}: "
            "the test shards overlap or miss views"
        )
    total: Counter = Counter()
    per_view: Dict[int, List[Tensor]] = defaultdict(list)
    mine = {block: torch.cat(counts) for block, counts in kept_per_view.items()}
    for failures, process_stats, process_tokens, process_kept in all_gather(
        (unusable.failures, stats, tokens_per_clip, mine)
    ):
        unusable.merge(failures)
        total.update(process_stats)  # unlike +, keeps NaN (GFLOPs unknown)
        tokens_per_clip = tokens_per_clip or process_tokens
        for block, counts in process_kept.items():
            per_view[block].append(counts)
    views_run = total["views"]
    kept = {block: torch.cat(counts) for block, counts in sorted(per_view.items())}
    labels = torch.tensor([v.label for v in dataset.videos])
    usable = torch.ones(num_videos, dtype=torch.bool)
    usable[list(unusable.failures)] = False
    plain = gflops_as_run(model, [], 1)[0].item()
    return Evaluation(
        scores=scores.cpu(),
        labels=labels,
        usable=usable,
        unusable=unusable,
        views_run=views_run,
        kept_tokens={block: counts.double().mean().item() for block, counts in kept.items()},
        kept_per_view=kept,
        tokens_per_clip=tokens_per_clip,
        gflops_per_view=total["gflops"] / views_run if views_run else float("nan"),
        gflops_without_ats=plain,
        view_scores=view_scores,
    )


def test_results(evaluation: Evaluation, dataset: EngineDataset, **about: Any) -> Dict[str, Any]:
    """The contents of ``test_results.json``; ``about`` adds entries (checkpoint, ATS
    settings, ...)."""
    return {
        "top1": finite_or_none(evaluation.accuracy(1)),
        "top5": finite_or_none(evaluation.accuracy(5)),
        "mean_class_accuracy": finite_or_none(mean_class_accuracy(evaluation.confusion())),
        "num_videos": len(dataset.videos),
        "num_usable_videos": int(evaluation.usable.sum()),
        "num_views": dataset.num_views,
        "unusable": [
            {"path": dataset.videos[i].path, "reason": reason}
            for i, reason in sorted(evaluation.unusable.failures.items())
        ],
        "gflops_per_view": {
            "as_run": finite_or_none(evaluation.gflops_per_view),
            "without_ats": finite_or_none(evaluation.gflops_without_ats),
        },
        "kept_tokens": {str(block): mean for block, mean in evaluation.kept_tokens.items()},
        "tokens_per_clip": evaluation.tokens_per_clip,
        **about,
    }


def write_test_outputs(
    output_dir: str, evaluation: Evaluation, dataset: EngineDataset, results: Mapping[str, Any]
) -> None:
    """Writes ``test_results.json`` and ``test_predictions.csv`` (one row per listed video, in
    list order: ``path,label,top1,top5,usable``, top5 best first, empty when unusable)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "test_results.json"), "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
        f.write("\n")
    top = evaluation.scores.topk(min(5, evaluation.scores.shape[1]), dim=1).indices.tolist()
    with open(os.path.join(output_dir, "test_predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "top1", "top5", "usable"])
        for video, best, usable in zip(dataset.videos, top, evaluation.usable.tolist()):
            if usable:
                writer.writerow([video.path, video.label, best[0], " ".join(map(str, best)), True])
            else:
                writer.writerow([video.path, video.label, "", "", False])


def kept_tokens_text(kept: Mapping[int, float]) -> str:
    """``{3: 392.04, 4: 380.5}`` -> ``"block 3: 392.0, block 4: 380.5"``."""
    return ", ".join(f"block {block}: {mean:.1f}" for block, mean in kept.items()) or "no ATS"


def results_table(heads: Sequence[str], rows: Sequence[Tuple[Sequence[str], Mapping[str, Any]]]) -> str:
    """A markdown table of multi-view tests, a row per (leading cells, ``test_results.json``
    dict): the cells under ``heads``, then top-1, top-5, views, GFLOPs per view as run and the
    mean kept tokens per clip after each ATS block."""
    blocks = sorted({int(b) for _, r in rows for b in r["kept_tokens"]})
    tokens = next((r["tokens_per_clip"] for _, r in rows if r["tokens_per_clip"]), None)
    kept_head = "mean kept tokens per clip"
    if blocks:
        kept_head += f" after blocks {', '.join(map(str, blocks))} (of {tokens})"
    lines = [
        "| " + " | ".join([*heads, "top-1 (%)", "top-5 (%)", "views", "GFLOPs per view", kept_head]) + " |",
        "|" + "---|" * (len(heads) + 5),
    ]
    for cells, r in rows:
        kept = [f"{r['kept_tokens'][str(b)]:.1f}" for b in blocks if str(b) in r["kept_tokens"]]
        gflops = r["gflops_per_view"]["as_run"]
        values = [*cells, number(r["top1"], 1), number(r["top5"], 1), r["views"], number(gflops, 4)]
        lines.append("| " + " | ".join([*values, ", ".join(kept) or "all (no ATS)"]) + " |")
    return "\n".join(lines)


def number(value: Optional[float], digits: int) -> str:
    """``value`` with ``digits`` decimals, or "unknown" (null in the JSON)."""
    return "unknown" if value is None else f"{value:.{digits}f}"


def test_log_lines(results: Mapping[str, Any], what: str) -> List[str]:
    """Human-readable lines of :func:`test_results`' dict."""
    gflops = results["gflops_per_view"]
    kept = {int(b): v for b, v in results["kept_tokens"].items()}
    return [
        f"{what}: top-1 {number(results['top1'], 2)}%, top-5 {number(results['top5'], 2)}%, "
        f"mean class accuracy {number(results['mean_class_accuracy'], 2)}% over "
        f"{results['num_usable_videos']} of {results['num_videos']} videos, "
        f"{results['num_views']} views each",
        f"GFLOPs per view: {number(gflops['as_run'], 2)} as run, "
        f"{number(gflops['without_ats'], 2)} without ATS",
        f"mean kept tokens per clip (of {results['tokens_per_clip']}): {kept_tokens_text(kept)}"
        if kept
        else "kept tokens: all (no ATS)",
    ]
