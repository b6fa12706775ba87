"""Does ATS keep more tokens of a busier clip? One checkpoint of the synthetic set tested per
background level, from a plain colour to distractor shapes, without ATS and with ATS at the
default budget and at a smaller K: top-1 and mean kept tokens per level, as a table and a plot,
and the kept-token pictures of a plain clip and a cluttered one.

    python tools/demo.py            # trains the weights this study reads by default
    python tools/clutter_study.py [--checkpoint FILE] [--k 6] [--per-class 40] [--out DIR]

The test set is its own (--data, default data/synthetic_clutter): data_prep/synthetic_kinetics.py
with --seed 1, so none of its videos was trained on, and --per-class validation videos per
class, a quarter at each level (its lists val_clutter<L>.csv). Each level is one budget sweep,
``tools/sweep_budget.py --budgets none default K`` with ``DATA.TEST_LIST val_clutter<L>.csv``,
printed before it runs, into OUT/level<L>/. Then OUT holds clutter.md (the table), clutter.json
(its rows), clutter.png (the plot) and pictures/ (tools/visualize.py at K, of the first clip of
--class at level 0 and at level 3).
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import json
import os
import sys
from pathlib import Path

from ats_video.data.synthetic import CLUTTER_LEVELS, CLUTTER_NAMES, SYNTHETIC_CLASSES
from ats_video.engine.evaluate import results_table
from ats_video.inference import run_printed
from ats_video.vis import clutter_figure

ROOT = Path(__file__).resolve().parent.parent


def first_clip(list_path: Path, label: int) -> str:
    """The first line of the ``path label`` list at ``list_path`` with ``label``."""
    for line in list_path.read_text().splitlines():
        if line.split()[-1] == str(label):
            return line
    raise SystemExit(f"{list_path}: no video of class {label}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", default="configs/Synthetic/TimeSformer_tiny_ATS.yaml",
                        help="config (default: the demo's)")
    parser.add_argument("--checkpoint", default="output/demo/plain/checkpoints/checkpoint_epoch_00024.pyth",
                        help="weights (default: the demo's model trained without ATS)")
    parser.add_argument("--k", type=int, default=6, help="the smaller budget, ATS.K (default 6)")
    parser.add_argument("--data", default="data/synthetic_clutter", help="the test set's folder")
    parser.add_argument("--per-class", type=int, default=40,
                        help="test videos per class, a quarter at each level (default 40)")
    parser.add_argument("--class", dest="picture_class", default="moving horizontally",
                        choices=SYNTHETIC_CLASSES, help="the class of the two pictured clips")
    parser.add_argument("--out", default="output/clutter_study", help="output folder")
    args = parser.parse_args(argv)  # fmt: skip
    if not (ROOT / args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file (python tools/demo.py makes it)")
    if args.per_class < CLUTTER_LEVELS:
        parser.error(f"--per-class must be at least {CLUTTER_LEVELS}, one video per level")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = ROOT / args.out
    run_printed(["python", "data_prep/synthetic_kinetics.py", "--out", args.data, "--seed", "1",
         "--train-per-class", "0", "--val-per-class", str(args.per_class)],
        "the test set (kept when already there)", ROOT)  # fmt: skip
    common = ["--cfg", args.cfg, "--checkpoint", args.checkpoint]
    data = ["DATA.PATH_TO_DATA_DIR", args.data]  # KEY VALUE overrides come after the options
    rows, series = [], {}  # series: the sweep's budget label -> (top-1, kept tokens) per level
    for level, name in enumerate(CLUTTER_NAMES):
        level_out = f"{args.out}/level{level}"
        run_printed(["python", "tools/sweep_budget.py", *common, "--budgets", "none", "default",
                     str(args.k), "--out", level_out, *data, "DATA.TEST_LIST", f"val_clutter{level}.csv"],
                    f"background level {level} ({name}): a test per budget", ROOT)  # fmt: skip
        for row in json.loads((ROOT / level_out / "sweep.json").read_text()):
            results = json.loads((ROOT / row["run"] / "test_results.json").read_text())
            rows.append(([f"{level} {name}", row["budget"]], results))
            top1, kept = series.setdefault(row["budget"], ([], []))
            top1.append(results["top1"])
            by_block = results["kept_tokens"]  # {} without ATS
            kept.append(by_block[max(by_block, key=int)] if by_block else None)

    text = results_table(["background", "budget"], rows)
    (out / "clutter.md").write_text(text + "\n")
    (out / "clutter.json").write_text(json.dumps(
        [dict(zip(["background", "budget"], cells), **r) for cells, r in rows], indent=1) + "\n")  # fmt: skip
    with_ats = next(r for _, r in rows if r["kept_tokens"])
    blocks = sorted(int(b) for b in with_ats["kept_tokens"])
    fig = clutter_figure(
        [f"{level}\n{name}" for level, name in enumerate(CLUTTER_NAMES)],
        {label: (top1, None if None in kept else kept) for label, (top1, kept) in series.items()},
        tokens=with_ats["tokens_per_clip"],
        title=f"{with_ats['arch']}, {os.path.basename(args.checkpoint)}: ATS off the shelf in blocks "
        f"{', '.join(map(str, blocks))}, {with_ats['ats']['MODE']} mode, {with_ats['views']} views\n"
        f"kept tokens after block {blocks[-1]}, the last ATS block",
    )
    fig.savefig(out / "clutter.png", dpi=110)

    label = SYNTHETIC_CLASSES.index(args.picture_class)
    clips = out / "pictured.csv"
    clips.write_text("".join(first_clip(ROOT / args.data / f"val_clutter{level}.csv", label) + "\n"
                             for level in (0, CLUTTER_LEVELS - 1)))  # fmt: skip
    run_printed(["python", "tools/visualize.py", "--list", str(clips.relative_to(ROOT)), *common,
                 "--out", f"{args.out}/pictures", *data, "DATA.PATH_PREFIX", args.data, "ATS.K", str(args.k)],
                f"pictures of a plain and a cluttered '{args.picture_class}' clip at K={args.k}", ROOT)  # fmt: skip
    print(f"\n{text}\n\nwritten to {args.out}/clutter.md, clutter.json, clutter.png and pictures/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
