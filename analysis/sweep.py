"""A results store read for analysis: accuracies in percent, the swept factors, legend labels and trial status.

`load_sweep(path)` wraps `kwlab.results.load` with what every figure and table needs to agree on: which columns
are the swept factors (from spec.yaml: the parameters, then the cases' overrides), which of them vary (keys that
vary in lock-step, like a `zip` group, are one factor), one short label per variant for legends, and the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kwlab.errors import KWLabError
from kwlab.best import is_metric, natural_goal
from kwlab.store import BEST_SUFFIX, STATUSES, TRIAL_COLUMNS, Store, TrialDir, load

SUMMARY_FIELDS = ["params_total", "params_warehouse", "params_attention", "params_other", "macs_per_image",
                  "best_val_top1", "final_val_top1", "test_top1", "epochs", "wall_time_s", "device", "epochs_done",
                  "stopped_epoch", "method", "train_images", "val_images", "test_images"]
DEFAULT_METRIC = "test_top1"  # the final model on the official test split, evaluated once at the end of training
SPLITS = ("test", "val", "train")  # a metric's split, by the first of these words in its name


@dataclass
class Sweep:
    """One sweep's results, ready for the statistics, figures and tables."""

    path: Path
    name: str
    description: str
    spec: dict[str, Any]
    manifest: dict[str, Any]
    trials: pd.DataFrame  # one row per trial; top-k accuracies in percent
    epochs: pd.DataFrame  # one row per trial and epoch; top-k accuracies in percent
    metric: str
    goal: str  # "maximize" | "minimize", the metric's direction (kwlab.best.natural_goal)
    factors: list[str] = field(default_factory=list)  # swept columns, dotted names
    scaled_to_percent: bool = False  # the store held fractions in [0, 1]
    metric_note: str = ""  # one sentence: which metric the report compares and why

    store: Store | None = None
    plan: dict[str, Any] | None = None  # plan.json: the trials the latest spec plans (None in an older store)

    def trial_dir(self, trial_id: str) -> TrialDir:
        """The directory of one trial."""
        return (self.store or Store(self.path)).trial(trial_id)

    def config(self, variant_id: str) -> dict[str, Any]:
        """A variant's resolved config: its first trial's config.yaml ({} where no trial has written one yet)."""
        for trial_id in self.trials.loc[self.trials["variant_id"] == variant_id, "trial_id"]:
            tree = self.trial_dir(trial_id).config()
            if tree:
                return tree
        return {}

    def resolved(self, variant_id: str, key: str) -> Any:
        """A dotted key of a variant's resolved config (`config`); None where no trial wrote one or the config has
        no such key."""
        return flatten(self.config(variant_id)).get(key)

    @property
    def methods(self) -> list[str]:
        """The convolution methods of the trials (static, kw, condconv, ...), in order of appearance."""
        if "method" not in self.trials:
            return []
        return [str(m) for m in dict.fromkeys(self.trials["method"].dropna())]

    @property
    def finished(self) -> pd.DataFrame:
        """The finished trials."""
        return self.trials[self.trials["status"] == "finished"]


def load_sweep(path: str | Path, metric: str | None = None) -> Sweep:
    """Read a store (a folder or a URI) as it stands now, also while its sweep runs."""
    results = load(path)
    spec = results.store.spec()
    trials = results.trials.copy()
    for column in TRIAL_COLUMNS:
        if column not in trials:
            trials[column] = pd.Series(dtype=object)
    trials["is_baseline"] = trials["is_baseline"].fillna(False).astype(bool)
    epochs = results.epochs.copy()
    plan = results.store.plan() if results.store else None
    trials, epochs = disambiguate(trials, epochs, plan)
    scaled = _fractions(trials, epochs)
    if scaled:
        for table in (trials, epochs):
            for column in _topk_columns(table):
                table[column] = pd.to_numeric(table[column], errors="coerce") * 100
    name = str(spec.get("name") or results.path.name)
    if metric is not None:
        chosen = resolve_metric(metric, trials, explicit=True)
        note = f"The metric is {describe_metric(chosen)} (`--metric {metric}`)."
    else:
        chosen, note = default_metric(trials, spec)
    return Sweep(results.path, name, str(spec.get("description") or ""), spec, results.manifest, trials, epochs,
                 chosen, natural_goal(chosen), swept_factors(trials, spec), scaled, note, results.store, plan)


