"""Distributed data-parallel training under torchrun: who this process is, and its share of each batch.

`torchrun --nproc_per_node N -m engine train ...` (or across nodes with --nnodes/--rdzv-endpoint) starts N
processes with RANK, WORLD_SIZE and LOCAL_RANK set; `DistributedContext.from_environment` joins them in one
process group (gloo on CPU, nccl on CUDA, each rank on GPU LOCAL_RANK). Without torchrun it is the one-process
context and nothing changes.

`--batch-size` stays the global batch: each epoch's seeded permutation is cut into the same global batches as
a single-process run, and rank r trains on its contiguous part of every batch (`rank_batches`). Its loss is
weighted by (its items x world size / batch items), so that DDP's gradient average equals the gradient of the
batch's mean loss even when a short last batch does not split evenly (a rank without items there runs one
item with weight 0). Only rank 0 writes checkpoints, logs and plots.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from engine.errors import UserError

COLLECTIVE_TIMEOUT = timedelta(hours=2)  # ranks wait this long for rank 0 (validation runs on rank 0 only)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and plots."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str = "auto") -> DistributedContext:
        """The context torchrun's environment describes; joins (or reuses) the process group when WORLD_SIZE > 1.
        Backend: nccl when the ranks train on CUDA (`device` auto with a GPU, or cuda), else gloo."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        ctx = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            cuda = ctx.uses_cuda(device)
            if cuda:
                torch.cuda.set_device(ctx.local_rank)
            dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
        return ctx

    def uses_cuda(self, device: str) -> bool:
        return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())

    def device(self, device: str) -> str:
        """The device name for this rank: CUDA ranks use GPU LOCAL_RANK of their machine."""
        if self.enabled and self.uses_cuda(device):
            if not torch.cuda.is_available():
                raise UserError(f"--device {device}: no CUDA GPU is available; use --device cpu")
            return f"cuda:{self.local_rank}"
        return device

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of `values` (a float tensor; a copy in one process)."""
        if not self.enabled:
            return values.detach().clone()
        total = values.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def gather(self, value: Any) -> list[Any]:
        """`value` of every rank, by rank (picklable objects; [value] in one process)."""
        if not self.enabled:
            return [value]
        found: list[Any] = [None] * self.world_size
        dist.all_gather_object(found, value)
        return found

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def rank_batches(order: list[int], batch_size: int, start_batch: int, rank: int = 0,
                 world_size: int = 1) -> tuple[list[list[int]], list[float]]:
    """This rank's items of each global batch `order[k*B:(k+1)*B]` from batch `start_batch` on, and the weight
    of its loss in each: (items, weights). Batch items are split into `world_size` contiguous parts whose
    sizes differ by at most one; weight = part size x world size / batch size (1.0 in one process). A rank
    whose part is empty gets the batch's first item with weight 0 (every rank must run each step)."""
    batches, weights = [], []
    for k in range(start_batch, math.ceil(len(order) / batch_size)):
        batch = order[k * batch_size:(k + 1) * batch_size]
        base, extra = divmod(len(batch), world_size)
        start = rank * base + min(rank, extra)
        part = batch[start:start + base + (rank < extra)]
        weights.append(len(part) * world_size / len(batch))
        batches.append(part or batch[:1])
    return batches, weights


def wrap(model: torch.nn.Module, ctx: DistributedContext, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when the job has several ranks (parameters broadcast from rank 0)."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
