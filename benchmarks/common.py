"""What the model benchmarks share: interleaved timing, peak memory in fresh processes, the
ATS budget for a GFLOPs target, and the markdown report.

Timing: every variant of a model runs in one process on the same weights and inputs, in turn
(A, B, C, A, B, C, ...), and each variant's time is its fastest forward: on a shared machine
other work only ever adds time, and interleaving exposes all variants to the same conditions,
so the ratios between them are what the tables report.

Memory: a script measures a (variant, batch) by running itself again with ``--measure`` (see
:func:`run_isolated`), so that each peak is that process's own: on CPU the peak resident set
size (VmHWM, reset before the forward) above the process's size before it, with glibc set to
give large buffers back when freed (:data:`MALLOC_ENV`), on CUDA
``torch.cuda.max_memory_allocated`` above the memory held before it.
"""

import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]  # commands in the reports are run from here


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="autocast dtype on top of float32 weights (float32: no autocast)")
    parser.add_argument("--backend", default="auto", choices=["auto", "padded", "varlen"],
                        help="ATS attention backend (see ats_video.tokens)")
    parser.add_argument("--rounds", type=int, default=5, help="timed forwards of every variant, interleaved")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
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


def settings(args: argparse.Namespace) -> Dict[str, object]:
    """The command line's settings that a measuring process needs (JSON-serialisable ones)."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}


# glibc malloc returning every buffer of 64 KiB or more to the system when it is freed, from one
# arena: the peak resident size then follows the peak of live tensors, not the allocator's caches
# (without this, repeated runs of the same forward differ by 10 to 20 %)
MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def run_isolated(script: str, *args) -> Dict[str, float]:
    """``script``'s ``measure(*args)``, run in a fresh process (with :data:`MALLOC_ENV`)."""
    command = [sys.executable, script, "--measure", json.dumps(args)]
    env = {**os.environ, **MALLOC_ENV}
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)


def context(args: argparse.Namespace):
    """Inference mode, the attention backend and autocast the command line asks for."""
    import ats_video.tokens

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    stack.enter_context(ats_video.tokens.attention_backend(args.backend))
    if args.dtype != "float32":
        stack.enter_context(torch.autocast(args.device, dtype=getattr(torch, args.dtype)))
    return stack


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(variants: Dict[str, Callable[[], object]], rounds: int, device: str) -> Dict[str, float]:
    """Seconds of each variant's fastest call, the variants called in turn ``rounds`` times
    after one warm-up call each."""
    for run in variants.values():
        run()
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def comparison_rows(
    models: Dict[str, nn.Module],
    names: Dict[str, str],
    x: Tensor,
    gflops: Dict[str, float],
    peak_mib: Callable[[str], Optional[float]],
    args: argparse.Namespace,
    *,
    rate: str,
    flops: str,
) -> List[str]:
    """Table rows of every model on inputs ``x``, timed interleaved; "plain" is the reference.

    ``names`` label the rows, ``gflops`` are per input, ``peak_mib(name)`` measures one model's
    peak memory (None: not measured), ``rate`` and ``flops`` are the format specs of the
    throughput and GFLOPs cells. Each model's speed-up over "plain" is kept in ``args.speedups``
    (name -> speed-up) for the caller.
    """
    with context(args):
        seconds = time_interleaved({n: (lambda m=m: m(x)) for n, m in models.items()}, args.rounds, args.device)
    rows = []
    args.speedups = {name: seconds["plain"] / seconds[name] for name in models}
    for name in models:
        speedup = args.speedups[name]
        memory = None if args.no_memory else peak_mib(name)
        rows.append(
            f"| {names[name]} | {len(x)} | {len(x) / seconds[name]:{rate}} | {gflops[name]:{flops}} | {speedup:.2f} | "
            f"{speedup / (gflops['plain'] / gflops[name]):.2f} | {'-' if memory is None else f'{memory:.0f}'} |"
        )
        print(rows[-1], flush=True)
    return rows


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_memory_mib(model: nn.Module, x: Tensor, args: argparse.Namespace) -> float:
    """Peak memory of one forward above the memory held before it (run in a fresh process).

    On CPU the kernel's peak resident set size (VmHWM) is reset to the current size first
    (``/proc/self/clear_refs``), so building the model does not count.
    """
    model, x = model.to(args.device), x.to(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS") * 1024
    with context(args):
        model(x)
    if args.device.startswith("cuda"):
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return (_status_kib("VmHWM") * 1024 - base) / 2**20


def bisect(value_at: Callable[[float], float], target: float, low: float, high: float, steps: int, digits: int) -> float:
    """The x in [low, high] at which the increasing ``value_at(x)`` comes to ``target``."""
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if value_at(mid) < target else (low, mid)
    return round((low + high) / 2, digits)


def write_report(path: Path, script: str, *, title: str, machine: str, sections: Sequence[str]) -> None:
    """Writes ``title``, the machine, torch and the command that made the report, then ``sections``."""
    command = shlex.join(["python", str(Path(script).resolve().relative_to(REPO)), *sys.argv[1:]])
    lines = [title, "", f"Machine: {machine}. torch {torch.__version__}. Command: `{command}`.", "", *sections]
    path.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {path}")
