"""`kwlab train CONFIG.yaml [--set key=value ...] [--out DIR] [--profile]`: run one trial and print one line per epoch
(with --profile, then where its time went: kwlab.train.profile)."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from kwlab import store
from kwlab.methods import METHODS
from kwlab.train.config import TrainConfig, load_config
from kwlab.train.profile import TrialProfile, print_profile
from kwlab.train.recipe import run

DEFAULT_ROOT = Path("results/train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab train`."""
    parser.add_argument("config", help="trial config YAML, e.g. configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value by dotted key, e.g. optim.lr=0.05 or kw=null (repeatable)")
    parser.add_argument("--init-from-reference", metavar="CHECKPOINT",
                        help="start from a checkpoint saved by the KernelWarehouse reference code "
                             "(sets model.init_from_reference)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"trial directory (default: {DEFAULT_ROOT}/<time>-<config hash>); "
                             "one holding a checkpoint of the same config is resumed")
    parser.add_argument("--profile", action="store_true",
                        help="print where the trial's time went (start-up, data, training, evaluation, checkpoints, "
                             "attention records) and its share of its FLOP time")


def default_out(cfg: TrainConfig) -> Path:
    """results/train/<YYYYmmdd-HHMMSS>-<config hash>."""
    return DEFAULT_ROOT / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.digest()}"


def main(args: argparse.Namespace) -> int:
    """Load the config, run the trial with a progress display, print the trial directory."""
    from rich.console import Console

    sets = [*args.set, *([f"model.init_from_reference={args.init_from_reference}"] if args.init_from_reference else [])]
    cfg = load_config(args.config, sets)
    out = args.out or default_out(cfg)
    console = Console(highlight=False)
    model = f"{cfg.model.name} {METHODS.get(cfg.method).describe(cfg.settings)}"
    trial = store.TrialDir(out)
    action = "resuming" if trial.file(store.CHECKPOINT).is_file() else "training"
    console.print(f"{action} {model} on {cfg.data.name} for {cfg.epochs} epochs -> {out}")
    profile = TrialProfile(cfg) if args.profile else None
    with profile or contextlib.nullcontext():
        for m in run(cfg, out, progress=console.is_terminal and profile is None):
            tau = "" if m["tau"] is None else f"  tau {m['tau']:.2f}"
            console.print(f"epoch {m['epoch']:>3}/{cfg.epochs}  train loss {m['train_loss']:.3f}  "
                          f"val top-1 {m['val_top1']:5.1f}%{tau}  lr {m['lr']:.3g}  {m['epoch_time_s']:.1f}s")
    summary = trial.summary() or {}
    if "test_top1" in summary:
        console.print(f"test top-1 {summary['test_top1']:.2f}% (final model, {summary['test_images']} images); "
                      f"{summary.get('test_top1_at_best', float('nan')):.2f}% with the weights of the best epoch "
                      f"({summary['best_epoch']}, by {summary['best_metric']})")
    if profile is not None:
        print_profile(profile, profile.flop_time(), console)
    print(out)
    return 0
