"""KW attention: GAP -> FC -> norm -> ReLU -> FC to (n+1) logits per mixture, then a pluggable attention function.

The last logit of each mixture is the zero cell (no weights). The functions live in `kwlab.methods.kw.functions`; the
module's sizes (hidden width, nonlocal basis width) are computed by the planner and passed in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kwlab.methods.kw.functions import ATTENTION_FUNCTIONS, EPS, register_attention  # noqa: F401 (re-exported)

class BatchNorm1dAnyBatch(nn.BatchNorm1d):
    """BatchNorm1d that normalises a training batch of one sample with its running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch statistics as usual; a single sample in training mode uses the running ones instead."""
        if self.training and x.shape[0] == 1:
            # NOTE: the reference raises here (one value per channel); running statistics keep batch size 1 trainable.
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class KWAttention(nn.Module):
    """Per-layer attention alpha (B, m, n) over the n cells of a warehouse for the layer's m mixtures."""

    def __init__(
        self,
        in_channels: int,
        mixtures: int,
        cells: int,
        hidden: int,
        beta: torch.Tensor,
        *,
        function: str = "caf",
        blend: bool = True,
        layer_norm: bool = False,
        own_start: int = 0,
        own_cells: int = 0,
        num_basis: int = 0,
    ) -> None:
        super().__init__()
        self.mixtures, self.cells, self.function, self.blend = mixtures, cells, function, blend
        self.fc1 = nn.Linear(in_channels, hidden, bias=layer_norm)  # no bias when a BatchNorm follows
        self.norm = nn.LayerNorm(hidden) if layer_norm else BatchNorm1dAnyBatch(hidden)
        self.own_start, self.own_cells = own_start, own_cells
        if num_basis == 0:
            self.fc2 = nn.Linear(hidden, (cells + 1) * mixtures)
            self.basis = None
        else:  # own cells predicted directly, the other layers' cells through a low-rank basis
            self.num_basis = num_basis
            self.fc2 = nn.Linear(hidden, (own_cells + self.num_basis + 1) * mixtures, bias=False)
            self.basis = nn.Linear(self.num_basis, cells - own_cells, bias=False)
            self.basis_bias = nn.Parameter(torch.zeros(mixtures, cells + 1))
        self.register_buffer("beta", beta.float())  # (m, n+1) one-hot initial assignment
        # NOTE: a fresh kwlab layer holds tau = 1 (it computes its static-equivalent kernel); the reference's starts at
        # temp_value = 0 until its first training step sets (T - 1) / T, so only a forward before training differs
        self.register_buffer("tau", torch.ones(()))  # temperature: alpha = (1 - tau) f(z) + tau beta
        for linear in (self.fc1, self.fc2, self.basis):
            if linear is not None:
                nn.init.kaiming_normal_(linear.weight, mode="fan_out", nonlinearity="relu")
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Attention logits (B, m, n+1) from the pooled input (B, C_in); the last column is the zero cell."""
        z = self.fc2(F.relu(self.norm(self.fc1(pooled))))
        if self.basis is None:
            return z.reshape(-1, self.mixtures, self.cells + 1)
        z = z.reshape(-1, self.mixtures, self.own_cells + self.num_basis + 1)
        own, basis, zero = z.split([self.own_cells, self.num_basis, 1], dim=-1)
        others = self.basis(basis)  # (B, m, n - own)
        start = self.own_start
        return torch.cat([others[..., :start], own, others[..., start:], zero], dim=-1) + self.basis_bias

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """alpha (B, m, n): the attention function of the logits, blended toward beta, zero cell dropped."""
        alpha = ATTENTION_FUNCTIONS[self.function](self.logits(pooled))
        if self.blend:
            # NOTE: lerp computes f + tau (beta - f), the reference (1 - tau) f + tau beta: equal up to float32
            # rounding (about 1e-7 at tau 0.5), exact at tau 0 and 1
            alpha = torch.lerp(alpha, self.beta.to(alpha.dtype), self.tau.to(alpha.dtype))
        return alpha[..., :-1]
