"""The one rule for "best": which epoch of a trial is its best, by the metric and goal its config names.

`best.pt`, the test at the best epoch, ASHA's and Optuna's score, `kwlab status` and the report all ask
`best_epoch`; the trial config carries the metric and goal (`TrainConfig.metric`, the sweep's `metric:`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from kwlab.config import Config

Goal = Literal["maximize", "minimize"]


def natural_goal(name: str) -> Goal:
    """The direction a metric improves in, from what it measures: losses fall, accuracies (top-k) rise."""
    return "minimize" if name.endswith("loss") else "maximize"


def is_metric(name: str) -> bool:
    """Whether an epoch record's key is a metric (a loss or a top-k accuracy), not bookkeeping such as lr or tau."""
    return name.endswith(("loss", "top1", "top5"))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def better(value: float, than: float, goal: Goal) -> bool:
    """Whether `value` beats `than` in the direction `goal` (a tie is not better: the first epoch among equals
    stays the best)."""
    return value < than if goal == "minimize" else value > than


def best_epoch(history: Iterable[Mapping[str, Any]], metric: str, goal: Goal) -> Mapping[str, Any] | None:
    """The epoch record with the best finite `metric` in the direction `goal`, the first among equals; None when no
    record has a finite value."""
    best = None
    for record in history:
        value = record.get(metric)
        if _finite(value) and (best is None or better(value, best[metric], goal)):
            best = record
    return best


def best_value(history: Iterable[Mapping[str, Any]], metric: str, goal: Goal) -> float:
    """`metric` at the best epoch, NaN when there is none."""
    record = best_epoch(history, metric, goal)
    return float(record[metric]) if record is not None else math.nan


class MetricConfig(Config):
    """The metric that decides a trial's best epoch (its `best.pt`, its test at the best epoch) and, in a sweep,
    ranks trials (ASHA, Optuna, `kwlab status`): any metric recorded every epoch, in its own direction."""

    section: ClassVar[str] = "metric"

    name: str = "val_top1"
    goal: Literal["maximize", "minimize"] = "maximize"  # given or not, the metric's own direction

    @model_validator(mode="before")
    @classmethod
    def _own_direction(cls, tree: Any) -> Any:
        if isinstance(tree, dict) and "goal" not in tree and isinstance(tree.get("name"), str):
            return {**tree, "goal": natural_goal(tree["name"])}
        return tree