def default_metric(trials: pd.DataFrame, spec: dict[str, Any]) -> tuple[str, str]:
    """`test_top1` and a sentence saying what it is; for a store whose finished trials have no test metrics (written
    before kwlab evaluated the test split), best_<the spec's metric> and a sentence saying so."""
    finished = trials[trials["status"] == "finished"]
    tested = DEFAULT_METRIC in finished and pd.to_numeric(finished[DEFAULT_METRIC], errors="coerce").notna().any()
    if tested or finished.empty:
        return DEFAULT_METRIC, (f"The metric is {describe_metric(DEFAULT_METRIC)} (the default; `--metric` chooses "
                                f"another, e.g. best_val_top1 or final_val_loss).")
    fallback = resolve_metric(f"best_{(spec.get('metric') or {}).get('name', 'val_top1')}", trials)
    return fallback, (f"The finished trials have no test metrics (a store written before kwlab evaluated the test "
                      f"split, or data without one), so the metric falls back to {describe_metric(fallback)}; that "
                      f"picks the best epoch on the split it reports, an optimistic number.")


def describe_metric(metric: str) -> str:
    """A metric in words with its column, e.g. "the final model's test top-1 (`test_top1`), measured once on the
    official test split after the last epoch"."""
    words = metric_label(metric).removesuffix(" (%)")
    if metric in ("test_top1", "test_top5", "test_loss"):
        return (f"the final model's {words} (`{metric}`), measured once on the official test split after the last "
                f"epoch")
    if metric.endswith(BEST_SUFFIX):
        return f"the {words.removesuffix(' at best epoch')} of the weights of the best epoch (`{metric}`)"
    if metric.startswith("best_"):
        return f"the {words} over epochs (`{metric}`)"
    return f"the {words} (`{metric}`)"


