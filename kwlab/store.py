"""The results format. This module alone knows the layout of a results folder and of each trial directory: the file
names, the summary keys, the trial statuses, the typed tables and the runner's lock. The runner, the recipe,
`kwlab.results.load`, `analysis/` and the tests all go through it.

A results folder, `results/<sweep name>/`:

    spec.yaml            the spec as resolved (profile and --set applied)
    manifest.json        kwlab version, git commit and dirty flag, library versions, hardware, command line
    runner.lock          while a runner works on the folder: its host, pid and start time (see `Lock`)
    optuna.db            the sweep as an Optuna study (SQLite), for optuna-dashboard (see kwlab.tracking)
    trials/<trial id>/   one trial directory each (below)
    trials.parquet       one row per trial: ids, variant, seed, status, one column per swept key (typed, see
                         `write_tables`), price (parameters, MACs), best/final of every metric, test metrics
    epochs.parquet       one row per trial and epoch: ids, variant, seed and the epoch's metrics
    slurm/               `kwlab slurm`'s batch script (sweep.sh) and its jobs' logs (<job id>.out, <job id>.ray.log)

A trial directory:

    config.yaml      the resolved trial config
    metrics.jsonl    one JSON object per finished epoch (keys: see kwlab.train.recipe)
    checkpoint.pt    the latest finished epoch, to resume from
    best.pt          the model weights at the best validation epoch (when the recipe keeps them)
    attention.npz    per-layer attention (routing) statistics of the methods that have them (see Method.recorder)
    summary.json     written when the trial finishes (SUMMARY_KEYS)
    sweep.json       the sweep's view of the trial: ids, variant, seed, swept values, price
    log.txt          the trial's output when a sweep runs it
    error.json       a failed trial's one-line error
    stopped.json     a trial the scheduler stopped early: its last epoch and why
    tensorboard/     the trial's TensorBoard event files (one run, named by variant and seed)
    mlflow.json      the id of the trial's MLflow run, when the sweep logs to MLflow

Statuses (`TrialDir.status`): finished (summary.json says so, and no record holds a non-finite metric), stopped
(stopped.json), failed (error.json, or such a non-finite record: diverged), running (some epochs recorded) and
pending. Every file is written durably (kwlab.files); one torn anyway by a crash reads as absent, and the torn end of
metrics.jsonl is dropped with a warning.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kwlab.config import dump_yaml, load_yaml
from kwlab.errors import KWLabError, warn
from kwlab.files import atomic_path, write_text, writing

# the results folder
SPEC, MANIFEST, LOCK, TRIALS, TRIALS_TABLE, EPOCHS_TABLE = (
    "spec.yaml", "manifest.json", "runner.lock", "trials", "trials.parquet", "epochs.parquet")
# a trial directory
CONFIG, METRICS, CHECKPOINT, BEST, ATTENTION, SUMMARY, SWEEP, LOG, ERROR, STOPPED = (
    "config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "attention.npz", "summary.json", "sweep.json",
    "log.txt", "error.json", "stopped.json")
# what kwlab.tracking writes for the tools that watch a sweep
OPTUNA_DB, TENSORBOARD, MLFLOW_RUN = "optuna.db", "tensorboard", "mlflow.json"
# what kwlab slurm writes: the batch script, and the output of the jobs that run it
SLURM, SLURM_SCRIPT = "slurm", "sweep.sh"

STATUSES = ("finished", "stopped", "failed", "running", "pending")
# summary.json of a finished trial: these keys, plus best_<m>, final_<m> and best_<m>_epoch for every epoch metric
# m (see `summarize_epochs`) and the test metrics the recipe evaluates once at the end
SUMMARY_KEYS = ("status", "method", "params_total", "macs_per_image", "epochs", "seed", "train_images",
                "val_images", "test_images", "wall_time_s", "device", "paths", "versions", "git")
IDENTITY = ("trial_id", "variant_id", "variant", "is_baseline", "seed")  # what sweep.json names a trial by
TRIAL_COLUMNS = [*IDENTITY, "status", "error"]
JSON_COLUMNS = "kwlab.json_columns"  # parquet metadata: columns stored as JSON text (values of mixed types)


def metric_goal(name: str) -> str:
    """'minimize' for losses, 'maximize' for accuracies (top-k): the direction 'best' follows."""
    return "minimize" if name.endswith("loss") else "maximize"


def is_metric(name: str) -> bool:
    """Whether an epoch record's key is a metric (a loss or a top-k accuracy), not bookkeeping such as lr or tau."""
    return name.endswith(("loss", "top1", "top5"))


