"""The paper's story in miniature, on the built-in synthetic set, on a CPU in a few minutes.

    python tools/demo.py

1. makes the synthetic Kinetics-format set in data/synthetic, or finds it there
   (data_prep/synthetic_kinetics.py);
2. trains a tiny TimeSformer without ATS and runs its multi-view test;
3. tests the same weights with ATS put in off the shelf (no training), at the official
   default budget (K = the patch tokens of a frame) and at a smaller one (ATS.K);
4. fine-tunes with ATS at the smaller budget, starting from the weights of step 2, and tests again;
5. prints one table (top-1, top-5, views, GFLOPs per view, mean kept tokens) and writes it to
   output/demo/table.md.

Every step is a ``tools/run_net.py`` command, printed before it runs, that one could type; each
writes under output/demo/<step>/ (log, checkpoints, test_results.json, test_predictions.csv).
Output of an earlier demo is replaced.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ats_video.engine.checkpoints import last_checkpoint
from ats_video.engine.evaluate import results_table
from ats_video.inference import run_printed

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/Synthetic/TimeSformer_tiny_ATS.yaml"
DATA = "data/synthetic"
OUT = "output/demo"


def run_net(*overrides: str) -> list:
    return ["python", "tools/run_net.py", "--cfg", CONFIG, *overrides]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-k", type=int, default=6, help="the smaller ATS budget (default 6)")
    parser.add_argument(
        "--fine-tune-epochs", type=int, default=3, help="epochs of fine-tuning with ATS (default 3)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    # Kept when already there; refused, with the reason, when made by other settings.
    run_printed(["python", "data_prep/synthetic_kinetics.py", "--out", DATA], "make the synthetic set", ROOT)
    shutil.rmtree(ROOT / OUT, ignore_errors=True)

    k = str(args.small_k)
    rows = []

    def step(name: str, what: str, output: str, *overrides: str) -> None:
        run_printed(run_net(*overrides, "OUTPUT_DIR", output), what, ROOT)
        rows.append(([name], json.loads((ROOT / output / "test_results.json").read_text())))

    step(
        "no ATS, trained",
        "train a tiny TimeSformer without ATS, then its multi-view test",
        f"{OUT}/plain",
        *("ATS.ENABLE", "False"),
    )
    trained = os.path.relpath(last_checkpoint(str(ROOT / OUT / "plain")), ROOT)
    test_trained = ("TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", trained)
    step(
        "ATS, default K, off the shelf",
        "the same weights with ATS at the default budget, no training",
        f"{OUT}/ats_default",
        *test_trained,
    )
    step(
        f"ATS, K={k}, off the shelf",
        f"the same weights with ATS at K={k}, no training",
        f"{OUT}/ats_small",
        *test_trained,
        *("ATS.K", k),
    )
    step(
        f"ATS, K={k}, fine-tuned",
        f"fine-tune with ATS at K={k} from those weights, then test",
        f"{OUT}/ats_small_tuned",
        *("ATS.K", k, "TRAIN.CHECKPOINT_FILE_PATH", trained),
        *("SOLVER.MAX_EPOCH", str(args.fine_tune_epochs), "SOLVER.BASE_LR", "0.0003"),
        *("SOLVER.WARMUP_EPOCHS", "0.0"),
    )

    text = results_table(["model"], rows)
    (ROOT / OUT / "table.md").write_text(text + "\n")
    minutes, seconds = divmod(time.perf_counter() - start, 60)
    print(f"\n{text}\n\nwritten to {OUT}/table.md; the demo took {minutes:.0f} min {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
