"""Ending a training run when the cluster asks, and agreeing on it across processes.

SLURM and Kubernetes send SIGTERM some seconds before they preempt a job (SLURM's GraceTime,
Kubernetes' terminationGracePeriodSeconds), and SLURM can send SIGUSR1 earlier with
``--signal=USR1@SECONDS``. While training runs, :class:`StopSignals` turns those signals into a
request: the iteration in progress finishes, every process stops after the same iteration, the
main process writes a checkpoint that records the iteration inside the epoch, and the run exits
with :data:`REQUEUE_EXIT_CODE`. ``TRAIN.AUTO_RESUME`` continues from there exactly.

Further signals change nothing: a launcher that stops its workers sends SIGTERM once more
(torchrun's agent, itself signalled by SLURM), then SIGKILL after its own grace period (30 s
for torchrun). Ctrl-C (SIGINT) still interrupts at once.

:func:`agree` is the one collective per iteration: every process says whether it was asked to
stop and whether its loss is finite, and all of them learn the answer together, so one rank
receiving the signal, or one rank meeting a non-finite value, ends all of them at the same
iteration instead of leaving the others waiting in a collective until the timeout.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Dict, NamedTuple, Optional, Sequence

import torch

from ats_video.engine.distributed import all_reduce

# The exit status of a run that stopped on a signal after writing its checkpoint: "run me
# again". SLURM requeues on it with RequeueExit=3 in slurm.conf, Kubernetes with a Job's
# podFailurePolicy (onExitCodes [3], action Ignore); tools/submit.py requeues through submitit.
# NOTE: no scheduler defines such a status; 3 is this project's choice, distinct from the
# 1 of an error and the 128 + N of a process killed by signal N.
REQUEUE_EXIT_CODE = 3

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    """A context in which the given signals request a stop instead of ending the process.

    ``requested`` is the first such signal's name (``"SIGTERM"``), or None; ``received_at`` its
    ``time.monotonic()``. Handlers can only be set from the main thread; elsewhere (a thread of
    a notebook or a test runner) the context changes nothing and a signal keeps its default.
    """

    def __init__(self, signals: Sequence[signal.Signals] = STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.requested: Optional[str] = None
        self.received_at: Optional[float] = None
        self._previous: Dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested is None:
            self.requested = signal.Signals(signum).name
            self.received_at = time.monotonic()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: loader workers ignore the stop signals. SLURM signals
    every process of a job step, workers included, and a worker that died of it would end the
    run with a DataLoader error before its checkpoint; the main process ends them itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class Verdict(NamedTuple):
    """What every process learns after an iteration's forward: stop after this iteration (a
    signal reached one of them), and whether the loss was not finite on one of them."""

    stop: bool
    diverged: bool


def agree(stop_requested: bool, loss: Optional[torch.Tensor], device: torch.device) -> Verdict:
    """The per-iteration collective (a maximum over processes of two flags). ``loss`` is this
    process's loss, or None when its forward already met non-finite values."""
    not_finite = torch.ones((), device=device) if loss is None else (~loss.isfinite()).float()
    flags = torch.stack([torch.tensor(float(stop_requested), device=device), not_finite])
    stop, diverged = all_reduce(flags, "max").tolist()
    return Verdict(stop=bool(stop), diverged=bool(diverged))
