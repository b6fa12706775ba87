"""What a cluster does to a run, tried on tiny runs of tools/run_net.py: signals before
preemption (one process and several), mid-epoch checkpoints and hard kills, divergence with ATS
on in every family, two runs in one OUTPUT_DIR, tasks started by SLURM's srun."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ats_video  # noqa: F401  (before timm)
from ats_video.ats import sample_tokens
from ats_video.data.video_io import write_video
from ats_video.engine.checkpoints import last_checkpoint
from ats_video.engine.distributed import first_host, slurm_environment
from ats_video.engine.lock import OutputDirInUse, output_dir_lock
from ats_video.engine.preemption import REQUEUE_EXIT_CODE

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_net", ROOT / "tools" / "run_net.py")
run_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_net)
spec = importlib.util.spec_from_file_location("submit", ROOT / "tools" / "submit.py")
submit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(submit)

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def same_threads():
    """The environment of a process that computes as this one does (float sums depend on the
    number of threads)."""
    return {**ENV, "OMP_NUM_THREADS": str(torch.get_num_threads())}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """3 classes of tinted noise clips: 12 training videos (6 iterations of 2), 3 validation."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    colours = np.array([(200, 40, 40), (40, 180, 40), (40, 40, 200)])
    for split, per_class in (("train", 4), ("val", 1)):
        rows = []
        for label in range(3):
            for n in range(per_class):
                frames = np.clip(colours[label] + rng.normal(0, 40, (8, 24, 24, 3)), 0, 255)
                name = f"{split}/{label}_{n}.mp4"
                os.makedirs(root / split, exist_ok=True)
                write_video(str(root / name), frames.astype(np.uint8), fps=8)
                rows.append(f"{name} {label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def options(data_dir, output_dir, **overrides):
    """A tiny TimeSformer with ATS and stochastic depth, 2 epochs of 6 iterations."""
    values = {
        "DATA.PATH_TO_DATA_DIR": data_dir,
        "DATA.NUM_FRAMES": 4,
        "DATA.SAMPLING_RATE": 2,
        "DATA.TRAIN_JITTER_SCALES": "[16, 20]",
        "DATA.TRAIN_CROP_SIZE": 16,
        "DATA.TEST_CROP_SIZE": 16,
        "DATA.DECODING_BACKEND": "pyav",
        "DATA_LOADER.NUM_WORKERS": 0,
        "MODEL.ARCH": "timesformer",
        "MODEL.PATCH_SIZE": 4,
        "MODEL.EMBED_DIM": 24,
        "MODEL.DEPTH": 4,
        "MODEL.NUM_HEADS": 2,
        "MODEL.NUM_CLASSES": 3,
        "MODEL.DROP_PATH_RATE": 0.2,
        "ATS.K": 6,
        "SOLVER.OPTIMIZING_METHOD": "adamw",
        "SOLVER.BASE_LR": 0.003,
        "SOLVER.MAX_EPOCH": 2,
        "TRAIN.BATCH_SIZE": 2,
        "TRAIN.EVAL_PERIOD": 5,
        "TEST.ENABLE": False,
        "TENSORBOARD.ENABLE": False,
        "LOG_PERIOD": 1,
        "OUTPUT_DIR": output_dir,
        **overrides,
    }
    return [str(x) for item in values.items() for x in item]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def steps(output_dir):
    return [r["step"] for r in read_jsonl(Path(output_dir) / "log.jsonl") if r["split"] == "train"]


def start(args, **env):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "run_net.py"), *args],
        env={**same_threads(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a job step's
    )


def wait_for_step(output_dir, step, *processes, timeout=240):
    """Waits until log.jsonl has recorded training step ``step``."""
    path = Path(output_dir) / "log.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and step in steps(output_dir):
            return
        for process in processes:
            assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.05)
    raise TimeoutError(f"step {step} never logged")


def interrupt(process, output_dir, at_step, signum):
    """Sends ``signum`` to the process and its loader workers, as SLURM signals every process
    of a job step, once step ``at_step`` is logged; returns the output and the seconds from the
    signal to the process's exit."""
    wait_for_step(output_dir, at_step, process)
    sent = time.monotonic()
    os.killpg(process.pid, signum)
    output = process.communicate(timeout=120)[0]
    return output, time.monotonic() - sent


