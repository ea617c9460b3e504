"""The sweep spec: a YAML file validated up front into typed models (its JSON Schema is `sweep_schema()`).

Keys follow W&B sweeps where they exist (`method`, `parameters` with `value`/`values`/`distribution`, `metric`,
`early_terminate`), Ray Tune's for execution (`resources`, `max_concurrent_trials`, `num_samples`), and add what an
ablation needs: `zip`, `cases`, `constraints`, `baseline`, `seeds` and `profiles`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from kwlab.config import Config, ConfigError, load_yaml
from kwlab import plugins
from kwlab.errors import KWLabError, not_one_of
from kwlab.overrides import parse_assignment, set_dotted
from kwlab.best import MetricConfig

Distribution = Literal["uniform", "log_uniform_values", "normal", "int_uniform", "q_uniform", "categorical"]


def _distinct(seeds: list[int]) -> list[int]:
    if len(set(seeds)) != len(seeds):
        raise ValueError("expected distinct seeds")
    return seeds


Seeds = Annotated[list[int], Field(min_length=1), AfterValidator(_distinct)]  # the spec's, or a case's own


def _folder_name(name: str) -> str:
    if name in (".", ".."):
        raise ValueError(f"{name!r} is not a folder name (the results go to <results>/<name>)")
    return name


# a sweep's or profile's name: one folder name under the results root
FolderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100), AfterValidator(_folder_name)]
CONTINUOUS = ("uniform", "log_uniform_values", "normal")
DISCRETE = ("int_uniform", "q_uniform", "categorical")


class Strict(Config):
    """Base of the spec's models."""