def disambiguate(trials: pd.DataFrame, epochs: pd.DataFrame,
                 plan: dict[str, Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give each variant_id its own name: when one name has several configs (a store reused after the spec or the
    defaults changed), the current config keeps the name and the others become 'name [variant_id]'. The current
    config is the one the latest spec plans (`plan`, the store's plan.json), and the baseline is the one it marks;
    without a plan (a store of an older kwlab), the config with the most finished trials keeps the name and the
    renamed ones lose the baseline mark."""
    if trials.empty:
        return trials, epochs
    planned = [t for t in (plan or {}).get("trials", []) if isinstance(t, dict)]
    current = {t.get("variant_id") for t in planned}
    finished = trials[trials["status"] == "finished"].groupby("variant_id").size()
    done = pd.to_numeric(trials.get("epochs_done", pd.Series(0, index=trials.index)), errors="coerce").fillna(0)
    epochs_done = done.groupby(trials["variant_id"]).sum()
    trials = trials.copy()
    if planned:
        trials["is_baseline"] = trials["variant_id"].isin({t.get("variant_id") for t in planned if t.get("is_baseline")})
    for name, group in trials.groupby("variant", sort=False):
        ids = list(dict.fromkeys(group["variant_id"]))
        if len(ids) < 2:
            continue
        keep = max(ids, key=lambda i: (i in current, finished.get(i, 0), epochs_done.get(i, 0), -ids.index(i)))
        for other in ids:
            if other != keep:
                rows = trials["variant_id"] == other
                trials.loc[rows, "variant"] = f"{name} [{other}]"
                trials.loc[rows, "is_baseline"] = False
    if not epochs.empty and "variant_id" in epochs:
        names = dict(zip(trials["variant_id"], trials["variant"], strict=False))
        epochs = epochs.assign(variant=epochs["variant_id"].map(names).fillna(epochs.get("variant")))
    return trials, epochs


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config tree as dotted keys: {'kw': {'budget': 4}} -> {'kw.budget': 4}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between two resolved configs, seed aside: key -> (old value, new value),
    None on the side that lacks the key."""
    before, after = flatten(old), flatten(new)
    keys = [k for k in dict.fromkeys([*before, *after]) if k != "seed"]
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def _topk_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if ("top1" in c or "top5" in c) and not c.endswith("_epoch")]


def _fractions(trials: pd.DataFrame, epochs: pd.DataFrame) -> bool:
    """True when every top-k value is within [0, 1], i.e. the store holds fractions rather than percent."""
    values = [pd.to_numeric(t[c], errors="coerce").to_numpy(dtype=float)
              for t in (trials, epochs) for c in _topk_columns(t)]
    values = np.concatenate(values) if values else np.array([])
    values = values[np.isfinite(values)]
    return bool(values.size) and float(values.max()) <= 1.0


def resolve_metric(metric: str, trials: pd.DataFrame, explicit: bool = False) -> str:
    """The trials column to compare: `metric` itself or `best_<metric>` (a validation or training metric only: the
    test split is evaluated once, so there is no best or final over its epochs); an unknown explicit name is an
    error."""
    if split_of(metric) == "test" and metric.startswith(("best_", "final_")):
        raise KWLabError(f"--metric: {metric!r}: the test split is evaluated once, after training, so there is no "
                         f"best or final over epochs; use {metric.split('_', 1)[1]}")
    candidates = (metric,) if split_of(metric) == "test" else (metric, f"best_{metric}")
    for candidate in candidates:
        if candidate in trials.columns:
            return candidate
    if explicit and (trials["status"] == "finished").any():
        names = [c for c in trials.columns if is_metric(c.removesuffix(BEST_SUFFIX))]
        raise KWLabError(f"--metric: {metric!r} is not a column of the trials table; try one of {', '.join(names)}")
    return metric


def split_of(metric: str) -> str | None:
    """The split a metric is measured on ('test', 'val', 'train'), from its name; None when it names none."""
    words = metric.split("_")
    return next((split for split in words if split in SPLITS), None)


def resolution(sweep: Sweep) -> str | None:
    """The smallest step of an accuracy metric on one trial, 100 / (images of its split) percentage points, as a
    phrase: 'one test image = 0.28 pp (360 test images)'. None for a loss; a phrase saying it is unknown when the
    store does not record the split's size."""
    split = split_of(sweep.metric)
    if not is_accuracy(sweep.metric) or split is None:
        return None
    column = f"{split}_images"
    finished = sweep.finished
    sizes = pd.to_numeric(finished[column], errors="coerce").dropna() if column in finished else pd.Series(dtype=float)
    sizes = sizes[sizes > 0].astype(int)
    if sizes.empty:
        return f"unknown (the store does not record the {split} split's size)"
    low, high = int(sizes.min()), int(sizes.max())
    if low == high:
        return f"one {split} image = {100 / low:.2g} pp ({low:,} {split} images)"
    return f"one {split} image = {100 / high:.2g} to {100 / low:.2g} pp ({low:,} to {high:,} {split} images)"


def is_accuracy(metric: str) -> bool:
    """Whether a metric is a top-k accuracy (shown in percent, differences in percentage points)."""
    return "top1" in metric or "top5" in metric


def metric_label(metric: str) -> str:
    """Axis label of a metric with its unit, e.g. 'best val. top-1 (%)'."""
    words = (metric.replace(BEST_SUFFIX, " at best epoch").replace("val_", "val. ").replace("top1", "top-1")
             .replace("top5", "top-5").replace("_", " "))
    return f"{words} (%)" if is_accuracy(metric) else words


def diff_unit(metric: str) -> str:
    """Unit of a difference of the metric: 'pp' (percentage points) for accuracies."""
    return "pp" if is_accuracy(metric) else ""


def swept_factors(trials: pd.DataFrame, spec: dict[str, Any]) -> list[str]:
    """The factor columns: the spec's parameters, then its cases' overrides (or, without a spec, unknown columns)."""
    if spec:
        keys = list((spec.get("parameters") or {}).keys())
        keys += [k for case in spec.get("cases") or [] for k in (case.get("set") or {}) if k not in keys]
    else:
        known = set(TRIAL_COLUMNS) | set(SUMMARY_FIELDS) | {"seed", "status"}
        keys = [c for c in trials.columns if c not in known and not is_metric(c.removesuffix(BEST_SUFFIX))
                and not c.startswith(("params_", "macs_", "best_", "final_"))]
    return [k for k in dict.fromkeys(keys) if k in trials.columns]  # several cases may set the same key


def short_name(key: str) -> str:
    """The last part of a dotted key ('kw.cell_in_ratio' -> 'cell_in_ratio')."""
    return key.rsplit(".", 1)[-1]


def format_value(value: Any) -> str:
    """A factor value for humans: 0.25 -> '1/4', 4.0 -> '4', None/NaN -> '—'."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        if number.is_integer():
            return str(int(number))
        fraction = Fraction(number).limit_denominator(64)
        if 0 < abs(number) < 1 and fraction.numerator == 1 and float(fraction) == number:
            return f"1/{fraction.denominator}"
        return f"{number:g}"
    return str(value)


def variants(sweep: Sweep) -> pd.DataFrame:
    """One row per variant in sweep order (baseline first): ids, name, is_baseline, is_case, stale (another config
    of a variant's name, see `disambiguate`), the factor values, `method` (the first one recorded by its trials),
    params_total and macs_per_image (from finished trials) and `label`, a short legend label."""
    trials = sweep.trials
    if trials.empty:
        flags = ("is_baseline", "is_case", "stale")
        columns = ["variant_id", "variant", *flags, *sweep.factors, "method", "params_total", "macs_per_image",
                   "label"]
        return pd.DataFrame({c: pd.Series(dtype=bool if c in flags else object) for c in columns})
    first = trials.drop_duplicates("variant_id")
    table = first[["variant_id", "variant", "is_baseline", *sweep.factors]].copy()
    recorded = trials.dropna(subset=["method"]).drop_duplicates("variant_id") if "method" in trials else None
    recorded = (table["variant_id"].map(recorded.set_index("variant_id")["method"]) if recorded is not None
                else pd.Series(None, index=table.index, dtype=object))
    table["method"] = table["method"].where(table["method"].notna(), recorded) if "method" in table else recorded
    cases = {c.get("name") for c in sweep.spec.get("cases") or []} if sweep.spec else set()
    table["is_case"] = table["variant"].isin(cases) if cases else ~table["variant"].str.contains("=", regex=False)
    finished = sweep.finished
    for column in ("params_total", "macs_per_image"):
        values = finished.groupby("variant_id")[column].median() if column in finished else pd.Series(dtype=float)
        table[column] = table["variant_id"].map(values).astype(float)
    table["stale"] = [v.endswith(f"[{i}]") for v, i in zip(table["variant"], table["variant_id"], strict=True)]
    table = table.iloc[sweep_order(table, sweep.spec)].reset_index(drop=True)
    table["label"] = labels(table, factor_groups(table, sweep.factors))
    return table


def sweep_order(table: pd.DataFrame, spec: dict[str, Any]) -> list[int]:
    """Row positions in the order `kwlab sweep` expands variants: the baseline, the other cases in spec order, then
    the grid points in the order of the spec's values (zip groups first); unknown values keep their order."""
    cases = [c.get("name") for c in spec.get("cases") or []]
    parameters = spec.get("parameters") or {}
    grouped = [g[0] for g in spec.get("zip") or [] if g]
    in_zip = {k for g in spec.get("zip") or [] for k in g}
    axes = [*grouped, *(k for k in parameters if k not in in_zip)]

    def position(key: str, value: Any) -> int:
        p = parameters.get(key) or {}
        values = p.get("values") if p.get("values") is not None else [p.get("value")]
        shown = [format_value(v) for v in values]
        return shown.index(format_value(value)) if format_value(value) in shown else len(shown)

    def order(i: int) -> tuple[int, ...]:
        row = table.iloc[i]
        if row["is_baseline"]:
            return (0, i)
        if row["variant"] in cases:
            return (1, cases.index(row["variant"]), i)
        return (2, *(position(k, row[k]) if k in row else 0 for k in axes), i)

    return sorted(range(len(table)), key=order)


def factor_groups(variant_table: pd.DataFrame, factors: list[str]) -> list[list[str]]:
    """The factors that take more than one value across variants, keys varying in lock-step grouped together."""
    groups: list[list[str]] = []
    signatures: dict[tuple[str, ...], list[str]] = {}
    for key in factors:
        values = variant_table[key].map(format_value)
        if values[values != "—"].nunique() < 2:
            continue
        signature = tuple(values)
        if signature in signatures:
            signatures[signature].append(key)
        else:
            signatures[signature] = [key]
            groups.append(signatures[signature])
    return groups


def fixed_factors(variant_table: pd.DataFrame, factors: list[str]) -> dict[str, str]:
    """The factors set to one value wherever they are set (e.g. `kw.budget: {value: 4}`), formatted."""
    fixed = {}
    for key in factors:
        values = variant_table[key].map(format_value)
        values = values[values != "—"]
        if values.nunique() == 1:
            fixed[key] = values.iloc[0]
    return fixed


def group_title(group: list[str]) -> str:
    """Legend/column title of a factor group: 'cell_in_ratio = cell_out_ratio'."""
    return " = ".join(short_name(k) for k in group)


def labels(variant_table: pd.DataFrame, groups: list[list[str]]) -> list[str]:
    """Short legend labels: the value of the first varying factor; the baseline and colliding cases by name."""
    if variant_table.empty:
        return []
    primary = groups[0][0] if groups else None
    out = []
    for row in variant_table.to_dict("records"):
        value = format_value(row[primary]) if primary else "—"
        out.append(row["variant"] if row["is_baseline"] or value == "—" else value)
    counts = pd.Series(out).value_counts()
    for i, row in enumerate(variant_table.to_dict("records")):
        if counts[out[i]] > 1 and (row["is_case"] or len(groups) > 1):
            out[i] = row["variant"]
    if len(set(out)) < len(out):  # still ambiguous: the full variant names are unique
        out = list(variant_table["variant"])
    return out


@dataclass
class Progress:
    """Where a sweep stands: counts by status, and the trials that are not finished."""

    counts: dict[str, int]
    failed: pd.DataFrame  # trial_id, variant, seed, error
    unfinished: pd.DataFrame  # trial_id, variant, seed, status (running or pending)
    missing: list[tuple[str, int]]  # (variant, seed) the spec lists but the store has no trial for
    stopped: pd.DataFrame = field(default_factory=pd.DataFrame)  # trial_id, variant, seed, epoch, reason


def progress(sweep: Sweep) -> Progress:
    """Count the trials by status and list the stopped, failed, unfinished and missing ones."""
    trials = sweep.trials
    counts = {s: int((trials["status"] == s).sum()) for s in STATUSES}
    failed = trials.loc[trials["status"] == "failed", ["trial_id", "variant", "seed", "error"]]
    stopped = trials.loc[trials["status"] == "stopped", ["trial_id", "variant", "seed"]].copy()
    records = [sweep.trial_dir(t).stopped() or {} for t in stopped["trial_id"]]
    stopped["epoch"] = [r.get("epoch") for r in records]
    stopped["reason"] = [r.get("reason") or "stopped early" for r in records]
    unfinished = trials.loc[trials["status"].isin(["running", "pending"]),
                            ["trial_id", "variant", "seed", "status", "epochs_done"]
                            if "epochs_done" in trials else ["trial_id", "variant", "seed", "status"]]
    seeds = [int(s) for s in sweep.spec.get("seeds") or []]
    case_seeds = {c["name"]: [int(s) for s in c["seeds"]] for c in sweep.spec.get("cases") or [] if c.get("seeds")}
    missing = []
    for variant, group in trials.groupby("variant", sort=False):
        present = set(pd.to_numeric(group["seed"], errors="coerce").dropna().astype(int))
        missing += [(str(variant), s) for s in case_seeds.get(str(variant), seeds) if s not in present]
    return Progress(counts, failed.reset_index(drop=True), unfinished.reset_index(drop=True), missing,
                    stopped.reset_index(drop=True))
