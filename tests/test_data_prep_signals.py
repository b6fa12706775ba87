"""Ctrl-C and SIGTERM stop the data_prep scripts' worker pools at once and leave no process.

Each test runs a script in a child process whose job function sleeps far longer than the test
waits, so a pool that finished its queue (ProcessPoolExecutor's way on leaving its block) or
left its workers behind fails. Processes are watched through /proc and os.kill(pid, 0).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from videos import write_counter_video

REPO = os.path.join(os.path.dirname(__file__), "..")
JOB_SECONDS = 300  # far beyond the test's patience: a job must be stopped, not waited for
NUM_WORKERS = 2
STOP_SECONDS = 20  # "at once", with room for a loaded machine

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")

# Runs a data_prep script with its job function replaced by one that marks its process id in
# a folder and sleeps.
DRIVER = """
import os, sys, time
sys.path.insert(0, {data_prep!r})
import {script} as script

def sleeping_job(*args, **kwargs):
    open(os.path.join({marks!r}, str(os.getpid())), "w").close()
    time.sleep({seconds})

script.{job} = sleeping_job
sys.exit(script.main({argv!r}))
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state not in ("Z", "X")


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start(tmp_path, script: str, job: str, argv: list[str]) -> tuple[subprocess.Popen, str]:
    marks = str(tmp_path / "marks")
    os.makedirs(marks)
    driver = DRIVER.format(
        data_prep=os.path.join(REPO, "data_prep"), script=script, job=job, marks=marks,
        seconds=JOB_SECONDS, argv=argv,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.path.abspath(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(driver)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
        # Ctrl-C's default action, as in a terminal, even where this test runs in the background
        # (a shell starts background jobs with SIGINT ignored, and children inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return process, marks


def workers_started(marks: str) -> list[int]:
    return [int(name) for name in os.listdir(marks)]


def stop_everything(process: subprocess.Popen, marks: str) -> None:
    """Clean-up after a failed test: no process of it may outlive the test."""
    for pid in workers_started(marks):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def check_stops(tmp_path, script, job, argv, *, send, expected_status):
    process, marks = start(tmp_path, script, job, argv)
    try:
        assert wait_for(lambda: len(workers_started(marks)) == NUM_WORKERS, 120), (
            process.poll() is not None and process.communicate()
        )
        workers = workers_started(marks)
        send(process)
        try:  # EOF on its pipes: the script and every process holding them have ended
            _, stderr = process.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the script or a worker still runs {STOP_SECONDS} s after the signal")
        assert process.returncode == expected_status, stderr
        assert "interrupted" in stderr
        assert wait_for(lambda: not any(alive(pid) for pid in workers), 5), (
            f"workers left running: {[pid for pid in workers if alive(pid)]}"
        )
    finally:
        stop_everything(process, marks)


def ctrl_c(process):
    os.killpg(process.pid, signal.SIGINT)  # a terminal sends it to the whole group


def sigterm(process):
    os.kill(process.pid, signal.SIGTERM)  # a scheduler or `kill` ends the main process


@pytest.fixture
def six_videos(tmp_path):
    for i in range(6):
        write_counter_video(str(tmp_path / "src" / f"{i}.mp4"), 2)
    (tmp_path / "val.csv").write_text("".join(f"src/{i}.mp4 0\n" for i in range(6)))
    return tmp_path


def test_ctrl_c_stops_resize_videos_at_once(six_videos):
    argv = ["--src", str(six_videos / "src"), "--dst", str(six_videos / "dst"),
            "--short-side", "32", "--workers", str(NUM_WORKERS)]  # fmt: skip
    check_stops(six_videos, "resize_videos", "resize", argv, send=ctrl_c, expected_status=130)
    assert not os.path.exists(six_videos / "dst" / "resize_failures.txt")


def test_sigterm_stops_check_videos_and_its_workers(six_videos):
    argv = [str(six_videos / "val.csv"), "--workers", str(NUM_WORKERS)]
    check_stops(six_videos, "check_videos", "count_frames", argv, send=sigterm,
                expected_status=143)  # fmt: skip
    assert not os.path.exists(six_videos / "val.clean.csv")