class Parameter(Strict):
    """One swept key: a fixed `value`, a list of `values`, or a `distribution` with its bounds."""

    value: Any = None
    values: list[Any] | None = None
    distribution: Distribution | None = None
    min: float | None = None
    max: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        given = [k for k in ("value", "values", "distribution") if k in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of value, values or distribution")
        if self.values is not None and not self.values:
            raise ValueError("values: expected a non-empty list")
        d = self.distribution
        if d in ("uniform", "log_uniform_values", "int_uniform", "q_uniform"):
            if self.min is None or self.max is None or self.min >= self.max:
                raise ValueError(f"distribution {d}: expected min < max")
            if d == "log_uniform_values" and self.min <= 0:
                raise ValueError("log_uniform_values: expected min > 0")
        if d == "normal" and (self.mu is None or self.sigma is None):
            raise ValueError("distribution normal: expected mu and sigma")
        if d == "categorical" and not self.values:
            raise ValueError("distribution categorical: give the choices as values (or use values alone)")
        return self

    @property
    def choices(self) -> list[Any] | None:
        """The finite list of values this parameter takes, or None for a continuous distribution."""
        if "value" in self.model_fields_set:
            return [self.value]
        if self.distribution in (None, "categorical"):
            return self.values
        if self.distribution == "int_uniform":
            return list(range(int(self.min), int(self.max) + 1))
        return None


class Case(Strict):
    """An explicit variant: a name, the dotted-path overrides that define it and, optionally, its own seeds (in place
    of the spec's: more seeds where a comparison needs them, as `kwlab power` says)."""

    name: str
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: Seeds | None = None


class Resources(Strict):
    """What one trial asks of the cluster: `workers` processes (Ray Train data-parallel workers when more than one),
    each with `cpu` CPUs and `gpu` GPUs (a fraction shares a device)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1)


class Failure(Strict):
    """How often a failing trial is retried before it is recorded as failed."""

    max_retries: int = Field(1, ge=0)


class Timeout(Strict):
    """How long a trial, and the whole sweep, may run, in seconds (null: no limit). A trial past its limit fails
    (its worker is stopped: a hung trial too) and the sweep goes on; a sweep past its limit stops its trials,
    keeping what finished, as Ctrl-C does. A rerun of the sweep tries both again."""

    trial: float | None = Field(None, gt=0)
    sweep: float | None = Field(None, gt=0)


class EarlyTerminate(Strict):
    """ASHA early stopping over epochs (W&B's `hyperband` key is accepted as a synonym)."""

    type: Literal["asha", "hyperband"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class MLflowTracking(Strict):
    """Log each trial as an MLflow run: the tracking server's URI and the experiment (default: the sweep's name)."""

    uri: str
    experiment: str | None = None


class WandbTracking(Strict):
    """Log each trial as a W&B run, written by the trial into its folder: offline (synced later with `wandb sync`),
    or online."""

    project: str
    mode: Literal["offline", "online"] = "offline"
    entity: str | None = None
    group: str | None = None  # default: the sweep's name


class Tracking(Strict):
    """Where a sweep is logged besides its results store (which always holds optuna.db and TensorBoard files)."""

    mlflow: MLflowTracking | None = None
    wandb: WandbTracking | None = None


class SweepSpec(Strict):
    """A whole sweep: what varies, over which seeds, on which base trial, and how it runs."""

    name: FolderName
    description: str = ""
    base: str | dict[str, Any] = Field(default_factory=dict)
    method: Literal["grid", "random", "bayes"] = "grid"
    num_samples: int = Field(1, ge=1)
    sampler_seed: int = 0
    metric: MetricConfig = Field(default_factory=MetricConfig)  # every trial's too: it picks their best epochs
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list)
    cases: list[Case] = Field(default_factory=list)
    baseline: str | None = None
    constraints: list[str] = Field(default_factory=list)
    seeds: Seeds = Field(default_factory=lambda: [0])
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(None, ge=1)
    failure: Failure = Field(default_factory=Failure)
    timeout: Timeout = Field(default_factory=Timeout)
    early_terminate: EarlyTerminate | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)  # dotted trial-config keys set for every variant
    profiles: dict[FolderName, dict[str, Any]] = Field(default_factory=dict)
    imports: list[str] = Field(default_factory=list)  # user modules (names or .py paths relative to the spec)
    tracking: Tracking = Field(default_factory=Tracking)
    results_dir: str = "results"  # where stores go: a folder, or a URI such as s3://bucket/prefix
    # the checkpoints a finished trial keeps: "best" (best.pt, the best epoch's weights), "last" (checkpoint.pt, the
    # resume state, which a finished trial never reads again)
    keep: list[Literal["best", "last"]] = Field(default_factory=lambda: ["best"])

    @model_validator(mode="after")
    def _structure(self) -> SweepSpec:
        def fail(key: str, message: str) -> ConfigError:
            return ConfigError(tuple(key.split(".", 1)) if key else (), message)

        zipped = [key for group in self.zip for key in group]
        for key in zipped:
            if key not in self.parameters:
                raise fail("zip", f"{key!r} is not a key of parameters")
        if len(zipped) != len(set(zipped)):
            raise fail("zip", "a parameter appears in two groups")
        for group in self.zip:
            lengths = {len(self.parameters[k].choices or []) for k in group}
            if len(lengths) != 1:
                raise fail("zip", f"{group} must list the same number of values")
        if self.method == "grid":
            for key, parameter in self.parameters.items():
                if parameter.choices is None:
                    raise ConfigError(("parameters", key), f"a grid cannot enumerate the continuous distribution "
                                      f"{parameter.distribution!r}; use values, or method random/bayes")
        if not self.parameters and not self.cases:
            raise fail("parameters", "nothing to run; give parameters or cases")
        for key in [*self.parameters, *(k for case in self.cases for k in case.set)]:
            if key.split(".")[0] == "metric":
                raise fail("parameters" if key in self.parameters else "cases", f"{key!r}: the metric is the sweep's "
                           "(the spec's `metric:` key), the same for every trial")
        names = [case.name for case in self.cases]
        if len(set(names)) != len(names):
            raise fail("cases", "names must be distinct")
        if self.baseline is not None and self.baseline not in names:
            raise fail("baseline", f"{self.baseline!r} is not the name of a case ({', '.join(names) or 'none'})")
        for name, entries in self.profiles.items():
            for key in entries:
                if key.split(".")[0] in ("name", "profiles"):
                    raise ConfigError(("profiles", name, key), "a profile cannot change the sweep's name or profiles")
        if self.method == "bayes":
            if self.constraints or self.zip:
                raise fail("", "constraints and zip need method grid or random (bayes suggests points one by one)")
            if any(p.distribution == "normal" for p in self.parameters.values()):
                raise fail("parameters", "the normal distribution is not available with bayes (TPE)")
        return self


def sweep_schema() -> dict[str, Any]:
    """The JSON Schema of a sweep spec."""
    return SweepSpec.model_json_schema()


def parse_spec(tree: Any, source: str) -> SweepSpec:
    """Validate a loaded YAML tree; errors name the file, the key path and what was expected, on one line."""
    if not isinstance(tree, dict):
        raise KWLabError(f"{source}: expected a mapping of sweep keys at the top level")
    try:
        return SweepSpec(**tree)
    except KWLabError as error:
        raise KWLabError(f"{source}: {error}") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec from a YAML file (safe loader)."""
    return parse_spec(load_yaml(path, "sweep spec"), str(path))


def split_overrides(entries: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec keys, trial-config keys) of a profile's or --set's dotted entries: a key whose first part is a spec
    field (resources, seeds, early_terminate, ...) overrides the spec, any other key the base trial config."""
    spec, config = {}, {}
    for key, value in entries.items():
        (spec if key.split(".")[0] in SweepSpec.model_fields else config)[key] = value
    return spec, config


@dataclass(frozen=True)
class Resolved:
    """A spec with its profile and --set applied: the spec, the profile's name and the config overrides, in order
    (fixed < profile < --set) on top of the base trial config."""

    spec: SweepSpec
    profile: str | None
    config_overrides: dict[str, Any]
    imports: list[str]  # absolute .py paths and module names, for the workers


def resolve_spec(path: str | Path, profile: str | None, sets: list[str]) -> Resolved:
    """Load a spec, import its plugins, choose the profile (default: 'default' if the spec has one) and apply the
    profile's and --set's entries to the spec or to the base trial config; errors name the file."""
    source = str(path)
    tree = load_yaml(path, "sweep spec")
    spec = parse_spec(tree, source)
    imports = plugins.resolve(spec.imports, Path(path).parent)
    plugins.load(imports)
    if profile is None:
        profile = "default" if "default" in spec.profiles else None
    if profile is not None and profile not in spec.profiles:
        raise KWLabError(f"{source}: --profile: {not_one_of(profile, sorted(spec.profiles))}")
    profile_spec, profile_config = split_overrides(spec.profiles.get(profile) or {})
    set_spec, set_config = split_overrides(dict(parse_assignment(text) for text in sets))
    if profile_spec or set_spec:
        patched = copy.deepcopy(tree)
        for key, value in {**profile_spec, **set_spec}.items():
            set_dotted(patched, key, value)
        spec = parse_spec(patched, f"{source} (profile {profile!r} and --set applied)")
    return Resolved(spec, profile, {**spec.fixed, **profile_config, **set_config}, imports)


def schema_json() -> str:
    """The JSON Schema as indented text (what `kwlab validate --schema` prints)."""
    return json.dumps(sweep_schema(), indent=2)
