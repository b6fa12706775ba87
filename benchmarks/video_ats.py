"""Benchmark: TimeSformer-B 8x224 and XViT-B/16 16x224 with ATS at half the GFLOPs, and without.

    python benchmarks/video_ats.py                         # this machine's CPU, writes video_ats.md
    python benchmarks/video_ats.py --device cuda --dtype bfloat16 --batch-sizes 1 64 --out benchmarks/video_ats_gpu.md

For each model, variants on the same random weights and clips, timed interleaved in one process
(common.py): the plain model; + ATS, mode "frame", in the paper's blocks (TimeSformer 3-5, XViT
3-11) with a ratio budget rho found by bisection so that the GFLOPs per view come to half the
plain model's; + ATS with K far above N (nothing dropped: the overhead of scoring and
sampling). Then the kept tokens of the modes "frame" and "shared" on the same clips, at that rho
and at the default budget (K = 196 per frame in every ATS block).

Weights are random (none can be downloaded here), so the CLS attention is flat: the sampler keeps
close to K tokens in every frame and the reduction comes from the budget rather than from
repeated picks as with trained weights.
"""

import copy
from pathlib import Path

import ats_video  # noqa: F401  (before timm)
import torch

from ats_video import apply_ats, kept_tokens
from ats_video.families import family_of
from ats_video.flops import gflops_as_run
from ats_video.models import timesformer_base_8x224, xvit_base_16x224_k600

import common  # benchmarks/common.py, beside this script

ROOT = Path(__file__).resolve().parent
NOTHING_DROPPED = 100_000
MODELS = {"timesformer": ("TimeSformer-B 8x224", timesformer_base_8x224, 8), "xvit": ("XViT-B/16 16x224", xvit_base_16x224_k600, 16)}


def variant(model_name: str, name: str, ratio: float, mode: str = "frame") -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODELS[model_name][1]().eval()
    blocks = family_of(model).default_blocks(len(model.blocks))
    if name == "ats":
        return apply_ats(model, blocks, ratio, mode=mode)
    if name == "noop":
        return apply_ats(model, blocks, NOTHING_DROPPED)
    return model


def clips(model_name: str, batch: int, seed: int = 0) -> torch.Tensor:
    frames = MODELS[model_name][2]
    return torch.randn(batch, 3, frames, 224, 224, generator=torch.Generator().manual_seed(seed))


def mean_gflops(model: torch.nn.Module, x: torch.Tensor, args) -> float:
    with common.context(args):
        model(x.to(args.device))
    return gflops_as_run(model, kept_tokens(model), len(x)).mean().item()


def measure(model_name, name, ratio, batch, args_dict):
    """Runs in its own process: the peak memory of one (variant, batch)."""
    args = common.argument_parser(__doc__).parse_args([])
    vars(args).update(args_dict)
    return {"peak_mib": common.peak_memory_mib(variant(model_name, name, ratio), clips(model_name, batch), args)}


def kept_by_mode(model_name: str, ratio: float, args) -> list:
    """Rows of mean kept tokens per clip after each ATS block (and distinct positions), per mode."""
    x = clips(model_name, args.samples, seed=2).to(args.device)
    model = variant(model_name, "plain", ratio).to(args.device)
    blocks = family_of(model).default_blocks(len(model.blocks))
    rows = []
    for budget in (ratio, None):
        for mode in ("frame", "shared"):
            apply_ats(model, blocks, budget, mode=mode)
            gflops = mean_gflops(model, x, args)
            kept = " / ".join(
                f"{r.count.sum(-1).double().mean():.0f} ({r.mask.any(1).flatten(1).sum(-1).double().mean():.0f})"
                for r in kept_tokens(model)
            )
            rows.append(f"| {'rho=' + str(budget) if budget else 'K=196'} | {mode} | {kept} | {gflops:.1f} |")
            print(rows[-1], flush=True)
    return rows


