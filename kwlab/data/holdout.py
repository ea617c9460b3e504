"""Seeded stratified holdouts (val and test split off a labelled set) and training subsets.

Every holdout and subset is drawn with `data.split_seed`, never the trial seed, so all trials and seeds of a study
train, select and test on the same images.
"""

from __future__ import annotations

import numpy as np

from kwlab.data.registry import DataSpec
from kwlab.errors import KWLabError


def random_state(seed: int) -> int:
    """Map any integer seed to the range numpy/sklearn accept."""
    return seed % 2**32


def holdout(
    labels: np.ndarray, size: float | int, seed: int, key: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (rest, held out) index split of `size` (a fraction or a count); both sorted."""
    from sklearn.model_selection import train_test_split  # imported when a split is drawn, not with kwlab.data

    try:
        rest, held = train_test_split(
            np.arange(len(labels)), test_size=size, stratify=labels, random_state=random_state(seed)
        )
    except ValueError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise KWLabError(f"{key}: {size!r} cannot be held out of the {len(labels)} {name} images ({reason})") from None
    return np.sort(rest), np.sort(held)


def stratified_subset(labels: np.ndarray, size: int, seed: int, name: str) -> np.ndarray:
    """Seeded stratified subset of `size` indices (all of them when size == len), for `data.train_size`."""
    if size > len(labels):
        raise KWLabError(f"data.train_size: {size} exceeds the {len(labels)} training images of {name}")
    if size == len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(
            np.arange(len(labels)), train_size=size, stratify=labels, random_state=random_state(seed)
        )
    except ValueError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise KWLabError(f"data.train_size: {size} cannot be a stratified subset of {name} ({reason})") from None
    return np.sort(keep)


def size_or_default(value: float | int | None, default: float | int) -> float | int:
    """A holdout size: the configured one, or the dataset's default when it is null."""
    return default if value is None else value


def refuse_test_size(spec: DataSpec, name: str, test_split: str) -> None:
    """Raise if `data.test_size` is set for a dataset whose test split is fixed (`test_split` says which)."""
    if spec.test_size is not None:
        raise KWLabError(
            f"data.test_size: {spec.test_size!r} does not apply to {name}, whose test split is {test_split}; "
            "set it to null"
        )
