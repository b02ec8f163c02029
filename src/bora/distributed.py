"""Data parallel (torchrun / accelerate launch): one recipe on 1 or N processes, evaluation split across them.

``trainer.batch_size`` is the global batch of one optimizer step, as the paper states it (16 for Math10K), and
``trainer.grad_accum`` the accumulation steps; each process's micro-batch is what is left, ``batch_size /
(grad_accum x world size)``, so 1 GPU and 8 GPUs train the same steps on the same batches. Evaluation gives each
rank every ``world``-th example (or run of a batch's examples, where a protocol's batches are in file order) and
gathers the predictions back into their order on every rank (rank 0 writes them).

The world size and rank come from the launcher's environment (``WORLD_SIZE``, ``RANK``), which exists before the
process group does; the gather uses the group HF's Trainer / accelerate set up for training. A SLURM job of N tasks
started by submitit (``hydra/launcher=slurm-ddp``, one task per GPU, on one node or several) has no torchrun:
``join_slurm_job`` writes the same variables from submitit's job environment, so its N tasks are one data-parallel run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bora.errors import BoraError  # no torch import here: the config schema (and report/) import this module


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def join_slurm_job() -> None:
    """In a submitit SLURM job of several tasks (and no torchrun of its own), export torch's env:// variables
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``: the first node, a port drawn from
    the job id) from submitit's job environment, so that HF's Trainer sets up one process group over the job's
    tasks. Each task keeps every GPU of its node visible and takes ``LOCAL_RANK``'s."""
    if "WORLD_SIZE" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def slurm_gpus_requested() -> str | None:
    """The SLURM variable saying this job was given GPUs (``NAME=value``), or None outside such a job."""
    for name in ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_PER_NODE", "SLURM_GPUS"):
        value = os.environ.get(name, "").strip()
        if value and value not in ("0", "(null)"):
            return f"{name}={value}"
    return None


def is_main_process() -> bool:
    """Rank 0 owns the run directory: the record, predictions, adapters and W&B."""
    return rank() == 0


def per_device_batch(batch_size: int, grad_accum: int, world: int) -> int:
    """Examples per process per forward pass for a global ``batch_size`` (one line naming the fix when it does
    not divide)."""
    share, left = divmod(batch_size, grad_accum * world)
    if left or share == 0:
        raise BoraError(
            f"trainer.batch_size={batch_size} (the global batch) does not split into trainer.grad_accum="
            f"{grad_accum} x {world} processes; choose a batch size divisible by {grad_accum * world} "
            f"or another trainer.grad_accum"
        )
    return share


def shard(count: int, block: int = 1) -> list[int]:
    """The indices this rank evaluates out of ``count``: every ``world``-th run of ``block`` consecutive indices.
    ``block=1`` spreads long and short examples evenly where a set is sorted by length; ``block`` = the batch size
    keeps every batch of a file-order protocol the same examples as in one process (the same padding, so the same
    generations: a batch's composition changes a decoder's numbers)."""
    return _indices(count, block, rank(), world_size())


def _indices(count: int, block: int, source: int, world: int) -> list[int]:
    return [i for i in range(count) if (i // block) % world == source]


def gather(local: Sequence[Any], count: int, block: int = 1) -> list[Any]:
    """Every rank's ``local`` results (one per index of ``shard(count, block)``, in that order) as one list in index
    order, on every rank. One process: ``local`` itself."""
    world = world_size()
    if world == 1:
        return list(local)
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise BoraError(
            f"WORLD_SIZE={world} but no process group is initialized; launch with torchrun or "
            "accelerate launch, which set one up"
        )
    parts: list[Sequence[Any] | None] = [None] * world
    torch.distributed.all_gather_object(parts, list(local))
    ordered: list[Any] = [None] * count
    for source, part in enumerate(parts):
        for index, value in zip(_indices(count, block, source, world), part, strict=True):
            ordered[index] = value
    return ordered
