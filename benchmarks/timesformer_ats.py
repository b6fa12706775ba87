"""Benchmark: TimeSformer-B 8x224 with and without ATS (blocks 3-5): clips/s, GFLOPs, peak memory.

    python benchmarks/timesformer_ats.py                  # this machine's CPU, writes timesformer_ats.md
    python benchmarks/timesformer_ats.py --device cuda --iters 10 --out benchmarks/timesformer_ats_gpu.md

The ATS budget is a ratio rho (of each frame's tokens entering an ATS block, mode "frame") found
by bisection so that the counted GFLOPs per view come to half of the model without ATS. Weights
are random (none can be downloaded here), so the CLS attention is flat: the sampler keeps close to
K tokens in every frame, and the reduction comes from the budget rather than from duplicates as
with trained weights. The kept counts of the two modes, "frame" and "shared", are recorded on the
same inputs.

Each (model, batch) runs in a fresh subprocess so that peak memory is its own (see common.py).
"""

from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import torch

from ats_video import apply_ats
from ats_video.flops import count_gflops
from ats_video.models import timesformer_base_8x224

import common  # benchmarks/common.py, beside this script

ROOT = Path(__file__).resolve().parent
ATS_BLOCKS = (3, 4, 5)


def build(ratio, mode="frame"):
    torch.manual_seed(0)
    model = timesformer_base_8x224().eval()
    return model if ratio is None else apply_ats(model, ATS_BLOCKS, ratio, mode=mode)


def clips(batch, seed=0):
    return torch.randn(batch, 3, 8, 224, 224, generator=torch.Generator().manual_seed(seed))


def find_ratio(target, samples, steps):
    """Bisection on rho for the mean counted GFLOPs; one model, its rho swapped at each step."""
    model, x = build(1.0), clips(samples, seed=1)

    def gflops_at(ratio):
        apply_ats(model, ATS_BLOCKS, ratio)
        return count_gflops(model, x).mean().item()

    return common.bisect_ratio(gflops_at, target, steps, digits=3)


def measure(ratio, batch, device, iters):
    """Runs in its own process: throughput and peak memory of one (model, batch)."""
    return common.measure(build(ratio), clips(batch), device, iters, best=True)


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
            counts = [r.count.sum(-1).float().mean() for r in ats_video.kept_tokens(model)]
            positions = [r.mask.any(1).flatten(1).sum(-1).float().mean() for r in ats_video.kept_tokens(model)]
            gflops = count_gflops(model, x).mean().item()
            kept = " | ".join(f"{c:.1f} ({p:.1f})" for c, p in zip(counts, positions))
            rows.append(f"| {ratio} | {mode} | {kept} | {gflops:.1f} |")
    return rows


def main():
    parser = common.argument_parser(__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iters", type=int, default=2, help="timed forwards per (model, batch); the best counts")
    parser.add_argument("--ratio", type=float, help="ATS budget rho; default: found for half the GFLOPs")
    parser.add_argument("--samples", type=int, default=2, help="clips for the GFLOPs and kept-token figures")
    parser.add_argument("--out", type=Path, default=ROOT / "timesformer_ats.md")
    args = common.parse_args(parser, measure)

    x = clips(args.samples, seed=1)
    base_gflops = count_gflops(build(None), x).mean().item()
    ratio = args.ratio or find_ratio(base_gflops / 2, args.samples, steps=7)
    gflops = {None: base_gflops, ratio: count_gflops(build(ratio), x).mean().item()}
    print(f"rho={ratio}: {gflops[ratio]:.1f} GFLOPs vs {base_gflops:.1f}", flush=True)

    names = ("TimeSformer-B 8x224", f"+ ATS 3-5, frame, rho={ratio}")
    rows = common.comparison_rows(__file__, names, ratio, gflops, args, rate=".3f", flops=".1f")
    modes = kept_by_mode([ratio, 1.0], args.samples)
    print(*modes, sep="\n")

    description = (
        f"ATS in blocks 3-5, mode \"frame\", budget rho={ratio} of each frame's tokens entering the "
        f"block ({'given; found earlier' if args.ratio else 'found'} by bisection for half the GFLOPs). Random weights (none can be downloaded "
        f"here) and random 8x224x224 clips; clips/s from the best of {args.iters} timed forwards after "
        f"one warm-up (inference mode; the machine is shared with other work). GFLOPs: mean per clip (one view) as run (`ats_video.flops.count_gflops`, "
        f"1 multiply-add = 1 FLOP) over {args.samples} clips. Peak memory: peak RSS above the "
        "process's size before the first forward, one fresh process per row."
    )
    kept = [
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
    title = f"# TimeSformer-B 8x224 with and without ATS on {args.device}"
    common.write_report(
        args.out, __file__, title=title, machine=args.machine, description=description, unit="clips", rows=rows, more=kept
    )


if __name__ == "__main__":
    main()
