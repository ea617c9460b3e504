"""Build any timm model by name (kwlab's small-image models included), with one-line errors for a bad name or a
bad argument."""

from __future__ import annotations

import re
from typing import Any

import timm
from torch import nn

from kwlab.errors import KWLabError


def timm_model(name: str, **timm_kwargs: Any) -> nn.Module:
    """`timm.create_model(name, pretrained=False, **timm_kwargs)`; an unknown name or argument is a KWLabError."""
    import kwlab.models  # noqa: F401  (registers kwlab's small-image models with timm)

    if not timm.is_model(name):
        small = ", ".join(timm.list_models("cifar_*"))
        raise KWLabError(f"model.name: {name!r} is not a timm model name (see timm.list_models(); kwlab's own: {small})")
    try:
        return timm.create_model(name, pretrained=False, **timm_kwargs)
    except TypeError as error:
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if unexpected and unexpected[1] in timm_kwargs:
            raise KWLabError(f"model.kwargs.{unexpected[1]}: timm model {name!r} takes no argument "
                             f"{unexpected[1]!r}; remove it") from None
        raise KWLabError(f"model {name!r}: {error}") from None
