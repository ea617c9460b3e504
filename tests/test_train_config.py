"""TrainConfig: errors name the dotted key; precedence defaults < YAML < --set; round trips; shipped YAMLs validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kwlab.data import DataSpec
from kwlab.errors import KWLabError
from kwlab.methods.condconv import CondConvSettings
from kwlab.methods.kw.config import KWConfig, TemperatureConfig
from kwlab.methods.odconv import ODConvSettings
from kwlab.train import TrainConfig, load_config
from kwlab.best import MetricConfig
from kwlab.train.config import OptimConfig

SHIPPED = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"optim": {"lrr": 0.1}}, r"^optim\.lrr: unknown key; allowed: name, lr, momentum"),
        ({"bogus": 1}, r"^bogus: unknown key; allowed: model, method, data, optim, runtime, metric, .*, condconv, dyconv, kw"),
        ({"kw": {"budgett": 2}}, r"^kw\.budgett: unknown key; allowed: budget"),
        ({"data": {"nam": "digits"}}, r"^data\.nam: unknown key"),
        ({"optim": {"lr": "fast"}}, r"^optim\.lr: expected a number, got 'fast'"),
        ({"optim": {"grad_clip": "1"}}, r"^optim\.grad_clip: expected a number or null"),
        ({"optim": {"nesterov": 1}}, r"^optim\.nesterov: expected true or false, got 1"),
        ({"optim": {"name": "adam"}}, r"^optim\.name: 'adam' is not one of 'sgd', 'adamw'"),
        ({"epochs": 2.5}, r"^epochs: expected an integer, got 2\.5"),
        ({"batch_size": True}, r"^batch_size: expected an integer"),
        ({"seed": -1}, r"^seed: expected an integer >= 0"),
        ({"model": {"kwargs": []}}, r"^model\.kwargs: expected a mapping"),
        ({"model": {"kwargs": {"num_classes": 3}}}, r"^model\.kwargs\.num_classes: set by the recipe"),
        ({"optim": "sgd"}, r"^optim: expected a mapping of OptimConfig fields"),
        ({"runtime": {"channels_last": "yes"}}, r"^runtime\.channels_last: 'yes' is not one of"),
        ({"runtime": {"threads": 0}}, r"^runtime\.threads: expected an integer >= 1"),
        ({"kw": {"temperature": {"fraction": 1.5}}}, r"^kw\.temperature\.fraction: expected a number in \[0, 1\]"),
        ({"kw": {}, "temperature": {"fraction": 1.5}}, r"^kw\.temperature\.fraction: expected a number in \[0, 1\]"),
        ({"kw": {}, "odconv": {}}, r"^method: the config has sections of kw, odconv; say which method trains"),
        ({"method": "kwx"}, r"^method: 'kwx' is not one of 'condconv', 'dyconv', 'kw', 'odconv', 'static'"),
        ({"metric": {"name": "test_top1"}}, r"^metric\.name: 'test_top1' is not recorded every epoch \(test metrics"),
        ({"metric": {"name": "val_loss", "goal": "maximize"}}, r"^metric\.goal: val_loss is to minimize, not to max"),
        ({"kw": {"temperature": {}}, "temperature": {}}, r"^temperature: kw\.temperature is given too"),
    ],
)
def test_bad_values_name_the_dotted_key(tree: dict, message: str) -> None:
    with pytest.raises(KWLabError, match=message) as error:
        TrainConfig.from_dict(tree)
    assert "\n" not in str(error.value)


def test_defaults_and_types() -> None:
    cfg = TrainConfig.from_dict({"optim": {"lr": 1, "grad_clip": 2}})
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0 and cfg.optim.grad_clip == 2.0
    assert cfg.method == "static" and cfg.settings is None  # no method section: the static model
    assert isinstance(cfg.data, DataSpec) and cfg.optim.momentum == 0.9
    assert TrainConfig(optim={"lr": 0.5}).optim == OptimConfig(lr=0.5)  # sections may be given as mappings
    assert cfg.metric == MetricConfig(name="val_top1", goal="maximize")


@pytest.mark.parametrize(("tree", "method", "settings"), [
    ({"kw": {"budget": 2}}, "kw", KWConfig(budget=2)),  # a method's section chooses it
    ({"method": "kw"}, "kw", KWConfig()),
    ({"kw": None}, "static", None),  # `kw: null`: the static model
    ({"method": "kw", "kw": None}, "static", None),
    ({"condconv": None}, "static", None),  # any method's section set to null
    ({"method": "condconv"}, "condconv", CondConvSettings()),
    ({"method": "condconv", "kw": {"budget": 2}}, "condconv", CondConvSettings()),  # another method's section: dropped
    ({"method": "odconv", "odconv": {"kernels": 4}}, "odconv", ODConvSettings(kernels=4)),
    ({"odconv": {"kernels": 4}}, "odconv", ODConvSettings(kernels=4)),
    ({"method": "static", "kw": {"budget": 2}}, "static", None),
])
def test_every_form_of_choosing_a_method(tree: dict, method: str, settings: object) -> None:
    cfg = TrainConfig.from_dict(tree)
    assert cfg.method == method and cfg.settings == settings
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what config.yaml holds reads back the same
    assert set(cfg.to_dict()) - set(TrainConfig.model_fields) == ({method} if settings is not None else set())


def test_the_top_level_temperature_is_kws_tau() -> None:
    """Configs written when KW's tau was the top-level `temperature:` keep working; another method ignores it, as
    before (its own temperature lives in its section)."""
    cfg = TrainConfig.from_dict({"kw": {"budget": 1}, "temperature": {"epochs": 3, "start": 0.5}})
    assert cfg.settings.temperature == TemperatureConfig(epochs=3, start=0.5)
    assert "temperature" not in cfg.to_dict() and cfg.to_dict()["kw"]["temperature"]["epochs"] == 3
    other = TrainConfig.from_dict({"method": "dyconv", "temperature": {"epochs": 3}})
    assert other.settings.temperature.epochs is None and "temperature" not in other.to_dict()


def test_the_metric_picks_its_own_direction() -> None:
    assert TrainConfig.from_dict({"metric": {"name": "val_loss"}}).metric.goal == "minimize"
    ema = TrainConfig.from_dict({"optim": {"ema_decay": 0.9}, "metric": {"name": "ema_val_top1"}})
    assert ema.metric == MetricConfig(name="ema_val_top1", goal="maximize")


def test_round_trip_through_yaml() -> None:
    cfg = TrainConfig.from_dict({
        "model": {"name": "cifar_resnet20", "kwargs": {"width": 0.5}}, "kw": {"budget": "1/4", "sharing": 2},
        "data": {"name": "synthetic", "shape": [1, 8, 8]}, "optim": {"name": "adamw", "grad_clip": 1.0},
        "runtime": {"channels_last": False, "threads": 1}, "epochs": 3,
    })
    tree = cfg.to_dict()
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(tree))) == cfg
    assert TrainConfig.from_dict(tree).to_dict() == tree
    assert cfg.digest() == TrainConfig.from_dict(tree).digest() != TrainConfig().digest()


def test_precedence_defaults_yaml_set(tmp_path: Path) -> None:
    path = tmp_path / "trial.yaml"
    path.write_text("epochs: 7\noptim:\n  lr: 0.05\n  weight_decay: 0.001\nkw: null\n")
    cfg = load_config(path, ["optim.lr=0.2", "kw.budget=2"])
    assert cfg.epochs == 7 and cfg.optim.weight_decay == 0.001  # YAML over defaults
    assert cfg.optim.lr == 0.2  # --set over YAML
    assert cfg.optim.momentum == 0.9  # untouched default
    assert cfg.method == "kw" and cfg.settings == KWConfig(budget=2)  # --set builds a section YAML switched off
    assert load_config(path, ["kw=null"]).method == "static"
    with pytest.raises(KWLabError, match=r"^optim\.lrr: unknown key"):
        load_config(path, ["optim.lrr=1"])


def test_yaml_file_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(KWLabError, match=r"missing\.yaml: cannot read config"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [unclosed\n")
    with pytest.raises(KWLabError, match=r"broken\.yaml: invalid YAML at line \d+") as error:
        load_config(broken)
    assert "\n" not in str(error.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(KWLabError, match=r"list\.yaml: expected a mapping"):
        load_config(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == TrainConfig()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
