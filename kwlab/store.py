"""The results format. This module alone knows the layout of a results store and of each trial directory: the file
names, the summary keys, the trial statuses, the trial record, the typed tables and the runner's lock. The runner,
the recipe, `kwlab.results.load`, `analysis/` and the tests all go through it. A store lives in a local folder or
at a URI (kwlab.storage); the layout is the same on every filesystem.

A results store, `results/<sweep name>/`:

    spec.yaml            the spec as resolved (profile and --set applied)
    plan.json            the trials the latest run of the spec plans (`Store.plan`): each one's ids, variant and seed,
                         and a bayes sweep's suggestions and seeds
    manifest.json        kwlab version, git commit and dirty flag, library versions, hardware, command line
    runner.lock          while a runner works on the store: its host, pid and start time (see `Lock`)
    optuna.db            the sweep as an Optuna study (SQLite), for optuna-dashboard (see kwlab.tracking)
    trials/<trial id>/   one trial directory each (below)
    trials.parquet       one row per trial (`TrialRecord.row`): ids, variant, seed, status, one column per swept key
                         (typed, see `write_table`), price (parameters, MACs), the best epoch and the metric that
                         chose it, best/final of every metric, test metrics, and `updated` (when its folder last
                         changed)
    epochs.parquet       one row per trial and epoch: ids, variant, seed and the epoch's metrics
    report/              what `kwlab report` writes by default
    logs/ray-<time>.log  Ray's own output of each run (a lost node's log dump, stack traces), out of the terminal
    slurm/               `kwlab slurm`'s batch script (sweep.sh) and its jobs' logs (<job id>.out, <job id>.ray.log)

A trial directory:

    config.yaml      the resolved trial config
    metrics.jsonl    one JSON object per finished epoch (keys: see kwlab.train.recipe)
    checkpoint.pt    the latest finished epoch, to resume from (a finished trial drops it)
    best.pt          the model weights at the best epoch (by the trial's metric and goal, kwlab.best)
    attention.npz    per-layer attention (routing) statistics of the methods that have them (see Method.recorder)
    summary.json     written when the trial finishes (SUMMARY_KEYS)
    sweep.json       the sweep's view of the trial: ids, variant, seed, swept values, price, metric, epochs
    log.txt          the trial's output when a sweep runs it
    error.json       a failed trial's one-line error
    stopped.json     a trial the scheduler stopped early: its last epoch and why
    tensorboard/     the trial's TensorBoard event files (one run, named by variant and seed)
    mlflow.json      the id of the trial's MLflow run, when the sweep logs to MLflow
    wandb/           the trial's W&B run (offline-run-*/), when the sweep logs to W&B

Statuses (`TrialRecord.status`): finished (summary.json says so, and no record holds a non-finite metric), stopped
(stopped.json), failed (error.json, or such a non-finite record: diverged), running (some epochs recorded) and
pending. Every file is written whole (kwlab.storage); one torn anyway by a crash reads as absent, and the torn end of
metrics.jsonl is dropped with a warning.

The tables are kept up to date as trials end (`Tables.update`, one trial's record at a time) and read back by
`Store.tables`, which re-reads only the trials whose folders changed after their row was taken; they are rebuilt
from every trial folder only when missing or unreadable.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kwlab.best import best_epoch, is_metric, natural_goal
from kwlab.config import dump_yaml, yaml_value
from kwlab.errors import KWLabError, warn
from kwlab.files import writing
from kwlab.storage import Storage

# the results store
SPEC, PLAN, MANIFEST, LOCK, TRIALS, TRIALS_TABLE, EPOCHS_TABLE = (
    "spec.yaml", "plan.json", "manifest.json", "runner.lock", "trials", "trials.parquet", "epochs.parquet")
STUDY_FILES = (SPEC, PLAN, MANIFEST, TRIALS_TABLE, EPOCHS_TABLE)  # a store without its trial folders (`tables_only`)
MEASURED_PATHS = "measured_paths.json"  # a sweep's measured path choices (runtime.paths: measured), replayed on a rerun
# a trial directory
CONFIG, METRICS, CHECKPOINT, BEST, ATTENTION, SUMMARY, SWEEP, LOG, ERROR, STOPPED = (
    "config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "attention.npz", "summary.json", "sweep.json",
    "log.txt", "error.json", "stopped.json")
REPORT, LOGS = "report", "logs"  # where `kwlab report` writes by default; the runner's logs of Ray's own output
# what kwlab.tracking writes for the tools that watch a sweep
OPTUNA_DB, TENSORBOARD, MLFLOW_RUN, WANDB = "optuna.db", "tensorboard", "mlflow.json", "wandb"
# what kwlab slurm writes: the batch script, and the output of the jobs that run it
SLURM, SLURM_SCRIPT = "slurm", "sweep.sh"

STATUSES = ("finished", "stopped", "failed", "running", "pending")
MISSING = "missing"  # a planned trial the store has no folder for (removed while or after it ran)
DONE = ("finished", "stopped")  # a rerun of the sweep leaves these alone
# summary.json of a finished trial: these keys, plus best_<m>, final_<m> and best_<m>_epoch for every epoch metric
# m (see `summarize_epochs`) and the test metrics the recipe evaluates once at the end
SUMMARY_KEYS = ("status", "method", "params_total", "macs_per_image", "epochs", "seed", "best_epoch", "best_metric",
                "best_goal", "train_images", "val_images", "test_images", "wall_time_s", "device", "paths", "versions",
                "git")
IDENTITY = ("trial_id", "variant_id", "variant", "is_baseline", "seed")  # what sweep.json names a trial by
TRIAL_COLUMNS = [*IDENTITY, "status", "error"]
JSON_COLUMNS = "kwlab.json_columns"  # parquet metadata: columns stored as JSON text (values of mixed types)
# NOTE: stores written before kwlab named the test at the best epoch by the trial's metric called it "at best val"
OLD_SUFFIX, BEST_SUFFIX = "_at_best_val", "_at_best"


def summarize_epochs(history: list[dict[str, Any]]) -> dict[str, Any]:
    """best_<m> (m at its best epoch, in m's own direction), best_<m>_epoch and final_<m> of every metric m in the
    epoch records."""
    out: dict[str, Any] = {}
    names = dict.fromkeys(k for epoch in history for k in epoch if is_metric(k))
    for name in names:
        best = best_epoch(history, name, natural_goal(name))
        if best is None:
            continue
        final = [e[name] for e in history if isinstance(e.get(name), int | float) and math.isfinite(e[name])][-1]
        out |= {f"best_{name}": best[name], f"best_{name}_epoch": best["epoch"], f"final_{name}": final}
    return out


def _parse_json(text: str | None) -> dict[str, Any] | None:
    """A JSON object, or None when absent or unreadable (torn by a power cut, not text, not an object)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
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


def parse_metrics(text: str | None, source: str) -> list[dict[str, Any]]:
    """The epoch records of metrics.jsonl text; records from the first unreadable line on (a line torn or zeroed by a
    power cut) are dropped with a warning naming `source`; the trial's checkpoint holds them, so a rerun that resumes
    it writes them again."""
    if text is None:
        return []
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a {type(record).__name__}, not a record")
        except ValueError:  # bad JSON (or NUL bytes)
            warn(f"{source}: line {number} of {len(lines)} is unreadable (torn by a crash?); reading the "
                 f"{len(records)} epoch records before it")
            break
        records.append(record)
    return records


def diverged(epochs: list[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    """Why a finished trial's records count as diverged: a non-finite metric in its epochs or summary (written before
    kwlab failed such trials; a test top-1 from NaN logits is no result), else None."""
    records = [*((f" at epoch {e.get('epoch')}", e) for e in epochs), ("", summary)]
    return next((f"diverged: {key} is {value}{where}" for where, record in records for key, value in record.items()
                 if is_metric(key) and isinstance(value, float) and not math.isfinite(value)), None)


@dataclass(frozen=True)
class TrialDir:
    """One trial's directory and the files in it, on the store's filesystem (`storage`)."""

    storage: Storage

    def __init__(self, where: str | Path | Storage) -> None:
        object.__setattr__(self, "storage", Storage.of(where))

    @property
    def name(self) -> str:
        """The trial id (the directory's name)."""
        return self.storage.root.rstrip("/").rsplit("/", 1)[-1]

    @property
    def path(self) -> Path:
        """The local folder (the recipe writes a trial on a local disk; kwlab.train.staging brings a remote one)."""
        if self.storage.local is None:
            raise KWLabError(f"{self.storage}: not a local folder")
        return self.storage.local

    def file(self, name: str) -> Path:
        """The local path of one of the trial's files (a name from this module, e.g. store.CHECKPOINT)."""
        return self.path / name

    # -- writing
    def write_config(self, config: dict[str, Any]) -> None:
        """config.yaml: the resolved config tree."""
        self.storage.write_text(CONFIG, dump_yaml(config))

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl, rewritten whole (so it never holds a torn or repeated line)."""
        self.storage.write_text(METRICS, "".join(_json(epoch) + "\n" for epoch in history))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json of a finished trial (a non-finite number is written as null)."""
        self.storage.write_text(SUMMARY, _json(summary, indent=2) + "\n")

    def write_attention(self, arrays: dict[str, np.ndarray]) -> None:
        """attention.npz from a method's recorder."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self.storage.write_bytes(ATTENTION, buffer.getvalue())

    def write_sweep_meta(self, meta: dict[str, Any]) -> None:
        """sweep.json: the trial's ids, variant, seed, swept values, price, metric and planned epochs."""
        self.storage.write_text(SWEEP, _json(meta, default=str))

    def write_error(self, message: str, final: bool = False) -> None:
        """error.json: why the trial failed (one line); `final`: not retried in the run it happened in (a
        timeout), only by the next run of its sweep."""
        self.storage.write_text(ERROR, json.dumps({"error": message, **({"final": True} if final else {})}))

    def write_stopped(self, epoch: int, reason: str) -> None:
        """stopped.json: the scheduler stopped the trial after `epoch`."""
        self.storage.write_text(STOPPED, json.dumps({"epoch": epoch, "reason": reason}))

    def clear_outcome(self) -> None:
        """Forget a previous failure before the trial runs again."""
        self.storage.delete(ERROR)

    def drop_resume_state(self) -> None:
        """Remove checkpoint.pt of a finished trial: it resumes nothing any more (best.pt and the records stay)."""
        self.storage.delete(CHECKPOINT)

    # -- reading (each call reads its file; `record()` reads each once)
    def metrics(self) -> list[dict[str, Any]]:
        """The epoch records (empty before the first epoch); see `parse_metrics`."""
        return parse_metrics(self.storage.read_text(METRICS), f"{self.storage}/{METRICS}")

    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None (absent or unreadable: the trial is then not finished, and a rerun tests it again
        from its checkpoint)."""
        return _parse_json(self.storage.read_text(SUMMARY))

    def sweep_meta(self) -> dict[str, Any] | None:
        """sweep.json, or None (a trial not written by a sweep)."""
        return _parse_json(self.storage.read_text(SWEEP))

    def config(self) -> dict[str, Any]:
        """config.yaml as a tree ({} when absent or unreadable)."""
        tree = yaml_value(self.storage.read_text(CONFIG) or "")
        return tree if isinstance(tree, dict) else {}

    def stopped(self) -> dict[str, Any] | None:
        """stopped.json, or None."""
        return _parse_json(self.storage.read_text(STOPPED))

    def record(self) -> TrialRecord:
        """Every file of the trial read once, as one record."""
        return TrialRecord.read(self)

    def status(self) -> str:
        """finished | stopped | failed | running | pending (see TrialRecord)."""
        return self.record().status

    def error(self) -> str | None:
        """The recorded failure (or why the records count as diverged), or None."""
        return self.record().error

    def is_done(self) -> bool:
        """Finished or stopped early: a rerun of the sweep leaves it alone."""
        return self.record().status in DONE


@dataclass(frozen=True)
class TrialRecord:
    """A trial as everything that reads one sees it (the tables, `kwlab status`, the trackers, the report): its
    identity, swept values and price (sweep.json), status, epoch records, summary, error and stop, read once."""

    trial_id: str
    meta: dict[str, Any]  # sweep.json ({} for a trial not written by a sweep)
    status: str
    epochs: list[dict[str, Any]]
    summary: dict[str, Any] | None
    error: str | None
    stopped: dict[str, Any] | None
    updated: float = 0.0  # its folder as of this time (seconds since the epoch): a file changed later makes it stale
    final: bool = False  # failed for the rest of the run it failed in (a timeout), retried by the next run

    @classmethod
    def read(cls, trial: TrialDir, updated: float | None = None) -> TrialRecord:
        """Read a trial directory's files, each once; `updated` is when its folder last changed (from a listing),
        else the time the read began (on a local disk, whose clock the files share) or 0 (read again next time)."""
        storage = trial.storage
        if updated is None:
            updated = time.time() if storage.local is not None else 0.0
        metrics = storage.read_text(METRICS)
        epochs = parse_metrics(metrics, f"{storage}/{METRICS}")
        summary = _parse_json(storage.read_text(SUMMARY))
        stopped = _parse_json(storage.read_text(STOPPED))
        error_file = storage.read_bytes(ERROR)
        error = (_parse_json(error_file.decode("utf-8", "replace")) or {}) if error_file else {}
        recorded = error.get("error")
        finished = (summary or {}).get("status") == "finished"
        broken = diverged(epochs, summary) if finished else None
        if finished:
            status = "failed" if broken else "finished"
        elif stopped is not None:
            status = "stopped"
        elif error_file is not None:
            status = "failed"
        else:
            status = "running" if metrics is not None else "pending"
        if summary is not None:  # a store of an older kwlab names the test at the best epoch otherwise
            summary = {k.replace(OLD_SUFFIX, BEST_SUFFIX): v for k, v in summary.items()}
        return cls(trial.name, _parse_json(storage.read_text(SWEEP)) or {}, status, epochs, summary,
                   recorded or broken, stopped, updated, status == "failed" and error.get("final") is True)

    @property
    def identified(self) -> bool:
        """Whether sweep.json names the trial (every IDENTITY key): a trial the tables can hold."""
        return set(IDENTITY) <= set(self.meta)

    @property
    def done(self) -> bool:
        """Finished or stopped early."""
        return self.status in DONE

    @property
    def metric(self) -> tuple[str, str]:
        """The (metric, goal) that picks the trial's best epoch: its summary's, else its sweep's, else val_top1."""
        summary, chosen = self.summary or {}, self.meta.get("metric") or {}
        name = summary.get("best_metric") or chosen.get("name") or "val_top1"
        return name, summary.get("best_goal") or chosen.get("goal") or natural_goal(name)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best epoch record so far, by the trial's metric and goal (kwlab.best)."""
        return best_epoch(self.epochs, *self.metric)

    @property
    def method(self) -> str | None:
        """The trial's convolution method: its summary's, else its sweep's (None when neither names it)."""
        return (self.summary or {}).get("method") or self.meta.get("method")

    def row(self) -> dict[str, Any]:
        """The trial's row of trials.parquet."""
        ids = {k: self.meta.get(k) for k in IDENTITY} | {"trial_id": self.trial_id}
        best = self.best
        name, goal = self.metric
        # the method also before a summary names it: a pending variant is matched with its finished ones by it
        row = {**ids, "status": self.status, "error": self.error, **self.meta.get("parameters", {}),
               **self.meta.get("price", {}), "method": self.method, "epochs_done": len(self.epochs),
               "stopped_epoch": self.stopped.get("epoch") if self.stopped else None,
               "best_epoch": best["epoch"] if best else None, "best_metric": name, "best_goal": goal}
        row.update(summarize_epochs(self.epochs))
        row.update({k: v for k, v in (self.summary or {}).items() if not isinstance(v, dict | list)})
        row.update(status=self.status, updated=self.updated)
        return row

    def epoch_rows(self) -> list[dict[str, Any]]:
        """The trial's rows of epochs.parquet."""
        ids = {k: self.meta.get(k) for k in IDENTITY} | {"trial_id": self.trial_id}
        return [{**ids, **epoch} for epoch in self.epochs]


HEARTBEAT_S = 30.0  # a runner refreshes its lock this often
STALE_S = 150.0  # a lock of another host not refreshed for this long names a runner that is gone


class Lock:
    """`runner.lock` of a results store: one runner at a time per store, also across the nodes of a cluster. The file
    names its holder (host, pid, start time) and the holder refreshes its `beat` every HEARTBEAT_S (`beat`). A
    holder is gone when its process is gone from this host or, on another host, when its beat is older than STALE_S
    (a runner killed on another node); a lock whose holder is gone is taken over with a message.

    On a local disk the file is created exclusively (O_EXCL). NOTE: an object store has no exclusive create, so two
    runners that start on one store within the same moment could both take it; kwlab reads the lock back after
    writing it and gives way when another runner's holder is there."""

    def __init__(self, storage: Storage, name: str = LOCK, command: str = "") -> None:
        self.storage, self.name, self.command = storage, name, command
        self.taken_over: dict[str, Any] | None = None  # the stale holder replaced, if any
        self.mine: dict[str, Any] | None = None  # what this process wrote, while it holds the lock

    @staticmethod
    def _start_ticks(pid: int) -> int | None:
        """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the holder."""
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            return None

    def holder(self) -> dict[str, Any] | None:
        """The lock file's content, or None when nobody holds it (or it is unreadable)."""
        return _parse_json(self.storage.read_text(self.name))

    def live_holder(self) -> dict[str, Any] | None:
        """The holder while its process runs, else None."""
        holder = self.holder()
        return holder if holder is not None and alive(holder) else None

    def acquire(self) -> None:
        """Take the lock, or raise KWLabError naming the holder; a lock whose holder is gone is taken over."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": self._start_ticks(os.getpid()),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "beat": time.time(), "command": self.command}
        for _ in range(3):
            if self._create(me):
                self.mine = me
                return
            holder = self.holder()
            if holder is None:  # being written, or torn: give its writer a moment
                time.sleep(0.2)
                holder = self.holder() or {}
            if holder and alive(holder):  # a lock still unreadable was torn by a crash: taken over
                raise KWLabError(f"{self.storage}: another kwlab runner is working on this results store (pid "
                                 f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}); wait "
                                 "for it, or stop it first")
            self.taken_over = holder
            self.storage.delete(self.name)
        raise KWLabError(f"{self.storage}/{self.name}: cannot take the runner lock; remove the file if no runner is "
                         "working")

    def _create(self, me: dict[str, Any]) -> bool:
        """Write the lock if nobody holds it; False when a file is there."""
        text = json.dumps(me)
        if self.storage.local is None:
            if self.storage.read_bytes(self.name) is not None:
                return False
            self.storage.write_text(self.name, text)
            return (self.holder() or {}).get("pid") == me["pid"] and self.holder().get("host") == me["host"]
        path = self.storage.local / self.name
        with writing(path):  # a read-only, missing or full location: one line naming it
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as file:
                file.write(text)
        return True

    def beat(self) -> None:
        """Refresh the lock's beat (while this process holds it)."""
        if self.mine is not None and _same(self.holder(), self.mine):
            self.mine = {**self.mine, "beat": time.time()}
            self.storage.write_text(self.name, json.dumps(self.mine))

    @contextlib.contextmanager
    def beating(self) -> Iterator[None]:
        """Refresh the lock's beat every HEARTBEAT_S while the block runs (a daemon thread)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                with contextlib.suppress(KWLabError, OSError):  # a store out of reach for a moment: next beat
                    self.beat()

        thread = threading.Thread(target=beat, name="kwlab-lock-beat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def release(self) -> None:
        """Give the lock back (only if this process holds it)."""
        if _same(self.holder(), {"host": socket.gethostname(), "pid": os.getpid()}):
            self.storage.delete(self.name)
        self.mine = None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same(holder: dict[str, Any] | None, other: dict[str, Any]) -> bool:
    return holder is not None and holder.get("host") == other.get("host") and holder.get("pid") == other.get("pid")


def alive(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder still runs: its process on this host (the same start time, not a reused pid), or on
    another host a beat younger than STALE_S (a holder of an older kwlab, without a beat, counts as running)."""
    if holder.get("host") != socket.gethostname():
        beat = holder.get("beat")
        return not isinstance(beat, int | float) or time.time() - beat < STALE_S
    pid = holder.get("pid")
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    ticks = holder.get("start_ticks")
    return ticks is None or Lock._start_ticks(int(pid)) in (None, ticks)


@dataclass
class Tables:
    """The trials and epochs tables of a store, kept in memory by trial and written whole (`write`): `update` takes
    one trial's new record, so the bookkeeping of a finished trial does not grow with the store."""

    trials: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> row
    epochs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # trial id -> epoch rows

    @classmethod
    def of(cls, records: Iterable[TrialRecord]) -> Tables:
        """Tables holding these records (those sweep.json identifies)."""
        tables = cls()
        for record in records:
            tables.update(record)
        return tables

    @classmethod
    def from_frames(cls, trials: pd.DataFrame, epochs: pd.DataFrame) -> Tables:
        """Tables from the frames read back from the files."""
        rows = trials.to_dict("records")
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for epoch in epochs.to_dict("records"):
            by_trial.setdefault(epoch["trial_id"], []).append(epoch)
        return cls({row["trial_id"]: row for row in rows}, {row["trial_id"]: by_trial.get(row["trial_id"], [])
                                                          for row in rows})

    def update(self, record: TrialRecord) -> None:
        """Put (or replace) one trial's rows."""
        if not record.identified:
            return
        self.trials[record.trial_id] = record.row()
        self.epochs[record.trial_id] = record.epoch_rows()

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The two tables as DataFrames, trials sorted by id."""
        ids = sorted(self.trials)
        trials = pd.DataFrame([self.trials[i] for i in ids]) if ids else pd.DataFrame(columns=TRIAL_COLUMNS)
        return trials, pd.DataFrame([row for i in ids for row in self.epochs.get(i, [])])


@dataclass(frozen=True)
class Store:
    """A results store: a folder, or a location given by URI (kwlab.storage)."""

    storage: Storage

    def __init__(self, where: str | Path | Storage) -> None:
        object.__setattr__(self, "storage", Storage.of(where))

    @property
    def path(self) -> Path:
        """The local folder (see `local`), or the URI as a path-like name for messages."""
        return self.storage.local if self.storage.local is not None else Path(self.storage.uri)

    @property
    def local(self) -> bool:
        """Whether the store is a local folder (else it lives at a URI)."""
        return self.storage.local is not None

    def __str__(self) -> str:
        return str(self.storage)

    def trial(self, trial_id: str) -> TrialDir:
        """The directory of one trial."""
        return TrialDir(self.storage.child(TRIALS, trial_id))

    def trial_ids(self) -> dict[str, float]:
        """Every trial directory's id with when its folder last changed (the newest of its files), by id."""
        newest: dict[str, float] = {}
        for entry in self.storage.listing(TRIALS, recursive=True):
            trial_id = entry.path.split("/", 1)[0]
            newest[trial_id] = max(newest.get(trial_id, 0.0), entry.mtime)
        return dict(sorted(newest.items()))

    def trials(self) -> list[TrialDir]:
        """Every trial directory, sorted by id."""
        return [self.trial(trial_id) for trial_id in self.trial_ids()]

    def records(self, trial_ids: dict[str, float] | None = None) -> list[TrialRecord]:
        """The records of these trials (default: all), each read once."""
        found = self.trial_ids() if trial_ids is None else trial_ids
        return [TrialRecord.read(self.trial(trial_id), updated) for trial_id, updated in found.items()]

    def file(self, name: str) -> Path:
        """The local path of one of the store's own files (e.g. store.SPEC)."""
        return self.path / name

    def exists(self) -> bool:
        """Whether the location is a results store: a trials/ folder (or trial files under it), or the tables alone
        (`tables_only`)."""
        return self.storage.is_dir(TRIALS) or self.tables_only()

    def tables_only(self) -> bool:
        """Whether this is a store's tables without its trial folders: spec.yaml, trials.parquet and epochs.parquet
        (with plan.json and manifest.json where copied), as a study commits them so that its report regenerates
        without a rerun. Its rows are taken as they are; what only a trial folder holds (attention statistics, a
        trial's config) is absent."""
        return (not self.storage.is_dir(TRIALS)
                and all(self.storage.exists(name) for name in (SPEC, TRIALS_TABLE, EPOCHS_TABLE)))

    def lock(self, command: str = "") -> Lock:
        """The runner lock (a context manager)."""
        return Lock(self.storage, LOCK, command)

    def write_spec(self, spec: dict[str, Any]) -> None:
        """spec.yaml."""
        self.storage.write_text(SPEC, dump_yaml(spec))

    def spec(self) -> dict[str, Any]:
        """spec.yaml as a tree ({} when absent or unreadable)."""
        tree = yaml_value(self.storage.read_text(SPEC) or "")
        return tree if isinstance(tree, dict) else {}

    def write_plan(self, trials: list[dict[str, Any]], suggestions: int = 0, seeds: list[int] = ()) -> None:
        """plan.json: the trials the latest run plans (IDENTITY of each), and a bayes sweep's suggestions and the
        seeds each trains."""
        self.storage.write_text(PLAN, json.dumps({"trials": [{k: t[k] for k in IDENTITY} for t in trials],
                                                  "suggestions": suggestions, "seeds": list(seeds)}))

    def plan(self) -> dict[str, Any] | None:
        """plan.json ({"trials": [...], "suggestions": n, "seeds": [...]}), or None for a store written before kwlab
        kept one (or when it is unreadable)."""
        plan = _parse_json(self.storage.read_text(PLAN))
        return plan if plan is not None and isinstance(plan.get("trials"), list) else None

    def write_measured_paths(self, choices: dict[str, str]) -> None:
        """measured_paths.json: the path each measured layer shape takes in this store's trials (layer key -> path,
        as kwlab.methods.mixing.export_measurements gives them)."""
        self.storage.write_text(MEASURED_PATHS, json.dumps(dict(sorted(choices.items())), indent=1))

    def measured_paths(self) -> dict[str, str]:
        """measured_paths.json ({} when absent or unreadable: the layers then measure again)."""
        choices = _parse_json(self.storage.read_text(MEASURED_PATHS))
        return {str(k): str(v) for k, v in choices.items()} if isinstance(choices, dict) else {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """manifest.json."""
        self.storage.write_text(MANIFEST, json.dumps(manifest, indent=2))

    def manifest(self) -> dict[str, Any]:
        """manifest.json ({} when absent)."""
        return _parse_json(self.storage.read_text(MANIFEST)) or {}

    def collect(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The trials and epochs tables, built from every trial directory."""
        records = self.records()
        for record in records:
            if not record.identified and record.meta == {} and self.trial(record.trial_id).storage.exists(SWEEP):
                warn(f"{self.trial(record.trial_id).storage}/{SWEEP}: unreadable; the trial is left out until its "
                     "sweep runs again")
        return Tables.of(records).frames()

    def write_tables(self, tables: Tables | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Write trials.parquet and epochs.parquet whole (each atomically) from `tables` (default: every trial
        folder read again); returns the two tables."""
        trials, epochs = (tables or Tables.of(self.records())).frames()
        for name, table in ((TRIALS_TABLE, trials), (EPOCHS_TABLE, epochs)):
            buffer = pa.BufferOutputStream()
            pq.write_table(_to_arrow(table), buffer)
            self.storage.write_bytes(name, buffer.getvalue().to_pybytes())
        return trials, epochs

    def read_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """trials.parquet and epochs.parquet, swept values back in their own types; OSError when one is missing,
        an Arrow error when one is unreadable."""
        frames = []
        for name in (TRIALS_TABLE, EPOCHS_TABLE):
            data = self.storage.read_bytes(name)
            if data is None:
                raise FileNotFoundError(f"{self.storage}/{name}")
            frames.append(_from_arrow(pq.read_table(pa.BufferReader(data))))
        return frames[0], frames[1]

    def load_tables(self) -> Tables:
        """The tables as they stand now: read from their files, with the rows of every trial whose folder changed
        after its row was taken (or that has no row) read again; built from every trial folder when a file is
        missing or unreadable (with a warning for the latter)."""
        if self.tables_only():
            return Tables.from_frames(*self.read_tables())
        found = self.trial_ids()
        try:
            tables = Tables.from_frames(*self.read_tables())
        except FileNotFoundError:
            return Tables.of(self.records(found))
        except (OSError, ValueError, pa.ArrowException) as error:  # a torn or foreign file
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warn(f"{self.storage}: cannot read {TRIALS_TABLE} or {EPOCHS_TABLE} ({reason}); rebuilt them from the "
                 "trial folders")
            return Tables.of(self.records(found))
        stale = {trial_id: updated for trial_id, updated in found.items()
                 if trial_id not in tables.trials or updated > float(tables.trials[trial_id].get("updated") or 0)}
        for record in self.records(stale):
            tables.update(record)
        for trial_id in set(tables.trials) - set(found):  # a folder removed since: its row goes too
            del tables.trials[trial_id]
            tables.epochs.pop(trial_id, None)
        return tables

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The trials and epochs tables as they stand now (see `load_tables`)."""
        return self.load_tables().frames()


def planned_counts(statuses: dict[str, str], plan: dict[str, Any] | None) -> dict[str, int]:
    """Trials by status (STATUSES and MISSING), counted against the plan: each planned trial once (MISSING when the
    store has no row for it), then a bayes sweep's suggestions (those of its trials not in the plan's list; the
    suggestions it plans but has no trials for are missing); without a plan, every trial of the store."""
    counts = dict.fromkeys([*STATUSES, MISSING], 0)
    if plan is None:
        for status in statuses.values():
            counts[status] += 1
        return counts
    planned = {t["trial_id"] for t in plan["trials"]}
    for trial_id in planned:
        counts[statuses.get(trial_id, MISSING)] += 1
    suggested = [status for trial_id, status in statuses.items() if trial_id not in planned]
    if plan.get("suggestions"):
        for status in suggested:
            counts[status] += 1
        counts[MISSING] += max(0, plan["suggestions"] * len(plan.get("seeds") or [1]) - len(suggested))
    return counts


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
    table.columns = [c.replace(OLD_SUFFIX, BEST_SUFFIX) for c in table.columns]
    return table


@dataclass
class Results:
    """A loaded results store: the trials and epochs tables and the manifest."""

    path: Path
    trials: pd.DataFrame
    epochs: pd.DataFrame
    manifest: dict[str, Any]
    store: Store | None = None

    def trial_dir(self, trial_id: str) -> TrialDir:
        """The directory of one trial (config, metrics, attention.npz)."""
        return (self.store or Store(self.path)).trial(trial_id)


def load(where: str | Path) -> Results:
    """Read a results store (a folder or a URI): its tables as they stand now, also while a sweep runs."""
    store = Store(where)
    if not store.exists():
        raise KWLabError(f"{store}: not a kwlab results store (no {TRIALS}/ folder); run `kwlab sweep SPEC` first")
    trials, epochs = store.tables()
    return Results(store.path, trials, epochs, store.manifest(), store)
