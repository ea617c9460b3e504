"""What kwlab writes, live, for the tools researchers watch a sweep in: an Optuna study (`optuna_store`, for
optuna-dashboard), TensorBoard event files per trial (`tensorboard`), MLflow runs (`mlflow`, an optional extra);
`trackers` is what the sweep runner calls as trials start, report epochs and end, with each trial's record."""
