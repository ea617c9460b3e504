"""`kwlab info MODEL`: the KernelWarehouse plan of a model, priced without building it."""

from __future__ import annotations

import argparse
import json

from kwlab.conversion import plan
from kwlab.errors import KWLabError
from kwlab.overrides import apply_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab info`."""
    parser.add_argument("model", help="timm model name, e.g. resnet18 or cifar_resnet20")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="kw.FIELD=VALUE (KWConfig field) or model.ARG=VALUE (timm argument), repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    """Print the plan as a table or as JSON."""
    tree = apply_overrides({"kw": {}, "model": {}}, args.set)
    unknown = sorted(set(tree) - {"kw", "model"})
    if unknown:
        raise KWLabError(f"--set {unknown[0]}...: expected keys under kw. or model.")
    result = plan(args.model, tree["kw"], **tree["model"])
    if args.json:
        print(json.dumps({"model": args.model, **result.to_dict()}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.model}: KernelWarehouse plan", title_justify="left")
    for column in ("warehouse", "cell", "n", "layers", "m per layer", "params"):
        table.add_column(column, justify="right" if column in ("n", "params") else "left")
    for w in result.warehouses:
        table.add_row(w.name, "x".join(map(str, w.cell_shape)), str(w.cells), str(len(w.layers)),
                      ",".join(map(str, w.mixtures)), f"{w.params:,}")
    console = Console()
    console.print(table)
    console.print(f"params {result.params:,} = warehouse {result.warehouse_params:,} + attention "
                  f"{result.attention_params:,} + other {result.other_params:,}; static layers: "
                  f"{', '.join(result.static_layers) or 'none'}")
    return 0
