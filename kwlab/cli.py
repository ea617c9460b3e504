"""The `kwlab` command: one subcommand per module, each exposing `add_arguments(parser)` and `main(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kwlab.errors import KWLabError

# subcommand -> (module implementing it, one-line help); modules are imported only when their command runs
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("kwlab.commands.info", "print the KernelWarehouse plan of a model (warehouses, n, m, parameters)"),
    "train": ("kwlab.train.command", "run one trial from a YAML config"),
    "sweep": ("kwlab.sweep.command", "run a sweep spec as Ray Tune trials"),
    "validate": ("kwlab.sweep.validate", "check a sweep spec without running it"),
    "report": ("analysis.command", "write figures, tables and report.md for sweep results"),
    "bench": ("kwlab.bench", "time and measure static vs KW models in one process"),
    "power": ("analysis.power", "seeds needed per comparison, from a pilot results store"),
    "status": ("kwlab.commands.status", "where a sweep stands: counts, running trials, best so far, time left"),
    "bench-store": ("kwlab.commands.bench_store", "how the results store scales: bookkeeping, status and report times"),
    "slurm": ("kwlab.cluster.slurm", "run a sweep as a Slurm batch job: Ray across its nodes, resumed when requeued"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered; only `chosen`'s module is imported (its arguments),
    the others are listed by their help."""
    parser = argparse.ArgumentParser(prog="kwlab", description="KernelWarehouse ablation and sweep platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line on stderr and exit with code 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    try:
        return int(importlib.import_module(args.module).main(args) or 0)
    except KWLabError as error:
        print(f"kwlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kwlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`kwlab validate --schema | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
