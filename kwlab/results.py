"""The results store of a sweep, and `load(path)` to read it as pandas DataFrames.

Layout of `results/<sweep name>/`:

    spec.yaml            the spec as resolved (profile and --set applied)
    manifest.json        kwlab version, git commit and dirty flag, library versions, hardware, command line
    trials/<trial id>/   one trial directory each (see kwlab.train.records), plus sweep.json (variant, seed,
                         swept values) and, for a trial that finally failed, error.json
    trials.parquet       one row per trial: ids, variant, seed, one column per swept key, parameter counts, MACs,
                         best/final metrics, status, wall time
    epochs.parquet       one row per trial and epoch: ids, variant, seed and the epoch metrics

The tables are rebuilt from the trial directories whenever a trial finishes and replaced atomically, so a reader
never sees a half-written file and a crashed runner loses nothing a trial wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kwlab.errors import KWLabError
from kwlab.files import atomic_path

TRIAL_COLUMNS = ["trial_id", "variant_id", "variant", "is_baseline", "seed", "status", "error"]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def trial_status(trial_dir: Path) -> str:
    """finished | failed | running (has epochs, no summary) | pending."""
    if (summary := _read_json(trial_dir / "summary.json")) and summary.get("status") == "finished":
        return "finished"
    if (trial_dir / "error.json").exists():
        return "failed"
    return "running" if (trial_dir / "metrics.jsonl").exists() else "pending"


def _epochs(trial_dir: Path) -> list[dict[str, Any]]:
    try:
        lines = (trial_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def collect(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the trials and epochs tables from the trial directories of a store."""
    trial_rows, epoch_rows = [], []
    for trial_dir in sorted((store / "trials").glob("*/")):
        meta = _read_json(trial_dir / "sweep.json")
        if meta is None:
            continue
        ids = {k: meta[k] for k in ("trial_id", "variant_id", "variant", "is_baseline", "seed")}
        summary = _read_json(trial_dir / "summary.json") or {}
        error = _read_json(trial_dir / "error.json") or {}
        epochs = _epochs(trial_dir)
        row = {**ids, "status": trial_status(trial_dir), "error": error.get("error"), **meta["parameters"]}
        row.update({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
        row["epochs_done"] = len(epochs)
        trial_rows.append(row)
        epoch_rows += [{**ids, **epoch} for epoch in epochs]
    trials = pd.DataFrame(trial_rows, columns=None if trial_rows else TRIAL_COLUMNS)
    return trials, pd.DataFrame(epoch_rows)


def write_tables(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild trials.parquet and epochs.parquet atomically; returns the two tables."""
    trials, epochs = collect(store)
    for name, table in (("trials.parquet", trials), ("epochs.parquet", epochs)):
        with atomic_path(store / name) as tmp:
            table.to_parquet(tmp, index=False)
    return trials, epochs


@dataclass
class Results:
    """A loaded results store."""

    path: Path
    trials: pd.DataFrame
    epochs: pd.DataFrame
    manifest: dict[str, Any]

    def trial_dir(self, trial_id: str) -> Path:
        """The directory of one trial (config, metrics, attention.npz)."""
        return self.path / "trials" / trial_id


def load(path: str | Path, refresh: bool = False) -> Results:
    """Read a results store; `refresh` rebuilds the tables from the trial directories (e.g. mid-sweep)."""
    store = Path(path)
    if not (store / "trials").is_dir():
        raise KWLabError(f"{store}: not a kwlab results store (no trials/ folder); run `kwlab sweep SPEC` first")
    if refresh or not (store / "trials.parquet").exists():
        trials, epochs = collect(store)
    else:
        trials, epochs = pd.read_parquet(store / "trials.parquet"), pd.read_parquet(store / "epochs.parquet")
    return Results(store, trials, epochs, _read_json(store / "manifest.json") or {})
