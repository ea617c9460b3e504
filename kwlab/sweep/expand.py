"""Expand a sweep spec into trials: variants (grid, random samples, cases) crossed with the same seeds, priced.

Pure functions of the spec and the base trial config; nothing here starts Ray or trains.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kwlab.config import ConfigError, load_yaml
from kwlab.data import DataSpec
from kwlab.errors import KWLabError, shown
from kwlab.overrides import set_dotted
from kwlab.sweep.space import sample_value
from kwlab.sweep.spec import SweepSpec
from kwlab.train.config import TrainConfig


@dataclass(frozen=True)
class Variant:
    """One point of the ablation: a name and the dotted-path overrides that make it."""

    name: str
    overrides: dict[str, Any]
    is_baseline: bool = False
    seeds: tuple[int, ...] | None = None  # its own seeds (a case's), else the spec's


@dataclass(frozen=True)
class Trial:
    """A variant at one seed, with its resolved, validated trial config and stable ids."""

    variant: Variant
    seed: int
    cfg: TrainConfig = field(repr=False)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved config as a plain tree (what the store and the hashes read)."""
        return self.cfg.to_dict()

    @property
    def trial_id(self) -> str:
        """Hash of the resolved config, seed included."""
        return config_hash(self.config)

    @property
    def variant_id(self) -> str:
        """Hash of the resolved config without its seed: groups a variant's repeats."""
        return config_hash({k: v for k, v in self.config.items() if k != "seed"})


