"""DDP plumbing for `torchrun`: process-group setup, rank helpers, a sharded infinite sampler.

Launch with
`torchrun --nproc_per_node=N $(which distill) train ...`: torchrun sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT, which `init_from_env` reads. Without them the
trainer runs as a single plain process.
"""

from __future__ import annotations

import os
from typing import Iterator

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def init_from_env() -> torch.device:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU) and return
    this process's device; a plain single-process run returns cuda:0 or cpu."""
    if "WORLD_SIZE" in os.environ and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (a no-op in a single process)."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


class InfiniteShardedSampler(torch.utils.data.Sampler):
    """Endless shuffled indices, re-shuffled each epoch, rank r taking every world-th one.

    Iteration-based training wants a stream rather than epochs; the seed is shared so all
    ranks see one permutation and disjoint shards of it. `start` skips that many indices
    of this rank's stream so that `--resume` continues the data order.
    """

    def __init__(self, size: int, seed: int = 0, start: int = 0):
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world = rank(), world_size()

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed)
        produced = 0
        while True:
            order = torch.randperm(self.size, generator=generator)
            for index in order[self.rank :: self.world].tolist():
                if produced >= self.start:
                    yield index
                produced += 1

    def __len__(self) -> int:  # pragma: no cover - infinite by design
        return 2**62
