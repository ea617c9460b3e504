"""Load a checkpoint saved by the KernelWarehouse reference code (OSVAI/KernelWarehouse `main.py`) into the matching
kwlab model: `load_reference_checkpoint(model, path)`.

How the reference's tensors map onto kwlab's (read from its modules/kernel_warehouse.py and models/*.py):
- warehouses: `warehouse_manager.weights.{i}` of shape (n, c_out, c_in, *cell kernel) becomes kwlab's flat
  `kw_warehouses.<name>.cells` (n, cell_numel). The reference numbers its warehouses in the order their first layer
  was reserved while the model was built (`reference_order`); within a warehouse both give each layer its own
  slice in module order, so cells keep their index.
- a KW layer's attention `<layer>.attention.{fc1, norm1, fc2, fc3, basis_bias}` becomes kwlab's
  `<layer>.attention.{fc1, norm, fc2, basis, basis_bias}` (basis_bias reshaped from ((n+1) m,) to (m, n+1));
  `<layer>.bias` stays; a reference KW linear wraps its layer as `<layer>.conv`. beta (the reference's `temp_bias`)
  is not saved by the reference: kwlab's own plan gives it.
- every other tensor (stem, norms, static convs, classifier, ConvNeXt's layer scale) by module name, through the
  family's name table (`reference_names`): ResNet names are timm's; MobileNetV2's are `features.{k}...`;
  ConvNeXt's are `downsample_layers.{i}`, `stages.{i}.{j}.{dwconv, pwconv1, pwconv2}`, `norm`, `head`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from kwlab.errors import KWLabError
from kwlab.methods.kw.layers import KWLayer
from kwlab.models.families import family_of
from kwlab.methods.temperature import set_temperature

# kwlab attention tensor (under <layer>.attention.) -> the reference's
ATTENTION_NAMES = {"fc1": "fc1", "norm": "norm1", "fc2": "fc2", "basis": "fc3", "basis_bias": "basis_bias"}
WAREHOUSE_PREFIX = "warehouse_manager.weights."
# timm block part -> the reference's, under features.{k}.conv (torchvision's MobileNetV2 layout) or stages.{s}.{b}
MOBILENETV2_INVERTED = {"conv_pw": "0.0", "bn1": "0.1", "conv_dw": "1.0", "bn2": "1.1", "conv_pwl": "2", "bn3": "3"}
MOBILENETV2_SEPARABLE = {"conv_dw": "0.0", "bn1": "0.1", "conv_pw": "1", "bn2": "2"}  # the expansion-1 block
CONVNEXT_BLOCK = {"": "", ".conv_dw": ".dwconv", ".norm": ".norm", ".mlp.fc1": ".pwconv1", ".mlp.fc2": ".pwconv2"}


def reference_names(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """kwlab module name -> the reference's name(s) of the same module (the first one the checkpoint has is used);
    modules missing from the table keep their name."""
    family = family_of(model)
    names: dict[str, tuple[str, ...]] = {}
    if family == "mobilenetv2":
        names.update({"conv_stem": ("features.0.0",), "bn1": ("features.0.1",),
                      # static classifier: kw_mobilenetv2.py `classifier`, mobilenetv2.py `classifier.1` (after
                      # Dropout); KW classifier: kw1d2x_mobilenetv2.py `classifier.1`
                      "classifier": ("classifier", "classifier.1")})
        index = 0
        for g, group in enumerate(model.blocks):
            for b, block in enumerate(group):
                index += 1
                parts = MOBILENETV2_INVERTED if hasattr(block, "conv_pwl") else MOBILENETV2_SEPARABLE
                names.update({f"blocks.{g}.{b}.{part}": (f"features.{index}.conv.{ref}",)
                              for part, ref in parts.items()})
        names.update({"conv_head": (f"features.{index + 1}.0",), "bn2": (f"features.{index + 1}.1",)})
    elif family == "convnext":
        names.update({"stem.0": ("downsample_layers.0.0",), "stem.1": ("downsample_layers.0.1",),
                      "head.norm": ("norm",), "head.fc": ("head",)})
        for s, stage in enumerate(model.stages):
            if s > 0:
                names.update({f"stages.{s}.downsample.{i}": (f"downsample_layers.{s}.{i}",) for i in (0, 1)})
            for b in range(len(stage.blocks)):
                names.update({f"stages.{s}.blocks.{b}{part}": (f"stages.{s}.{b}{ref}",)
                              for part, ref in CONVNEXT_BLOCK.items()})
    return names


def reference_order(model: nn.Module, layers: list[str]) -> list[str]:
    """KW layer names sorted in the order the reference model reserves them (which numbers its warehouses)."""
    family = family_of(model)
    position = {name: i for i, (name, _) in enumerate(model.named_modules())}

    def key(name: str) -> tuple[int, int]:
        if family == "resnet" and ".downsample." in name:  # _make_layer reserves a stage's downsample first
            return (1, position[name.split(".downsample.")[0]])
        if family == "convnext" and (name.startswith("stem.") or ".downsample." in name):
            return (0, position[name])  # the stem and the downsample convs are reserved before any stage
        return (1, position[name])

    return sorted(layers, key=key)


def _translate(module_name: str, names: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The reference names of a module: the longest mapped prefix of its path, the rest kept."""
    parts = module_name.split(".") if module_name else []
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in names:
            rest = ".".join(parts[cut:])
            return tuple(f"{ref}.{rest}".strip(".") if rest else ref for ref in names[prefix])
    return (module_name,)


