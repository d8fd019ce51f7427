"""The DistributedDataParallel plumbing of the UNet loop: this process's rank, barriers, gathers.

Under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1) each process joins one process group
(NCCL on CUDA, else gloo) and takes the CUDA device LOCAL_RANK; without torchrun every
function here is a no-op on a world of one.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

V = TypeVar("V")


@dataclass(frozen=True)
class DistInfo:
    """This process's rank among ``world`` training processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """(rank info, this rank's device): joins the process group once when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)  # the group this call made is left before the interpreter tears down
    rank = dist.get_rank()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return DistInfo(rank, world), device


def _leave() -> None:
    """Destroy the process group at exit, as torch.distributed asks: a gloo group left to the interpreter's
    teardown can abort a rank ("terminate called without an active exception", seen in tests/test_ddp.py)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here."""
    if info.world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather_rng(g: torch.Generator, info: DistInfo) -> list[Tensor]:
    """The states of every rank's generator ``g``, by rank (all ranks take part)."""
    state = g.get_state()
    if info.world == 1:
        return [state]
    import torch.distributed as dist

    out = [torch.empty_like(state) for _ in range(info.world)]
    dist.all_gather(out, state)  # gloo gathers CPU tensors; RNG states are CPU uint8
    return out


def from_main(value: V | None, info: DistInfo) -> V | None:
    """The main rank's ``value`` on every rank (any picklable object; the other ranks pass None)."""
    if info.world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


__all__ = ["DistInfo", "init_distributed", "barrier", "gather_rng", "from_main"]
