"""KW attention: GAP -> FC -> norm -> ReLU -> FC to (n+1) logits per mixture, then a pluggable attention function.

The last logit of each mixture is the zero cell (no weights). The functions live in `kwlab.methods.kw.functions`; the
module's sizes (hidden width, nonlocal basis width) are computed by the planner and passed in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kwlab.methods.attention import BatchNorm1dAnyBatch
from kwlab.methods.kw.functions import ATTENTION_FUNCTIONS, EPS, register_attention  # noqa: F401 (re-exported)
from kwlab.methods.temperature import Tempered


class KWAttention(Tempered):
    """Per-layer attention alpha (B, m, n) over the n cells of a warehouse for the layer's m mixtures; its temperature
    is tau."""

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
        # set_temperature marks tau == 1 exactly (alpha = beta for every sample) with the buffer and its version
        self.tau_is_one: tuple[torch.Tensor, int] | None = None
        self.register_load_state_dict_post_hook(_forget_temperature)
        for linear in (self.fc1, self.fc2, self.basis):
            if linear is not None:
                nn.init.kaiming_normal_(linear.weight, mode="fan_out", nonlinearity="relu")
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)

    def set_temperature(self, value: float) -> None:
        """Set tau; at exactly 1 mark that alpha = beta for every sample while the buffer stays as written here (KW
        layers may then take one dense convolution, the `shared` path)."""
        self.tau.fill_(value)
        self.tau_is_one = (self.tau, self.tau._version) if float(value) == 1.0 else None

    def shares_alpha(self) -> bool:
        """Whether alpha is the same for every sample: the blend at tau = 1 exactly, known without reading the buffer.

        set_temperature(1) leaves a marker (the tau buffer and its version counter); any later write to the buffer
        (by hand, load_state_dict, an EMA) bumps the version and voids it. Under torch.compile the marker is not
        consulted (the sample-dependent paths are exact at tau = 1 too).
        """
        if torch.compiler.is_compiling():  # first: reading the marker would make the graph guard on it (a recompile)
            return False
        marker = self.tau_is_one
        if not self.blend or marker is None:
            return False
        tau, version = marker
        return tau is self.tau and tau._version == version

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


def _forget_temperature(module: nn.Module, _incompatible: object) -> None:
    """After load_state_dict tau may be anything: use the sample-dependent paths until set_temperature says."""
    module.tau_is_one = None
