"""One cohort over several processes (``torchrun``): each rank its own patients, rank 0 writes the report.

Under ``torchrun --nproc_per_node=N`` (or across machines with its rendezvous arguments
``--nnodes``, ``--node_rank``, ``--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT``) every process sees
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``. :meth:`CohortRanks.from_environment` joins the process group
(``gloo`` on CPU, ``nccl`` with CUDA) when ``WORLD_SIZE > 1`` and is a no-op otherwise.

* :meth:`CohortRanks.shard`: MONAI's ``DistributedSampler`` (``shuffle=False, even_divisible=False``),
  as the bundles' ``multi_gpu_*.json`` configs use it: every patient goes to exactly one rank
  (rank ``r`` of ``N`` gets patients ``r, r+N, ...``), none twice;
* :meth:`CohortRanks.on_main`: run a step on rank 0 only (take the folder's lock, write the model
  record, check the folder), the others wait and raise the same error when it fails, so no rank
  hangs on a failed start;
* :meth:`CohortRanks.gather`: every rank's per-patient rows to every rank, in cohort order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["CohortRanks"]

T = TypeVar("T")


@dataclass
class CohortRanks:
    """This process's place among the processes that share one cohort run."""

    rank: int = 0
    world_size: int = 1
    started_group: bool = False

    @classmethod
    def from_environment(cls) -> CohortRanks:
        """Single process unless ``WORLD_SIZE > 1`` (set by ``torchrun``); joins the process group then."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1 and not (dist.is_available() and dist.is_initialized()):
            return cls()
        started = False
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
            started = True
        return cls(dist.get_rank(), dist.get_world_size(), started)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's items (all of them in a single process)."""
        if not self.distributed:
            return list(items)
        from monai.data import DistributedSampler

        sampler = DistributedSampler(list(items), even_divisible=False, num_replicas=self.world_size,
                                     rank=self.rank, shuffle=False)
        return [items[i] for i in sampler]

    def on_main(self, step: Callable[[], Any]) -> Any:
        """Run ``step`` on rank 0; other ranks wait, and raise ``ValueError`` with rank 0's error if it failed."""
        if not self.distributed:
            return step()
        error: list[str | None] = [None]
        result = None
        if self.is_main:
            try:
                result = step()
            except Exception as exc:
                error[0] = f"{type(exc).__name__}: {exc}"
                dist.broadcast_object_list(error, src=0)
                raise
        dist.broadcast_object_list(error, src=0)
        if error[0] is not None:
            raise ValueError(f"rank 0 could not start the run ({error[0]})")
        return result

    def gather(self, rows: list[T], key: Callable[[T], Any], order: Sequence[Any]) -> list[T]:
        """Every rank's ``rows`` on every rank, sorted by the position of ``key(row)`` in ``order``."""
        parts = [rows]
        if self.distributed:
            parts = [[] for _ in range(self.world_size)]
            dist.all_gather_object(parts, rows)
        position = {k: i for i, k in enumerate(order)}
        merged = [row for part in parts for row in part]
        return sorted(merged, key=lambda row: position.get(key(row), len(position)))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this object joined it."""
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()
