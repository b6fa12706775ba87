"""Token reduction methods side by side at equal GFLOPs, on one checkpoint: the paper's sampler
(ATS), its top-K ablation, a uniform random sample of K tokens, and token merging (ToMe), each in
the config's ATS blocks, each tested with the config's multi-view test.

    python tools/compare_methods.py --cfg CFG [--checkpoint FILE] [--method-checkpoint M=FILE ...]
        [--methods sample topk random tome] [--knobs M=N ...] [--fractions F ...] [--repeats N]
        [--timing-batches N] [--out DIR] [KEY VALUE ...]

    python tools/compare_methods.py --cfg configs/Synthetic/TimeSformer_tiny_ATS.yaml \\
        --checkpoint output/demo/plain/checkpoints/checkpoint_epoch_00024.pyth

The targets are fractions (default 0.9, 0.8, 0.7 and 0.65) of the GFLOPs per view of the model
without reduction. For every target and method, the method's knob (ATS.K for "sample", "topk"
and "random"; ATS.TOME_R for "tome") is bisected over the integers to the value whose GFLOPs
per view as run on the test views (:func:`ats_video.flops.gflops_as_run`, averaged over the
views) come closest to the target; a knob moves GFLOPs in steps, so the table says the GFLOPs
each method reached. Each value tried is one multi-view test of every view (decoded once and
held in memory). ``--method-checkpoint tome=FILE`` tests a method with other weights, such as
its own fine-tuned ones, and ``--knobs tome=7`` tests it at that knob only (no target: the
table says the GFLOPs it ran at), such as the one it was fine-tuned with.

Then the throughput of each chosen setting and of the model without reduction: clips (views)
forwarded per second over the test views in batches of TEST.BATCH_SIZE (the first
``--timing-batches`` of them; default all), the median of ``--repeats`` rounds that take the
settings in turn, so that a busy machine slows all alike.

DIR (default OUTPUT_DIR/compare_methods) then holds compare.md (the table), compare.json (its
rows) and compare.png (top-1 and clips/s against GFLOPs, a curve per method).
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ats_video.build import build_dataset, build_model
from ats_video.checkpoint import load_checkpoint
from ats_video.config import load_config
from ats_video.engine.data import EngineDataset, eval_loader
from ats_video.engine.distributed import init_process, shutdown
from ats_video.engine.evaluate import Evaluation, evaluate, kept_tokens_text, number
from ats_video.families import apply_ats
from ats_video.inference import checkpoint_file, split_files_and_options
from ats_video.patch.tome import apply_tome
from ats_video.vis import MethodPoint, method_comparison_figure

DEFAULT_FRACTIONS = (0.9, 0.8, 0.7, 0.65)


@dataclass(frozen=True)
class Method:
    """A token reduction method: its ``label`` in the table, its ``knob`` ("K" or "r"), the knob's ``lowest`` and ``highest`` values for a frame of n tokens, whether more of
    the knob means more GFLOPs (``rising``), and ``apply`` (model, blocks, knob) -> model."""

    label: str
    knob: str
    lowest: Callable[[int], int]
    highest: Callable[[int], int]
    rising: bool
    apply: Callable[[nn.Module, Optional[list], int], nn.Module]


def _ats(selector: str, mode: str) -> Callable[[nn.Module, Optional[list], int], nn.Module]:
    return lambda model, blocks, k: apply_ats(model, blocks, k, mode=mode, selector=selector)


def methods(mode: str) -> Dict[str, Method]:
    """The methods by ATS.SELECTOR name; ATS's in the config's ``mode``. K reaches 8 n for the sampler, whose
    repeated picks need K well above n to keep every token; n keeps every token otherwise."""
    return {
        "sample": Method("ATS (sampling)", "K", lambda n: 1, lambda n: 8 * n, True, _ats("sample", mode)),
        "topk": Method("ATS top-K", "K", lambda n: 1, lambda n: n, True, _ats("topk", mode)),
        "random": Method("random K", "K", lambda n: 1, lambda n: n, True, _ats("random", mode)),
        "tome": Method("ToMe", "r", lambda n: 0, lambda n: n // 2, False, apply_tome),
    }


class HeldViews:
    """The test views of a loader, decoded once and held in memory; evaluates like the loader."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.dataset = loader.dataset
        self.batches = list(loader)

    def __iter__(self):
        return iter(self.batches)

    def first(self, batches: Optional[int]) -> "HeldViews":
        """The first ``batches`` batches (None: all)."""
        held = copy.copy(self)
        held.batches = self.batches[:batches]
        return held