def _read(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """The model state dict in a reference checkpoint (`{'model': ..., 'optimizer': ..., 'args': ...}`) or a bare
    state dict; a DistributedDataParallel `module.` prefix is dropped."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # main.py saves its args next to the weights
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise KWLabError(f"model.init_from_reference: {path}: no such file") from None
    except Exception as error:  # noqa: BLE001  (unpickling errors come in many types)
        raise KWLabError(f"model.init_from_reference: {path}: not a readable PyTorch checkpoint "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
        checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise KWLabError(f"model.init_from_reference: {path}: expected a state dict or a checkpoint with a "
                         f"{key!r} entry")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def convert_reference_state_dict(model: nn.Module, reference: Mapping[str, torch.Tensor],
                                 source: str = "reference checkpoint") -> dict[str, torch.Tensor]:
    """The state dict of kwlab `model` holding the tensors of a reference state dict (see the module doc); raises a
    one-line KWLabError naming the first tensor that does not fit."""
    names = reference_names(model)
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(kwlab_key: str, candidates: tuple[str, ...], shape: tuple[int, ...] | None = None) -> None:
        ref_key = next((c for c in candidates if c in reference), None)
        if ref_key is None:
            raise KWLabError(f"{source}: no tensor {candidates[0]!r} for kwlab's {kwlab_key!r}")
        tensor, target = reference[ref_key], own[kwlab_key]
        want = tuple(target.shape) if shape is None else shape
        if tuple(tensor.shape) != want and not _same_vector(tuple(tensor.shape), want):
            raise KWLabError(f"{source}: tensor {ref_key!r} has shape {tuple(tensor.shape)}; kwlab's {kwlab_key!r} "
                             f"needs {want}")
        out[kwlab_key] = tensor.reshape(target.shape).to(target.dtype)
        used.add(ref_key)

    layers = {name: m for name, m in model.named_modules() if isinstance(m, KWLayer)}
    layer_refs: dict[str, str] = {}
    for name in layers:  # a reference KW linear wraps its KW conv as `.conv`
        candidates = [c for ref in _translate(name, names) for c in (ref, f"{ref}.conv")]
        layer_refs[name] = next((c for c in candidates if f"{c}.attention.fc2.weight" in reference), candidates[0])

    # warehouses, numbered by the reference in the order their first layer was reserved
    plan = model.kw_plan if hasattr(model, "kw_plan") else None
    if plan is not None:
        warehouse_of = {layer.spec.name: layer.warehouse for layer in plan.layers}
        order = list(dict.fromkeys(warehouse_of[n] for n in reference_order(model, list(warehouse_of))))
        for index, name in enumerate(order):
            kwlab_key = f"kw_warehouses.{name.replace('.', '_')}.cells"
            ref_key = f"{WAREHOUSE_PREFIX}{index}"
            # (n, c_out, c_in, *cell kernel); a linear's cell is (c_out, c_in) here, (c_out, c_in, 1[, 1]) there
            want = (own[kwlab_key].shape[0], *model.kw_warehouses[name.replace(".", "_")].cell_shape)
            tensor = reference.get(ref_key)
            fits = tensor is None or (tuple(tensor.shape[:3]) == want[:3]
                                      and tensor.shape[3:].numel() == math.prod(want[3:]))
            if not fits:
                raise KWLabError(f"{source}: warehouse tensor {ref_key!r} has shape {tuple(tensor.shape)}; kwlab's "
                                 f"warehouse {name!r} needs {want}")
            take(kwlab_key, (ref_key,), tuple(tensor.shape) if tensor is not None else None)

    for key in own:
        if key in out:
            continue
        module_name, _, leaf = key.rpartition(".")
        layer = next((n for n in layers if key.startswith(f"{n}.")), None)
        if layer is not None:
            rest = key[len(layer) + 1:]
            if rest in ("attention.beta", "attention.tau"):  # kwlab's own: beta from the plan, tau set below
                out[key] = own[key]
                continue
            if rest.startswith("attention."):
                part = rest.split(".")[1]
                if part == "basis_bias":
                    take(key, (f"{layer_refs[layer]}.attention.basis_bias",), (math.prod(own[key].shape),))
                    continue
                rest = rest.replace(f"attention.{part}", f"attention.{ATTENTION_NAMES[part]}", 1)
            take(key, (f"{layer_refs[layer]}.{rest}",))
            continue
        take(key, tuple(f"{ref}.{leaf}" if ref else leaf for ref in _translate(module_name, names)))

    unused = [k for k in reference if k not in used]
    if unused:
        raise KWLabError(f"{source}: tensor {unused[0]!r} has no place in the kwlab model "
                         f"({len(unused)} unused; is this checkpoint of another model or KW setting?)")
    return out


def _same_vector(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """One side a vector, the other the same vector with size-1 dims (ConvNeXt's layer scale is (1, C, 1, 1) in the
    reference, (C,) in timm)."""
    return (len(a) == 1 or len(b) == 1) and [d for d in a if d != 1] == [d for d in b if d != 1]


def load_reference_checkpoint(model: nn.Module, path: str | Path, *, key: str = "model") -> nn.Module:
    """Load a checkpoint saved by the KW reference implementation into the matching kwlab `model` (built with the
    same model, budget, cell ratios and sharing, e.g. from configs/reference/*.yaml) and return it. `key`: which
    weights of a training checkpoint to read ('model', or 'model_ema' for the EMA copy).

    tau is set to 0: the reference does not save its temperature, and a loaded reference model runs at 0 (its
    attention's initial value) until a training step sets it; the recipe's schedule sets it in training."""
    state = convert_reference_state_dict(model, _read(path, key), f"reference checkpoint {path}")
    model.load_state_dict(state)
    set_temperature(model, 0.0)
    return model
