"""`kwlab report RESULTS_DIR [RESULTS_DIR ...] [--out DIR] [--metric M] [--baseline B] [--effect PP]`: figures,
tables and report.md for sweep results."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from analysis.stats import RESAMPLES, SEED
from kwlab.errors import KWLabError, WriteError
from kwlab.storage import Storage
from kwlab.store import REPORT, Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab report`."""
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                        help="results store(s) written by `kwlab sweep`, e.g. results/cell_size; several stores "
                             "also get one combined parameters-vs-accuracy figure")
    parser.add_argument("--out", help="output folder (default: RESULTS_DIR/report; for several stores, "
                                      "report/ next to them with one subfolder per sweep)")
    parser.add_argument("--metric", help="trials column to compare (default: test_top1, the final model's test "
                                         "top-1; best_val_top1 for a store without test metrics), e.g. "
                                         "best_val_top1, final_val_loss, test_top1_at_best")
    parser.add_argument("--baseline", help="variant name or id to compare against (default: the spec's baseline)")
    parser.add_argument("--effect", type=float, metavar="PP",
                        help="also give the seeds needed to resolve a difference of this size (in the metric's "
                             "unit: percentage points for accuracies)")
    parser.add_argument("--trial", action="append", default=[], metavar="TRIAL_ID",
                        help="also draw the attention heatmaps of this single trial (repeatable)")
    parser.add_argument("--interval", choices=("t", "bootstrap"), default="t",
                        help="interval of each variant's mean (default %(default)s; differences always get the "
                             "paired t interval)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES,
                        help="bootstrap resamples, with --interval bootstrap (default %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help="bootstrap generator seed, with --interval bootstrap (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    """Write the report(s) and print where report.md is."""
    from analysis.report import write_report

    if args.resamples < 100:
        raise KWLabError(f"--resamples: expected at least 100, got {args.resamples}")
    if args.effect is not None and not (math.isfinite(args.effect) and args.effect != 0):
        raise KWLabError(f"--effect: expected a nonzero difference, got {args.effect}")
    stores = [Store(where) for where in args.results]
    for where, results in zip(args.results, stores, strict=True):
        if not results.exists():
            raise KWLabError(f"{where}: no such results store; run `kwlab sweep SPEC` first")
    remote = [results for results in stores if not results.local]
    if remote and args.out is None and len(stores) > 1:
        raise KWLabError(f"{remote[0]}: a store at a URI among several: give the report's folder with --out DIR")
    try:
        with tempfile.TemporaryDirectory() as staging:  # a store at a URI gets its report/ when it is written
            out = Path(staging) if remote and args.out is None else args.out
            report = write_report(args.results, out, metric=args.metric, baseline=args.baseline,
                                  interval=args.interval, effect=args.effect, resamples=args.resamples,
                                  seed=args.seed, heatmap_trials=tuple(args.trial), echo=print)
            if out is not args.out:
                shown = upload_report(report.parent, remote[0].storage.child(REPORT))
    except (OSError, WriteError) as error:  # a read-only store, a full disk
        cause = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else str(error)
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        raise KWLabError(f"{where}cannot write the report ({cause}); write it elsewhere with --out DIR") from None
    print(f"report written: {shown if remote and args.out is None else report}")
    return 0


def upload_report(folder: Path, target: Storage) -> str:
    """Copy a report written locally into a store at a URI (`target`: its report/ folder); its report.md's URI."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        target.upload(path, path.relative_to(folder).as_posix())
    return target.child("report.md").uri