def final_weights(output_dir):
    return torch.load(
        Path(output_dir) / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True
    )["model_state"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(b[key], value), key


# ------------------------------------------------------------------- signals and requeue


def test_signals_stop_after_the_iteration_and_the_run_resumes_exactly(data_dir, tmp_path):
    settings = {"TRAIN.CHECKPOINT_ITER_PERIOD": 4, "TRAIN.CHECKPOINT_ITER_KEEP": 1}
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert run_net.main(options(data_dir, straight, **settings)) == 0
    # every 4 iterations a mid-epoch checkpoint, only the newest kept; whole epochs all kept
    assert sorted(os.listdir(straight / "checkpoints")) == [
        "checkpoint_epoch_00001.pyth",
        "checkpoint_epoch_00002.pyth",
        "checkpoint_epoch_00002_iter_000004.pyth",
    ]

    # SIGTERM in epoch 1, SIGUSR1 in epoch 2: each run stops after the iteration it was in;
    # loader workers, which receive the signal too, do not end the run before its checkpoint
    for at_step, signum, workers in ((2, signal.SIGTERM, 1), (8, signal.SIGUSR1, 0)):
        settings["DATA_LOADER.NUM_WORKERS"] = workers
        process = start(options(data_dir, run, **settings))
        output, seconds = interrupt(process, run, at_step, signum)
        assert process.returncode == REQUEUE_EXIT_CODE, output[-3000:]
        name = signal.Signals(signum).name
        assert f"stopped by {name} after iteration" in output, output[-3000:]
        stopped_at = max(steps(run))
        epoch, iteration = divmod(stopped_at, 6)
        newest = last_checkpoint(str(run))
        assert newest.endswith(f"checkpoint_epoch_{epoch + 1:05d}_iter_{iteration:06d}.pyth")
        assert torch.load(newest, weights_only=True)["iteration"] == iteration
        print(
            f"{name} after step {at_step}: stopped after {stopped_at}, exit after {seconds:.2f} s"
        )
        assert seconds < 30

    # a hard kill, with no warning, after the mid-epoch checkpoint of iteration 4 of epoch 2:
    # steps 11 and 12 were logged and will be run again, but not logged twice
    process = start(options(data_dir, run, **settings))
    wait_for_step(run, 11, process)
    process.kill()
    process.wait()
    assert steps(run)[-1] >= 11
    assert run_net.main(options(data_dir, run, **settings)) == 0
    assert "after iteration 4 of epoch 2" in (run / "log.txt").read_text()

    assert_same_weights(final_weights(straight), final_weights(run))
    assert steps(run) == steps(straight) == list(range(1, 13))
    losses = [
        [r["loss"] for r in read_jsonl(out / "log.jsonl") if r["split"] == "train"]
        for out in (straight, run)
    ]
    assert losses[0] == losses[1]
    assert not (run / "run.lock").exists()


def test_a_signal_at_an_epochs_last_iteration_saves_that_epoch(data_dir, tmp_path, monkeypatch):
    real_seed = run_net.seed_iteration

    def seed_then_signal(seed, epoch, iteration, rank):
        if (epoch, iteration) == (0, 5):  # the last of epoch 1's 6 iterations is starting
            os.kill(os.getpid(), signal.SIGTERM)
        real_seed(seed, epoch, iteration, rank)

    monkeypatch.setattr(run_net, "seed_iteration", seed_then_signal)
    handler = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "run"
    assert run_net.main(options(data_dir, run)) == REQUEUE_EXIT_CODE
    monkeypatch.undo()
    assert os.listdir(run / "checkpoints") == ["checkpoint_epoch_00001.pyth"]
    assert "stopped by SIGTERM after epoch 1" in (run / "log.txt").read_text()
    assert signal.getsignal(signal.SIGTERM) is handler  # put back after training
    assert run_net.main(options(data_dir, run)) == 0
    assert steps(run) == list(range(1, 13))


def test_all_processes_stop_at_one_iteration_when_one_is_signalled(data_dir, tmp_path):
    # two tasks as srun starts them (no torchrun): SLURM's variables form the process group
    run = tmp_path / "run"
    slurm = {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "localhost"}
    slurm["MASTER_PORT"] = free_port()
    tasks = [
        start(options(data_dir, run), SLURM_PROCID=str(r), SLURM_LOCALID=str(r), **slurm)
        for r in range(2)
    ]
    wait_for_step(run, 2, *tasks)
    tasks[1].send_signal(signal.SIGTERM)  # only the second process is told
    outputs = [task.communicate(timeout=120)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [REQUEUE_EXIT_CODE] * 2, outputs[0][-3000:]
    assert "2 process(es)" in outputs[0]
    stopped_at = max(steps(run))
    iteration = f"after iteration {stopped_at} of epoch 1"  # 1 clip a process: 6 an epoch
    assert f"stopped by SIGTERM {iteration}" in outputs[1]
    assert f"stopped by a signal to another process {iteration}" in outputs[0]
    assert sorted(os.listdir(run / "checkpoints")) == [
        f"checkpoint_epoch_00001_iter_{stopped_at:06d}.pyth"
    ]
    # torchrun continues the run where srun's tasks left it
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "tools" / "run_net.py"), *options(data_dir, run),
    ]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert steps(run) == list(range(1, 13))


