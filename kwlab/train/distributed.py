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
import torch.nn.functional as F
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


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch of all workers, on any backend.

    NOTE: torch's SyncBatchNorm does this on CUDA only; kwlab uses it there and this module on CPU workers (gloo).
    The statistics are all-reduced with torch.distributed.nn's differentiable all_reduce (mean first, then the
    centred second moment), so gradients flow through them as through torch's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, ...) normalised per channel over every worker's samples and positions."""
        from torch.distributed.nn.functional import all_reduce

        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *([1] * (x.dim() - 2))]
        count = all_reduce(x.new_tensor([x.numel() / x.shape[1]]))
        mean = all_reduce(x.sum(dims)) / count  # (C,)
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count  # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * count / (count - 1).clamp_min(1), momentum)  # unbiased, as torch
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def global_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm normalising over the global batch: torch's SyncBatchNorm on CUDA, kwlab's
    GlobalBatchNorm elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
            replacement = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                          module.track_running_stats)
            replacement.load_state_dict(module.state_dict())
            model.set_submodule(name, replacement.to(next(module.buffers(), torch.zeros(())).device))
    return model


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
