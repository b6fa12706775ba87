"""What the model benchmarks share: bisection for an ATS budget, one fresh process per
measurement, timing, peak memory, and the comparison table of the markdown report.

A script measures a (model, batch) by running itself again with ``--measure`` (see
:func:`run_isolated` and :func:`parse_args`), so that each peak memory is that process's own:
on CPU the peak resident set size (``getrusage`` maxrss) above the process's size before the
first forward, on CUDA ``torch.cuda.max_memory_allocated`` above the memory held before it.
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
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]  # commands in the reports are run from here


def bisect_ratio(gflops_at: Callable[[float], float], target: float, steps: int, digits: int) -> float:
    """The ATS budget rho in [0.05, 1] at which ``gflops_at(rho)`` comes to ``target``."""
    low, high = 0.05, 1.0
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if gflops_at(mid) < target else (low, mid)
    return round((low + high) / 2, digits)


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: ``--device``, ``--machine``, ``--measure``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--machine", default=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    return parser


def parse_args(parser: argparse.ArgumentParser, measure: Callable[..., Dict[str, float]]) -> argparse.Namespace:
    """The command line; in a process started by :func:`run_isolated`, runs ``measure``, prints
    its result as JSON and exits."""
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*json.loads(args.measure))))
        sys.exit(0)
    return args


def run_isolated(script: str, *args) -> Dict[str, float]:
    """``script``'s ``measure(*args)``, run in a fresh process."""
    command = [sys.executable, script, "--measure", json.dumps(args)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(model: nn.Module, x: Tensor, device: str, iters: int, *, best: bool = False) -> Dict[str, float]:
    """Throughput and peak memory of ``model(x)`` on ``device``, after one warm-up forward.

    Returns ``{"per_s": inputs per second, "peak_mib": peak memory above the start}``. Seconds
    per forward are the mean of ``iters`` forwards timed together, or with ``best`` the fastest
    single forward (on a shared machine others' work only adds time).
    """
    model, x = model.to(device), x.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    with torch.inference_mode():
        model(x)  # warm-up
        if best:
            seconds = float("inf")
            for _ in range(iters):
                sync()
                start = time.perf_counter()
                model(x)
                sync()
                seconds = min(seconds, time.perf_counter() - start)
        else:
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
    return {"per_s": x.shape[0] / seconds, "peak_mib": peak / 2**20}


def comparison_rows(
    script: str,
    names: Sequence[str],
    ratio: float,
    gflops: Dict[Optional[float], float],
    args: argparse.Namespace,
    *,
    rate: str,
    flops: str,
) -> List[str]:
    """Table rows for the model without ATS (rho ``None``) and with (``ratio``) at each of
    ``args.batch_sizes``, each measured in a fresh process; printed as they come.

    ``names`` are the two models' names, ``rate`` and ``flops`` the format specs of the
    throughput and GFLOPs cells.
    """
    rows = []
    for batch in args.batch_sizes:
        result = {r: run_isolated(script, r, batch, args.device, args.iters) for r in (None, ratio)}
        speedup = result[ratio]["per_s"] / result[None]["per_s"]
        flop_ratio = gflops[None] / gflops[ratio]
        for r, name in zip((None, ratio), names):
            gain = "-" if r is None else f"{speedup:.2f} / {flop_ratio:.2f} = {speedup / flop_ratio:.2f}"
            rows.append(
                f"| {name} | {batch} | {result[r]['per_s']:{rate}} | {gflops[r]:{flops}} | "
                f"{result[r]['peak_mib']:.0f} | {gain} |"
            )
        print(rows[-2], rows[-1], sep="\n", flush=True)
    return rows


def write_report(
    path: Path,
    script: str,
    *,
    title: str,
    machine: str,
    description: str,
    unit: str,
    rows: Sequence[str],
    more: Sequence[str] = (),
) -> None:
    """Writes the report: ``title``; the machine, torch and the command that made it;
    ``description``; the table of :func:`comparison_rows` (throughput in ``unit``/s); ``more``."""
    command = shlex.join(["python", str(Path(script).resolve().relative_to(REPO)), *sys.argv[1:]])
    lines = [
        title,
        "",
        f"Machine: {machine}. torch {torch.__version__}. Command: `{command}`.",
        description,
        "",
        f"| model | batch | {unit}/s | GFLOPs | peak memory (MiB) | speed-up / GFLOPs ratio |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        *more,
    ]
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
