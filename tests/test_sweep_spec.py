"""The sweep spec: validation errors name the file and key path; expansion pairs seeds across variants."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kwlab.errors import KWLabError
from kwlab.sweep.expand import (
    Variant, base_config, config_hash, costliest_first, expand, grid_variants, price, random_variants, variants,
)
from kwlab.sweep.spec import load_spec, parse_spec, resolve_spec, sweep_schema

SWEEPS = Path(__file__).parents[1] / "sweeps"
SHIPPED = sorted(SWEEPS.rglob("*.yaml"))  # the studies under sweeps/<study>/ too


def spec_tree(**changes: object) -> dict:
    """A minimal valid spec with `changes` applied at the top level."""
    tree = {"name": "t", "base": {}, "parameters": {"kw.budget": {"values": [1, 2]}}, "seeds": [0, 1]}
    tree.update(changes)
    return tree


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"parameters": {"kw.budget": {"values": [1], "nope": 2}}}, "parameters.kw.budget.nope: unknown key"),
        ({"method": "hyperopt"}, "method: 'hyperopt' is not one of 'grid', 'random', 'bayes'"),
        ({"seeds": "0,1"}, "seeds: expected a list, got '0,1'"),
        ({"seeds": [0, 0]}, "distinct seeds"),
        ({"cases": [{"name": "s", "seeds": [3, 3]}]}, "cases.0.seeds: expected distinct seeds"),
        ({"cases": [{"name": "s", "seeds": []}]}, "cases.0.seeds: List should have at least 1 item"),
        ({"parameters": {"lr": {"distribution": "uniform", "min": 0.1, "max": 1}}}, "a grid cannot enumerate"),
        ({"parameters": {"lr": {"distribution": "uniform", "min": 1, "max": 0.1}}, "method": "random"}, "min < max"),
        ({"parameters": {"x": {"value": 1, "values": [1]}}}, "exactly one of value, values or distribution"),
        ({"zip": [["kw.budget", "kw.other"]]}, "'kw.other' is not a key of parameters"),
        ({"parameters": {"a": {"values": [1, 2]}, "b": {"values": [1]}}, "zip": [["a", "b"]]}, "same number"),
        ({"baseline": "static"}, "'static' is not the name of a case"),
        ({"name": "has space"}, "name: String should match pattern"),
        ({"parameters": {}}, "nothing to run"),
        ({"method": "bayes", "constraints": ["params < 1"]}, "constraints and zip need method grid or random"),
    ],
)
def test_bad_spec_names_file_key_and_expectation(changes: dict, fragment: str) -> None:
    with pytest.raises(KWLabError) as error:
        parse_spec(spec_tree(**changes), "sweeps/x.yaml")
    message = str(error.value)
    assert message.startswith("sweeps/x.yaml: ") and fragment in message and "\n" not in message


def test_yaml_errors_and_missing_file_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(KWLabError, match=r"bad.yaml: invalid YAML at line \d+"):
        load_spec(bad)
    with pytest.raises(KWLabError, match="missing.yaml: cannot read sweep spec"):
        load_spec(tmp_path / "missing.yaml")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(KWLabError, match="invalid YAML"):  # the safe loader refuses Python tags
        load_spec(unsafe)


def test_schema_documents_the_keys() -> None:
    properties = sweep_schema()["properties"]
    for key in ("name", "base", "method", "parameters", "zip", "cases", "constraints", "baseline", "seeds",
                "resources", "max_concurrent_trials", "failure", "early_terminate", "metric", "profiles"):
        assert key in properties


def test_grid_with_zip_and_cases_pairs_every_variant_with_the_same_seeds() -> None:
    spec = parse_spec(spec_tree(
        parameters={"kw.cell_in_ratio": {"values": [1, 0.5]}, "kw.cell_out_ratio": {"values": [1, 0.5]},
                    "kw.budget": {"values": [1, 2, 4]}},
        zip=[["kw.cell_in_ratio", "kw.cell_out_ratio"]],
        cases=[{"name": "static", "set": {"kw": None}}], baseline="static", seeds=[3, 4, 5]), "s")
    found = variants(spec)
    assert found[0] == Variant("static", {"kw": None}, is_baseline=True)
    points = [v.overrides for v in found[1:]]
    assert len(points) == 2 * 3  # the zip group is one axis of two values
    assert all(p["kw.cell_in_ratio"] == p["kw.cell_out_ratio"] for p in points)
    assert {p["kw.budget"] for p in points} == {1, 2, 4}


def test_random_sampling_is_seeded_and_respects_bounds() -> None:
    tree = spec_tree(method="random", num_samples=5, parameters={
        "optim.lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-1},
        "kw.budget": {"values": [0.5, 1, 2]}, "epochs": {"distribution": "int_uniform", "min": 2, "max": 4}})
    first, again = random_variants(parse_spec(tree, "s")), random_variants(parse_spec(tree, "s"))
    assert first == again
    other = random_variants(parse_spec({**tree, "sampler_seed": 1}, "s"))
    assert first != other
    for variant in first:
        assert 1e-3 <= variant.overrides["optim.lr"] <= 1e-1
        assert variant.overrides["kw.budget"] in (0.5, 1, 2)
        assert variant.overrides["epochs"] in (2, 3, 4)


def test_cases_alone_make_the_variants() -> None:
    spec = parse_spec(spec_tree(parameters={}, cases=[{"name": "a", "set": {"kw.budget": 2}}]), "s")
    assert grid_variants(spec) == []
    assert [v.name for v in variants(spec)] == ["a"]


def test_precedence_base_fixed_profile_set(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"epochs": 3, "optim": {"lr": 0.1}, "batch_size": 8}))
    spec_path = tmp_path / "study.yaml"
    spec_path.write_text(yaml.safe_dump(spec_tree(
        base="base.yaml", fixed={"batch_size": 16, "epochs": 4},
        profiles={"default": {"epochs": 5}, "fast": {"epochs": 1, "seeds": [7], "resources.cpu": 2}})))

    def resolved(profile: str | None, sets: list[str]) -> tuple:
        r = resolve_spec(spec_path, profile, sets)
        return r.spec, r.profile, base_config(r.spec, spec_path, r.config_overrides)

    metric = {"metric": {"name": "val_top1", "goal": "maximize"}}  # the sweep's metric picks every trial's best epoch
    spec, profile, base = resolved(None, [])  # 'default' applies when no profile is named
    assert (profile, base) == ("default", {"epochs": 5, "optim": {"lr": 0.1}, "batch_size": 16, **metric})
    spec, profile, base = resolved("fast", ["optim.lr=0.5", "seeds=[3, 4]"])
    assert base == {"epochs": 1, "optim": {"lr": 0.5}, "batch_size": 16, **metric}  # base < fixed < profile < --set
    assert spec.seeds == [3, 4] and spec.resources.cpu == 2  # spec keys from the profile, then --set
    with pytest.raises(KWLabError, match="--profile: 'slow' is not one of 'default', 'fast'"):
        resolved("slow", [])
    with pytest.raises(KWLabError, match=r"seeds: expected distinct seeds"):
        resolved(None, ["seeds=[1, 1]"])


def test_a_variants_own_values_beat_the_profile_and_set(tmp_path: Path) -> None:
    """Precedence ends with the variant: a case or a grid value wins over fixed, the profile and --set."""
    from kwlab.sweep.command import plan_sweep

    spec_path = tmp_path / "study.yaml"
    spec_path.write_text(yaml.safe_dump(spec_tree(
        fixed={"epochs": 4}, profiles={"default": {}, "p": {"epochs": 2, "kw.budget": 2}},
        cases=[{"name": "long", "set": {"epochs": 6}}, {"name": "static", "set": {"kw": None}}],
        parameters={"kw.budget": {"values": [1, 4]}})))
    configs = {t.variant.name: t.config for t in plan_sweep(str(spec_path), "p", ["epochs=3"]).trials}
    assert configs["long"]["epochs"] == 6 and configs["static"]["epochs"] == 3
    assert configs["static"]["method"] == "static" and "kw" not in configs["static"]
    assert sorted(c["kw"]["budget"] for name, c in configs.items() if name.startswith("budget")) == [1, 4]


def test_config_hash_is_stable_and_order_free() -> None:
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(SWEEPS)))
def test_shipped_specs_parse(path: Path) -> None:
    spec = load_spec(path)
    folder = path.parent.relative_to(SWEEPS).parts
    assert spec.name == "_".join([*folder, path.stem])  # results/fashion_study/, results/fashion_equal_cost/
    if spec.name != "smoke":  # every real ablation is paired over seeds against the static model
        # a study of training lengths pairs each length with the static model at that length ("static@10")
        assert len(spec.seeds) >= 3 and spec.baseline.split("@")[0] == "static"
    if not folder and spec.name != "smoke":  # the shipped ablations run a short default profile; a study runs as is
        assert "default" in spec.profiles


def test_trials_run_costliest_first_with_seeds_in_order() -> None:
    spec = parse_spec(spec_tree(
        base={"model": {"name": "cifar_resnet8"}, "data": {"name": "digits"}, "epochs": 2},
        parameters={"kw.cell_in_ratio": {"values": [1, 0.5]}, "kw.cell_out_ratio": {"values": [1, 0.5]}},
        zip=[["kw.cell_in_ratio", "kw.cell_out_ratio"]],
        cases=[{"name": "static", "set": {"kw": None}}, {"name": "long", "set": {"kw": None, "epochs": 40}}],
        baseline="static"), "s")
    trials = expand(spec, base_config(spec, "s.yaml", {}), "s")
    priced = price(trials, "s")
    ordered = [(t.variant.name, t.seed) for t in costliest_first(trials, priced)]
    # 40 static epochs > 2 epochs of half-size cells (more MACs per image) > 2 of whole cells > 2 static
    names = ["long", "cell_in_ratio=0.5,cell_out_ratio=0.5", "cell_in_ratio=1,cell_out_ratio=1", "static"]
    assert ordered == [(name, seed) for name in names for seed in (0, 1)]


def test_a_variant_drawn_twice_is_one_trial() -> None:
    """Random draws may repeat a point (sampler seed 0 draws attention=caf with whole cells twice): it is one trial
    per seed, under its first name."""
    spec = parse_spec(spec_tree(method="random", num_samples=4, sampler_seed=0, parameters={
        "kw.attention": {"values": ["caf", "softmax"]}, "kw.cell_in_ratio": {"values": [1, 0.5]},
        "kw.cell_out_ratio": {"values": [1, 0.5]}}, zip=[["kw.cell_in_ratio", "kw.cell_out_ratio"]]), "s")
    drawn = [v.name for v in random_variants(spec)]
    assert len(set(drawn)) < len(drawn)
    trials = expand(spec, {"model": {"kwargs": {"width": 0.5}}}, "s")
    assert len({t.trial_id for t in trials}) == len(trials) == 2 * len(set(drawn))
