"""Which video decoders work on this machine, and whether they give the frames PyAV gives.

For each backend of ats_video.data.video_io (PyAV, decord, torchcodec on the CPU and, with an
NVIDIA GPU, on CUDA): whether it loads (else why, and what to install), then on a short H.264
video it writes, the frames it decodes for a training clip's indices, their largest difference
from PyAV's (the tolerance is 2 levels of 255), its frame count, and the time of one clip.

    python tools/check_decoders.py            # exit status 1 when a decoder that loads disagrees

tools/gpu_check.py calls :func:`check_decoders` on a GPU machine, where torchcodec_cuda runs.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from ats_video.data.video_io import BACKENDS, count_frames, read_frames, why_unavailable, write_video

TOLERANCE = 2  # grey levels: the readers convert YUV to RGB with different code
INDICES = [89, 0, 32, 33, 64, 64]  # out of order and repeated, as samplers ask


def check_decoders(backends=None, *, frames: int = 90, height: int = 96, width: int = 128) -> list:
    """One dict per backend: ``backend``, ``loads``, ``reason`` (why not), and where it loads
    ``max_difference`` (from PyAV), ``count`` (frames counted), ``seconds`` (one clip), ``ok``."""
    backends = [b for b in BACKENDS if b != "auto"] if backends is None else backends
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "check.mp4")
        write_video(path, video, fps=30)
        reference = read_frames(path, lambda n: INDICES, backend="pyav").int()
        for backend in backends:
            reason = why_unavailable(backend)
            result = {"backend": backend, "loads": not reason, "reason": reason}
            if not reason:
                start = time.perf_counter()
                clip = read_frames(path, lambda n: INDICES, backend=backend)
                seconds = time.perf_counter() - start
                difference = int((clip.int() - reference).abs().max())
                count = count_frames(path, backend=backend)
                result.update(max_difference=difference, count=count, seconds=seconds)
                result["ok"] = difference <= TOLERANCE and count == frames
            results.append(result)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="+", choices=[b for b in BACKENDS if b != "auto"])
    args = parser.parse_args(argv)
    results = check_decoders(args.backends)
    for r in results:
        if not r["loads"]:
            print(f"{r['backend']}: cannot be used: {r['reason']}")
        else:
            print(
                f"{r['backend']}: {'ok' if r['ok'] else 'WRONG'}: largest difference from PyAV "
                f"{r['max_difference']} (tolerance {TOLERANCE}), {r['count']} frames counted, "
                f"{1000 * r['seconds']:.0f} ms for a clip of {len(INDICES)} frames"
            )
    return 0 if all(r.get("ok", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
