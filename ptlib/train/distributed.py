"""Distributed data parallel through ``torchrun``: gloo on CPU, NCCL on GPU.

``torchrun --nproc-per-node N -m ptlib.cli train ...`` sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them. Without
them everything runs in one process and these helpers do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and shows progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group that ``torchrun`` describes, if any.

    Args:
        device: The device type decides the backend: NCCL for CUDA, gloo otherwise.

    Returns:
        This process's rank, local rank and the world size.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size)


def all_reduce_sum(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (identity in a single process)."""
    if not env.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_flag(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (for stop signals)."""
    if not env.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def cleanup_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
