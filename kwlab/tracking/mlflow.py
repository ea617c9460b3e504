"""MLflow (the optional extra `kwlab[mlflow]`): each kwlab trial (a variant at one seed) as an MLflow run.

The runner logs from the trial directories, so the workers need no MLflow and a run is never ahead of the store:
params (the swept values, method and seed), tags (sweep, variant, status), each new epoch's metrics in one batch
request (MLflow's log_batch, never one request per metric), and at the end summary.json and config.yaml as
artifacts. The run id is kept in the trial's folder (mlflow.json), so a resumed trial continues its own run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kwlab import store
from kwlab.errors import KWLabError

TERMINATED = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}  # kwlab status -> MLflow run status
BATCH = 1000  # MLflow's limit of metrics per log_batch request
ARTIFACTS = (store.SUMMARY, store.CONFIG, store.ERROR)  # the files of a trial its run keeps, where they exist


def client(uri: str) -> Any:
    """An MlflowClient for `uri` whose requests give up after a few seconds (a dead server never hangs a sweep);
    KWLabError naming the extra when MLflow is not installed."""
    # NOTE: MLflow retries a request 7 times over about two minutes by default; a sweep is not held up that long
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):
        os.environ.setdefault(name, value)
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise KWLabError("tracking.mlflow: MLflow is not installed; pip install 'kwlab[mlflow]'") from None
    return MlflowClient(tracking_uri=uri)


class MLflowTracker:
    """Logs a sweep's trials to one MLflow experiment, from their directories (idempotent, so a resumed sweep
    continues where the store says it stands)."""

    def __init__(self, uri: str, experiment: str, sweep: str, metric: str) -> None:
        self.uri, self.sweep, self.metric = uri, sweep, metric
        self.client = client(uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        except Exception as error:  # any failure to reach it: connection refused, timeout, bad URI, HTTP error
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise KWLabError(f"tracking.mlflow.uri: cannot reach the MLflow tracking server at {uri} ({reason}); "
                             "start it (mlflow server --host 127.0.0.1 --port 5000) or leave tracking.mlflow "
                             "out") from None
        self.logged: dict[str, dict[str, Any]] = {}  # run id -> what this process knows the run holds

    def run_id(self, trial: store.TrialDir) -> str | None:
        """The trial's MLflow run id (from its folder), or None before its first sync."""
        try:
            return json.loads(trial.storage.read_text(store.MLFLOW_RUN) or "")["run_id"]
        except (ValueError, KeyError, TypeError):
            return None

    def _start(self, trial: store.TrialDir, meta: dict[str, Any], method: str | None) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=f"{meta['variant']} seed {meta['seed']}",
                                     tags={"sweep": self.sweep, "variant": meta["variant"],
                                           "variant_id": meta["variant_id"], "trial_id": meta["trial_id"]})
        run_id = run.info.run_id
        params = {**meta.get("parameters", {}), "method": method, "seed": meta["seed"]}
        self.client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])
        trial.storage.write_text(store.MLFLOW_RUN, json.dumps({"run_id": run_id, "tracking_uri": self.uri}))
        self.logged[run_id] = {"epochs": 0, "status": None, "terminated": False}
        return run_id

    def _known(self, run_id: str) -> dict[str, Any]:
        """What the run holds, asked of the server once per process (a resumed sweep continues from there)."""
        if run_id not in self.logged:
            run = self.client.get_run(run_id)
            steps = [m.step for m in self.client.get_metric_history(run_id, self.metric)]
            self.logged[run_id] = {"epochs": max(steps, default=0), "status": run.data.tags.get("status"),
                                   "terminated": run.info.status != "RUNNING"}
        return self.logged[run_id]

    def sync(self, record: store.TrialRecord, trial: store.TrialDir) -> None:
        """Bring the trial's run up to date with its record: new epochs, status tag, and at the end artifacts and
        the run's final status; a run ended earlier (a failure) runs again when its trial does. `trial` is its
        folder, which keeps the run id."""
        from mlflow.entities import Metric

        meta, status = record.meta, record.status
        if not record.identified or status == "pending":
            return
        run_id = self.run_id(trial) or self._start(trial, meta, record.method)
        known = self._known(run_id)
        if known["terminated"] and status not in TERMINATED:
            self.client.update_run(run_id, status="RUNNING")
            known["terminated"] = False
        history = [epoch for epoch in record.epochs if epoch["epoch"] > known["epochs"]]
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, epoch["epoch"])
                   for epoch in history for key, value in epoch.items()
                   if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)]
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[start:start + BATCH])
        if history:
            known["epochs"] = history[-1]["epoch"]
        if known["status"] != status:
            self.client.set_tag(run_id, "status", status)
            known["status"] = status
        if status in TERMINATED and not known["terminated"]:
            with tempfile.TemporaryDirectory() as folder:  # the store may live at a URI: the files go up from here
                for name in ARTIFACTS:
                    if (data := trial.storage.read_bytes(name)) is not None:
                        (Path(folder) / name).write_bytes(data)
                        self.client.log_artifact(run_id, str(Path(folder) / name))
            self.client.set_terminated(run_id, status=TERMINATED[status])
            known["terminated"] = True
