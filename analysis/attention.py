"""Mean attention matrices from a trial's attention.npz: per warehouse, rows = mixtures (layers in plan order),
columns = the warehouse's n cells; averaging over a variant's seeds; tidy attention values per function.

attention.npz holds, for every warehouse W: `W/alpha` float32 (rows, n), `W/layer` str (rows,) and
`W/mixture` int (rows,) (see kwlab.train.records).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kwlab.errors import KWLabError
from kwlab.store import ATTENTION, TrialDir

NEAR_ZERO = 0.01  # |alpha| below this fraction of its row's largest |alpha| counts as (near) zero


@dataclass(frozen=True)
class WarehouseAttention:
    """One warehouse's mean attention: alpha (rows = mixtures, n = cells), the layer and mixture index of each row."""

    name: str
    alpha: np.ndarray  # (rows, n)
    layers: np.ndarray  # (rows,) layer name per row
    mixtures: np.ndarray  # (rows,) mixture index within its layer
    trials: int = 1  # how many trials were averaged

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, n): mixtures of all layers x cells."""
        return self.alpha.shape  # type: ignore[return-value]

    def blocks(self) -> list[tuple[str, int, int]]:
        """(layer, first row, end row) for each layer's consecutive run of rows, in row order."""
        out: list[tuple[str, int, int]] = []
        start = 0
        for row in range(1, len(self.layers) + 1):
            if row == len(self.layers) or self.layers[row] != self.layers[start]:
                out.append((str(self.layers[start]), start, row))
                start = row
        return out


def read_attention(path: str | Path | bytes) -> dict[str, WarehouseAttention]:
    """The warehouses of one attention.npz (a path, or the file's bytes), in the file's (plan) order."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    where = ATTENTION if isinstance(path, bytes) else path
    try:
        with np.load(source, allow_pickle=False) as npz:
            names = list(dict.fromkeys(key.rsplit("/", 1)[0] for key in npz.files if "/" in key))
            out = {}
            for name in names:
                alpha = np.asarray(npz[f"{name}/alpha"], dtype=np.float32)
                rows = alpha.shape[0]
                layers = npz[f"{name}/layer"] if f"{name}/layer" in npz.files else np.array([name] * rows)
                mixtures = npz[f"{name}/mixture"] if f"{name}/mixture" in npz.files else np.arange(rows)
                out[name] = WarehouseAttention(name, alpha, np.asarray(layers).astype(str), np.asarray(mixtures))
            return out
    except (OSError, ValueError, KeyError) as error:
        raise KWLabError(f"{where}: cannot read attention ({error})") from None


def mean_attention(maps: list[dict[str, WarehouseAttention]]) -> dict[str, WarehouseAttention]:
    """Average per warehouse over trials (e.g. a variant's seeds); trials whose warehouses differ are skipped."""
    if not maps:
        return {}
    reference = maps[0]
    signature = {name: w.shape for name, w in reference.items()}
    same = [m for m in maps if {name: w.shape for name, w in m.items()} == signature]
    return {
        name: WarehouseAttention(name, np.mean([m[name].alpha for m in same], axis=0), w.layers, w.mixtures, len(same))
        for name, w in reference.items()
    }


def trial_attention(trial: TrialDir) -> dict[str, WarehouseAttention] | None:
    """A trial's attention, or None when it has no attention.npz (static models, unfinished trials)."""
    data = trial.storage.read_bytes(ATTENTION)
    return read_attention(data) if data is not None else None


def variant_attention(trial_dirs: list[TrialDir]) -> dict[str, WarehouseAttention] | None:
    """A variant's attention averaged over the trials (seeds) that have one; None when none has."""
    maps = [m for d in trial_dirs if (m := trial_attention(d)) is not None]
    return mean_attention(maps) if maps else None


def near_zero(alpha: np.ndarray, fraction: float = NEAR_ZERO) -> np.ndarray:
    """Boolean mask of entries whose |alpha| is below `fraction` of the largest |alpha| of their row."""
    magnitude = np.abs(alpha)  # (rows, n)
    return magnitude < fraction * magnitude.max(axis=1, keepdims=True)


def attention_values(maps: dict[str, dict[str, WarehouseAttention]]) -> pd.DataFrame:
    """Tidy attention values: one row per (group, trial, warehouse, entry) with `alpha` and `near_zero`.

    `maps` maps a group label (e.g. an attention function) to {trial_id: warehouses}.
    """
    parts = []
    for group, trials in maps.items():
        for trial_id, warehouses in trials.items():
            for name, w in warehouses.items():
                parts.append(pd.DataFrame({"group": group, "trial_id": trial_id, "warehouse": name,
                                           "alpha": w.alpha.ravel(), "near_zero": near_zero(w.alpha).ravel()}))
    if not parts:
        return pd.DataFrame(columns=["group", "trial_id", "warehouse", "alpha", "near_zero"])
    return pd.concat(parts, ignore_index=True)


def value_summary(values: pd.DataFrame) -> pd.DataFrame:
    """Per group: share of negative and of near-zero attention values (in %), and the value count."""
    grouped = values.groupby("group", sort=False)
    return pd.DataFrame({
        "negative_pct": grouped["alpha"].apply(lambda a: 100 * float((a < 0).mean())),
        "near_zero_pct": grouped["near_zero"].mean() * 100,
        "values": grouped.size(),
    }).reset_index()
