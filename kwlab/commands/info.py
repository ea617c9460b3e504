"""`kwlab info MODEL` / `kwlab info --config FILE`: a model's parameters and MACs per image under a method (and the
method's plan, e.g. KW's warehouses), priced without building it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kwlab.config import load_yaml
from kwlab.errors import KWLabError
from kwlab.overrides import apply_overrides, parse_assignment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab info`."""
    parser.add_argument("model", nargs="?", help="timm model name, e.g. resnet18 or cifar_resnet20")
    parser.add_argument("--config", help="a trial config (e.g. configs/reference/kw1x_resnet18.yaml): its model and "
                                         "method")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="method=NAME, a method setting (kw.budget=4, odconv.kernels=4, kw=null for static) or "
                             "model.ARG=VALUE (a timm argument), repeatable")
    parser.add_argument("--size", type=int, help="input height and width (default: the model's own, e.g. 224)")
    parser.add_argument("--in-chans", type=int, help="input channels (default: the model's own)")
    parser.add_argument("--num-classes", type=int, help="classes (default: the model's own, e.g. 1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _request(args: argparse.Namespace) -> tuple[str, str, Any, dict[str, Any]]:
    """(model name, method, settings, timm arguments) from the config file, the model name and --set."""
    from kwlab.train.config import ModelConfig, TrainConfig

    tree: dict[str, Any] = {}
    if args.config:
        loaded = load_yaml(args.config)
        if not isinstance(loaded, dict):
            raise KWLabError(f"{args.config}: expected a mapping of config sections at the top level")
        tree = {k: v for k, v in loaded.items() if k not in ("data",)}
    if args.model:
        tree.setdefault("model", {})["name"] = args.model
    if "name" not in tree.get("model", {}):
        raise KWLabError("give a MODEL name or --config FILE")
    config_sets, timm_args = [], {}
    for text in args.set:  # model.ARG=VALUE is a timm argument, unless ARG is a field of the model section
        key, value = parse_assignment(text)
        field = key.removeprefix("model.").split(".")[0]
        if key.startswith("model.") and field not in ModelConfig.model_fields:
            timm_args[field] = value
        else:
            config_sets.append(text)
    cfg = TrainConfig.from_dict(apply_overrides(tree, config_sets))
    extra = {"drop_path_rate": cfg.model.drop_path_rate} if cfg.model.drop_path_rate else {}
    return cfg.model.name, cfg.method, cfg.settings, {**cfg.model.kwargs, **extra, **timm_args}


def main(args: argparse.Namespace) -> int:
    """Print the price (and plan) as a table or as JSON."""
    import torch

    from kwlab.methods import METHODS, price_model
    from kwlab.models.factory import timm_model

    name, method, settings, timm_kwargs = _request(args)
    if args.num_classes is not None:
        timm_kwargs["num_classes"] = args.num_classes
    if args.in_chans is not None:
        timm_kwargs["in_chans"] = args.in_chans
    with torch.device("meta"):
        model = timm_model(name, **timm_kwargs)
    default = tuple(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))
    shape = (args.in_chans or default[0], args.size or default[1], args.size or default[2])
    price = price_model(name, method, settings, shape, **timm_kwargs)
    result = {"model": name, "method": method, "input": list(shape), "params": price.params,
              **{f"params_{k}": v for k, v in price.params_parts.items()}, "macs": price.macs,
              **{f"macs_{k}": v for k, v in price.macs_parts.items()}, **price.details}
    if args.json:
        print(json.dumps(result))
        return 0
    _print(result, METHODS.get(method).describe(settings), price.details)
    return 0


def _print(result: dict[str, Any], description: str, details: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for key, rows in details.items():
        if not (isinstance(rows, list) and rows and isinstance(rows[0], dict)):
            continue
        table = Table(title=f"{result['model']}, {description}: {key}", title_justify="left")
        for column in rows[0]:
            table.add_column(column, justify="right" if isinstance(rows[0][column], int) else "left")
        for row in rows:
            table.add_row(*(_cell(v) for v in row.values()))
        console.print(table)
    parts = ", ".join(f"{k.removeprefix('params_')} {v:,}" for k, v in result.items() if k.startswith("params_"))
    mac_parts = ", ".join(f"{k.removeprefix('macs_')} {v:,}" for k, v in result.items() if k.startswith("macs_"))
    console.print(f"{result['model']}, {description}, input {'x'.join(map(str, result['input']))}: "
                  f"params {result['params']:,} ({parts}); MACs per image {result['macs']:,} ({mac_parts})")
    static = details.get("static_layers")
    if static is not None:
        console.print(f"static layers: {', '.join(static) or 'none'}")


def _cell(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):  # numbers in full (a cell shape, m per layer); names counted
        return ",".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(len(value))
    return str(value)
