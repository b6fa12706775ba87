"""Processes: one code path for one process and for many under torchrun.

``torchrun --nproc_per_node N`` (and its multi-node flags) starts N processes and tells each
its RANK, WORLD_SIZE and LOCAL_RANK; :func:`init_process` joins them into a process group
(NCCL on GPUs, gloo on CPUs). A process started without torchrun forms a group of one over an
in-process store, so the training and test code always runs the same collectives and the same
DistributedDataParallel wrapper, whatever the number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List

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


def init_process() -> Process:
    """Joins the process group torchrun describes in the environment, or forms a group of one."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if "MASTER_ADDR" in os.environ:  # started by torchrun
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
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
