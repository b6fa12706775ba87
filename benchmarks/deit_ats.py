"""Benchmark: DeiT-S with and without ATS (blocks 3-11): images/s, GFLOPs, peak memory.

    python benchmarks/deit_ats.py                      # this machine's CPU, writes deit_ats.md
    python benchmarks/deit_ats.py --device cuda --out benchmarks/deit_ats_gpu.md

The ATS budget is a ratio rho found by bisection so that the mean counted GFLOPs come to the
paper's 2.9 (Table 2, DeiT-S + ATS). Weights are random (none can be downloaded here), so the
CLS attention is flatter than a trained model's: the sampler then keeps close to K tokens and
the reduction comes from the budget, not from duplicates as with trained weights.

Each (model, batch) runs in a fresh subprocess so that peak memory is its own (see common.py).
"""

from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import timm
import torch

from ats_video import apply_ats
from ats_video.flops import count_gflops

import common  # benchmarks/common.py, beside this script

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


def measure(ratio, batch, device, iters):
    """Runs in its own process: throughput and peak memory of one (model, batch)."""
    torch.manual_seed(0)
    return common.measure(build(ratio), images(batch), device, iters)


def main():
    parser = common.argument_parser(__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--iters", type=int, default=5, help="timed forwards per (model, batch)")
    parser.add_argument("--ratio", type=float, help="ATS budget rho; default: found for 2.9 GFLOPs")
    parser.add_argument("--out", type=Path, default=ROOT / "deit_ats.md")
    args = common.parse_args(parser, measure)

    ratio = args.ratio or common.bisect_ratio(mean_gflops, TARGET_GFLOPS, steps=10, digits=4)
    gflops = {None: mean_gflops(None), ratio: mean_gflops(ratio)}
    names = ("DeiT-S", f"DeiT-S + ATS (rho={ratio})")
    rows = common.comparison_rows(__file__, names, ratio, gflops, args, rate=".1f", flops=".2f")

    description = (
        f"ATS in blocks 3-11, budget rho={ratio}; random weights and random 224x224 inputs; "
        f"{args.iters} timed forwards after one warm-up, inference mode. GFLOPs: mean per image "
        "as run (`ats_video.flops.count_gflops`, 1 multiply-add = 1 FLOP) over 8 images."
    )
    title = f"# DeiT-S with and without ATS on {args.device}"
    common.write_report(
        args.out, __file__, title=title, machine=args.machine, description=description, unit="images", rows=rows
    )


if __name__ == "__main__":
    main()
