"""Benchmark: DeiT-S with and without ATS (blocks 3-11): images/s, GFLOPs, peak memory.

    python benchmarks/deit_ats.py                      # this machine's CPU, writes deit_ats.md
    python benchmarks/deit_ats.py --device cuda --out benchmarks/deit_ats_gpu.md

The ATS budget is a ratio rho found by bisection so that the mean counted GFLOPs come to the
paper's 2.9 (Table 2, DeiT-S + ATS). Weights are random (none can be downloaded here), so the
CLS attention is flatter than a trained model's: the sampler then keeps close to K tokens and
the reduction comes from the budget, not from duplicates as with trained weights.

Each (model, batch) runs in a fresh subprocess so that peak memory is its own: on CPU the peak
resident set size above the process's size before the first forward, on CUDA
``torch.cuda.max_memory_allocated`` above the memory held before the first forward.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import timm
import torch

from ats_video import apply_ats
from ats_video.flops import count_gflops

ROOT = Path(__file__).resolve().parent
ATS_BLOCKS = tuple(range(3, 12))
TARGET_GFLOPS = 2.9


def build(ratio):
    model = timm.create_model("deit_small_patch16_224").eval()
    return model if ratio is None else apply_ats(model, ATS_BLOCKS, ratio)


def images(batch, seed=0):
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def mean_gflops(ratio, samples=8):
    torch.manual_seed(0)
    return count_gflops(build(ratio), images(samples)).mean().item()


def find_ratio(target=TARGET_GFLOPS, steps=10):
    low, high = 0.05, 1.0
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if mean_gflops(mid) < target else (low, mid)
    return round((low + high) / 2, 4)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(ratio, batch, device, iters):
    """Runs in its own process: throughput and peak memory of one (model, batch)."""
    torch.manual_seed(0)
    model = build(ratio).to(device)
    x = images(batch).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    with torch.inference_mode():
        model(x)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
        seconds = (time.perf_counter() - start) / iters
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"images_per_s": batch / seconds, "peak_mib": peak / 2**20}


def run_isolated(ratio, batch, device, iters):
    args = [sys.executable, __file__, "--measure", json.dumps([ratio, batch, device, iters])]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--iters", type=int, default=5, help="timed forwards per (model, batch)")
    parser.add_argument("--ratio", type=float, help="ATS budget rho; default: found for 2.9 GFLOPs")
    parser.add_argument("--out", type=Path, default=ROOT / "deit_ats.md")
    parser.add_argument("--machine", default=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*json.loads(args.measure))))
        return

    ratio = args.ratio or find_ratio()
    gflops = {None: mean_gflops(None), ratio: mean_gflops(ratio)}
    rows = []
    for batch in args.batch_sizes:
        result = {r: run_isolated(r, batch, args.device, args.iters) for r in (None, ratio)}
        speedup = result[ratio]["images_per_s"] / result[None]["images_per_s"]
        flop_ratio = gflops[None] / gflops[ratio]
        for r, name in [(None, "DeiT-S"), (ratio, f"DeiT-S + ATS (rho={ratio})")]:
            rows.append(
                f"| {name} | {batch} | {result[r]['images_per_s']:.1f} | {gflops[r]:.2f} | "
                f"{result[r]['peak_mib']:.0f} | " + (f"{speedup:.2f} / {flop_ratio:.2f} = {speedup / flop_ratio:.2f} |" if r else "- |")
            )
        print(rows[-2], rows[-1], sep="\n", flush=True)

    table = "\n".join(
        [
            f"# DeiT-S with and without ATS on {args.device}",
            "",
            f"Machine: {args.machine}. torch {torch.__version__}. Command: `python benchmarks/deit_ats.py "
            + " ".join(sys.argv[1:])
            + "`.",
            f"ATS in blocks 3-11, budget rho={ratio}; random weights and random 224x224 inputs; "
            f"{args.iters} timed forwards after one warm-up, inference mode. GFLOPs: mean per image "
            "as run (`ats_video.flops.count_gflops`, 1 multiply-add = 1 FLOP) over 8 images.",
            "",
            "| model | batch | images/s | GFLOPs | peak memory (MiB) | speed-up / GFLOPs ratio |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    args.out.write_text(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