def summarize_epochs(history: list[dict[str, Any]]) -> dict[str, Any]:
    """best_<m> (in m's direction), best_<m>_epoch and final_<m> of every metric m in the epoch records."""
    out: dict[str, Any] = {}
    names = dict.fromkeys(k for epoch in history for k in epoch if is_metric(k))
    for name in names:
        values = [(e["epoch"], e[name]) for e in history if isinstance(e.get(name), int | float)
                  and math.isfinite(e[name])]
        if not values:
            continue
        pick = min if metric_goal(name) == "minimize" else max
        epoch, best = pick(values, key=lambda pair: pair[1])  # the first epoch among equals
        out |= {f"best_{name}": best, f"best_{name}_epoch": epoch, f"final_{name}": values[-1][1]}
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is absent or unreadable (torn by a power cut, not text, not an object)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: bad JSON or not UTF-8
        return None
    return value if isinstance(value, dict) else None


def _finite(value: Any) -> Any:
    """A JSON-ready tree with every non-finite float (NaN, infinity) as None: kwlab's JSON never holds a bare NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: Any, **options: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False, **options)


@dataclass(frozen=True)
class TrialDir:
    """One trial's directory and the files in it."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        """The trial id (the directory's name)."""
        return self.path.name

    def file(self, name: str) -> Path:
        """The path of one of the trial's files (a name from this module, e.g. store.CHECKPOINT)."""
        return self.path / name

    # -- writing
    def write_config(self, config: dict[str, Any]) -> None:
        """config.yaml: the resolved config tree."""
        write_text(self.file(CONFIG), dump_yaml(config))

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl, rewritten whole (so it never holds a torn or repeated line)."""
        write_text(self.file(METRICS), "".join(_json(epoch) + "\n" for epoch in history))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json of a finished trial (a non-finite number is written as null)."""
        write_text(self.file(SUMMARY), _json(summary, indent=2) + "\n")

    def write_attention(self, arrays: dict[str, np.ndarray]) -> None:
        """attention.npz from a method's recorder."""
        with atomic_path(self.file(ATTENTION)) as tmp, tmp.open("wb") as file:
            np.savez(file, **arrays)

    def write_sweep_meta(self, meta: dict[str, Any]) -> None:
        """sweep.json: the trial's ids, variant, seed, swept values and price."""
        write_text(self.file(SWEEP), _json(meta, default=str))

    def write_error(self, message: str) -> None:
        """error.json: why the trial failed (one line)."""
        write_text(self.file(ERROR), json.dumps({"error": message}))

    def write_stopped(self, epoch: int, reason: str) -> None:
        """stopped.json: the scheduler stopped the trial after `epoch`."""
        write_text(self.file(STOPPED), json.dumps({"epoch": epoch, "reason": reason}))

    def clear_outcome(self) -> None:
        """Forget a previous failure before the trial runs again."""
        self.file(ERROR).unlink(missing_ok=True)

    # -- reading
    def metrics(self) -> list[dict[str, Any]]:
        """The epoch records (empty before the first epoch). Records from the first unreadable line on (a line torn
        or zeroed by a power cut) are dropped with a warning; the trial's checkpoint holds them, so a rerun that
        resumes it writes them again."""
        path = self.file(METRICS)
        try:
            lines = path.read_bytes().splitlines()
        except OSError:
            return []
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a {type(record).__name__}, not a record")
            except ValueError:  # bad JSON (or NUL bytes) or not UTF-8
                warn(f"{path}: line {number} of {len(lines)} is unreadable (torn by a crash?); reading the "
                     f"{len(records)} epoch records before it")
                break
            records.append(record)
        return records

    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None (absent or unreadable: the trial is then not finished, and a rerun tests it again
        from its checkpoint)."""
        return _read_json(self.file(SUMMARY))

    def sweep_meta(self) -> dict[str, Any] | None:
        """sweep.json, or None (a trial not written by a sweep)."""
        return _read_json(self.file(SWEEP))

    def config(self) -> dict[str, Any]:
        """config.yaml as a tree."""
        return load_yaml(self.file(CONFIG), "trial config") or {}

    def error(self) -> str | None:
        """The recorded failure (or why the records count as diverged), or None."""
        recorded = (_read_json(self.file(ERROR)) or {}).get("error")
        summary = self.summary() or {}
        return recorded or (self.diverged(summary) if summary.get("status") == "finished" else None)

    def stopped(self) -> dict[str, Any] | None:
        """stopped.json, or None."""
        return _read_json(self.file(STOPPED))

    def diverged(self, summary: dict[str, Any]) -> str | None:
        """Why a finished trial's records count as diverged: a non-finite metric in its epochs or summary (written
        before kwlab failed such trials; a test top-1 from NaN logits is no result), else None."""
        records = [*((f" at epoch {e.get('epoch')}", e) for e in self.metrics()), ("", summary)]
        return next((f"diverged: {key} is {value}{where}" for where, record in records for key, value in record.items()
                     if is_metric(key) and isinstance(value, float) and not math.isfinite(value)), None)

    def status(self) -> str:
        """finished | stopped | failed | running | pending (an unreadable summary.json or stopped.json counts as
        absent)."""
        summary = self.summary() or {}
        if summary.get("status") == "finished":
            return "failed" if self.diverged(summary) else "finished"
        if self.stopped() is not None:
            return "stopped"
        if self.file(ERROR).exists():
            return "failed"
        return "running" if self.file(METRICS).exists() else "pending"

    def is_done(self) -> bool:
        """Finished or stopped early: a rerun of the sweep leaves it alone."""
        return self.status() in ("finished", "stopped")


class Lock:
    """`runner.lock` in a results folder: one runner at a time per store, also across the nodes of a cluster that
    share the folder. The file names its holder (host, pid, start time); a lock whose process is gone from this host
    is stale and taken over with a message."""

    def __init__(self, path: Path, command: str = "") -> None:
        self.path, self.command = path, command
        self.taken_over: dict[str, Any] | None = None  # the stale holder replaced, if any

    @staticmethod
    def _start_ticks(pid: int) -> int | None:
        """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the holder."""
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            return None

    def holder(self) -> dict[str, Any] | None:
        """The lock file's content, or None when nobody holds it."""
        return _read_json(self.path)

    def live_holder(self) -> dict[str, Any] | None:
        """The holder while its process runs (another host's counts as running), else None."""
        holder = self.holder()
        return holder if holder is not None and self._alive(holder) else None

    def _alive(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname():
            return True  # another node's process: kwlab cannot tell, so the lock holds
        pid = holder.get("pid")
        try:
            os.kill(int(pid), 0)
        except (OSError, TypeError, ValueError):
            return False
        ticks = holder.get("start_ticks")
        return ticks is None or self._start_ticks(int(pid)) in (None, ticks)

    def acquire(self) -> None:
        """Take the lock, or raise KWLabError naming the holder; a stale lock of this host is taken over."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": self._start_ticks(os.getpid()),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": self.command}
        with writing(self.path):  # a read-only, missing or full location: one line naming it
            self._take(me)

    def _take(self, me: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:  # being written, or torn: give its writer a moment
                    time.sleep(0.2)
                    holder = self.holder() or {}
                if holder and self._alive(holder):  # a lock still unreadable was torn by a crash: taken over
                    raise KWLabError(f"{self.path.parent}: another kwlab runner is working on this results folder "
                                     f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                                     f"{holder.get('started')}); wait for it, or stop it first") from None
                self.taken_over = holder
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as file:
                file.write(json.dumps(me))
            return
        raise KWLabError(f"{self.path}: cannot take the runner lock; remove the file if no runner is working")

    def release(self) -> None:
        """Give the lock back (only if this process holds it)."""
        if (self.holder() or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class Store:
    """A results folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def trial(self, trial_id: str) -> TrialDir:
        """The directory of one trial."""
        return TrialDir(self.path / TRIALS / trial_id)

    def trials(self) -> list[TrialDir]:
        """Every trial directory, sorted by id."""
        return [TrialDir(p) for p in sorted((self.path / TRIALS).glob("*/"))]

    def file(self, name: str) -> Path:
        """The path of one of the folder's own files (e.g. store.SPEC)."""
        return self.path / name

    def exists(self) -> bool:
        """Whether the folder is a results store (has a trials/ folder)."""
        return (self.path / TRIALS).is_dir()

    def lock(self, command: str = "") -> Lock:
        """The runner lock (a context manager)."""
        return Lock(self.path / LOCK, command)

    def write_spec(self, spec: dict[str, Any]) -> None:
        """spec.yaml."""
        write_text(self.file(SPEC), dump_yaml(spec))

    def spec(self) -> dict[str, Any]:
        """spec.yaml as a tree ({} when absent or unreadable)."""
        try:
            spec = load_yaml(self.file(SPEC), "spec")
        except KWLabError:
            return {}
        return spec if isinstance(spec, dict) else {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """manifest.json."""
        write_text(self.file(MANIFEST), json.dumps(manifest, indent=2))

    def manifest(self) -> dict[str, Any]:
        """manifest.json ({} when absent)."""
        return _read_json(self.file(MANIFEST)) or {}

    def collect(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The trials and epochs tables, built from the trial directories."""
        trial_rows, epoch_rows = [], []
        for trial in self.trials():
            meta = trial.sweep_meta()
            if meta is None or not set(IDENTITY) <= set(meta):
                if trial.file(SWEEP).exists():
                    warn(f"{trial.file(SWEEP)}: unreadable; the trial is left out until its sweep runs again")
                continue
            ids = {k: meta[k] for k in IDENTITY}
            epochs = trial.metrics()
            stopped = trial.stopped()
            row = {**ids, "status": trial.status(), "error": trial.error(), **meta.get("parameters", {}),
                   **meta.get("price", {}), "epochs_done": len(epochs),
                   "stopped_epoch": stopped.get("epoch") if stopped else None}
            row.update(summarize_epochs(epochs))
            row.update({k: v for k, v in (trial.summary() or {}).items() if not isinstance(v, dict | list)})
            row["status"] = trial.status()
            trial_rows.append(row)
            epoch_rows += [{**ids, **epoch} for epoch in epochs]
        trials = pd.DataFrame(trial_rows) if trial_rows else pd.DataFrame(columns=TRIAL_COLUMNS)
        return trials, pd.DataFrame(epoch_rows)

    def write_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild trials.parquet and epochs.parquet atomically; returns the two tables."""
        trials, epochs = self.collect()
        for name, table in ((TRIALS_TABLE, trials), (EPOCHS_TABLE, epochs)):
            with atomic_path(self.file(name)) as tmp:
                pq.write_table(_to_arrow(table), tmp)
        return trials, epochs

    def read_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """trials.parquet and epochs.parquet, swept values back in their own types."""
        return _from_arrow(pq.read_table(self.file(TRIALS_TABLE))), _from_arrow(pq.read_table(self.file(EPOCHS_TABLE)))

    def tables(self, refresh: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The trials and epochs tables: read from their files, or built from the trial directories when `refresh`
        is asked, when a file is missing, or when one is unreadable (with a warning)."""
        if refresh or not self.file(TRIALS_TABLE).exists() or not self.file(EPOCHS_TABLE).exists():
            return self.collect()
        try:
            return self.read_tables()
        except (OSError, ValueError, pa.ArrowException) as error:  # a torn or foreign file
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warn(f"{self.path}: cannot read {TRIALS_TABLE} or {EPOCHS_TABLE} ({reason}); rebuilt them from the trial "
                 "folders")
            return self.collect()


def _kind(value: Any) -> type | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return type(value)


def _to_arrow(table: pd.DataFrame) -> pa.Table:
    """A table as Arrow: a column whose values are of one Python type is stored natively; one of mixed types
    (e.g. `sharing: [none, 2]`, or ints beside floats) as JSON text, listed in the metadata, so `read_tables` gives
    back exactly the values that were swept."""
    encoded = []
    table = table.copy()
    for column in table.columns:
        if table[column].dtype != object:
            continue
        kinds = {_kind(v) for v in table[column]} - {None}
        if len(kinds) > 1 or kinds & {dict, list, tuple}:
            table[column] = [None if _kind(v) is None else json.dumps(v) for v in table[column]]
            encoded.append(column)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    return arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), JSON_COLUMNS.encode(): json.dumps(encoded)})


def _from_arrow(arrow: pa.Table) -> pd.DataFrame:
    table = arrow.to_pandas()
    encoded = json.loads((arrow.schema.metadata or {}).get(JSON_COLUMNS.encode(), b"[]"))
    for column in encoded:
        table[column] = pd.Series([None if not isinstance(v, str) else json.loads(v) for v in table[column]],
                                  dtype=object, index=table.index)
    return table


@dataclass
class Results:
    """A loaded results store: the trials and epochs tables and the manifest."""

    path: Path
    trials: pd.DataFrame
    epochs: pd.DataFrame
    manifest: dict[str, Any]

    def trial_dir(self, trial_id: str) -> Path:
        """The directory of one trial (config, metrics, attention.npz)."""
        return Store(self.path).trial(trial_id).path


def load(path: str | Path, refresh: bool = False) -> Results:
    """Read a results store; `refresh` rebuilds the tables from the trial directories (e.g. mid-sweep)."""
    store = Store(Path(path))
    if not store.exists():
        raise KWLabError(f"{store.path}: not a kwlab results store (no {TRIALS}/ folder); run `kwlab sweep SPEC` first")
    trials, epochs = store.tables(refresh)
    return Results(store.path, trials, epochs, store.manifest())
