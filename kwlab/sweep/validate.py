"""`kwlab validate SPEC`: check a sweep spec (schema, base config, every variant, constraints) without training."""

from __future__ import annotations

import argparse

from kwlab.sweep.command import Limits, add_size_argument, plan_sweep
from kwlab.sweep.expand import count_line
from kwlab.sweep.spec import schema_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab validate`."""
    parser.add_argument("spec", nargs="?", help="sweep spec YAML")
    parser.add_argument("--profile", help="profile of the spec to check (default: 'default' if defined)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema of sweep specs and exit")
    add_size_argument(parser)


def main(args: argparse.Namespace) -> int:
    """Validate and print a one-line verdict."""
    if args.schema:
        print(schema_json())
        return 0
    if not args.spec:
        raise SystemExit("kwlab validate: give a SPEC or --schema")
    plan = plan_sweep(args.spec, args.profile, args.set, Limits.of(args))
    print(f"{args.spec}: ok: {plan.spec.method} sweep {plan.spec.name!r}, {count_line(plan.trials)}")
    return 0
