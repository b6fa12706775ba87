"""Benchmark: DeiT-S with ATS against plain DeiT-S and token merging, side by side.

    python benchmarks/deit_ats.py                          # this machine's CPU, writes deit_ats.md
    python benchmarks/deit_ats.py --device cuda --dtype bfloat16 --backend varlen --out benchmarks/deit_ats_gpu.md

Variants, on the same random weights and inputs, timed interleaved in one process (common.py):
- DeiT-S, timm's own model;
- + ATS in blocks 3-11 with a ratio budget rho found by bisection so that the mean GFLOPs come to
  the paper's 2.9 (Table 2, DeiT-S + ATS);
- + ATS with K far above N (100000): every token kept, so its time over the plain model's is the
  overhead of scoring and sampling;
- + ToMe, r merged tokens per block (benchmarks/tome.py, written from the ToMe paper), r=12
  (2.85 GFLOPs), the token-merging figure ATS is compared with;
- with ``--compile``, + ATS under ``torch.compile(dynamic=True)``;
- the limit (benchmarks/limit.py): DeiT-S keeping, in each of blocks 3-11, the ATS model's mean
  kept tokens on the same batch, with no selection work at all (queries, attention outputs and
  MLP for those tokens only); the project's speed-up as a fraction of the limit's is reported.

Weights are random (none can be downloaded here), so the CLS attention is flat: the sampler
keeps close to K tokens and the reduction comes from the budget rather than from repeated
picks as with trained weights. ``--sharpen`` scales the query and key weights to peak the
attention instead.
"""

import copy
from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import timm
import torch

from ats_video import apply_ats, kept_tokens
from ats_video.flops import count_gflops, gflops_as_run

import common  # benchmarks/common.py, beside this script
from limit import apply_kept_counts
from tome import apply_tome

ROOT = Path(__file__).resolve().parent
ATS_BLOCKS = tuple(range(3, 12))
TARGET_GFLOPS = 2.9
NOTHING_DROPPED = 100_000


def plain_model(sharpen: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224").eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * model.embed_dim] *= sharpen
    return model


def variant(name: str, ratio: float, args) -> torch.nn.Module:
    model = plain_model(args.sharpen)
    if name == "ats":
        return apply_ats(model, ATS_BLOCKS, ratio)
    if name == "noop":
        return apply_ats(model, ATS_BLOCKS, NOTHING_DROPPED)
    if name == "tome":
        return apply_tome(model, args.tome_r)
    return model


def limit_model(ats: torch.nn.Module, x: torch.Tensor, args):
    """The limit for ``ats`` on ``x``: DeiT-S keeping its mean kept tokens per block, and its
    GFLOPs (counted; the same for every image)."""
    with common.context(args):
        ats(x)
    counts = {r.block: round(r.count.double().mean().item()) for r in kept_tokens(ats)}
    model = apply_kept_counts(plain_model(args.sharpen), counts)
    return model.to(args.device), count_gflops(model, x[:1].cpu()).item()


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def mean_gflops(model: torch.nn.Module, x: torch.Tensor, args) -> float:
    with common.context(args):
        model(x.to(args.device))
    return gflops_as_run(model, kept_tokens(model), len(x)).mean().item()


def measure(name, ratio, batch, args_dict):
    """Runs in its own process: the peak memory of one (variant, batch)."""
    args = common.argument_parser(__doc__).parse_args([])
    vars(args).update(args_dict)
    return {"peak_mib": common.peak_memory_mib(variant(name, ratio, args), images(batch), args)}


def main():
    parser = common.argument_parser(__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--ratio", type=float, help="ATS budget rho; default: found for 2.9 GFLOPs")
    parser.add_argument("--tome-r", type=int, default=12)
    parser.add_argument("--sharpen", type=float, default=1.0, help="scale of the query and key weights")
    parser.add_argument("--compile", action="store_true", help="also time ATS under torch.compile(dynamic=True)")
    parser.add_argument("--out", type=Path, default=ROOT / "deit_ats.md")
    args = common.parse_args(parser, measure)

    sample = images(8, seed=1)
    base = plain_model(args.sharpen)
    ats = copy.deepcopy(base)
    ratio = args.ratio or common.bisect(
        lambda r: mean_gflops(apply_ats(ats, ATS_BLOCKS, r), sample, args), TARGET_GFLOPS, 0.3, 1.0, 12, 4
    )
    models = {name: variant(name, ratio, args).to(args.device) for name in ("plain", "ats", "noop", "tome")}
    if args.compile:
        models["compiled"] = torch.compile(variant("ats", ratio, args).to(args.device), dynamic=True)
    names = {
        "plain": "DeiT-S",
        "ats": f"+ ATS 3-11, rho={ratio}",
        "noop": f"+ ATS 3-11, K={NOTHING_DROPPED} (nothing dropped)",
        "tome": f"+ ToMe, r={args.tome_r}",
        "compiled": f"+ ATS 3-11, rho={ratio}, torch.compile",
    }
    reached = mean_gflops(models["ats"], sample, args)  # on the bisection's images
    tome_gflops = count_gflops(models["tome"].cpu(), sample[:1]).item()
    models["tome"].to(args.device)

    def peak_mib(name, batch):
        return None if name == "compiled" else common.run_isolated(__file__, name, ratio, batch, common.settings(args))["peak_mib"]

    rows, fractions = [], []
    for batch in args.batch_sizes:
        x = images(batch).to(args.device)
        gflops = {name: tome_gflops if name == "tome" else mean_gflops(model, x, args) for name, model in models.items()}
        limit, gflops["limit"] = limit_model(models["ats"], x, args)
        names["limit"] = "limit: DeiT-S keeping ATS's mean kept tokens, no selection work"
        rows += common.comparison_rows(
            {**models, "limit": limit}, names, x, gflops,
            lambda name: None if name == "limit" else peak_mib(name, batch), args, rate=".1f", flops=".2f",
        )
        speedups = args.speedups
        fractions.append(f"| {batch} | {speedups['ats']:.2f} | {speedups['limit']:.2f} | "
                         f"{speedups['ats'] / speedups['limit']:.2f} |")

    description = (
        f"DeiT-S at 224 px, random weights{'' if args.sharpen == 1 else f' (query and key weights x{args.sharpen})'}, "
        f"random inputs; {args.dtype}, attention backend {args.backend}. ATS budget rho={ratio} "
        f"({'given' if args.ratio else f'found by bisection for {TARGET_GFLOPS} GFLOPs'}; "
        f"{reached:.2f} GFLOPs on the bisection's 8 images). Images/s from the fastest "
        f"of {args.rounds} forwards per variant, all variants interleaved in one process. GFLOPs: mean per image as run "
        "(`ats_video.flops.gflops_as_run`, 1 multiply-add = 1 FLOP); ToMe counted with `count_gflops`. Speed-up: "
        "over DeiT-S at the same batch; divided by the GFLOPs ratio, 1.0 is a time saving in proportion to the "
        "GFLOPs saved. Peak memory: peak RSS of one forward above the process's size before it, a fresh process "
        "per row (CUDA: peak allocated)."
    )
    table = [
        "| model | batch | images/s | GFLOPs | speed-up | speed-up / GFLOPs ratio | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "ATS against its limit (the same kept-token counts with no selection work), in the same run:",
        "",
        "| batch | ATS speed-up | limit speed-up | ATS / limit |",
        "|---|---|---|---|",
        *fractions,
    ]
    common.write_report(
        args.out, __file__, title=f"# DeiT-S with ATS, plain and with token merging, on {args.device}",
        machine=args.machine, sections=[description, "", *table],
    )


if __name__ == "__main__":
    main()