def test_submit_requeues_a_preempted_run_through_submitit(data_dir, tmp_path, capsys):
    # submitit's local executor runs the job here as SLURM would: a signal, a requeue, a resume
    run = tmp_path / "run"
    job = submit.main(
        ["--cluster", "local", "--gpus-per-node", "0", "--time", "30", "--job-name", "tiny",
         *options(data_dir, run)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert f"submitted job {job.job_id} (1 node(s) x 1 process(es)): tiny" in printed
    assert f"logs: {job.paths.stdout}" in printed
    wait_for_step(run, 3)
    holder = json.loads((run / "run.lock").read_text())  # the live run's main process
    os.kill(holder["pid"], signal.SIGUSR2)  # what submitit has SLURM send before the time limit
    assert job.result() == 0
    out = job.stdout()
    print(out)
    assert "stopped by SIGUSR2 after iteration" in out
    assert "Requeued job" in out and "resumed from" in out and "after iteration" in out
    assert steps(run) == list(range(1, 13))
    assert (run / "checkpoints" / "checkpoint_epoch_00002.pyth").exists()


@pytest.mark.parametrize(
    "key, value",
    [("TRAIN.CHECKPOINT_ITER_PERIOD", -1), ("TRAIN.CHECKPOINT_ITER_KEEP", 0),
     ("DIST.TIMEOUT_S", 0), ("DIST.TIMEOUT_S", "inf")],
)  # fmt: skip
def test_cluster_keys_are_checked_when_read(key, value):
    with pytest.raises(ValueError, match=key):
        run_net.load_config("", [key, str(value)])


AGREED = """
import os, sys
from ats_video.engine.distributed import agreed, init_process
process = init_process(timeout_s=120)
def step():
    if process.rank == 1:
        raise OSError("No space left on device: checkpoints/checkpoint_epoch_00002.pyth")
    return "saved"
try:
    agreed(step)
except Exception as error:
    print(f"rank {process.rank}: {type(error).__name__}: {error}")
"""


def free_port():
    with socket.socket() as free:
        free.bind(("localhost", 0))
        return str(free.getsockname()[1])


def test_an_error_on_one_process_stops_every_process():
    port = free_port()
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", AGREED], stdout=subprocess.PIPE, text=True,
            env={**ENV, "MASTER_ADDR": "localhost", "MASTER_PORT": port, "RANK": str(r),
                 "WORLD_SIZE": "2", "LOCAL_RANK": str(r)},
        )
        for r in range(2)
    ]  # fmt: skip
    outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    error = "OSError: No space left on device: checkpoints/checkpoint_epoch_00002.pyth"
    assert outputs[1] == f"rank 1: {error}\n"
    assert outputs[0] == f"rank 0: RuntimeError: process 1 failed, so this one stops too: {error}\n"


