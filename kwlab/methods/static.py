"""The static model: every layer as timm builds it; the baseline every dynamic method is compared with."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from kwlab.config import Config
from kwlab.methods.pricing import static_macs
from kwlab.methods.protocol import Method, Price, register_method


@register_method("static")
class Static(Method):
    """No conversion: the model's own convolutions."""

    def convert(self, model: nn.Module, settings: Config | None) -> nn.Module:
        """Leave the model as it is."""
        return model

    def price(self, model: nn.Module, settings: Config | None, positions: Mapping[str, int]) -> Price:
        """The model's parameters and its conv and linear MACs."""
        params = sum(p.numel() for p in model.parameters())
        macs = static_macs(model, positions)
        return Price(params, macs, {"other": params}, {"conv": macs})