def benchmark(model_name: str, args) -> list:
    title, _, frames = MODELS[model_name]
    sample = clips(model_name, args.samples, seed=1)
    base = variant(model_name, "plain", 0.0)
    plain_gflops = gflops_as_run(base, [], 1).item()
    ats = copy.deepcopy(base)
    blocks = family_of(ats).default_blocks(len(ats.blocks))
    ratio = args.ratio or common.bisect(
        lambda r: mean_gflops(apply_ats(ats, blocks, r), sample, args), plain_gflops / 2, 0.1, 1.0, 9, 3
    )
    print(f"{title}: rho={ratio}", flush=True)
    models = {name: variant(model_name, name, ratio).to(args.device) for name in ("plain", "ats", "noop")}
    if args.compile:
        models["compiled"] = torch.compile(variant(model_name, "ats", ratio).to(args.device), dynamic=True)
    names = {
        "plain": title,
        "ats": f"+ ATS {blocks[0]}-{blocks[-1]}, frame, rho={ratio}",
        "noop": f"+ ATS {blocks[0]}-{blocks[-1]}, K={NOTHING_DROPPED} (nothing dropped)",
        "compiled": f"+ ATS {blocks[0]}-{blocks[-1]}, frame, rho={ratio}, torch.compile",
    }
    def peak_mib(name, batch):
        if name == "compiled":
            return None
        return common.run_isolated(__file__, model_name, name, ratio, batch, common.settings(args))["peak_mib"]

    rows = []
    for batch in args.batch_sizes:
        x = clips(model_name, batch).to(args.device)
        gflops = {name: mean_gflops(model, x, args) for name, model in models.items()}
        rows += common.comparison_rows(
            models, names, x, gflops, lambda name: peak_mib(name, batch), args, rate=".3f", flops=".1f"
        )
    modes = kept_by_mode(model_name, ratio, args)
    total = frames * 196
    return [
        f"## {title}",
        "",
        f"ATS budget rho={ratio} ({'given' if args.ratio else 'found by bisection for half the GFLOPs'}).",
        "",
        "| model | batch | clips/s | GFLOPs per view | speed-up | speed-up / GFLOPs ratio | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Kept tokens per clip after each ATS block (of {frames} x 196 = {total}), mean over {args.samples} clips, and in "
        "brackets the distinct spatial positions kept in any frame (of 196):",
        "",
        "| budget | mode | kept after each ATS block | GFLOPs per view |",
        "|---|---|---|---|",
        *modes,
        "",
    ]


def main():
    parser = common.argument_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--ratio", type=float, help="ATS budget rho; default: found for half the GFLOPs")
    parser.add_argument("--samples", type=int, default=2, help="clips for the bisection and the kept-token table")
    parser.add_argument("--compile", action="store_true", help="also time ATS under torch.compile(dynamic=True)")
    parser.add_argument("--out", type=Path, default=ROOT / "video_ats.md")
    parser.set_defaults(rounds=3)
    args = common.parse_args(parser, measure)
    description = (
        f"Random weights and clips; {args.dtype}, attention backend {args.backend}. Clips/s from the fastest of "
        f"{args.rounds} forwards per variant, the variants interleaved in one process. GFLOPs: mean per clip (one "
        "view) as run (`ats_video.flops.gflops_as_run`, 1 multiply-add = 1 FLOP). Speed-up: over the plain model at "
        "the same batch; divided by the GFLOPs ratio, 1.0 is a time saving in proportion to the GFLOPs saved. Peak "
        "memory: peak RSS of one forward above the process's size before it, a fresh process per row (CUDA: peak "
        "allocated)."
    )
    sections = [description, ""]
    for model_name in args.models:
        sections += benchmark(model_name, args)
    common.write_report(args.out, __file__, title=f"# Video transformers with ATS on {args.device}", machine=args.machine, sections=sections)


if __name__ == "__main__":
    main()
