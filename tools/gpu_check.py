"""One command that checks a GPU machine in minutes and writes what it found to benchmarks/gpu.md.

    python tools/gpu_check.py                       # all parts, under 8 minutes on one GPU
    python tools/gpu_check.py --parts b --out /tmp/gpu_b.md --limits b=300
    python tools/gpu_check.py --dry-run             # the same code on this CPU at tiny sizes

Parts, each run in turn; a part that fails or runs out of time is recorded in the report (its
error, or how far it came) and the next one still runs:

a. the CUDA tests: ``pytest -m cuda tests/test_cuda.py`` (attention backends in bf16 and fp16
   on ragged lengths, ATS's choices on CUDA against the CPU's, fp16 and bf16 training steps of
   every family, torch.compile, a 1-process torchrun run of the synthetic config over NCCL, a
   checkpoint from the GPU loaded on a CPU), in a subprocess with a time limit;
b. inference in bf16 autocast: DeiT-S, TimeSformer-B 8x224 and XViT-B/16 16x224, plain, with ATS and (DeiT
   only: benchmarks/tome.py is written for timm's ViT) with ToMe, under the "padded" and "varlen"
   attention backends, all variants of a model and batch timed interleaved in one process
   (benchmarks/common.py), with peak memory (``torch.cuda.max_memory_allocated`` above what was
   held before the forward). The ATS budget rho is found by bisection for the GFLOPs of
   benchmarks/deit_ats.py (2.9 for DeiT-S, the paper's) and benchmarks/video_ats.py (half the
   plain model's); with ``--compile``, ATS under ``torch.compile(dynamic=True)`` too;
c. the loader's clips/s (benchmarks/loader_throughput.py's videos and datasets) for every decoding
   backend that ``ats_video.data.video_io.BACKENDS`` offers and this machine has installed.

The report is rewritten after every part, so a run stopped later still leaves what it measured.
The exit status is 0 when every part asked for passed, 1 otherwise.

``--dry-run`` runs the same code on the CPU at tiny sizes (tiny models, batches 1 and 2, two
rounds, float32, one video, no loader workers), skipping the varlen backend, which needs
CUDA, and saying so; tests/test_gpu_check.py runs it, so the script does not fail for the first
time on a GPU. It writes output/gpu_check_dry_run.md unless ``--out`` says otherwise.
"""

import argparse
import contextlib
import copy
import datetime
import importlib.util
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the library and the benchmarks' helpers

import ats_video  # noqa: E402,F401  (first: it repairs torchvision imports where needed)
import timm  # noqa: E402
import torch  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py)
import loader_throughput  # noqa: E402
from ats_video import apply_ats  # noqa: E402
from ats_video.data import video_io  # noqa: E402
from ats_video.families import create_model, family_of  # noqa: E402
from ats_video.flops import count_gflops, gflops_as_run  # noqa: E402
from ats_video.tokens import attention_backend  # noqa: E402
from tome import apply_tome  # noqa: E402
from video_ats import mean_gflops  # noqa: E402

PARTS = {"a": "CUDA tests", "b": "inference timing", "c": "loader throughput"}
LIMITS = {"a": 210, "b": 150, "c": 90}  # seconds: 7.5 minutes in all
DEIT_S_GFLOPS, DEIT_ATS_GFLOPS = 4.60, 2.9  # the paper's DeiT-S + ATS target (deit_ats.py)


@dataclass(frozen=True)
class ModelSpec:
    """A model of part b: how to build it plain, one input's shape, the ATS target as a fraction
    of the plain GFLOPs, ToMe's merged tokens per block (None: no ToMe), and whether its plain
    form runs through ``ats_video.tokens.attention`` (the video backbones) or is timm's own."""

    title: str
    build: Callable[[], torch.nn.Module]
    shape: Tuple[int, ...]
    target: float
    tome_r: Optional[int]
    plain_uses_backend: bool


def model_specs(dry_run: bool) -> List[ModelSpec]:
    if dry_run:
        tiny = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2)
        video = dict(num_frames=4, **tiny)
        return [
            ModelSpec("tiny DeiT", lambda: VisionTransformer(**tiny), (3, 32, 32), DEIT_ATS_GFLOPS / DEIT_S_GFLOPS, 2, False),
            ModelSpec("tiny TimeSformer", lambda: create_model("timesformer", **video), (3, 4, 32, 32), 0.5, None, True),
            ModelSpec("tiny XViT", lambda: create_model("xvit", **video), (3, 4, 32, 32), 0.5, None, True),
        ]
    return [
        ModelSpec("DeiT-S", lambda: timm.create_model("deit_small_patch16_224"), (3, 224, 224),
                  DEIT_ATS_GFLOPS / DEIT_S_GFLOPS, 12, False),
        ModelSpec("TimeSformer-B 8x224", lambda: create_model("timesformer_base_8x224"), (3, 8, 224, 224), 0.5, None, True),
        ModelSpec("XViT-B/16 16x224", lambda: create_model("xvit_base_16x224_k600"), (3, 16, 224, 224), 0.5, None, True),
    ]  # fmt: skip


