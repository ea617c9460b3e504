"""Weights & Biases (the optional extra `kwlab[wandb]`): each trial writes one W&B run, offline by default, into its
own folder (`<trial>/wandb/`), so the run travels with the trial to the store; `wandb sync <trial>/wandb/offline-run-*`
uploads it later from a machine with network.

A run is named `<variant> seed <seed>`, grouped by the sweep, tagged with its variant, seed and method; its config
holds the swept values, variant, seed, method and trial id; each finished epoch is one history step (step = epoch);
its summary takes the final numbers of summary.json. Its id is the trial id, so a trial resumed after a crash
continues the same run (a new offline segment, synced into it). A run is finished also when its trial fails (W&B
saves the config at `finish`).
"""

from __future__ import annotations

from typing import Any

from kwlab import store
from kwlab.errors import KWLabError


def check_installed() -> None:
    """A one-line KWLabError naming the extra when wandb is not installed (checked before a sweep launches)."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise KWLabError("tracking.wandb: W&B is not installed; pip install 'kwlab[wandb]'") from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class TrialRun:
    """The W&B run of one trial (its main process only); `settings` are the spec's `tracking.wandb` as plain values
    (project, mode, entity, group)."""

    def __init__(self, trial: store.TrialDir, seed: int, method: str, settings: dict[str, Any]) -> None:
        import wandb

        meta = trial.sweep_meta() or {}
        variant = meta.get("variant") or f"seed {seed}"
        self.run = wandb.init(
            dir=str(trial.path), id=trial.name, resume="allow", mode=settings.get("mode", "offline"),
            project=settings["project"], entity=settings.get("entity"), group=settings.get("group"),
            name=f"{variant} seed {seed}", tags=[variant, f"seed {seed}", method],
            config={**meta.get("parameters", {}), "variant": variant, "seed": seed, "method": method,
                    "trial_id": trial.name},
            settings=wandb.Settings(silent=True, console="off"), reinit="create_new")

    def epoch(self, metrics: dict[str, Any]) -> None:
        """One history step (step = the epoch) with every number of the epoch's record."""
        self.run.log({k: v for k, v in metrics.items() if k != "epoch" and _number(v)}, step=metrics["epoch"])

    def finish(self, summary: dict[str, Any] | None, failed: bool = False) -> None:
        """The final numbers of summary.json into the run's summary, then finish it (exit code 1 when the trial
        failed)."""
        if summary:
            self.run.summary.update({k: v for k, v in summary.items() if _number(v)})
        self.run.finish(exit_code=1 if failed else 0)
