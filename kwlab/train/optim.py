"""Parameter groups, optimizer and the per-iteration learning-rate schedule of the trial recipe.

Weight decay, decided per kind of parameter:
- no decay: norm weights and biases, every bias and every other 1-D parameter (timm's convention, and the
  reference's `optim_factory.get_parameter_groups`: `ndim == 1 or name.endswith(".bias")`);
- decay: conv and linear weights; the warehouse cells, which are the convolution weights cut into cells (the
  reference's warehouse `weights` are >= 2-D and so decayed); and the KW attention's linear weights (fc1, fc2, basis),
  which the reference decays as well since they are 2-D. kwlab follows the reference on all three.
"""

from __future__ import annotations

from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.optim import SGD, AdamW, Optimizer

from kwlab.train.config import OptimConfig

# NOTE: kwlab stores the nonlocal attention's learned bias as a 2-D (m, n+1) tensor where the reference has a 1-D
# one; it is a bias, so it is excluded by name to keep the reference's (undecayed) treatment.
NO_DECAY_PATTERNS = ("*basis_bias",)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: decayed weights (convs, linears, warehouse cells, attention) and undecayed biases/norms."""
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=NO_DECAY_PATTERNS)


def scaled_lr(cfg: OptimConfig, batch_size: int) -> float:
    """The peak learning rate at `batch_size`: `lr` as given, or scaled linearly from `reference_batch` (the batch
    the lr was tuned at, e.g. the reference's 4e-3 at 4096) to the global batch used."""
    return cfg.lr if cfg.reference_batch is None else cfg.lr * batch_size / cfg.reference_batch


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> Optimizer:
    """SGD (momentum, optionally Nesterov) or AdamW (eps `cfg.eps`) over `param_groups`, peaking at `lr`."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999), eps=cfg.eps)


def build_scheduler(
    optimizer: Optimizer, cfg: OptimConfig, steps_per_epoch: int, total_steps: int
) -> CosineLRScheduler:
    """Linear warm-up from 0 over `warmup_epochs`, then cosine to `min_lr` at the last step; call
    `step_update(k)` before the k-th update (k = 1..total_steps)."""
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
    return CosineLRScheduler(
        optimizer, t_initial=total_steps - warmup, lr_min=cfg.min_lr, warmup_t=warmup, warmup_lr_init=0.0,
        warmup_prefix=True, t_in_epochs=False,
    )