class Deadline:
    """A part's time limit: ``left()`` seconds remain; ``check(what)`` raises TimeoutError once
    they are spent."""

    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"the part's limit of {self.seconds:.0f} s was spent before {what}")


def log(message: str) -> None:
    print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {message}", flush=True)


# ------------------------------------------------------------------ a: the CUDA tests


def cuda_tests(args, deadline: Deadline, section: List[str]) -> None:
    # the CUDA tests' own file only: collecting the whole suite takes a minute on a small CPU, and
    # a module that cannot be imported on the GPU machine (a missing package) would stop them all
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    log(f"a: {shlex.join(command[1:])}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=deadline.left())
        output, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        output, status = (error.stdout or b"").decode() + (error.stderr or b"").decode(), None
    print(output, flush=True)
    lines = output.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    outcome = "timed out" if status is None else f"exit status {status}"
    section += [f"`pytest -m cuda tests/test_cuda.py`: {summary.strip('= ')} ({outcome}).", ""]
    problems = [line for line in lines if re.match(r"(FAILED|ERROR) ", line)]
    if problems or status != 0:
        section += ["```", *(problems or lines[-30:]), "```", ""]
    if status != 0:
        raise RuntimeError(f"pytest: {summary.strip('= ')} ({outcome})")


# ------------------------------------------------------------------ b: inference timing


def variants(spec: ModelSpec, sample: torch.Tensor, steps: int, args) -> Tuple[Dict[str, torch.nn.Module], Dict[str, float], str]:
    """The plain model, + ATS at the spec's GFLOPs target (``steps`` of bisection), + ToMe; their
    GFLOPs per input on ``sample`` (ToMe's counted on the CPU), and a note on the ATS budget."""
    torch.manual_seed(0)
    plain = spec.build().eval()
    blocks = family_of(plain).default_blocks(len(plain.blocks))
    ats = apply_ats(copy.deepcopy(plain), blocks).to(args.device)
    plain_gflops = gflops_as_run(plain, [], 1).item()
    target = spec.target * plain_gflops
    ratio = common.bisect(lambda r: mean_gflops(apply_ats(ats, blocks, r), sample, args), target, 0.1, 1.0, steps, 3)
    models = {"plain": plain.to(args.device), f"ATS {blocks[0]}-{blocks[-1]}, rho={ratio}": ats}
    gflops = {name: mean_gflops(model, sample, args) for name, model in models.items()}
    if args.compile:  # the same weights; the ATS step's small operations fused between the reads
        name = f"ATS {blocks[0]}-{blocks[-1]}, rho={ratio}, torch.compile"
        models[name], gflops[name] = torch.compile(ats, dynamic=True), gflops[list(models)[1]]
    if spec.tome_r is not None:
        tome = apply_tome(copy.deepcopy(plain).cpu(), spec.tome_r)
        name = f"ToMe, r={spec.tome_r}"
        gflops[name] = count_gflops(tome, sample[:1].cpu()).item()
        models[name] = tome.to(args.device)
    note = (f"{spec.title}: ATS in blocks {blocks[0]}-{blocks[-1]}, rho={ratio} found by bisection for {target:.3g} "
            f"GFLOPs ({spec.target:.3g} of the plain {plain_gflops:.3g}); reached {gflops[list(models)[1]]:.3g}.")  # fmt: skip
    return models, gflops, note


def backends_to_time(args) -> Tuple[List[str], List[str]]:
    """The attention backends part b times here, and notes on those it skips."""
    if args.device == "cuda":
        return ["padded", "varlen"], []
    return ["padded"], ["varlen skipped: it needs CUDA with float16 or bfloat16 (a dry run on the CPU, in float32)."]


def inference_timing(args, deadline: Deadline, section: List[str]) -> None:
    backends, notes = backends_to_time(args)
    settings = argparse.Namespace(device=args.device, dtype=args.dtype, backend="auto", compile=args.compile)
    section += [
        f"Random weights and inputs, {args.dtype}{' autocast' if args.dtype != 'float32' else ''}, inference mode. "
        "Per model and batch, every variant and attention backend timed interleaved in one process, the fastest "
        f"of {args.rounds} forwards after a warm-up "
        "(benchmarks/common.py). Speed-up: over the first row of the same model and batch; divided by the GFLOPs "
        "ratio, 1.0 is a time saving in proportion to the GFLOPs saved. GFLOPs per input as run "
        "(`gflops_as_run`; ToMe: `count_gflops`). Peak memory: of one forward, above what was held before it "
        "(CUDA: `torch.cuda.max_memory_allocated`; CPU: peak resident size).",
        "",
        "| model | variant | attention | batch | inputs/s | GFLOPs | speed-up | speed-up / GFLOPs ratio | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    try:
        _time_models(args, deadline, section, settings, backends, notes)
    finally:
        section += ["", *[f"- {note}" for note in notes], ""]


def _time_models(args, deadline, rows: List[str], settings, backends: List[str], notes: List[str]) -> None:
    for spec in model_specs(args.dry_run):
        deadline.check(spec.title)
        log(f"b: {spec.title}: building, finding the ATS budget")
        sample = _inputs(args.samples, spec.shape, 1, args.device)
        models, gflops, note = variants(spec, sample, args.bisect_steps, settings)
        notes.append(note)
        for batch in args.batch_sizes:
            deadline.check(f"{spec.title} at batch {batch}")
            x = _inputs(batch, spec.shape, 0, args.device)
            runs = {}  # (variant, backend) -> a forward
            for name, model in models.items():
                ours = name != "plain" or spec.plain_uses_backend
                for backend in backends if ours and not name.startswith("ToMe") else ["timm"]:
                    runs[name, backend] = (lambda m=model, b=backend: _forward(m, x, b))
            failed = _drop_failing(runs, settings, f"{spec.title} at batch {batch}", notes)
            rows += [f"| {spec.title} | {name} | {backend} | {batch} | failed: see the notes | | | | |" for name, backend in failed]
            if not runs:
                continue
            with common.context(settings):
                seconds = common.time_interleaved(runs, args.rounds, args.device)
            reference = seconds[next(iter(runs))]
            for (name, backend), run_seconds in seconds.items():
                memory = common.peak_memory_mib(
                    models[name], x, argparse.Namespace(**{**vars(settings), "backend": backend if backend != "timm" else "auto"})
                )
                speedup = reference / run_seconds
                rows.append(
                    f"| {spec.title} | {name} | {backend} | {batch} | {batch / run_seconds:.1f} | {gflops[name]:.3g} | "
                    f"{speedup:.2f} | {speedup / (gflops['plain'] / gflops[name]):.2f} | {memory:.0f} |"
                )
                log(f"b: {rows[-1]}")
        del models
        if args.device == "cuda":
            torch.cuda.empty_cache()


def _inputs(batch: int, shape: Tuple[int, ...], seed: int, device: str) -> torch.Tensor:
    """Random inputs made on the device (a batch of 64 XViT clips is 2.3 GB)."""
    return torch.randn(batch, *shape, device=device, generator=torch.Generator(device).manual_seed(seed))


def _forward(model: torch.nn.Module, x: torch.Tensor, backend: str):
    with attention_backend(backend) if backend != "timm" else contextlib.nullcontext():
        return model(x)


def _drop_failing(runs: Dict, settings, where: str, notes: List[str]) -> List[Tuple[str, str]]:
    """Removes from ``runs`` the forwards that raise, noting why; returns their keys."""
    failed = []
    for key, run in list(runs.items()):
        try:
            with common.context(settings):
                run()
        except Exception as error:  # one backend failing must not hide the others' timings
            failed.append(key)
            del runs[key]
            notes.append(f"{where}, {key[0]}, {key[1]}: {type(error).__name__}: {str(error).strip()[:300]}")
            log(f"b: {notes[-1]}")
    return failed


# ------------------------------------------------------------------ c: loader throughput


def decoding_backends() -> Dict[str, Optional[str]]:
    """Each backend ``video_io.BACKENDS`` offers, with None when its decoder is installed here,
    else why it is skipped."""
    modules = {"pyav": "av"}  # the rest are named after their module ("torchcodec_cuda": torchcodec)
    found = {}
    for name in video_io.BACKENDS:
        module = modules.get(name, re.split(r"[\W_]", name)[0])
        found[name] = None if importlib.util.find_spec(module) else f"not installed (no module {module!r})"
    return found


def loader_throughput_part(args, deadline: Deadline, section: List[str]) -> None:
    section += [
        f"{args.videos} synthetic {loader_throughput.SECONDS}-second {loader_throughput.WIDTH}x{loader_throughput.HEIGHT} "
        f"{loader_throughput.FPS} fps H.264 videos, each listed {args.repeat} times; ats_video's KineticsDataset as "
        "benchmarks/loader_throughput.py builds it (train: 8x32 clips, random short side and crop; test: 1x3 views), "
        "batches of 6, samples per second over one pass, worker start-up included.",
        "",
        "| decoder | mode | workers | samples/s |",
        "|---|---|---|---|",
    ]
    work = Path(args.work_dir) / "videos"
    log(f"c: writing {args.videos} videos under {work}")
    list_path = loader_throughput.write_videos(str(work), args.videos, args.repeat)
    missing = {backend: why for backend, why in decoding_backends().items() if why}
    try:
        for backend in (b for b in video_io.BACKENDS if b not in missing):
            for mode in ("train", "test"):
                for workers in args.workers:
                    deadline.check(f"{backend} {mode} with {workers} workers")
                    dataset = loader_throughput.ours(list_path, mode, backend)
                    rate = loader_throughput.samples_per_second(dataset, workers)
                    section.append(f"| {backend} | {mode} | {workers} | {rate:.1f} |")
                    log(f"c: {section[-1]}")
    finally:
        section += ["", *[f"- {backend}: {why}." for backend, why in missing.items()], ""]


# ------------------------------------------------------------------ the report


def machine(args) -> str:
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        device = f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor})"
        cuda = f"CUDA {torch.version.cuda}"
    else:
        device, cuda = f"no GPU: dry run on the CPU ({platform.processor() or platform.machine()})", "no CUDA"
    return (f"{device}; {os.cpu_count()} CPUs; torch {torch.__version__}, {cuda}, Python {platform.python_version()}; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")  # fmt: skip


