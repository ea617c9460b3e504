"""Where a process sits in a data-parallel trial, and the few collective operations the recipe needs.

A trial with `resources.workers: N > 1` runs its recipe in N processes (Ray Train's TorchTrainer sets up the
process group: gloo on CPUs, nccl on GPUs). Every rank builds the same seeded model and draws the same global epoch
order; each takes its share of every global batch (`batch_size / N` samples), DDP averages the gradients, and the
sums behind every reported metric are all-reduced, so the numbers are those of the whole batch and of every
evaluated sample counted once. Rank 0 alone writes the trial directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


def _identity(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class Distributed:
    """This process's rank among `world` data-parallel workers, and how to wrap the model for them (DDP)."""

    rank: int = 0
    world: int = 1
    wrap: Callable[[nn.Module], nn.Module] = field(default=_identity, compare=False)  # e.g. Ray's prepare_model
    device: torch.device | None = None  # this worker's accelerator when the launcher assigns one

    @property
    def main(self) -> bool:
        """Whether this process writes the trial's records (rank 0)."""
        return self.rank == 0

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the workers (itself with one worker)."""
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        """Wait until every worker gets here (e.g. after rank 0 wrote a file the others read)."""
        if self.world > 1:
            dist.barrier()

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous share of a global batch of indices (all of it with one worker)."""
        return batch if self.world == 1 else batch.tensor_split(self.world)[self.rank]

    def eval_indices(self, size: int) -> torch.Tensor:
        """The samples of an evaluated split this worker scores: every `world`-th one, so each counts once."""
        return torch.arange(self.rank, size, self.world)


SINGLE = Distributed()


def from_ray_train() -> Distributed:
    """The current Ray Train worker's place: its rank, Ray's `prepare_model` (DDP) as the wrapper, and the GPU Ray
    assigned it (workers on one node may see several)."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    device = ray.train.torch.get_device()

    def wrap(model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(model, move_to_device=False)

    return Distributed(context.get_world_rank(), context.get_world_size(), wrap,
                       device if device.type == "cuda" else None)
