"""KW attention functions: a registry of functions of the logits, `(..., n+1) -> (..., n+1)` (the last column is the
zero cell). A torch-only leaf module: the config validates names against it and the attention module applies them.

Adding a function is one decorated function: `@register_attention("name")`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kwlab.registry import Registry

AttentionFunction = Callable[[torch.Tensor], torch.Tensor]
ATTENTION_FUNCTIONS: Registry[AttentionFunction] = Registry("attention function", "kw.attention")
register_attention = ATTENTION_FUNCTIONS.register
EPS = 1e-3  # the reference's epsilon in the L1 normalisation


@register_attention("caf")
def contrasting_attention(logits: torch.Tensor) -> torch.Tensor:
    """Contrasting-driven attention (CAF): z / (sum |z| + eps), signed, so attentions may be negative."""
    return logits / (logits.abs().sum(-1, keepdim=True) + EPS)


@register_attention("softmax")
def softmax_attention(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the n+1 cells: non-negative, sums to one."""
    return logits.softmax(-1)


@register_attention("sigmoid")
def sigmoid_attention(logits: torch.Tensor) -> torch.Tensor:
    """Independent sigmoid gates in (0, 1)."""
    return logits.sigmoid()


@register_attention("relu_l1")
def relu_l1_attention(logits: torch.Tensor) -> torch.Tensor:
    """max(z, 0) normalised by its sum: no negative attentions."""
    positive = logits.relu()
    return positive / (positive.sum(-1, keepdim=True) + EPS)
