"""Sharing ranges l: which layers draw on one warehouse. A rule maps a layer to the key of its warehouse; layers
with equal keys share. Register a new range with `@register_sharing("name")`; an integer k (neighbouring layers of
a stage, k at a time) is the `stage` rule chunked by the planner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kwlab.registry import Registry


class Placed(Protocol):
    """What a rule reads of a layer (kwlab.methods.kw.planner.LayerSpec)."""

    name: str
    stage: str
    role: str

    @property
    def family(self) -> str:
        """`dense` or `grouped`: depthwise and grouped convolutions never share cells with dense ones."""


SharingRule = Callable[[Placed], tuple[str, ...]]
SHARING_RULES: Registry[SharingRule] = Registry("sharing range", "kw.sharing")
register_sharing = SHARING_RULES.register


@register_sharing("none")
def own_warehouse(layer: Placed) -> tuple[str, ...]:
    """Each layer alone."""
    return (layer.name,)


@register_sharing("role")
def same_stage_and_role(layer: Placed) -> tuple[str, ...]:
    """The layers of one stage with the same role (e.g. a ResNet stage's conv1s); the reference's ('layer',)."""
    return (f"stage{layer.stage}", layer.role or layer.name, layer.family)


@register_sharing("stage")
def same_stage(layer: Placed) -> tuple[str, ...]:
    """The layers of one stage (dense and depthwise apart): the paper's default."""
    return (f"stage{layer.stage}", layer.family)


@register_sharing("network")
def whole_network(layer: Placed) -> tuple[str, ...]:
    """Every layer of the network (dense and depthwise apart)."""
    return ("network", layer.family)