def write_report(args, header: str, results: Dict[str, Tuple[str, float, List[str]]]) -> None:
    lines = ["# GPU check", "", header, "", f"Command: `{shlex.join(['python', 'tools/gpu_check.py', *sys.argv[1:]])}`.", ""]
    lines += [f"- {part}. {PARTS[part]}: {status} ({seconds:.0f} s)" for part, (status, seconds, _) in results.items()]
    for part, (_, _, section) in results.items():
        lines += ["", f"## {part}. {PARTS[part]}", "", *section]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines).rstrip() + "\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (see above)")
    parser.add_argument("--parts", default="a,b,c", help="which parts, comma-separated (default a,b,c)")
    parser.add_argument("--limits", default="", help="seconds per part, e.g. a=300,c=90 (default "
                        + ",".join(f"{p}={s}" for p, s in LIMITS.items()) + ")")  # fmt: skip
    parser.add_argument("--out", type=Path, help="the report (default benchmarks/gpu.md; dry run: output/gpu_check_dry_run.md)")
    parser.add_argument("--work-dir", help="where part c writes its videos (default: a temporary folder)")
    parser.add_argument("--compile", action="store_true",
                        help="part b also times ATS under torch.compile(dynamic=True) (compiling takes minutes)")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or any(p not in PARTS for p in args.parts):
        parser.error(f"--parts must name some of {', '.join(PARTS)}, got {','.join(args.parts)!r}")
    limits, args.limits = args.limits, dict(LIMITS)
    for item in filter(None, limits.split(",")):
        part, _, seconds = item.partition("=")
        if part.strip() not in PARTS or not re.fullmatch(r"\d+(\.\d*)?", seconds.strip()):
            parser.error(f"--limits: expected PART=SECONDS with PART among {', '.join(PARTS)}, got {item!r}")
        args.limits[part.strip()] = float(seconds)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible to torch; --dry-run runs the same code on the CPU")
    args.device = "cpu" if args.dry_run else "cuda"
    args.out = args.out or ROOT / ("output/gpu_check_dry_run.md" if args.dry_run else "benchmarks/gpu.md")
    # sizes: bounded so that the whole run fits the limits
    # float32 in the dry run: CPUs without bf16 matrix units run bf16 autocast 10x slower than float32
    args.batch_sizes, args.rounds, args.samples, args.bisect_steps, args.dtype = (
        ([1, 2], 2, 2, 3, "float32") if args.dry_run else ([1, 32, 64], 10, 8, 9, "bfloat16")
    )
    args.videos, args.repeat, args.workers = (1, 2, [0]) if args.dry_run else (8, 3, [4, 8])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    header = f"Machine: {machine(args)}."
    log(header)
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        args.work_dir = args.work_dir or scratch
        for part in args.parts:
            log(f"part {part}: {PARTS[part]} (limit {args.limits[part]:.0f} s)")
            start = time.monotonic()
            run = {"a": cuda_tests, "b": inference_timing, "c": loader_throughput_part}[part]
            section = []  # filled as the part goes: what it measured stays when it fails
            try:
                run(args, Deadline(args.limits[part]), section)
                status = "passed"
            except Exception as error:  # recorded in the report; the next part still runs
                traceback.print_exc()
                status = f"FAILED: {type(error).__name__}: {str(error).strip()[:300]}"
                if part != "a":  # pytest's own failures are in the section already
                    section += ["```", traceback.format_exc().strip(), "```"]
            results[part] = (status, time.monotonic() - start, section)
            log(f"part {part}: {status} in {results[part][1]:.0f} s")
            write_report(args, header, results)
            log(f"wrote {args.out}")
    return 0 if all(status == "passed" for status, _, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
