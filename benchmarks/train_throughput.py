"""Training throughput: TimeSformer-B 8x224 with and without ATS, and whether the loader keeps up.

Model: clips per second of one training step (forward, cross-entropy, backward, SGD step with
momentum) of ``timesformer_base_8x224`` on random clips [B, 3, 8, 224, 224], without ATS and
with ATS in blocks 3-5 (mode "frame") at the budget that halves the GFLOPs of a view
(``--ratio``; rho = 0.618 by the bisection of ``benchmarks/timesformer_ats.py``). Best of
``--iters`` timed steps after one warm-up step, each configuration in a fresh process (its peak
memory is its own). GFLOPs: forward GFLOPs per clip as run (``ats_video.flops.count_gflops``)
in training mode; a training step costs about three times that.

Loader: training clips per second of ``KineticsDataset`` (8x32 clips, short side in [256, 320],
random 224 crop, flip, normalise) through a DataLoader with each of ``--workers``, on the
synthetic 10-second 340x256 videos of ``benchmarks/loader_throughput.py``. Where the loader's
rate with the workers a process has is above the model's, data loading does not slow training.

    python benchmarks/train_throughput.py --machine "2-core CPU sandbox, no GPU"
    python benchmarks/train_throughput.py --device cuda --batch-sizes 8 --workers 4 8 16 ...
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ats_video import apply_ats
from ats_video.flops import count_gflops
from ats_video.models import timesformer_base_8x224
from common import argument_parser, parse_args, rss_bytes, run_isolated  # noqa: E402
from loader_throughput import CROP, NUM_FRAMES, ours, samples_per_second, write_videos  # noqa: E402

import resource

SCRIPT = Path(__file__).resolve()
BLOCKS = (3, 4, 5)


def build(ratio: Optional[float]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timesformer_base_8x224(num_classes=400)
    if ratio is not None:
        apply_ats(model, BLOCKS, ratio, mode="frame")
    return model


def measure(ratio: Optional[float], batch: int, device: str, iters: int) -> Dict[str, float]:
    """Training clips/s (best step of ``iters``) and peak memory above the start, in MiB."""
    model = build(ratio).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    clips = torch.randn(batch, 3, NUM_FRAMES, CROP, CROP, device=device)
    labels = torch.randint(400, (batch,), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base = torch.cuda.memory_allocated() if device == "cuda" else rss_bytes()
    best = float("inf")
    for step in range(iters + 1):
        sync()
        start = time.perf_counter()
        loss = F.cross_entropy(model(clips), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        if step:  # the first step warms up
            best = min(best, time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"per_s": batch / best, "peak_mib": peak / 2**20}


def paragraph(index: int) -> str:
    """Paragraph ``index`` of this module's docstring, on one line, as markdown."""
    return __doc__.split("\n\n")[index].replace("\n", " ").replace("``", "`")


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--ratio", type=float, default=0.618, help="ATS budget rho (half GFLOPs)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", default="decord", choices=["decord", "pyav"])
    parser.add_argument("--work-dir", default="/tmp/ats_video_loader_benchmark")
    parser.add_argument("--out", default=str(SCRIPT.with_suffix(".md")))
    args = parse_args(parser, measure)

    load_before = os.getloadavg()[0]
    clips = torch.randn(2, 3, NUM_FRAMES, CROP, CROP)
    gflops = {}
    for ratio in (None, args.ratio):
        # stochastic depth off for the count: a dropped branch would not be counted
        model = build(ratio)
        model.train()
        for module in model.modules():
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0
        gflops[ratio] = count_gflops(model, clips).mean().item()
    print(f"GFLOPs per clip: {gflops[None]:.1f} without ATS, {gflops[args.ratio]:.1f} with")

    rows = []
    model_rates = []
    for batch in args.batch_sizes:
        result = {
            r: run_isolated(str(SCRIPT), r, batch, args.device, args.iters)
            for r in (None, args.ratio)
        }
        speedup = result[args.ratio]["per_s"] / result[None]["per_s"]
        flop_ratio = gflops[None] / gflops[args.ratio]
        names = ("TimeSformer-B 8x224", f"+ ATS 3-5, frame, rho={args.ratio}")
        for r, name in zip((None, args.ratio), names):
            gain = (
                "-"
                if r is None
                else f"{speedup:.2f} / {flop_ratio:.2f} = {speedup / flop_ratio:.2f}"
            )
            rows.append(
                f"| {name} | {batch} | {result[r]['per_s']:.3f} | {gflops[r]:.1f} | "
                f"{result[r]['peak_mib']:.0f} | {gain} |"
            )
            model_rates.append(result[r]["per_s"])
        print(*rows[-2:], sep="\n", flush=True)

    list_path = write_videos(args.work_dir, 12, 2)
    loader_rows = []
    for workers in args.workers:
        dataset = ours(list_path, "train", args.backend)
        rate = samples_per_second(dataset, workers)
        keeps_up = "yes" if rate >= max(model_rates) else "no"
        loader_rows.append(f"| {workers} | {rate:.1f} | {max(model_rates):.3f} | {keeps_up} |")
        print(loader_rows[-1], flush=True)

    command = shlex.join(["python", f"benchmarks/{SCRIPT.name}", *sys.argv[1:]])
    lines = [
        f"# Training throughput: TimeSformer-B 8x224 with and without ATS, on {args.device}",
        "",
        f"Machine: {args.machine} ({os.cpu_count()} CPUs). torch {torch.__version__}. "
        f"1-minute load average before and after: {load_before:.1f} and {os.getloadavg()[0]:.1f}. "
        f"Command: `{command}`.",
        "",
        paragraph(1),
        "",
        "| model | batch | training clips/s | forward GFLOPs per clip | peak memory (MiB) "
        "| speed-up / GFLOPs ratio |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        paragraph(2),
        "",
        f"Decoder: {args.backend}; 12 videos listed twice (24 clips a pass), batches of 6, "
        "worker start-up included.",
        "",
        "| loader workers | loader clips/s | fastest model clips/s above | loader keeps up |",
        "|---|---|---|---|",
        *loader_rows,
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
