"""Tests one checkpoint without ATS and with ATS at several budgets, and draws top-1 against
GFLOPs (the paper's Fig. 5).

    python tools/sweep_budget.py --cfg CFG [--checkpoint FILE] [--budgets B ...] [--out DIR]
        [--nproc N] [KEY VALUE ...]

    python tools/sweep_budget.py --cfg configs/Kinetics/TimeSformer_divST_8x32_224_ATS.yaml \\
        --checkpoint TimeSformer_divST_8x32_224_K400.pyth --budgets none default 0.7 0.5 98 49 \\
        DATA.PATH_TO_DATA_DIR /data/k400

A budget is ``none`` (no ATS), ``default`` (the official K, a frame's patch tokens), an integer K
(ATS.K) or a ratio in (0, 1] written with a point (ATS.RATIO). Default: none, default, K at 3/4,
1/2 and 1/4 of a frame's patch tokens, and the ratios 0.7 and 0.5; the config's own budget is
always among them, and ringed in the plot. Everything else (ATS blocks, mode, selector, views,
data) is the config's, with the KEY VALUE overrides.

Each budget is one multi-view test by tools/run_net.py (TRAIN.ENABLE False), printed before it
runs, that one could type, into DIR/<budget>/ (test_results.json, test_predictions.csv,
kept_tokens_histogram.png, log.txt); ``--nproc N`` runs each on N processes under torchrun.
Then DIR holds sweep.md (the table: top-1, top-5, GFLOPs per view, mean kept tokens per clip
per ATS block), sweep.json (the same rows) and sweep.png (the plot). DIR defaults to
OUTPUT_DIR/budget_sweep.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

import torch

from ats_video.build import build_model, describe_ats
from ats_video.config import load_config
from ats_video.engine.evaluate import results_table
from ats_video.inference import checkpoint_file, split_files_and_options
from ats_video.vis import SweepPoint, budget_sweep_figure

RUN_NET = Path(__file__).resolve().parent / "run_net.py"


@dataclass(frozen=True)
class Budget:
    """One budget of the sweep: its ``label`` in the table and plot, the folder ``name`` of its
    run, its ``kind`` ("none", "k" or "ratio") and the ATS overrides that set it."""

    label: str
    name: str
    kind: str
    options: tuple


def parse_budget(token: str, tokens_per_frame: int) -> Budget:
    """``none``, ``default``, an integer K >= 1 or a ratio in (0, 1] -> its :class:`Budget`.
    ValueError naming the token otherwise."""
    if token == "none":
        return Budget("no ATS", "no_ats", "none", ("ATS.ENABLE", "False"))
    budget = ("ATS.ENABLE", "True")
    if token == "default":
        label = f"default K={tokens_per_frame}"
        return Budget(label, "default", "k", (*budget, "ATS.K", "0", "ATS.RATIO", "0.0"))
    if token.isdigit() and int(token) >= 1:
        return Budget(f"K={int(token)}", f"k{int(token)}", "k",
                      (*budget, "ATS.K", str(int(token)), "ATS.RATIO", "0.0"))  # fmt: skip
    try:
        ratio = float(token) if "." in token else None
    except ValueError:
        ratio = None
    if ratio is None or not 0 < ratio <= 1:
        raise ValueError(
            f"budget {token!r}: expected none, default, an integer K >= 1 or a ratio in (0, 1] "
            "written with a point (0.5)"
        )
    return Budget(f"ratio {ratio:g}", f"ratio{ratio:g}", "ratio",
                  (*budget, "ATS.K", "0", "ATS.RATIO", str(ratio)))  # fmt: skip


def config_budget(cfg) -> str:
    """The budget token of the config's own ATS settings."""
    if not cfg.ATS.ENABLE:
        return "none"
    if cfg.ATS.K:
        return str(cfg.ATS.K)
    return str(cfg.ATS.RATIO) if cfg.ATS.RATIO else "default"


