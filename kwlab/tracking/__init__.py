"""What kwlab writes, live, for the tools researchers watch a sweep in: an Optuna study (`optuna_store`, for
optuna-dashboard), TensorBoard event files per trial (`tensorboard`), MLflow runs (`mlflow`, an optional extra);
`trackers` is what the sweep runner calls as trials start, report epochs and end."""

from __future__ import annotations

from kwlab import store


def trial_method(trial: store.TrialDir) -> str | None:
    """A trial's convolution method, from its summary or resolved config (None before it starts)."""
    summary = trial.summary() or {}
    if "method" in summary:
        return summary["method"]
    return trial.config().get("method") if trial.file(store.CONFIG).is_file() else None