def test_slurm_variables_name_the_group():
    environ = {
        "SLURM_NTASKS": "16",
        "SLURM_PROCID": "9",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NODELIST": "gpu[007-009,012],cpu3",
    }
    assert slurm_environment(environ) == {
        "RANK": "9",
        "WORLD_SIZE": "16",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu007",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }
    assert first_host("node1,node2") == "node1" and first_host("a-b[1-2]") == "a-b1"
    assert slurm_environment({**environ, "SLURM_NTASKS": "1"}) == {}  # one task: alone
    assert slurm_environment({**environ, "MASTER_ADDR": "x"}) == {}  # torchrun inside srun
    with pytest.raises(RuntimeError, match="SLURM_PROCID"):
        slurm_environment({k: v for k, v in environ.items() if k != "SLURM_PROCID"})


# ------------------------------------------------------------------------------ divergence


def write_images(root):
    for split in ("train", "val"):
        for label in range(2):
            os.makedirs(root / split / f"class{label}", exist_ok=True)
            for n in range(2):
                pixels = np.full((20, 20, 3), 60 + 120 * label, np.uint8)
                Image.fromarray(pixels).save(root / split / f"class{label}" / f"{n}.png")


@pytest.mark.parametrize("arch", ["timesformer", "xvit", "deit_tiny_patch16_224"])
def test_divergence_is_named_in_every_family_with_ats_and_checkpoints_stay_finite(
    arch, data_dir, tmp_path
):
    overrides = {
        "MODEL.ARCH": arch,
        "SOLVER.OPTIMIZING_METHOD": "sgd",
        "SOLVER.BASE_LR": 1e30,
        "TRAIN.CHECKPOINT_ITER_PERIOD": 1,
        "MODEL.DROP_PATH_RATE": 0.0,
    }
    if arch.startswith("deit"):
        write_images(tmp_path / "images")
        overrides.update({
            "DATA.DATASET": "imagenet", "DATA.PATH_TO_DATA_DIR": tmp_path / "images",
            "DATA.TRAIN_LIST": "train", "DATA.VAL_LIST": "val", "DATA.TEST_LIST": "val",
            "MODEL.NUM_CLASSES": 2, "DATA.MEAN": "[0.485, 0.456, 0.406]",
        })  # fmt: skip
    with pytest.raises(FloatingPointError) as caught:
        run_net.main(options(data_dir, tmp_path / "run", **overrides))
    message = str(caught.value)
    assert "training diverged: the loss is nan" in message and "at epoch 1, iteration" in message
    assert "lower SOLVER.BASE_LR or set SOLVER.CLIP_GRAD" in message
    assert "scores must be finite" not in message
    newest = last_checkpoint(str(tmp_path / "run"))
    assert newest, "no checkpoint before the divergence"
    state = torch.load(newest, weights_only=True)["model_state"]
    assert all(value.isfinite().all() for value in state.values())
    # the ATS core itself still refuses non-finite scores
    with pytest.raises(ValueError, match="ATS scores must be finite"):
        sample_tokens(torch.tensor([[1.0, float("nan")]]), 2)


# --------------------------------------------------------------------- one run per folder


def folder_state(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_second_run_in_a_live_folder_is_refused_and_changes_nothing(data_dir, tmp_path):
    run = tmp_path / "run"
    assert run_net.main(options(data_dir, run, **{"SOLVER.MAX_EPOCH": 1})) == 0
    before = folder_state(run)
    with output_dir_lock(str(run)):  # a live run holds the folder
        with pytest.raises(OutputDirInUse) as caught:
            run_net.main(options(data_dir, run, **{"SOLVER.MAX_EPOCH": 2, "RNG_SEED": 3}))
        message = str(caught.value)
        assert str(run) in message
        assert f"host {socket.gethostname()}, process {os.getpid()}" in message
    assert folder_state(run) == before
    # refused for another reason (another model in this folder): config.yaml stays the old one
    with pytest.raises(ValueError, match="MODEL.EMBED_DIM 24 -> 32"):
        run_net.main(options(data_dir, run, **{"SOLVER.MAX_EPOCH": 2, "MODEL.EMBED_DIM": 32}))
    assert folder_state(run) == before


def test_a_lock_left_by_a_killed_run_does_not_block(data_dir, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from ats_video.engine.lock import output_dir_lock\n"
         f"with output_dir_lock({str(run)!r}):\n print('held', flush=True); time.sleep(600)"],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(OutputDirInUse, match=f"process {holder.pid}"):
        run_net.main(options(data_dir, run, **{"SOLVER.MAX_EPOCH": 1}))
    holder.kill()
    holder.wait()
    assert (run / "run.lock").exists()  # left behind, naming a dead process
    with output_dir_lock(str(run)):  # what the next run takes first
        assert json.loads((run / "run.lock").read_text())["pid"] == os.getpid()
    assert not (run / "run.lock").exists()
