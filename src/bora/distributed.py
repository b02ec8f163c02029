"""Data parallel (torchrun / accelerate launch): one recipe on 1 or N processes, evaluation split across them.

``trainer.batch_size`` is the global batch of one optimizer step, as the paper states it (16 for Math10K), and
``trainer.grad_accum`` the accumulation steps; each process's micro-batch is what is left, ``batch_size /
(grad_accum x world size)``, so 1 GPU and 8 GPUs train the same steps on the same batches. Evaluation gives each
rank every ``world``-th example and gathers the predictions back into their order on every rank (rank 0 writes them).

The world size and rank come from the launcher's environment (``WORLD_SIZE``, ``RANK``), which exists before the
process group does; the gather uses the group HF's Trainer / accelerate set up for training.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from bora.errors import BoraError  # no torch import here: the config schema (and report/) import this module


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 owns the run directory: the record, predictions, adapters and W&B."""
    return rank() == 0


def per_device_batch(batch_size: int, grad_accum: int, world: int) -> int:
    """Examples per process per forward pass for a global ``batch_size`` (one line naming the fix when it does
    not divide)."""
    share, left = divmod(batch_size, grad_accum * world)
    if left or share == 0:
        raise BoraError(f"trainer.batch_size={batch_size} (the global batch) does not split into trainer.grad_accum="
                        f"{grad_accum} x {world} processes; choose a batch size divisible by {grad_accum * world} "
                        f"or another trainer.grad_accum")
    return share


def shard(count: int) -> range:
    """The indices this rank evaluates out of ``count`` (every ``world``-th: long and short examples spread evenly
    where a set is sorted by length)."""
    return range(rank(), count, world_size())


def gather(local: Sequence[Any], count: int) -> list[Any]:
    """Every rank's ``local`` results (one per index of ``shard(count)``, in that order) as one list in index order,
    on every rank. One process: ``local`` itself."""
    world = world_size()
    if world == 1:
        return list(local)
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise BoraError(f"WORLD_SIZE={world} but no process group is initialized; launch with torchrun or "
                        "accelerate launch, which set one up")
    parts: list[Sequence[Any] | None] = [None] * world
    torch.distributed.all_gather_object(parts, list(local))
    ordered: list[Any] = [None] * count
    for source, part in enumerate(parts):
        ordered[source::world] = part
    return ordered
