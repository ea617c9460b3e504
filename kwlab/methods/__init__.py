"""Convolution methods behind one protocol (`kwlab.methods.protocol`): `static`, `kw` (KernelWarehouse) and the
dynamic convolutions it generalises; users add their own with `@register_method`.

`build_model` and `price_model` are the two entry points the recipe, the sweep, `kwlab info` and `kwlab bench` use.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn

from kwlab.config import Config
from kwlab.methods.pricing import layer_positions
from kwlab.methods.protocol import METHODS, MeanRecorder, Method, Price, Recorder, register_method
from kwlab.models.factory import timm_model

# importing the built-in methods registers them
from kwlab.methods import static  # noqa: E402,F401  isort: skip
from kwlab.methods.kw import method as _kw  # noqa: E402,F401  isort: skip
from kwlab.methods import condconv, dyconv, odconv  # noqa: E402,F401  isort: skip


def settings_of(method: str, settings: Config | dict[str, Any] | None) -> Config | None:
    """A method's settings as its typed config section (defaults when None); None for a method without one."""
    model = METHODS.get(method).settings
    if model is None:
        return None
    return model.from_dict(settings if settings is not None else {})


def build_model(name: str, method: str = "static", settings: Config | dict[str, Any] | None = None,
                init: str = "timm", **timm_kwargs: Any) -> nn.Module:
    """A fresh timm model `name` (kwlab's small models included) converted by `method` with its settings; `init`
    'timm' keeps timm's initialisation (and the converter's: KW cells copy the static weights where b >= 1),
    'reference' initialises the model like the KW reference code (see kwlab.models.init)."""
    from kwlab.errors import KWLabError
    from kwlab.models.init import init_like_reference, reset_dynamic_like_reference

    if init not in ("timm", "reference"):
        raise KWLabError(f"model.init: {init!r} is not one of 'reference', 'timm'")
    chosen = METHODS.get(method)
    model = timm_model(name, **timm_kwargs)
    if init == "reference":  # the static layers first: a conversion that copies weights copies these
        init_like_reference(model, kernel_warehouse=chosen.reference_model_files == "kw")
    model = chosen.convert(model, settings_of(method, settings))
    if init == "reference":  # then what the method built, e.g. KW cells per own slice (the copies are overwritten)
        reset_dynamic_like_reference(model)
    return model


def path_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of `model` that choose a path of the mixing engine (KW layers, dynamic convolutions, a plugin's
    own): those with a `path` and a `path_for`."""
    return [m for m in model.modules() if hasattr(m, "path") and callable(getattr(m, "path_for", None))]


def set_paths(model: nn.Module, path: str) -> None:
    """Set how every such layer picks its path: 'auto' (the cost model), 'measured' (timed once per layer shape) or
    one of the engine's paths forced (mixing.PATHS)."""
    from kwlab.methods.mixing import PATHS

    if path not in PATHS:
        raise ValueError(f"path {path!r} is not one of {PATHS}")
    for layer in path_layers(model):
        layer.path = path


def training_paths(model: nn.Module) -> dict[str, int]:
    """How many of `model`'s path-choosing layers took each path in their last forward under autograd (a training
    step)."""
    taken = Counter(getattr(layer, "training_path", None) for layer in path_layers(model))
    taken.pop(None, None)
    return dict(sorted(taken.items()))


def price_model(name: str, method: str, settings: Config | dict[str, Any] | None, input_shape: tuple[int, ...],
                **timm_kwargs: Any) -> Price:
    """Parameters and MACs per image of timm model `name` under `method`, from a meta-device build (nothing is
    allocated); `input_shape` is one image's (C, H, W)."""
    with torch.device("meta"):
        model = timm_model(name, **timm_kwargs)
    positions = layer_positions(model, input_shape)
    return METHODS.get(method).price(model, settings_of(method, settings), positions)


__all__ = ["METHODS", "MeanRecorder", "Method", "Price", "Recorder", "build_model", "price_model", "register_method",
           "settings_of"]
