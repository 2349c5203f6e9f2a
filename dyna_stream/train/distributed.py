"""Data-parallel training across processes (``torchrun --nproc_per_node=N``).

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; :func:`from_environment`
joins the process group (gloo on CPU, NCCL when training on GPUs: rank r on its node takes GPU
LOCAL_RANK). Every rank draws its own batches (rank 0 the same ones
a single-process run draws; rank r from seed + 1000·r) and DistributedDataParallel averages the
gradients, so the effective batch is N × train.batch_size. In epoch-based training (and with
sample pruning) every rank makes the same selection and visiting order from the shared seed,
takes its shard of it, and the per-window losses are gathered so the pruners stay identical.
Rank 0 alone validates and writes checkpoints. Without torchrun (WORLD_SIZE unset or 1)
nothing changes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)
RANK_SEED_STRIDE = 1000


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's batch-sampling seed."""
        return seed + RANK_SEED_STRIDE * self.rank

    def device(self, device: torch.device) -> torch.device:
        """Where this rank trains: ``device``, or with several ranks on GPUs its node-local GPU."""
        if self.active and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run forward passes through (DDP when several processes train)."""
        if not self.active:
            return model
        device = next(model.parameters()).device
        # sd/sw and the masks differ per rank and step, so some units may get no gradient
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's share of an epoch's visiting order, as DistributedSampler deals it: padded by
        repeating from the start so every rank takes the same number of steps."""
        if not self.active:
            return order
        per_rank = -(-len(order) // self.world_size)
        return np.resize(order, per_rank * self.world_size)[self.rank::self.world_size]

    def gather(self, indices: np.ndarray, losses: list[float]) -> tuple[np.ndarray, list[float]]:
        """Every rank's (window indices, losses) of this step, so that all ranks' sample pruners
        hold the same losses and so select the same windows."""
        if not self.active:
            return indices, losses
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, (indices.tolist(), list(losses)))
        return (np.array([i for part in gathered for i in part[0]], dtype=np.int64),
                [value for part in gathered for value in part[1]])

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def from_environment(*, cuda: bool = False) -> Distributed:
    """Join the process group torchrun describes (NCCL if the ranks train on GPUs, ``cuda``; gloo
    otherwise); a single process without torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank()
    if rank == 0:
        log.info("data-parallel training on %d processes (%s)", world_size, dist.get_backend())
    return Distributed(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


SINGLE_PROCESS = Distributed()
