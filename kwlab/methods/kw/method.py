"""KernelWarehouse as a kwlab method (Li & Yao, ICML 2024): the adapter between the protocol and kwlab.methods.kw."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import nn

from fractions import Fraction
from typing import Any

from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.converter import convert, plan
from kwlab.methods.kw.planner import assembly_macs, attention_macs
from kwlab.methods.mixing import Geometry, floor_macs
from kwlab.methods.mixing.roofline import LayerWork
from kwlab.methods.pricing import input_elements, static_macs
from kwlab.methods.protocol import AttentionAxes, ComparedSetting, MeanRecorder, Method, Price, Schedule, register_method
from kwlab.methods.temperature import LinearAnneal


@register_method("kw")
class KernelWarehouse(Method):
    """Kernels mixed per sample from warehouses of cells shared across layers; settings: the `kw:` section."""

    settings = KWConfig
    attention_axes = AttentionAxes(sentence="per warehouse (rows: the mixtures of its layers, lines between layers; "
                                            "columns: the warehouse's cells)")
    compared = ComparedSetting("attention", "caf", ("init",))  # the paper's attention-function ablation
    top_level_keys = {"temperature": "temperature"}  # tau's section, at the top level before kw.temperature
    reference_model_files = "kw"

    def convert(self, model: nn.Module, settings: KWConfig | None) -> nn.Module:
        """kwlab.convert: warehouses planned by the layout and the sharing range, layers replaced in place."""
        return convert(model, settings)

    def price(self, model: nn.Module, settings: KWConfig | None, positions: Mapping[str, int]) -> Price:
        """The plan's parameters; MACs = the static convs + every KW layer's attention + its assembly (n x K); the
        floor takes each layer's cheapest exact algorithm (`mixing.floor_macs`: assembly, or mixing the input)."""
        kw_plan = plan(model, settings)
        warehouses = {w.name: w for w in kw_plan.warehouses}
        attention = mixing = saved = 0
        work = []
        for layer in kw_plan.layers:
            warehouse, spec = warehouses[layer.warehouse], layer.spec
            n = warehouse.cells
            layer_attention = attention_macs(spec.in_channels, layer.mixtures, n, layer.own_cells, layer.hidden,
                                             (settings or KWConfig()).nonlocal_basis_ratio)
            attention += layer_attention
            assembly = assembly_macs(n, math.prod(spec.weight_shape))
            mixing += assembly
            geometry = Geometry.of(spec.in_channels, spec.out_channels, spec.groups, spec.kernel_size,
                                   warehouse.cell_shape)
            run = positions.get(spec.name, 0)
            saved += run * geometry.kernel_numel + assembly - floor_macs(geometry, run, n)
            if run:
                work.append(LayerWork(geometry, run, input_elements(model.get_submodule(spec.name), run), n, n,
                                      n * math.prod(warehouse.cell_shape), layer_attention))
        conv = static_macs(model, positions)
        parts = {"warehouse": kw_plan.warehouse_params, "attention": kw_plan.attention_params,
                 "other": kw_plan.other_params}
        details = {k: v for k, v in kw_plan.to_dict().items() if k in ("warehouses", "static_layers")}
        macs = conv + attention + mixing
        return Price(kw_plan.params, macs, parts, {"conv": conv, "attention": attention, "mixing": mixing}, details,
                     floor=macs - saved, layers=tuple(work))

    def recorder(self, model: nn.Module) -> MeanRecorder:
        """Mean attention alpha per warehouse: rows are its layers' mixtures in plan order, columns its n cells."""
        return MeanRecorder({w.name: [(name, model.get_submodule(name).attention) for name in w.layers]
                             for w in model.kw_plan.warehouses})

    def schedule(self, settings: KWConfig | None, steps_per_epoch: int, total_steps: int) -> Schedule:
        """tau falls linearly from `kw.temperature.start` to 0 over the anneal's length (see TemperatureConfig)."""
        temperature = (settings or KWConfig()).temperature
        return LinearAnneal(temperature.steps(steps_per_epoch, total_steps), temperature.start)

    def bench_settings(self, token: str) -> dict[str, Any] | None:
        """A budget such as '1/4x', '1x' or '4x' (sharing stage; budgets below 1 cut cells of ratio 1/2, as the
        reference's 1/4x and 1/2x models do); None for any other token."""
        if not token.endswith("x"):
            return None
        try:
            budget = Fraction(token.removesuffix("x"))
        except (ValueError, ZeroDivisionError):
            return None
        if budget <= 0:
            return None
        settings: dict[str, Any] = {"budget": str(budget)}
        if budget < 1:
            settings.update(cell_in_ratio=0.5, cell_out_ratio=0.5)
        return settings

    def describe(self, settings: KWConfig | None) -> str:
        """'KW 1x stage'."""
        kw = settings or KWConfig()
        return f"KW {kw.budget:g}x {kw.sharing}"
