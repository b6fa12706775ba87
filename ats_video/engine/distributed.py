"""Processes: one code path for one process and for many under torchrun or SLURM.

``torchrun --nproc_per_node N`` (and its multi-node flags) starts N processes and tells each
its RANK, WORLD_SIZE and LOCAL_RANK; :func:`init_process` joins them into a process group
(NCCL on GPUs, gloo on CPUs). ``srun python tools/run_net.py ...`` starts SLURM_NTASKS
processes and tells each SLURM_PROCID, SLURM_LOCALID and the node list; :func:`init_process`
forms the same group from those (:func:`slurm_environment`). A process started alone forms a
group of one over an in-process store, so the training and test code always runs the same
collectives and the same DistributedDataParallel wrapper, whatever the number of processes.

Every collective gives up after ``timeout_s`` seconds (DIST.TIMEOUT_S), and :func:`agreed`
turns an exception on one process into an exception on all of them, so that no process waits
for a collective that another one will never join.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, TypeVar

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    """This process's place in the group and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress bars and writes files."""
        return self.rank == 0


T = TypeVar("T")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``"gpu[07-09,12],cpu3"`` -> ``"gpu07"``."""
    match = re.match(r"([^,\[]+)(?:\[([^-,\]]+))?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    return match.group(1) + (match.group(2) or "")


def job_port(job_id: str) -> str:
    """A rendezvous port from a job's id ("1234" or an array task's "1234_5"), so that two
    jobs sharing a node do not collide."""
    return str(20000 + int(job_id.split("_")[0]) % 20000)


def slurm_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for a
    process that ``srun`` started as one of several tasks; empty where there is nothing to form
    (no SLURM, one task, or torchrun's variables already there).

    The master is the node list's first host; the port is MASTER_PORT if set, else
    :func:`job_port`.
    """
    if "MASTER_ADDR" in environ or int(environ.get("SLURM_NTASKS", 1)) <= 1:
        return {}
    missing = [k for k in ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_ID") if k not in environ]
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if missing or not nodelist:
        unset = ", ".join(missing) or "the node list"
        raise RuntimeError(
            f"SLURM_NTASKS is {environ['SLURM_NTASKS']} but {unset} is not set: start one task "
            "per process with srun, or one task that runs torchrun"
        )
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_NTASKS"],
        "LOCAL_RANK": environ["SLURM_LOCALID"],
        "MASTER_ADDR": first_host(nodelist),
        "MASTER_PORT": environ.get("MASTER_PORT", job_port(environ["SLURM_JOB_ID"])),
    }


def init_process(timeout_s: float = 600) -> Process:
    """Joins the process group torchrun or SLURM describes in the environment, or forms a
    group of one. Collectives give up after ``timeout_s`` seconds."""
    slurm = slurm_environment(os.environ)
    environ = {**os.environ, **slurm}  # os.environ itself is left as it is
    rank = int(environ.get("RANK", 0))
    world_size = int(environ.get("WORLD_SIZE", 1))
    local_rank = int(environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        # a task that SLURM gave one GPU of its own sees it as device 0
        count = torch.cuda.device_count()
        if local_rank >= count > 1:
            raise RuntimeError(
                f"local process {local_rank} has no GPU of its own: {count} GPUs visible; start "
                "at most one process per GPU"
            )
        device = torch.device("cuda", local_rank if count > 1 else 0)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if "MASTER_ADDR" in environ:  # started by srun (rank 0 serves the rendezvous) or torchrun
        where = f"tcp://{slurm['MASTER_ADDR']}:{slurm['MASTER_PORT']}" if slurm else "env://"
        dist.init_process_group(
            backend, init_method=where, rank=rank, world_size=world_size, timeout=timeout
        )
    else:
        dist.init_process_group(
            backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
        )
    return Process(rank=rank, world_size=world_size, device=device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over all processes in place ("sum" or "max"), and returned."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def all_gather(obj: Any) -> List[Any]:
    """Every process's ``obj`` (anything picklable), in rank order."""
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj``, on every process."""
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def agreed(step: Callable[[], T]) -> T:
    """Runs ``step`` on every process and returns its result where no process failed; where
    one did, every process raises (the failed ones their own exception), so none is left
    waiting in a later collective. Also a barrier."""
    error = None
    try:
        result = step()
    except Exception as caught:  # noqa: BLE001 (re-raised below, after telling the others)
        error = caught
    failures = [
        (rank, text)
        for rank, text in enumerate(all_gather(error and f"{type(error).__name__}: {error}"))
        if text is not None
    ]
    if error is not None:
        raise error
    if failures:
        rank, text = failures[0]
        raise RuntimeError(f"process {rank} failed, so this one stops too: {text}")
    return result
