"""kwlab: an ablation and sweep platform for KernelWarehouse dynamic convolution (Li & Yao, ICML 2024).

The public API below is imported on first use (PEP 562), so `kwlab status` and the store's readers start without
loading torch."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
# public name -> (module, attribute)
_PUBLIC = {
    "METHODS": ("kwlab.methods", "METHODS"), "build_model": ("kwlab.methods", "build_model"),
    "price_model": ("kwlab.methods", "price_model"), "register_method": ("kwlab.methods", "register_method"),
    "KWConfig": ("kwlab.methods.kw.config", "KWConfig"), "convert": ("kwlab.methods.kw.converter", "convert"),
    "create_model": ("kwlab.methods.kw.converter", "create_model"), "plan": ("kwlab.methods.kw.converter", "plan"),
    "ATTENTION_FUNCTIONS": ("kwlab.methods.kw.functions", "ATTENTION_FUNCTIONS"),
    "register_attention": ("kwlab.methods.kw.functions", "register_attention"),
    "KWConv1d": ("kwlab.methods.kw.layers", "KWConv1d"), "KWConv2d": ("kwlab.methods.kw.layers", "KWConv2d"),
    "KWConv3d": ("kwlab.methods.kw.layers", "KWConv3d"), "KWLinear": ("kwlab.methods.kw.layers", "KWLinear"),
    "load_reference_checkpoint": ("kwlab.methods.kw.reference_checkpoint", "load_reference_checkpoint"),
    "TemperatureSchedule": ("kwlab.methods.temperature", "LinearAnneal"),
    "set_temperature": ("kwlab.methods.temperature", "set_temperature"),
    "Warehouse": ("kwlab.methods.kw.warehouse", "Warehouse"),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'kwlab' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