def closest_knob(gflops: Callable[[int], float], target: float, lowest: int, highest: int, rising: bool) -> int:
    """The integer knob in [lowest, highest] whose ``gflops`` come closest to ``target``, by
    bisection (``gflops`` rising or falling with the knob, as ``rising`` says; ties: the
    cheaper setting)."""
    lo, hi = lowest, highest
    while hi - lo > 1:  # invariant: the crossing lies between lo and hi
        mid = (lo + hi) // 2
        if (gflops(mid) <= target) == rising:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda knob: (abs(gflops(knob) - target), gflops(knob)))


def views_per_second(model: nn.Module, views: HeldViews, device: torch.device) -> float:
    """Clips (views) forwarded per second over all of ``views``, on ``device``."""
    count = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in views:
            model(batch["inputs"].to(device))
            count += len(batch["inputs"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def row(target: Optional[float], method: str, setting: str, result: Evaluation) -> dict:
    """One line of the comparison (clips/s filled in later); ``target`` None: no reduction."""
    return {
        "target_gflops": target,
        "method": method,
        "setting": setting,
        "gflops_per_view": result.gflops_per_view,
        "top1": result.accuracy(1),
        "top5": result.accuracy(5),
        "kept_tokens": {str(b): v for b, v in result.kept_tokens.items()},
        "clips_per_s": None,
    }


def short_path(path: str) -> str:
    """A checkpoint's file name, after its run's folder when it sits in a run's checkpoints/."""
    file = Path(path)
    return f"{file.parent.parent.name}/{file.name}" if file.parent.name == "checkpoints" else file.name


def table(rows: List[dict]) -> str:
    """The markdown table of the rows."""
    lines = [
        "| target GFLOPs | method | setting | GFLOPs per view (as run) | top-1 (%) | top-5 (%) | clips/s | "
        "mean tokens per clip after each reducing block |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept = kept_tokens_text({int(b): v for b, v in r["kept_tokens"].items()})
        target = "-" if r["target_gflops"] is None else f"{r['target_gflops']:.4f}"
        lines.append(
            f"| {target} | {r['method']} | {r['setting']} | {r['gflops_per_view']:.4f} | "
            f"{r['top1']:.1f} | {r['top5']:.1f} | {number(r['clips_per_s'], 1)} | {kept} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    parser.add_argument("--checkpoint", help="weights (default: TEST.CHECKPOINT_FILE_PATH, "
                        "else the last checkpoint in OUTPUT_DIR)")  # fmt: skip
    parser.add_argument("--method-checkpoint", nargs="+", default=[], metavar="M=FILE",
                        help="other weights for method M (e.g. its fine-tuned ones)")  # fmt: skip
    parser.add_argument("--methods", nargs="+", metavar="M", help="sample, topk, random, tome (default: all)")
    parser.add_argument("--knobs", nargs="+", default=[], metavar="M=N",
                        help="test method M at knob N instead of bisecting (e.g. at its fine-tuned setting)")
    parser.add_argument("--fractions", nargs="+", type=float, metavar="F",
                        help="targets as fractions of the GFLOPs without reduction (default 0.9 0.8 0.7 0.65)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the throughput measurement")
    parser.add_argument("--timing-batches", type=int, help="test batches timed (default: all)")
    parser.add_argument("--out", help="output directory (default OUTPUT_DIR/compare_methods)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    # lists take words up to the first config key, as tools/sweep_budget.py's --budgets
    for name in ("methods", "method_checkpoint", "knobs"):
        words, options = split_files_and_options(getattr(args, name) or [])
        setattr(args, name, words)
        args.opts = options + args.opts
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, [*args.opts, "ATS.ENABLE", "False"])
    available = methods(cfg.ATS.MODE)
    chosen = list(dict.fromkeys(args.methods or available))
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {sorted(available)}")
    weights = dict(item.split("=", 1) for item in args.method_checkpoint if "=" in item)
    bad = [item for item in args.method_checkpoint if "=" not in item or item.split("=", 1)[0] not in available]
    if bad:
        raise SystemExit(f"--method-checkpoint: expected METHOD=FILE with METHOD in {sorted(available)}, got {bad}")
    try:
        knobs = {m: int(v) for m, v in (item.split("=", 1) for item in args.knobs)}
    except ValueError:
        knobs = {"": 0}
    if set(knobs) - set(available) or any(v < available[m].lowest(0) for m, v in knobs.items()):
        raise SystemExit(f"--knobs: expected METHOD=INTEGER with METHOD in {sorted(available)}, got {args.knobs}")
    fractions = args.fractions or DEFAULT_FRACTIONS
    if not all(0 < f <= 1 for f in fractions):
        raise SystemExit(f"--fractions: each must lie in (0, 1], got {fractions}")
    checkpoint = checkpoint_file(cfg, args.checkpoint)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "compare_methods")
    os.makedirs(out, exist_ok=True)

    process = init_process()  # a group of one: the engine's test gathers over its processes
    try:
        return compare(args, cfg, checkpoint, weights, knobs, chosen, fractions, out, process.device)
    finally:
        shutdown()


def compare(args, cfg, checkpoint: str, weights: Dict[str, str], knobs: Dict[str, int], chosen: List[str],
            fractions, out: str, device: torch.device) -> int:
    """Runs the comparison (see the module docstring) and writes its outputs into ``out``."""
    available = methods(cfg.ATS.MODE)
    plain_models = {}
    for path in {checkpoint, *weights.values()}:
        plain_models[path] = build_model(cfg)
        load_checkpoint(plain_models[path], path)
        plain_models[path].to(device).eval()
    loader = eval_loader(EngineDataset(build_dataset(cfg, "test")), batch_size=cfg.TEST.BATCH_SIZE, rank=0,
                         world_size=1, num_workers=cfg.DATA_LOADER.NUM_WORKERS, pin_memory=False)  # fmt: skip
    views = HeldViews(loader)
    blocks = list(cfg.ATS.BLOCKS) or None
    tokens_per_frame = plain_models[checkpoint].patch_embed.num_patches

    def test(model: nn.Module) -> Evaluation:
        return evaluate(model, views, num_classes=cfg.MODEL.NUM_CLASSES, ensemble=cfg.TEST.ENSEMBLE_METHOD,
                        device=device, autocast_dtype=None, desc="test", show_progress=False)  # fmt: skip

    plain = test(plain_models[checkpoint])
    rows = [row(None, "no reduction", "-", plain)]
    settings: List[Tuple[str, nn.Module]] = [("no reduction", plain_models[checkpoint])]
    for name in chosen:
        method = available[name]
        results: Dict[int, Tuple[nn.Module, Evaluation]] = {}

        def gflops(knob: int) -> float:
            if knob not in results:
                model = method.apply(copy.deepcopy(plain_models[weights.get(name, checkpoint)]), blocks, knob)
                results[knob] = (model, test(model))
                print(f"{method.label} {method.knob}={knob}: {results[knob][1].gflops_per_view:.4f} GFLOPs, "
                      f"top-1 {results[knob][1].accuracy(1):.1f}%", flush=True)  # fmt: skip
            return results[knob][1].gflops_per_view

        for fraction in fractions if name not in knobs else [None]:
            if fraction is None:  # a given knob: tested as it is
                target, knob = None, knobs[name]
                gflops(knob)
            else:
                target = fraction * plain.gflops_per_view
                lo, hi = method.lowest(tokens_per_frame), method.highest(tokens_per_frame)
                knob = closest_knob(gflops, target, lo, hi, method.rising)
            model, result = results[knob]
            rows.append(row(target, method.label, f"{method.knob}={knob}", result))
            settings.append((f"{method.label} {method.knob}={knob}", model))

    timed: Dict[str, List[float]] = {}
    views = views.first(args.timing_batches)
    for _ in range(args.repeats):  # interleaved: the settings in turn, every round
        for key, model in dict(settings).items():
            timed.setdefault(key, []).append(views_per_second(model, views, device))
    for r, (key, _) in zip(rows, settings):
        r["clips_per_s"] = statistics.median(timed[key])

    text = table(rows)
    Path(out, "compare.md").write_text(text + "\n")
    Path(out, "compare.json").write_text(json.dumps(rows, indent=1) + "\n")
    points = [MethodPoint(r["method"], r["setting"], r["gflops_per_view"], r["top1"], r["clips_per_s"]) for r in rows]
    own = f"; own weights: {', '.join(weights)}" if weights else ""
    title = (f"{cfg.MODEL.ARCH}, {short_path(checkpoint)}{own}, "
             f"{cfg.TEST.NUM_ENSEMBLE_VIEWS}x{cfg.TEST.NUM_SPATIAL_CROPS} test, blocks {blocks or 'default'}")  # fmt: skip
    method_comparison_figure(points, title=title).savefig(os.path.join(out, "compare.png"), dpi=110)
    print(f"\n{text}\n\nwritten to {out}/compare.md, compare.json and compare.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
