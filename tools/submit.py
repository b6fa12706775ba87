"""Submits tools/run_net.py to SLURM with submitit (https://github.com/facebookincubator/submitit),
requeued when preempted or out of time, as TimeSformer's and PySlowFast's users submit.

    python tools/submit.py --cfg configs/Kinetics/TimeSformer_divST_8x32_224_ATS.yaml \\
        --nodes 2 --gpus-per-node 8 --partition gpu --time 4320 --job-name tsf_ats \\
        DATA.PATH_TO_DATA_DIR /data/k400 OUTPUT_DIR /shared/runs/tsf_ats

One process per GPU (--gpus-per-node tasks on each of --nodes nodes) joined into one DDP group.
It prints the job id and where its logs are (--folder, default OUTPUT_DIR/submitit/JOB_ID).

What happens on preemption or at the time limit: SLURM sends SIGTERM (preemption) or submitit's
SIGUSR2 (--signal-delay seconds before the time limit); the run finishes its iteration, writes a
checkpoint of it and returns exit status 3; then submitit requeues the job (``scontrol requeue``),
which starts again, resumes mid-epoch from that checkpoint (TRAIN.AUTO_RESUME) and goes on.
submitit gives up after --max-timeouts requeues for the time limit (preemptions do not count).

``--cluster local`` runs the job on this machine through submitit's local executor, signals and
requeues included, to try it without SLURM.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import importlib.util
import os
import signal
from pathlib import Path

import submitit

from ats_video.config import load_config
from ats_video.engine.distributed import job_port
from ats_video.engine.preemption import REQUEUE_EXIT_CODE, STOP_SIGNALS

RUN_NET = Path(__file__).resolve().parent / "run_net.py"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", dest="cfg_file", default="", help="YAML config file")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=8, help="also the processes per node")
    parser.add_argument("--cpus-per-task", type=int, default=10, help="CPUs of each process")
    parser.add_argument("--mem-gb", type=int, default=0, help="memory per node; 0: SLURM's default")
    parser.add_argument("--partition", default="", help="SLURM partition")
    parser.add_argument("--time", type=int, default=4320, help="time limit in minutes")
    parser.add_argument("--job-name", default="ats_video")
    parser.add_argument("--signal-delay", type=int, default=120, help="seconds before the time "
                        "limit that SIGUSR2 asks the run to checkpoint and requeue")  # fmt: skip
    parser.add_argument("--max-timeouts", type=int, default=10, help="requeues for the time limit")
    parser.add_argument("--folder", default="", help="submitit's logs (default: "
                        "OUTPUT_DIR/submitit/%%j, %%j the job id)")  # fmt: skip
    parser.add_argument("--cluster", default=None, choices=["slurm", "local"],
                        help="default: SLURM where sbatch is found, else local")  # fmt: skip
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs for the config")
    return parser.parse_args(argv)


class Training(submitit.helpers.Checkpointable):
    """The job: tools/run_net.py in this process, with submitit's preemption signal among those
    that stop training after the iteration. Requeued as it is (``checkpoint`` resubmits the
    same call): the run itself continues from OUTPUT_DIR."""

    def __init__(self, argv: list) -> None:
        self.argv = argv

    def __call__(self) -> int:
        job = submitit.JobEnvironment()
        if job.num_tasks > 1:  # torchrun's variables, from submitit's view of SLURM (or local)
            os.environ.update(
                RANK=str(job.global_rank),
                WORLD_SIZE=str(job.num_tasks),
                LOCAL_RANK=str(job.local_rank),
                MASTER_ADDR=job.hostnames[0],
                MASTER_PORT=os.environ.get("MASTER_PORT", job_port(job.job_id)),
            )
        spec = importlib.util.spec_from_file_location("run_net", RUN_NET)
        run_net = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run_net)
        requeue = signal.Signals["SIG" + job.USR_SIG]
        status = run_net.main(self.argv, stop_signals=(*STOP_SIGNALS, requeue))
        if status == REQUEUE_EXIT_CODE:
            # submitit's own handler is back in place: it calls checkpoint() and requeues
            signal.raise_signal(requeue)
        return status


def main(argv=None) -> submitit.Job:
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)  # a bad key fails here, not in the queue
    output_dir = os.path.abspath(cfg.OUTPUT_DIR)
    run_argv = (["--cfg", os.path.abspath(args.cfg_file)] if args.cfg_file else []) + [
        *args.opts,
        "OUTPUT_DIR",
        output_dir,
    ]
    folder = args.folder or os.path.join(output_dir, "submitit", "%j")
    executor = submitit.AutoExecutor(
        folder=folder,
        cluster=args.cluster,
        slurm_max_num_timeout=args.max_timeouts,
        local_max_num_timeout=args.max_timeouts,
    )
    tasks = max(args.gpus_per_node, 1)
    executor.update_parameters(
        name=args.job_name,
        nodes=args.nodes,
        tasks_per_node=tasks,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        timeout_min=args.time,
        slurm_signal_delay_s=args.signal_delay,
        # one failed process ends the others at once instead of at the collective timeout
        slurm_srun_args=["--kill-on-bad-exit=1"],
        **({"mem_gb": args.mem_gb} if args.mem_gb else {}),
        **({"slurm_partition": args.partition} if args.partition else {}),
    )
    job = executor.submit(Training(run_argv))
    shape = f"{args.nodes} node(s) x {tasks} process(es)"
    print(f"submitted job {job.job_id} ({shape}): {args.job_name}")
    print(f"logs: {job.paths.stdout} and {job.paths.stderr}")
    print(f"run: {output_dir} (log.txt, checkpoints/)")
    return job


if __name__ == "__main__":
    main()
