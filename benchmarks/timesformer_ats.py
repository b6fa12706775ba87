"""Benchmark: TimeSformer-B 8x224 with and without ATS (blocks 3-5): clips/s, GFLOPs, peak memory.

    python benchmarks/timesformer_ats.py                  # this machine's CPU, writes timesformer_ats.md
    python benchmarks/timesformer_ats.py --device cuda --iters 10 --out benchmarks/timesformer_ats_gpu.md

The ATS budget is a ratio rho (of each frame's tokens entering an ATS block, mode "frame") found
by bisection so that the counted GFLOPs per view come to half of the model without ATS. Weights
are random (none can be downloaded here), so the CLS attention is flat: the sampler keeps close to
K tokens in every frame, and the reduction comes from the budget rather than from duplicates as
with trained weights. The kept counts of the two modes, "frame" and "shared", are recorded on the
same inputs.

Each (model, batch) runs in a fresh subprocess so that peak memory is its own: on CPU the peak
resident set size (``getrusage`` maxrss) above the process's size before the first forward, on
CUDA ``torch.cuda.max_memory_allocated`` above the memory held before the first forward.
"""

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import torch

from ats_video import apply_ats
from ats_video.flops import count_gflops
from ats_video.models import timesformer_base_8x224

ROOT = Path(__file__).resolve().parent
ATS_BLOCKS = (3, 4, 5)


def build(ratio, mode="frame"):
    torch.manual_seed(0)
    model = timesformer_base_8x224().eval()
    return model if ratio is None else apply_ats(model, ATS_BLOCKS, ratio, mode=mode)


def clips(batch, seed=0):
    return torch.randn(batch, 3, 8, 224, 224, generator=torch.Generator().manual_seed(seed))


def find_ratio(model, target, samples, steps):
    """Bisection on rho for the mean counted GFLOPs; ``model`` already has ATS, its rho is swapped."""
    x = clips(samples, seed=1)
    low, high = 0.05, 1.0
    for _ in range(steps):
        mid = (low + high) / 2
        apply_ats(model, ATS_BLOCKS, mid)
        low, high = (mid, high) if count_gflops(model, x).mean().item() < target else (low, mid)
    return round((low + high) / 2, 3)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(ratio, batch, device, iters):
    """Runs in its own process: throughput and peak memory of one (model, batch)."""
    model = build(ratio).to(device)
    x = clips(batch).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    seconds = float("inf")
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(iters):  # the best of a few: this machine is shared, others' work only adds time
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            seconds = min(seconds, time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"clips_per_s": batch / seconds, "peak_mib": peak / 2**20}


def run_isolated(ratio, batch, device, iters):
    args = [sys.executable, __file__, "--measure", json.dumps([ratio, batch, device, iters])]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def kept_by_mode(ratios, samples):
    """Kept patch tokens per clip after each ATS block, modes "frame" and "shared", same inputs."""
    x = clips(samples, seed=2)
    rows = []
    model = build(None)
    for ratio in ratios:
        for mode in ("frame", "shared"):
            apply_ats(model, ATS_BLOCKS, ratio, mode=mode)
            with torch.inference_mode():
                model(x)
            counts = [r.count.sum(-1).float().mean() for r in model.ats_kept]
            positions = [r.mask.any(1).flatten(1).sum(-1).float().mean() for r in model.ats_kept]
            gflops = count_gflops(model, x).mean().item()
            kept = " | ".join(f"{c:.1f} ({p:.1f})" for c, p in zip(counts, positions))
            rows.append(f"| {ratio} | {mode} | {kept} | {gflops:.1f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iters", type=int, default=2, help="timed forwards per (model, batch); the best counts")
    parser.add_argument("--ratio", type=float, help="ATS budget rho; default: found for half the GFLOPs")
    parser.add_argument("--samples", type=int, default=2, help="clips for the GFLOPs and kept-token figures")
    parser.add_argument("--out", type=Path, default=ROOT / "timesformer_ats.md")
    parser.add_argument("--machine", default=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*json.loads(args.measure))))
        return

    x = clips(args.samples, seed=1)
    base_gflops = count_gflops(build(None), x).mean().item()
    ratio = args.ratio or find_ratio(build(1.0), base_gflops / 2, args.samples, steps=7)
    gflops = {None: base_gflops, ratio: count_gflops(build(ratio), x).mean().item()}
    print(f"rho={ratio}: {gflops[ratio]:.1f} GFLOPs vs {base_gflops:.1f}", flush=True)

    rows = []
    for batch in args.batch_sizes:
        result = {r: run_isolated(r, batch, args.device, args.iters) for r in (None, ratio)}
        speedup = result[ratio]["clips_per_s"] / result[None]["clips_per_s"]
        flop_ratio = gflops[None] / gflops[ratio]
        for r, name in [(None, "TimeSformer-B 8x224"), (ratio, f"+ ATS 3-5, frame, rho={ratio}")]:
            rows.append(
                f"| {name} | {batch} | {result[r]['clips_per_s']:.3f} | {gflops[r]:.1f} | {result[r]['peak_mib']:.0f} | "
                + (f"{speedup:.2f} / {flop_ratio:.2f} = {speedup / flop_ratio:.2f} |" if r else "- |")
            )
        print(rows[-2], rows[-1], sep="\n", flush=True)
    modes = kept_by_mode([ratio, 1.0], args.samples)
    print(*modes, sep="\n")

    command = shlex.join(["python", "benchmarks/timesformer_ats.py", *sys.argv[1:]])
    table = "\n".join(
        [
            f"# TimeSformer-B 8x224 with and without ATS on {args.device}",
            "",
            f"Machine: {args.machine}. torch {torch.__version__}. Command: `{command}`.",
            f"ATS in blocks 3-5, mode \"frame\", budget rho={ratio} of each frame's tokens entering the "
            f"block ({'given; found earlier' if args.ratio else 'found'} by bisection for half the GFLOPs). Random weights (none can be downloaded "
            f"here) and random 8x224x224 clips; clips/s from the best of {args.iters} timed forwards after "
            f"one warm-up (inference mode; the machine is shared with other work). GFLOPs: mean per clip (one view) as run (`ats_video.flops.count_gflops`, "
            f"1 multiply-add = 1 FLOP) over {args.samples} clips. Peak memory: peak RSS above the "
            "process's size before the first forward, one fresh process per row.",
            "",
            "| model | batch | clips/s | GFLOPs | peak memory (MiB) | speed-up / GFLOPs ratio |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"## Kept tokens, frame vs shared (the same {args.samples} clips)",
            "",
            "Mean kept patch tokens per clip after each ATS block (of 8 x 196 = 1568), and in brackets the "
            "distinct spatial positions kept in any frame (of 196); rho=1.0 is the paper's default K = N.",
            "",
            "| rho | mode | block 3 | block 4 | block 5 | GFLOPs |",
            "|---|---|---|---|---|---|",
            *modes,
            "",
        ]
    )
    args.out.write_text(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
