"""What a run reports: log lines on the console (around the progress bars), and scalars in
``OUTPUT_DIR/log.jsonl`` and TensorBoard. Only the main process reports."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, Dict, Mapping, Optional

from tqdm import tqdm

from ats_video.data.files import write_text_atomic


class _TqdmHandler(logging.StreamHandler):
    """Writes log lines through tqdm, so they appear above a progress bar, not inside it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # noqa: BLE001 (logging's contract: never raise from a handler)
            self.handleError(record)


def setup_logging(output_dir: str, is_main: bool) -> None:
    """Log lines to the console and to ``output_dir/log.txt`` on the main process; other
    processes show warnings and errors only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ats_video", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    formatter = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    handlers = [_TqdmHandler()]
    if is_main:
        os.makedirs(output_dir, exist_ok=True)
        # delay: a run refused before its first log line leaves log.txt as it was
        handlers.append(logging.FileHandler(os.path.join(output_dir, "log.txt"), delay=True))
    for handler in handlers:
        handler._ats_video = True
        handler.setFormatter(formatter)
        root.addHandler(handler)


def _flat(values: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
    """{"loss": 1.0, "kept_tokens": {3: 392.0}} -> {"loss": 1.0, "kept_tokens/3": 392.0}."""
    flat: Dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def _step(line: str) -> float:
    """A log.jsonl row's step; infinite for a row cut short by a killed run."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class Recorder:
    """Scalars to ``output_dir/log.jsonl`` (one JSON object a line, appended across resumed
    runs) and, with ``tensorboard``, to TensorBoard events under ``output_dir/tensorboard``.
    Does nothing where ``enabled`` is False (processes other than the main one).

    A run resumed after ``resumed_at`` iterations first drops what an earlier run recorded
    after that step (rows of ``log.jsonl``; TensorBoard's ``purge_step``), since it is about to
    run those iterations again: nothing is recorded twice."""

    def __init__(
        self, output_dir: str, *, tensorboard: bool, enabled: bool, resumed_at: int = 0
    ) -> None:
        self.file = None
        self.writer = None
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, "log.jsonl")
        if resumed_at and os.path.exists(path):
            with open(path) as f:
                kept = [line for line in f if _step(line) <= resumed_at]
            write_text_atomic(path, "".join(kept))
        self.file = open(path, "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # only where wanted: slow import

            self.writer = SummaryWriter(
                os.path.join(output_dir, "tensorboard"),
                purge_step=resumed_at + 1 if resumed_at else None,
            )

    def write(self, split: str, step: int, values: Mapping[str, Any], **context: Any) -> None:
        """One row ``{"split", "step", **context, **values}``; TensorBoard gets every number of
        ``values`` as ``split/name`` at ``step`` (nested dicts become ``split/name/key``)."""
        if self.file is None:
            return
        row = {"split": split, "step": step, **context, **values}
        self.file.write(json.dumps(row, allow_nan=False) + "\n")
        self.file.flush()
        if self.writer is not None:
            for name, value in _flat(values).items():
                if math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{name}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()


def finite_or_none(value: float) -> Optional[float]:
    """JSON has no NaN: unknown values are written as null."""
    return value if math.isfinite(value) else None


def duration(seconds: float) -> str:
    """``3725.4`` -> ``"1:02:05"`` (hours:minutes:seconds)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def write_run_config(output_dir: str, text: str) -> str:
    """Writes the run's whole config to ``output_dir/config.yaml``. An earlier run's file that
    differs is kept as ``config.N.yaml`` (N = 1, 2, ...: the first free number), so a run started
    again with other settings never erases what the earlier one ran with. Says what it did."""
    path = os.path.join(output_dir, "config.yaml")
    kept = ""
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() != text:
                n = 1
                while os.path.exists(os.path.join(output_dir, f"config.{n}.yaml")):
                    n += 1
                kept = os.path.join(output_dir, f"config.{n}.yaml")
                os.replace(path, kept)
    write_text_atomic(path, text)
    return f"wrote {path}" + (f"; the earlier run's, which differs, kept as {kept}" if kept else "")
