"""tools/gpu_check.py runs on the CPU at tiny sizes (``--dry-run``), so that its first run on a GPU
machine is not its first run at all."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_dry_run_runs_every_part_and_writes_the_report(tmp_path):
    report = tmp_path / "gpu.md"
    command = [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--dry-run", "--out", str(report),
               "--work-dir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    assert "no GPU: dry run on the CPU" in text and "torch " in text
    for part in ("a. CUDA tests: passed", "b. inference timing: passed", "c. loader throughput: passed"):
        assert part in text
    assert "skipped" in text.split("## a.")[1]  # no CUDA here: the CUDA tests are skipped, and say so
    timing = text.split("## b.")[1].split("## c.")[0]
    for model in ("tiny DeiT", "tiny TimeSformer", "tiny XViT"):
        for variant in ("plain", "ATS"):
            assert any(line.startswith(f"| {model} | {variant}") for line in timing.splitlines()), (model, variant)
    assert "| tiny DeiT | ToMe" in timing and "varlen skipped: it needs CUDA" in timing
    assert "| pyav | train | 0 |" in text.split("## c.")[1]
    assert "[" in done.stdout and "part c: passed" in done.stdout  # progress with timestamps


def test_wrong_parts_and_limits_are_named():
    for option, message in ((["--parts", "a,x"], "--parts must name some of a, b, c"),
                            (["--limits", "b=soon"], "--limits: expected PART=SECONDS")):  # fmt: skip
        command = [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--dry-run", *option]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr
