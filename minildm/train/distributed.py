"""Data-parallel training with PyTorch's own engine (torch.distributed + DistributedDataParallel).

`torchrun --nproc_per_node=N -m minildm train-ldm ...` starts N copies of the same script
and sets RANK, LOCAL_RANK and WORLD_SIZE in each one's environment. Each copy (a "rank")
holds a full replica of the model, draws its own minibatch, and DistributedDataParallel
averages the gradients across ranks during backward (an all-reduce), so every replica takes
the same optimizer step and the weights stay identical: one step on N ranks with batch B is
one step with batch N*B.

Backends: "nccl" between GPUs, "gloo" on CPUs (the tests run 2 gloo processes on one CPU).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistributedInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str) -> DistributedInfo:
    """Join the process group that torchrun set up (nccl on cuda, gloo on cpu).

    Without torchrun's environment variables this is a single process: rank 0 of 1.
    Returns the rank information; on cuda, also selects this rank's GPU.
    """
    if not launched_by_torchrun():
        return DistributedInfo()
    info = DistributedInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def rank_device(device: str, info: DistributedInfo) -> torch.device:
    """Each rank owns one GPU (cuda:LOCAL_RANK); on a CPU they all share it."""
    if device.startswith("cuda") and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(device)


def barrier(info: DistributedInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistributedInfo) -> None:
    """Leave the process group cleanly: every rank waits at a barrier, then destroys it.

    The barrier matters. gloo sends are asynchronous, so a rank that returns from its last
    collective may still have bytes in flight to a slower peer; destroying the group then
    tears the connection down under them, and a process that exits without destroying it
    leaves gloo's threads to die with the interpreter. Either can end in SIGABRT
    ("terminate called without an active exception") after the work itself succeeded.
    """
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
