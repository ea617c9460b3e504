"""The spec's parameters as spaces to draw from: seeded draws for random sweeps (`sample_value`) and Optuna's
distributions for bayes sweeps, the results store's Optuna mirror and the report's importance
(`optuna_distributions`). One place maps a spec's `values` and `distribution` to both."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from kwlab.sweep.spec import Parameter
from kwlab.tracking.optuna_store import optuna_value


def sample_value(parameter: Parameter, rng: np.random.Generator) -> Any:
    """Draw one value from a parameter (seeded)."""
    choices = parameter.choices
    if choices is not None and parameter.distribution != "int_uniform":
        return choices[rng.integers(len(choices))]
    low, high = parameter.min, parameter.max
    match parameter.distribution:
        case "int_uniform":
            return int(rng.integers(int(low), int(high) + 1))
        case "uniform":
            return float(rng.uniform(low, high))
        case "log_uniform_values":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        case "q_uniform":
            return float(round(rng.uniform(low, high) / (parameter.q or 1)) * (parameter.q or 1))
        case _:  # normal
            return float(rng.normal(parameter.mu, parameter.sigma))


def optuna_distributions(parameters: dict[str, Parameter]) -> dict[str, BaseDistribution]:
    """The spec's parameters as Optuna distributions: a list of values is categorical, a distribution keeps its
    bounds (log scale, step, integers)."""
    space: dict[str, BaseDistribution] = {}
    for key, p in parameters.items():
        match p.distribution:
            case "uniform" | "log_uniform_values" | "q_uniform":
                space[key] = FloatDistribution(p.min, p.max, log=p.distribution == "log_uniform_values",
                                               step=p.q if p.distribution == "q_uniform" else None)
            case "int_uniform":
                space[key] = IntDistribution(int(p.min), int(p.max))
            case "normal":  # NOTE: Optuna has no normal distribution: its range is mu +- 8 sigma (all draws)
                space[key] = FloatDistribution(p.mu - 8 * p.sigma, p.mu + 8 * p.sigma)
            case _:
                space[key] = CategoricalDistribution([optuna_value(v) for v in p.choices])
    return space
