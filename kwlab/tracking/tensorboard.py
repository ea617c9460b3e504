"""TensorBoard event files of a trial, written by the trial itself through tensorboardX (which Ray installs).

Each trial writes one TensorBoard run in `<trial>/tensorboard/<variant> seed <seed>/`, so `tensorboard --logdir
results/NAME` lists every trial by variant and seed: a scalar per epoch for every number its epoch record holds
(metrics, lr, tau, timings), flushed as the epoch ends, and at the end its hyperparameters (swept values, method,
seed) with its final metrics for TensorBoard's HParams view. A resumed trial purges the epochs after its checkpoint,
so a repeated epoch is not drawn twice.
"""

from __future__ import annotations

import re
from typing import Any

from kwlab import store
from kwlab.files import safe_name

HPARAMS_RUN = "hparams"  # the sub-run tensorboardX writes the hyperparameters and final metrics into


def run_name(trial: store.TrialDir, seed: int) -> str:
    """The trial's run name in TensorBoard, a folder name: its variant and seed ('budget=2 seed 0'), or 'seed 0'
    outside a sweep; a name too long for a folder keeps its start and a hash of the whole."""
    meta = trial.sweep_meta() or {}
    name = f"{meta['variant']} seed {seed}" if "variant" in meta else f"seed {seed}"
    return safe_name(re.sub(r"[/\\]+", "_", name))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class TrialBoard:
    """The event writer of one trial (the trial's main process only)."""

    def __init__(self, trial: store.TrialDir, seed: int, first_epoch: int) -> None:
        from tensorboardX import SummaryWriter

        self.trial = trial
        self.writer = SummaryWriter(str(trial.file(store.TENSORBOARD) / run_name(trial, seed)),
                                    purge_step=first_epoch if first_epoch > 1 else None)

    def epoch(self, metrics: dict[str, Any]) -> None:
        """One scalar per number in the epoch's record, at step = epoch, flushed to disk."""
        for key, value in metrics.items():
            if key != "epoch" and _number(value):
                self.writer.add_scalar(key, value, metrics["epoch"])
        self.writer.flush()

    def finish(self, summary: dict[str, Any] | None, failed: bool = False) -> None:
        """The hyperparameters (swept values, method, seed) with the final metrics of summary.json, then close (a
        failed or stopped trial's run just closes)."""
        if failed or summary is None:
            self.writer.close()
            return
        meta = self.trial.sweep_meta() or {}
        hparams = {key: value if _number(value) or isinstance(value, str | bool) else str(value)
                   for key, value in {**meta.get("parameters", {}), "method": summary.get("method"),
                                      "seed": summary.get("seed")}.items()}
        final = {key: float(value) for key, value in summary.items() if _number(value)
                 and key.startswith(("best_", "final_", "test_", "ema_test_")) and not key.endswith("_epoch")}
        self.writer.add_hparams(hparams, final, name=HPARAMS_RUN, global_step=summary.get("epochs"))
        self.writer.close()
