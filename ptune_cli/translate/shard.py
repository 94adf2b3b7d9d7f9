"""Sharding across processes under ``accelerate launch`` and merging back in input order.

Process ``rank`` of ``world`` takes records ``rank, rank + world, …`` (round robin keeps the
shards equally long and equally mixed in length). Each shard is written to its own resumable
partial file; when all are done, rank 0 interleaves them back into the input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class ProcessContext:
    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Tear down the process group (distributed runs only)."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def process_context() -> ProcessContext:
    """This process's place under ``accelerate launch`` / torchrun (``WORLD_SIZE`` > 1), else a
    single process. Only a barrier is needed (the shards meet in files), so a gloo process
    group is used whatever the accelerator; torch is imported only when distributed."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return ProcessContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return ProcessContext(dist.get_rank(), dist.get_world_size(), dist.barrier,
                          int(os.environ.get("LOCAL_RANK", "0") or 0))


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Input positions handled by ``rank``."""
    return list(range(rank, n, world))


def merge_shards(shards: Sequence[Sequence], n: int) -> list:
    """Interleave per-rank outputs back into input order; checks every record is there once."""
    world = len(shards)
    for rank, shard in enumerate(shards):
        want = len(shard_indices(n, rank, world))
        if len(shard) != want:
            raise RuntimeError(f"shard {rank} of {world} has {len(shard)} records, expected {want}")
    return [shards[i % world][i // world] for i in range(n)]


def shard_device(device: str, ctx: ProcessContext) -> str:
    """Under several processes on one machine, ``auto``/``cuda`` means this process's GPU."""
    if ctx.world > 1 and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{ctx.local_rank % torch.cuda.device_count()}"
    return device
