"""Process pools for the data_prep scripts that stop at once when asked to.

``concurrent.futures.ProcessPoolExecutor`` used in a ``with`` block waits, on leaving it, for
every job still queued, even when the block is left by Ctrl-C: a Kinetics-sized run would go on
for hours after it. A SIGTERM (a batch scheduler ending the job, ``kill``) ends the main process
at once and leaves its workers running unwatched.

:func:`worker_pool` gives an executor that, when its block is left by an exception (Ctrl-C's
``KeyboardInterrupt``, :class:`Terminated` for SIGTERM, an error), cancels the queued jobs and
terminates the running workers before the exception goes on; results already received stay
with the caller, who saves them as they come.

Workers ignore SIGINT: a Ctrl-C in a terminal reaches every process of the foreground group,
and inside a job it would turn the job into a failure, recorded as if the video were at fault.
The main process alone handles it, by stopping the workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from tqdm import tqdm

EXIT_INTERRUPTED = 128 + signal.SIGINT  # the shell's status for a process ended by Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM
_JOIN_SECONDS = 5  # how long a terminated worker may take to exit before it is killed


class Terminated(SystemExit):
    """Raised in the main process by SIGTERM inside :func:`worker_pool`; exit status 143."""

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def exit_status(error: BaseException) -> int:
    """The exit status for a run stopped by ``error``: 130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED


@contextlib.contextmanager
def worker_pool(num_workers: int) -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` of ``num_workers`` processes that stops at once on an exception.

    Leaving the block normally waits for the submitted jobs, as the executor does. Leaving it by
    an exception cancels the queued jobs, terminates the workers (killing any that do not exit
    within a few seconds) and re-raises. While the block runs, SIGTERM raises
    :class:`Terminated` in the main thread, so a terminated run cleans up the same way.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    before = set(multiprocessing.active_children())
    with _sigterm_raises():
        pool = ProcessPoolExecutor(num_workers, initializer=_init_worker)
        try:
            yield pool
        except BaseException:
            with _signals_ignored():  # a second Ctrl-C must not cut the clean-up short
                pool.shutdown(wait=False, cancel_futures=True)
                _stop(set(multiprocessing.active_children()) - before)
                pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)


def completed(futures: Sequence[Future], *, total: int, desc: str) -> tqdm:
    """``futures`` as they complete, behind a progress bar of ``total`` videos.

    The jobs a run skips (done before) count as done from the start: the bar starts at
    ``total - len(futures)``.
    """
    initial = total - len(futures)
    return tqdm(as_completed(futures), total=total, initial=initial, desc=desc, unit="video")


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the main process's SIGTERM handler; it must simply die.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(processes: set[multiprocessing.Process]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(_JOIN_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: let the clean-up run
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the caller's handling stays
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