def config_hash(tree: dict[str, Any]) -> str:
    """A short stable hash of a config tree."""
    return hashlib.sha1(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def base_config(spec: SweepSpec, spec_path: str | Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The base trial config: `base` (inline, or a YAML path relative to the spec) with `overrides` (fixed, profile
    and --set entries, in that order) applied by dotted path, and the sweep's metric, which picks every trial's best
    epoch."""
    base = spec.base
    if isinstance(base, str):
        path = (Path(spec_path).parent / base) if not Path(base).is_absolute() else Path(base)
        try:
            base = load_yaml(path, "trial config") or {}
        except KWLabError as error:
            raise KWLabError(f"{spec_path}: base: {error}") from None
    tree = copy.deepcopy(base)
    for key, value in overrides.items():
        try:
            set_dotted(tree, key, value)
        except KWLabError as error:
            raise KWLabError(f"{spec_path}: {error}") from None
    if isinstance(tree, dict):
        tree["metric"] = spec.metric.to_dict()
    return tree


def label(overrides: dict[str, Any]) -> str:
    """A variant's readable name from its overrides, e.g. 'cell_in_ratio=0.5,cell_out_ratio=0.5' (numbers drawn from
    a distribution shown to 4 significant digits)."""
    def shown(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ",".join(f"{key.rsplit('.', 1)[-1]}={shown(value)}" for key, value in overrides.items()) or "base"


def grid_variants(spec: SweepSpec) -> list[Variant]:
    """The cartesian product of the parameters' values; each `zip` group varies in lock-step as one axis."""
    parameters, zipped = spec.parameters, spec.zip
    grouped = {key for group in zipped for key in group}
    axes = [[{k: parameters[k].choices[i] for k in group} for i in range(len(parameters[group[0]].choices))]
            for group in zipped]
    axes += [[{key: value} for value in p.choices] for key, p in parameters.items() if key not in grouped]
    points = [dict(item for part in combo for item in part.items()) for combo in itertools.product(*axes)]
    return [Variant(label(point), point) for point in points] if parameters else []


def variant_count(spec: SweepSpec) -> int:
    """How many variants the spec asks for, counted without building any: the grid's product of value counts (a
    `zip` group is one axis) or the random and bayes samples, plus the cases (before constraints and duplicates)."""
    if spec.method != "grid":
        points = spec.num_samples
    elif spec.parameters:
        grouped = {key for group in spec.zip for key in group}
        points = math.prod([len(spec.parameters[group[0]].choices) for group in spec.zip] +
                           [len(p.choices) for key, p in spec.parameters.items() if key not in grouped])
    else:
        points = 0
    return points + len(spec.cases)


def trial_count(spec: SweepSpec) -> int:
    """How many trials the spec asks for, counted without building any: its variants at the spec's seeds, the cases
    at their own."""
    return ((variant_count(spec) - len(spec.cases)) * len(spec.seeds)
            + sum(len(c.seeds or spec.seeds) for c in spec.cases))


def size_line(spec: SweepSpec) -> str:
    """'1,000 variants, 3,000 trials (counted before constraints)', from `variant_count` and `trial_count`."""
    return f"{variant_count(spec):,} variants, {trial_count(spec):,} trials (counted before constraints)"


def check_size(spec: SweepSpec, max_variants: int, max_trials: int, source: str) -> None:
    """Refuse, before building anything, a spec with more than `max_variants` variants or `max_trials` trials."""
    variants, trials = variant_count(spec), trial_count(spec)
    if variants > max_variants:
        raise KWLabError(f"{source}: {size_line(spec)}: over the cap of {max_variants:,} variants; narrow the "
                         f"parameters, or raise the cap with --max-variants {variants}")
    if trials > max_trials:
        raise KWLabError(f"{source}: {size_line(spec)}: over the cap of {max_trials:,} trials; use fewer seeds or "
                         f"variants, or raise the cap with --max-trials {trials}")


def random_variants(spec: SweepSpec) -> list[Variant]:
    """`num_samples` seeded draws of every parameter (zip groups share the drawn index)."""
    rng = np.random.default_rng(spec.sampler_seed)
    variants = []
    for _ in range(spec.num_samples):
        point = {}
        for group in spec.zip:
            index = rng.integers(len(spec.parameters[group[0]].choices))
            point.update({k: spec.parameters[k].choices[index] for k in group})
        point.update({k: sample_value(p, rng) for k, p in spec.parameters.items() if k not in point})
        variants.append(Variant(label(point), point))
    return variants


def variants(spec: SweepSpec) -> list[Variant]:
    """Every variant of a grid or random sweep: the parameter points, then the explicit cases (baseline first)."""
    points = {"grid": grid_variants, "random": random_variants}.get(spec.method, lambda _: [])(spec)
    cases = sorted(spec.cases, key=lambda case: case.name != spec.baseline)
    return [*(Variant(c.name, dict(c.set), c.name == spec.baseline, tuple(c.seeds) if c.seeds else None)
              for c in cases), *points]


def resolve(base: dict[str, Any], variant: Variant, seed: int, source: str) -> TrainConfig:
    """The full, validated trial config of a variant at a seed: the only validation a trial's config gets (the
    typed config crosses to Ray as it is)."""
    tree = json.loads(json.dumps(base))  # deep copy of plain data
    for key, value in variant.overrides.items():
        set_dotted(tree, key, value)
    tree["seed"] = seed
    try:
        return TrainConfig.from_dict(tree)
    except ConfigError as error:
        where = "" if error.loc[:1] == ("metric",) else f" variant {shown(variant.name)}:"  # the sweep's own key
        raise KWLabError(f"{source}:{where} {error}") from None
    except KWLabError as error:
        raise KWLabError(f"{source}: variant {shown(variant.name)}: {error}") from None


def expand(spec: SweepSpec, base: dict[str, Any], source: str) -> list[Trial]:
    """All trials of a grid/random sweep: every variant crossed with the spec's seeds (paired comparisons), or a
    case with its own; a variant drawn twice (random sampling, or a case equal to a grid point) is trained once,
    under its first name."""
    trials: dict[str, Trial] = {}
    for variant in variants(spec):
        for seed in variant.seeds or spec.seeds:
            trial = Trial(variant, seed, resolve(base, variant, seed, source))
            trials.setdefault(trial.trial_id, trial)
    return list(trials.values())


def seeds_by_variant(trials: list[Trial]) -> dict[str, list[int]]:
    """Each variant's seeds, in trial order, keyed by variant id."""
    seeds: dict[str, list[int]] = {}
    for trial in trials:
        seeds.setdefault(trial.variant_id, []).append(trial.seed)
    return seeds


def count_line(trials: list[Trial]) -> str:
    """'20 variants x 8 seeds = 160 trials', or 'x 8-30 seeds' where cases bring their own."""
    by_variant = seeds_by_variant(trials)
    counts = sorted({len(s) for s in by_variant.values()}) or [0]
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{len(by_variant)} variants x {seeds} seeds = {len(trials)} trials"


def compact_seeds(seeds: list[int]) -> str:
    """'0-7', '0,2,5' or '0-7,20': runs of consecutive seeds shortened."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


COST_COLUMNS = ("params_total", "macs_per_image")


_PRICES: dict[str, dict[str, int]] = {}  # by config JSON: a TrainConfig holds dicts (model kwargs), so it is not hashable


@cache
def data_shape(data: DataSpec) -> tuple[int, int, int, int, int]:
    """(classes, channels, image size, training images, validation images) of a dataset (loaded once per process)."""
    from kwlab.data import load

    splits = load(data)
    return splits.num_classes, splits.in_chans, splits.image_size, len(splits.train), len(splits.val)


def price_config(cfg: TrainConfig) -> dict[str, int]:
    """A resolved trial config's price: params_total, macs_per_image and their parts (see Method.price); computed
    once per distinct config in a process."""
    from kwlab.train.recipe import price

    key = json.dumps(cfg.to_dict(), sort_keys=True)
    if key not in _PRICES:
        _PRICES[key] = price(cfg, *data_shape(cfg.data)[:3]).to_dict()
    return _PRICES[key]


def price(trials: list[Trial], source: str) -> pd.DataFrame:
    """One row per variant: swept values, parameters and MACs per image priced by the method (nothing trained)."""
    rows, seen = [], set()
    for trial in trials:
        if trial.variant_id in seen:
            continue
        seen.add(trial.variant_id)
        try:
            cost = price_config(trial.cfg)
        except KWLabError as error:
            raise KWLabError(f"{source}: variant {trial.variant.name!r}: {error}") from None
        # `params` and `macs` are the names constraints use
        rows.append({"variant": trial.variant.name, "variant_id": trial.variant_id, **trial.variant.overrides, **cost,
                     "params": cost["params_total"], "macs": cost["macs_per_image"]})
    return pd.DataFrame(rows, columns=None if rows else ["variant", "variant_id", *COST_COLUMNS])


def apply_constraints(trials: list[Trial], priced: pd.DataFrame, constraints: list[str], source: str) -> list[Trial]:
    """Drop the variants that fail any constraint (pandas query expressions; dotted names in backticks)."""
    keep = priced
    for expression in constraints:
        try:
            keep = keep.query(expression)
        except Exception as error:  # pandas raises many types for a bad expression
            raise KWLabError(f"{source}: constraints: cannot evaluate {expression!r} ({error})") from None
    if keep.empty:
        raise KWLabError(f"{source}: constraints: no variant is left after {constraints}")
    allowed = set(keep["variant_id"])
    return [t for t in trials if t.variant_id in allowed or t.variant.is_baseline]


def costliest_first(trials: list[Trial], priced: pd.DataFrame) -> list[Trial]:
    """Trials ordered by estimated cost (planner MACs per image x epochs), dearest first, seeds kept in order.

    With fewer workers than trials this is the longest-processing-time rule: the long trials start at once instead
    of running alone at the end while the other workers idle.
    """
    macs = dict(zip(priced["variant_id"], priced["macs_per_image"], strict=True))
    return sorted(trials, key=lambda t: -macs[t.variant_id] * t.config.get("epochs", 1))