def default_budgets(tokens_per_frame: int) -> List[str]:
    """none, default, K at 3/4, 1/2 and 1/4 of a frame's tokens, ratios 0.7 and 0.5."""
    ks = sorted({max(1, tokens_per_frame * n // 4) for n in (3, 2, 1)}, reverse=True)
    return ["none", "default", *map(str, ks), "0.7", "0.5"]


def command(args, budget: Budget, checkpoint: str, output_dir: str) -> List[str]:
    """The tools/run_net.py command that tests ``budget``."""
    launcher = ["python"]
    if args.nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
    return [
        *launcher, str(RUN_NET), "--cfg", args.cfg_file, *args.opts, *budget.options,
        "TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
        "TEST.CHECKPOINT_FILE_PATH", checkpoint, "OUTPUT_DIR", output_dir,
    ]  # fmt: skip


def row(budget: Budget, results: dict, configured: bool, run_dir: str) -> dict:
    """One budget's line of the sweep, from the test_results.json in ``run_dir``."""
    return {
        "budget": budget.label,
        "kind": budget.kind,
        "configured": configured,
        "top1": results["top1"],
        "top5": results["top5"],
        "gflops_per_view": results["gflops_per_view"]["as_run"],
        "kept_tokens": results["kept_tokens"],
        "tokens_per_clip": results["tokens_per_clip"],
        "views": results["views"],
        "run": run_dir,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    parser.add_argument("--checkpoint", help="weights (default: TEST.CHECKPOINT_FILE_PATH, "
                        "else the last checkpoint in OUTPUT_DIR)")  # fmt: skip
    parser.add_argument("--budgets", nargs="+", metavar="B", help="none, default, K, ratio")
    parser.add_argument("--out", help="output directory (default OUTPUT_DIR/budget_sweep)")
    parser.add_argument("--nproc", type=int, default=1, help="processes per test (torchrun)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    # --budgets takes words up to the first config key: `--budgets 0.5 6 DATA.PATH_TO_DATA_DIR d`
    args.budgets, options = split_files_and_options(args.budgets or [])
    args.opts = options + args.opts
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)
    checkpoint = checkpoint_file(cfg, args.checkpoint)
    with torch.device("meta"):  # for its sizes only
        model = build_model(cfg)
    tokens_per_frame = model.patch_embed.num_patches
    tokens = list(dict.fromkeys(args.budgets or default_budgets(tokens_per_frame)))
    try:
        budgets = [parse_budget(t, tokens_per_frame) for t in tokens]
    except ValueError as error:
        raise SystemExit(f"--budgets: {error}") from None
    own = parse_budget(config_budget(cfg), tokens_per_frame)
    if own.name not in {b.name for b in budgets}:
        budgets.append(own)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "budget_sweep")
    rows, labels, tested = [], [], []
    for n, budget in enumerate(budgets, 1):
        run_dir = os.path.join(out, budget.name)
        cmd = command(args, budget, checkpoint, run_dir)
        print(f"\n=== [{n}/{len(budgets)}] {budget.label}\n$ {shlex.join(cmd)}", flush=True)
        done = subprocess.run([sys.executable, *cmd[1:]])
        if done.returncode:
            print(f"the test of budget {budget.label} failed (exit status {done.returncode}); "
                  f"its log: {run_dir}/log.txt", file=sys.stderr)  # fmt: skip
            return done.returncode
        results = json.loads(Path(run_dir, "test_results.json").read_text())
        rows.append(row(budget, results, budget.name == own.name, run_dir))
        labels.append([budget.label + (" (the config's)" if budget.name == own.name else "")])
        tested.append(results)

    text = results_table(["budget"], list(zip(labels, tested)))
    Path(out, "sweep.md").write_text(text + "\n")
    Path(out, "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    points = [
        SweepPoint(r["budget"], r["gflops_per_view"], r["top1"], r["kind"], r["configured"])
        for r in rows
        if r["top1"] is not None and r["gflops_per_view"] is not None
    ]
    title = (
        f"{cfg.MODEL.ARCH}, {os.path.basename(checkpoint)}, {rows[0]['views']} test\n"
        f"the config: {describe_ats(cfg, model)}"
    )
    budget_sweep_figure(points, title=title).savefig(os.path.join(out, "sweep.png"), dpi=110)
    print(f"\n{text}\n\nwritten to {out}/sweep.md, sweep.json and sweep.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
