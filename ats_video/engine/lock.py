"""One live run per OUTPUT_DIR: a lock file that the operating system releases when its holder
dies.

A job submitted twice, or a requeued job racing the one it replaces, would otherwise write the
same checkpoints, logs and TensorBoard events. While a run is alive its main process holds
``OUTPUT_DIR/run.lock``: an exclusive ``flock`` on the file, which names the holder (host,
process id, start time) for the message another run gets. The kernel drops a ``flock`` when
its process ends, however it ends (a crash, SIGKILL, a node's OOM killer), so a lock file left
behind never blocks the next run: only a live holder does. Linux's NFS client (v4, and v3 with
lockd) and Lustre mounted with ``-o flock`` carry the lock across hosts.

NOTE: where the filesystem refuses ``flock`` (some FUSE mounts, Lustre without ``-o flock``)
the run warns that two runs in the folder would not be told apart, and goes on unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from typing import Iterator

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class OutputDirInUse(RuntimeError):
    """Another live run holds the OUTPUT_DIR."""


def _holder(fd: int) -> str:
    """What a lock file says of its holder, for a message."""
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    try:
        holder = json.loads(text)
        return f"host {holder['host']}, process {holder['pid']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError):  # a holder that has not written its name yet
        return "a run that is just starting"


@contextlib.contextmanager
def output_dir_lock(output_dir: str) -> Iterator[str]:
    """Holds ``output_dir``'s lock for the body (yields the lock file's path).

    Raises:
        OutputDirInUse: another live run holds it, naming the folder and the holder.
        OSError: the folder cannot be made or written.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputDirInUse(
                f"OUTPUT_DIR {output_dir} is in use by another run ({holder}): wait for it to "
                "end, end it, or give this run another OUTPUT_DIR"
            ) from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            logger.warning(
                f"{path}: this filesystem cannot lock files ({error.strerror}); a second run "
                "in this OUTPUT_DIR would not be refused"
            )
            break
        # the holder we waited on may have removed the file before we locked it: lock the
        # file that is there now, or another run could lock that one beside us
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%FT%T%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
    try:
        yield path
    finally:
        os.remove(path)  # before unlocking: a waiting run then locks a file of its own
        os.close(fd)
