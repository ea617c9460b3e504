"""`kwlab report` and `kwlab power` end to end on synthetic results stores written through kwlab.store (Store and
TrialDir write every file: sweep.json, metrics.jsonl, summary.json, error.json, stopped.json, attention.npz; the
tables are rebuilt by Store.write_tables), plus one slow test on a real smoke sweep.

Provenance of the synthetic numbers: accuracies are invented (variant effect + seed effect + a variant x seed term,
below; the test split 0.4 points below the final validation epoch), the split sizes are those of the digits data
(360 test images: one image = 0.28 pp), and the attention matrices have the warehouse shapes of
`kwlab.plan("cifar_resnet8", kw, width=0.5)` for each variant's kw config.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import attention as attn
from analysis.figures import attention_heatmaps, params_accuracy, pareto_front
from analysis.report import write_report
from analysis.stats import FEW_PAIRS, FEW_SEEDS, NO_SPREAD, summarize
from analysis.style import row_major
from analysis.sweep import load_sweep
from analysis.tables import to_latex, to_markdown
from kwlab import plan
from kwlab.cli import main as kwlab_main
from kwlab.store import ATTENTION, TRIALS, Store, summarize_epochs

MODEL = dict(num_classes=10, in_chans=1, width=0.5)
SEEDS = (0, 1, 2)
EPOCHS = 4
SPLITS = {"train_images": 1149, "val_images": 288, "test_images": 360}  # digits: 0.2 test, then 0.2 of the rest
TEST_OFFSET = -0.4  # test top-1 = the true accuracy of the final model, 0.4 points under its last val epoch

# kind -> (spec parameters, spec cases, zip, variants as (name, overrides, accuracy effect in points))
SWEEPS: dict[str, dict[str, Any]] = {
    "cell_size": {
        "parameters": {"kw.cell_in_ratio": {"values": [1, 0.5]}, "kw.cell_out_ratio": {"values": [1, 0.5]}},
        "zip": [["kw.cell_in_ratio", "kw.cell_out_ratio"]],
        "cases": [{"name": "static", "set": {"kw": None}}],
        "interaction": 0.0,  # every seed moves all variants alike: paired differences are exactly the effects
        "variants": [
            ("static", {"kw": None}, 0.0),
            ("cell_in_ratio=1,cell_out_ratio=1", {"kw.cell_in_ratio": 1, "kw.cell_out_ratio": 1}, 1.0),
            ("cell_in_ratio=0.5,cell_out_ratio=0.5", {"kw.cell_in_ratio": 0.5, "kw.cell_out_ratio": 0.5}, 1.6),
        ],
    },
    "attention": {
        "parameters": {"kw.attention": {"values": ["caf", "softmax", "relu_l1"]}, "kw.budget": {"value": 4}},
        "zip": [],
        "cases": [{"name": "static", "set": {"kw": None}},
                  {"name": "caf_no_init", "set": {"kw.attention": "caf", "kw.budget": 4, "kw.init": "none"}}],
        "interaction": 1.0,
        "variants": [
            ("static", {"kw": None}, 0.0),
            ("caf_no_init", {"kw.attention": "caf", "kw.budget": 4, "kw.init": "none"}, 0.4),
            ("attention=caf,budget=4", {"kw.attention": "caf", "kw.budget": 4}, 1.5),
            ("attention=softmax,budget=4", {"kw.attention": "softmax", "kw.budget": 4}, 0.7),
            ("attention=relu_l1,budget=4", {"kw.attention": "relu_l1", "kw.budget": 4}, 0.2),
        ],
    },
    # the Fashion-MNIST study's layout: caf at 4x is the budget case, which leaves the function to the config
    "attention_cases": {
        "parameters": {},
        "zip": [],
        "cases": [{"name": "static", "set": {"kw": None}}, {"name": "budget=1", "set": {"kw.budget": 1}},
                  {"name": "budget=4", "set": {"kw.budget": 4}},
                  {"name": "softmax@4x", "set": {"kw.budget": 4, "kw.attention": "softmax"}},
                  {"name": "caf_no_init@4x", "set": {"kw.budget": 4, "kw.init": "none"}}],
        "interaction": 1.0,
        "variants": [
            ("static", {"kw": None}, 0.0),
            ("budget=1", {"kw.budget": 1}, 0.3),
            ("budget=4", {"kw.budget": 4}, 1.5),
            ("softmax@4x", {"kw.budget": 4, "kw.attention": "softmax"}, 0.7),
            ("caf_no_init@4x", {"kw.budget": 4, "kw.init": "none"}, 0.4),
        ],
    },
}
SEED_EFFECT = {0: 0.0, 1: -0.5, 2: 0.3, 3: 0.1}
INTERACTION = (0.3, -0.2, 0.1, 0.0, -0.1, 0.25, -0.3)  # variant x seed term, times the sweep's "interaction"


def _id(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def _kw(overrides: dict[str, Any]) -> dict[str, Any] | None:
    if "kw" in overrides:
        return None
    return {key.split(".", 1)[1]: value for key, value in overrides.items()}


def _alpha(rng: np.random.Generator, rows: int, n: int, function: str) -> np.ndarray:
    """Plausible mean attentions: random logits with a bump on each row's own cell, through the function."""
    logits = rng.normal(size=(rows, n + 1))
    logits[np.arange(rows), np.arange(rows) * n // max(rows, 1)] += 3.0  # the one-to-one assignment beta
    if function == "softmax":
        e = np.exp(logits - logits.max(1, keepdims=True))
        alpha = e / e.sum(1, keepdims=True)
    elif function == "relu_l1":
        r = np.maximum(logits, 0)
        alpha = r / (r.sum(1, keepdims=True) + 1e-3)
    else:  # caf: signed, L1-normalised
        alpha = logits / (np.abs(logits).sum(1, keepdims=True) + 1e-3)
    return alpha[:, :n].astype(np.float32)  # drop the zero cell


def attention_arrays(kw: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """attention.npz content with the warehouses of the plan of `kw` (the layout kwlab.train.records writes)."""
    arrays = {}
    for w in plan("cifar_resnet8", kw, **MODEL).warehouses:
        rows = sum(w.mixtures)
        arrays[f"{w.name}/alpha"] = _alpha(rng, rows, w.cells, kw.get("attention", "caf"))
        arrays[f"{w.name}/layer"] = np.array([name for name, m in zip(w.layers, w.mixtures) for _ in range(m)])
        arrays[f"{w.name}/mixture"] = np.concatenate([np.arange(m) for m in w.mixtures])
    return arrays


ROUTED_LAYERS = [f"stage{s}.block{b}.conv{c}" for s in range(3) for b in range(1) for c in (1, 2)] + ["head"]
EXPERTS = 4


def routing_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A CondConv-like recorder's attention.npz: one group "routing", one row per layer, one column per expert."""
    return {"routing/alpha": _alpha(rng, len(ROUTED_LAYERS), EXPERTS, "softmax"),
            "routing/layer": np.array(ROUTED_LAYERS), "routing/mixture": np.zeros(len(ROUTED_LAYERS), dtype=int)}


def _history(final: float, done: int, scale: float, kw: object) -> list[dict[str, Any]]:
    """Epoch records like the recipe writes (val top-1 peaks in the second-to-last epoch)."""
    return [{"epoch": e, "train_loss": 1.0 / e, "train_top1": scale * (final - 8 / e),
             "val_loss": 1.2 / e + (100 - final) / 100,  # a better model has a lower loss
             "val_top1": scale * (final - 6 / e + 1.5 * (e == EPOCHS - 1)), "val_top5": scale * 99.0,
             "lr": 0.1 / e, "tau": None if kw is None else max(0.0, 1 - e / 2), "epoch_time_s": 1.0,
             "images_per_s": 500.0, "peak_memory_mb": 300.0} for e in range(1, done + 1)]


def _new_store(root: Path, name: str, spec: dict[str, Any]) -> Store:
    results = Store(root / name)
    (results.path / TRIALS).mkdir(parents=True)
    results.write_spec(spec)
    results.write_manifest({"command": f"kwlab sweep sweeps/{name}.yaml", "versions": {"kwlab": "0.1.0"},
                            "git": {"commit": "0" * 40, "dirty": False}})
    return results


def _finish(trial: Any, history: list[dict[str, Any]], *, method: str, params: int, seed: int, test_top1: float | None,
            scale: float) -> None:
    """summary.json as the recipe writes it; without `test_top1` an old store's (no test metrics, no split sizes)."""
    summary = {"status": "finished", "method": method, "params_total": params, "params_warehouse": 0,
               "params_attention": 0, "params_other": params, "macs_per_image": params * 12, "epochs": EPOCHS,
               "seed": seed, **summarize_epochs(history), "wall_time_s": 10.0, "versions": {"kwlab": "0.1.0"},
               "git": {"commit": None, "dirty": None}, "device": "cpu"}
    if test_top1 is not None:
        summary |= {**SPLITS, "test_loss": 0.3, "test_top1": scale * test_top1, "test_top5": scale * 99.5,
                    "test_top1_at_best_val": scale * (test_top1 - 0.1)}
    trial.write_summary(summary)


def make_store(root: Path, kind: str = "cell_size", *, fractions: bool = False, failed: bool = True,
               running: bool = True, attention: bool = True, tested: bool = True,
               seeds: tuple[int, ...] = SEEDS) -> Path:
    """A results store like `kwlab sweep` writes. With `failed`/`running`, the last variant's last seed failed and
    the first KW variant's last seed is still running (2 epochs done). `fractions` stores top-1 in [0, 1];
    `attention=False` leaves out attention.npz; `tested=False` writes an old store (no test metrics, no split
    sizes, no method)."""
    sweep = SWEEPS[kind]
    spec = {"name": kind, "description": f"synthetic {kind} sweep", "method": "grid",
            "parameters": sweep["parameters"], "zip": sweep["zip"], "cases": sweep["cases"], "baseline": "static",
            "seeds": list(seeds), "metric": {"name": "val_top1", "goal": "maximize"}}
    results = _new_store(root, kind, spec)
    rng = np.random.default_rng(0)
    scale = 0.01 if fractions else 1.0
    names = [v[0] for v in sweep["variants"]]
    for index, (name, overrides, effect) in enumerate(sweep["variants"]):
        kw = _kw(overrides)
        params = plan("cifar_resnet8", kw, **MODEL).params if kw else 48_000
        for seed in seeds:
            trial_id = _id(kind, name, seed)
            trial = results.trial(trial_id)
            trial.path.mkdir()
            trial.write_sweep_meta({"trial_id": trial_id, "variant_id": _id(kind, name), "variant": name,
                                    "is_baseline": name == "static", "seed": seed, "parameters": overrides})
            final = 90.0 + effect + SEED_EFFECT[seed] + sweep["interaction"] * INTERACTION[(2 * index + seed) % 7]
            is_failed = failed and name == names[-1] and seed == seeds[-1]
            is_running = running and name == names[1] and seed == seeds[-1]
            history = _history(final, 2 if is_running else (1 if is_failed else EPOCHS), scale, kw)
            trial.write_config({"method": "static" if kw is None else "kw",
                                "kw": {"budget": 1, "attention": "caf", "init": "one_to_one", **(kw or {})}})
            trial.write_metrics(history)
            if is_failed:
                trial.write_error("RuntimeError: loss is NaN\nmore lines")
                continue
            if is_running:
                continue
            _finish(trial, history, method="static" if kw is None else "kw", params=params, seed=seed,
                    test_top1=final + TEST_OFFSET if tested else None, scale=scale)
            if kw is not None and attention:
                trial.write_attention(attention_arrays(kw, rng))
    results.write_tables()
    return results.path


# the method comparison: variant -> (method, swept values, parameters, accuracy effect, interaction with the seed)
METHOD_SEEDS = (0, 1, 2, 3)
METHOD_VARIANTS: dict[str, tuple[str, dict[str, Any], int, float, tuple[float, ...]]] = {
    "static": ("static", {"kw": None}, 48_000, 0.0, (0, 0, 0, 0)),
    "sharing=none": ("kw", {"kw.sharing": "none"}, 60_000, 1.2, (0, 0, 0, 0)),  # the same +1.2 on every seed
    "sharing=2": ("kw", {"kw.sharing": 2}, 52_000, 0.9, (0.4, -0.3, 0.2, -0.1)),
    "condconv": ("condconv", {"method": "condconv", "kw": None, "condconv.experts": EXPERTS}, 150_000, 0.8,
                 (0.2, 0.3, -0.4, 0.0)),
}


def make_methods_store(root: Path) -> Path:
    """Static, KW at sharing 'none' and 2 (a swept column of mixed types) and CondConv (routing attention), 4 seeds;
    CondConv's seed 3 was stopped early by ASHA after epoch 2."""
    spec = {"name": "methods", "description": "synthetic dynamic-convolution baselines", "method": "grid",
            "parameters": {"kw.sharing": {"values": ["none", 2]}}, "zip": [],
            "cases": [{"name": "static", "set": {"kw": None}},
                      {"name": "condconv", "set": METHOD_VARIANTS["condconv"][1]}],
            "baseline": "static", "seeds": list(METHOD_SEEDS), "metric": {"name": "val_top1", "goal": "maximize"}}
    results = _new_store(root, "methods", spec)
    rng = np.random.default_rng(1)
    for name, (method, overrides, params, effect, interaction) in METHOD_VARIANTS.items():
        for seed in METHOD_SEEDS:
            trial_id = _id("methods", name, seed)
            trial = results.trial(trial_id)
            trial.path.mkdir()
            trial.write_sweep_meta({"trial_id": trial_id, "variant_id": _id("methods", name), "variant": name,
                                    "is_baseline": name == "static", "seed": seed, "parameters": overrides,
                                    "price": {"params_total": params, "macs_per_image": params * 12}})
            final = 90.0 + effect + SEED_EFFECT[seed] + interaction[seed]
            stopped = name == "condconv" and seed == 3
            history = _history(final, 2 if stopped else EPOCHS, 1.0, {} if method == "kw" else None)
            trial.write_metrics(history)
            if stopped:
                trial.write_stopped(2, "stopped early by ASHA")
                continue
            _finish(trial, history, method=method, params=params, seed=seed, test_top1=final + TEST_OFFSET,
                    scale=1.0)
            if method == "condconv":
                trial.write_attention(routing_arrays(rng))
            elif name == "sharing=none":
                trial.write_attention(attention_arrays({"sharing": "stage"}, rng))
    results.write_tables()
    return results.path


FIGURES = ["params_accuracy", "macs_accuracy", "learning_curves"]
ONE_TRIAL = _id("cell_size", "cell_in_ratio=1,cell_out_ratio=1", 0)


def _written(out: Path, stem: str) -> None:
    for suffix in (".png", ".pdf"):
        path = out / f"{stem}{suffix}"
        assert path.is_file() and path.stat().st_size > 1000, path


def _t_interval(values: list[float]) -> tuple[float, float]:
    """The reference: scipy's t interval of a mean (mean +- t_{n-1,0.975} * sd / sqrt(n))."""
    x = np.asarray(values)
    return scipy_stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=scipy_stats.sem(x))


@pytest.fixture(scope="module")
def cell_size(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cell_size store (one failed, one running trial) reported through the CLI into STORE/report."""
    store = make_store(tmp_path_factory.mktemp("stores"))
    assert kwlab_main(["report", str(store), "--trial", ONE_TRIAL]) == 0
    return store


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An attention store holding fractions, reported together with an old cell_size store (complete, but without
    test metrics, split sizes or attention files: kept cheap, no heatmaps); returns the output folder."""
    root = tmp_path_factory.mktemp("stores")
    attention = make_store(root, "attention", fractions=True)
    cell_size = make_store(root, "cell_size", failed=False, running=False, attention=False, tested=False)
    out = tmp_path_factory.mktemp("both")
    write_report([cell_size, attention], out)
    return out


@pytest.fixture(scope="module")
def methods(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The method comparison (static, KW, CondConv; one trial stopped by ASHA) reported with `--effect 0.5`."""
    store = make_methods_store(tmp_path_factory.mktemp("stores"))
    assert kwlab_main(["report", str(store), "--effect", "0.5"]) == 0
    return store


def test_report_writes_every_file_and_names_unfinished_trials(cell_size: Path) -> None:
    out = cell_size / "report"
    for stem in [*FIGURES, "heatmap_cell_in_ratio_1", "heatmap_cell_in_ratio_1_2"]:
        _written(out, stem)
    for name in ("ablation.md", "ablation.tex", "summary.csv", "report.md"):
        assert (out / name).stat().st_size > 100, name
    report = (out / "report.md").read_text()
    trials = load_sweep(cell_size).trials
    failed = trials.loc[trials["status"] == "failed", "trial_id"].item()
    running = trials.loc[trials["status"] == "running", "trial_id"].item()
    assert f"`{failed}`" in report and "RuntimeError: loss is NaN" in report and "more lines" not in report
    assert f"`{running}`" in report and "(running, 2 epochs done)" in report
    assert "7 of 9 trials finished, 0 stopped early, 1 failed, 1 running, 0 pending" in report
    images = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert images == [f"{s}.png" for s in ["params_accuracy", "macs_accuracy", "learning_curves",
                                           "heatmap_cell_in_ratio_1", "heatmap_cell_in_ratio_1_2",
                                           f"heatmap_trial_{ONE_TRIAL}"]]
    assert not list(out.glob("*_by_method.png"))  # a static baseline and one dynamic method: no method comparison
    tex = (out / "ablation.tex").read_text()
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule")) and "cell\\_in\\_ratio" in tex
    assert "[--]$^{2}$" in tex and "$^{2}$ fewer than 3 paired seeds" in tex  # the footnotes travel to LaTeX
    rows = [line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3 and rows[0].startswith("| variant | cell_in_ratio = cell_out_ratio | params")


def test_report_numbers_by_hand(cell_size: Path) -> None:
    # test top-1 = 90 + effect + seed effect - 0.4. Finished seeds: static 0, 1, 2; ratio 1 and ratio 1/2 seeds 0
    # and 1 (seed 2 is running or failed). Every seed moves all variants alike, so the paired differences are the
    # effects 1.0 and 1.6 on both seeds: two seeds with equal differences, which once gave a zero-width interval
    # and p < 0.001. Now: no interval, no p, and a footnote saying why.
    sweep = load_sweep(cell_size)
    assert sweep.metric == "test_top1" and sweep.goal == "maximize"
    assert not [c for c in sweep.trials if c.startswith(("best_test", "final_test"))]  # no max over test epochs
    csv = pd.read_csv(cell_size / "report" / "summary.csv")
    assert csv["variant"].tolist() == [v[0] for v in SWEEPS["cell_size"]["variants"]]
    static = [89.6, 89.1, 89.9]
    assert csv["mean"].tolist() == pytest.approx([np.mean(static), 90.35, 90.95])
    assert (csv["ci_low"][0], csv["ci_high"][0]) == pytest.approx(_t_interval(static))
    assert csv["ci_low"][1:].isna().all()  # two seeds: no interval of the mean either
    assert csv["diff"].tolist()[1:] == pytest.approx([1.0, 1.6])
    assert csv["n_pairs"].tolist() == [0, 2, 2]
    assert csv[["diff_low", "diff_high", "p", "p_holm", "mdd"]].isna().all().all()
    assert not csv["resolved"].any() and (csv["diff_missing"][1:] == FEW_PAIRS).all()
    table = (cell_size / "report" / "ablation.md").read_text()
    assert "| static (baseline) | — | 48K | 576K | 89.53 [88.53, 90.54] | reference | — | — |" in table
    assert "| 90.35 [—]¹ | +1.00 [—]² | — | — | — | — | 2 |" in table
    assert f"\n¹ {FEW_SEEDS}\n" in table and f"\n² {FEW_PAIRS}\n" in table
    report = (cell_size / "report" / "report.md").read_text()
    assert "The metric is the final model's test top-1 (`test_top1`), measured once on the official test" in report
    assert "Resolution: one test image = 0.28 pp (360 test images)." in report  # next to the differences
    assert "the interval, p and MDD are not estimable and shown as a dash with a footnote" in report


def test_heatmap_matrices_have_the_plan_shapes(cell_size: Path) -> None:
    sweep = load_sweep(cell_size)
    finished = sweep.finished
    for ratio in (1, 0.5):
        variant = finished[finished["kw.cell_in_ratio"] == ratio]
        maps = attn.variant_attention([sweep.trial_dir(t) for t in variant["trial_id"]])
        kw_plan = plan("cifar_resnet8", {"cell_in_ratio": ratio, "cell_out_ratio": ratio}, **MODEL)
        assert list(maps) == [w.name for w in kw_plan.warehouses]
        for w in kw_plan.warehouses:
            assert maps[w.name].shape == (sum(w.mixtures), w.cells)
            assert maps[w.name].trials == len(variant) == 2
            assert [(layer, stop - start) for layer, start, stop in maps[w.name].blocks()] == list(
                zip(w.layers, w.mixtures))
        single = [attn.read_attention(sweep.trial_dir(t).file(ATTENTION)) for t in variant["trial_id"]]
        np.testing.assert_allclose(maps["stage0.dense"].alpha, np.mean([m["stage0.dense"].alpha for m in single], 0),
                                   rtol=1e-6)


def test_attention_sweep_in_a_combined_report(combined: Path) -> None:
    out = combined / "attention"
    for stem in [*FIGURES, "attention_functions", "attention_values", "heatmap_attention_caf",
                 "heatmap_attention_softmax", "heatmap_caf_no_init"]:
        _written(out, stem)
    text = (out / "report.md").read_text()
    assert "The store holds it as fractions; it is shown in percent." in text
    assert "budget = 4" in text  # the fixed factor is stated once, not a table column
    assert "one test image = 0.28 pp" in text
    csv = pd.read_csv(out / "summary.csv")
    assert csv["mean"].between(80, 100).all()  # fractions are shown in percent
    tested = csv[csv["p"].notna()]
    assert len(tested) >= 2  # seeds move variants differently here: tested, Holm-corrected, with an MDD
    assert tested["mdd"].gt(0).all() and tested["diff_sd"].gt(0).all()
    assert (tested["resolved"] == (tested["p"] < 0.05)).all()
    _written(combined, "params_accuracy")
    _written(combined, "macs_accuracy")
    summary = (combined / "report.md").read_text()
    assert "[cell_size](cell_size/report.md)" in summary and "[attention](attention/report.md)" in summary
    assert "The sweeps compare different metrics" in summary  # the old store fell back
    assert not list((combined / "cell_size").glob("heatmap_*"))  # no attention.npz, no heatmaps, no error


def test_attention_functions_include_the_caf_case_that_sets_no_function(tmp_path: Path) -> None:
    """caf at 4x is `budget=4` (no kw.attention): it is the figure's reference, caf_no_init@4x is compared with it,
    and budget=1 (another budget) stays out."""
    store = make_store(tmp_path, "attention_cases", failed=False, running=False)
    assert kwlab_main(["report", str(store)]) == 0
    out = store / "report"
    for stem in ("attention_functions", "attention_values", "heatmap_caf_no_init_4x"):
        _written(out, stem)
    table = pd.read_csv(out / "attention_functions.csv")
    assert table["label"].tolist() == ["caf (budget=4)", "softmax@4x", "caf_no_init@4x"]
    assert table["attention"].tolist() == ["caf", "softmax", "caf"]
    effects = {name: effect for name, _, effect in SWEEPS["attention_cases"]["variants"]}
    index = {name: i for i, (name, _, _) in enumerate(SWEEPS["attention_cases"]["variants"])}
    for label, name in (("softmax@4x", "softmax@4x"), ("caf_no_init@4x", "caf_no_init@4x")):
        pairs = [effects[name] - effects["budget=4"]
                 + INTERACTION[(2 * index[name] + seed) % 7] - INTERACTION[(2 * index["budget=4"] + seed) % 7]
                 for seed in SEEDS]
        row = table.set_index("label").loc[label]
        assert row["diff"] == pytest.approx(np.mean(pairs)) and row["n_pairs"] == len(SEEDS)
        assert (row["diff_low"], row["diff_high"]) == pytest.approx(_t_interval(pairs))
    report = (out / "report.md").read_text()
    assert "the difference of each to caf (budget=4), paired by seed" in report
    assert "[CSV](attention_functions.csv)" in report


def test_an_old_store_without_test_metrics_falls_back_and_says_so(combined: Path) -> None:
    text = (combined / "cell_size" / "report.md").read_text()
    assert "9 of 9 trials finished" in text
    assert "have no test metrics" in text
    assert "the metric falls back to the best val. top-1 over epochs (`best_val_top1`)" in text
    assert "Resolution: unknown (the store does not record the val split's size)" in text
    csv = pd.read_csv(combined / "cell_size" / "summary.csv")
    # best val top-1 = 90 + effect + seed effect - 0.5 (epoch 3 of 4); three seeds, equal differences: sd 0
    static = (89.5 + 89.0 + 89.8) / 3
    assert csv["mean"].tolist() == pytest.approx([static, static + 1.0, static + 1.6])
    assert csv["n_pairs"].tolist() == [0, 3, 3] and csv["p"].isna().all()
    assert (csv["diff_missing"][1:] == NO_SPREAD).all()
    assert f"¹ {NO_SPREAD}" in (combined / "cell_size" / "ablation.md").read_text()


def test_method_comparison_report(methods: Path) -> None:
    out = methods / "report"
    for stem in [*FIGURES, "params_accuracy_by_method", "macs_accuracy_by_method", "heatmap_condconv",
                 "heatmap_sharing_none"]:
        _written(out, stem)
    report = (out / "report.md").read_text()
    stopped = _id("methods", "condconv", 3)
    assert "15 of 16 trials finished, 1 stopped early, 0 failed" in report
    assert f"- `{stopped}` condconv, seed 3: stopped early by ASHA after epoch 2" in report
    assert "condconv: left out: seed 3 stopped early" in report
    csv = pd.read_csv(out / "summary.csv").set_index("variant")
    # paired on the seeds both finished: condconv's stopped seed 3 is left out of its pairs
    condconv = [1.0, 1.1, 0.4]  # 0.8 + (0.2, 0.3, -0.4): condconv - static on seeds 0, 1, 2
    sharing_2 = [1.3, 0.6, 1.1, 0.8]  # 0.9 + (0.4, -0.3, 0.2, -0.1)
    assert csv.loc["condconv", ["n_seeds", "n_pairs"]].tolist() == [3, 3]
    assert csv.loc["condconv", "diff"] == pytest.approx(np.mean(condconv))
    assert (csv.loc["condconv", "diff_low"], csv.loc["condconv", "diff_high"]) == pytest.approx(_t_interval(condconv))
    assert csv.loc["sharing=2", "p"] == pytest.approx(scipy_stats.ttest_1samp(sharing_2, 0).pvalue)
    assert csv.loc["sharing=2", "resolved"] and not csv.loc["condconv", "resolved"]
    assert csv.loc["sharing=none", "diff"] == pytest.approx(1.2) and np.isnan(csv.loc["sharing=none", "p"])
    # MDD and seeds against statsmodels' power solver (two-sided one-sample t-test on the differences)
    from statsmodels.stats.power import TTestPower

    solver = TTestPower()
    sd = np.std(condconv, ddof=1)
    assert csv.loc["condconv", "mdd"] == pytest.approx(sd * solver.solve_power(None, 3, 0.05, 0.8), rel=1e-4)
    needed = int(np.ceil(solver.solve_power(np.mean(condconv) / sd, None, 0.05, 0.8)))
    assert csv.loc["condconv", "seeds_for_diff"] == max(3, needed)
    needed = int(np.ceil(solver.solve_power(0.5 / np.std(sharing_2, ddof=1), None, 0.05, 0.8)))
    assert csv.loc["sharing=2", "seeds_for_effect"] == needed
    table = (out / "ablation.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in table.splitlines() if line.startswith("| ")}
    header = rows["variant"]
    assert header[:3] == ["| variant", "sharing", "method"] and "seeds for ±0.5 pp" in header
    condconv_row = dict(zip(header, rows["condconv"]))
    assert condconv_row["method"] == "condconv" and condconv_row["resolved"] == "no"
    assert condconv_row["seeds for Δ"] == str(int(csv.loc["condconv", "seeds_for_diff"]))
    assert condconv_row["MDD (pp)"] == f"{csv.loc['condconv', 'mdd']:.2f}"
    sharing_row = dict(zip(header, rows["sharing=2"]))
    assert sharing_row["method"] == "kw" and sharing_row["resolved"] == "yes" and sharing_row["seeds for Δ"] == ""
    none_row = dict(zip(header, rows["sharing=none"]))
    assert none_row["Δ vs static (pp) [95% CI]"] == "+1.20 [—]¹" and none_row["p (Holm)"] == "—"
    assert f"¹ {NO_SPREAD}" in table


def test_a_loss_metric_is_minimised(methods: Path) -> None:
    # final val loss = 0.3 + (100 - final accuracy) / 100 (see _history): the better variants have the lower loss
    sweep = load_sweep(methods, "final_val_loss")
    assert sweep.goal == "minimize"
    summary = summarize(sweep.trials, sweep.metric).set_index("variant")
    assert summary.loc["sharing=2", "diff"] == pytest.approx(-0.0095) and summary.loc["sharing=2", "resolved"]
    points = summary.reset_index().assign(label=lambda t: t["variant"], params_total=[48e3, 150e3, 60e3, 52e3])
    fig = params_accuracy(points, maximize=False)
    front = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"][0]
    # lower is better: the front steps down from the static model (48K) to the lowest loss (sharing=none, 60K)
    assert front.get_ydata()[0] == pytest.approx(summary.loc["static", "mean"])
    assert min(front.get_ydata()) == pytest.approx(summary["mean"].min())


def test_routing_heatmap_has_one_row_per_layer_and_one_column_per_expert() -> None:
    arrays = routing_arrays(np.random.default_rng(0))
    maps = {"routing": attn.WarehouseAttention("routing", arrays["routing/alpha"], arrays["routing/layer"],
                                               arrays["routing/mixture"])}
    fig = attention_heatmaps(maps, row_label="layer", column_label="expert k", column_noun="experts")
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (len(ROUTED_LAYERS), EXPERTS)
    assert [t.get_text() for t in ax.get_yticklabels()] == ROUTED_LAYERS
    assert ax.get_title(loc="left") == f"routing: {len(ROUTED_LAYERS)} layers × {EXPERTS} experts"
    assert not ax.get_lines()  # no layer boundaries between one-row layers


def test_a_store_with_nothing_finished_still_reports(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    trial = Store(empty).trial("t0")
    trial.path.mkdir(parents=True)
    trial.write_sweep_meta({"trial_id": "t0", "variant_id": "v0", "variant": "static", "is_baseline": True,
                            "seed": 0, "parameters": {"kw": None}})
    report = write_report([empty])
    text = report.read_text()
    assert "0 of 1 trials finished" in text and "`t0` static, seed 0 (pending" in text
    assert "static: no finished trial" in text
    _written(report.parent, "params_accuracy")
    (tmp_path / "none" / TRIALS).mkdir(parents=True)  # a store whose runner has not created any trial yet
    assert "0 of 0 trials finished" in write_report([tmp_path / "none"]).read_text()


def test_cli_errors_are_one_line(cell_size: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kwlab_main(["report", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert kwlab_main(["report", str(cell_size), "--metric", "nonsense", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--metric" in err
    assert kwlab_main(["report", str(cell_size), "--metric", "best_test_top1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluated once" in err and "use test_top1" in err
    assert kwlab_main(["report", str(cell_size), "--effect", "0", "--out", str(tmp_path)]) == 2
    assert "--effect" in capsys.readouterr().err
    assert kwlab_main(["report", str(cell_size), "--baseline", "nonsense", "--out", str(tmp_path)]) == 2
    assert kwlab_main(["report", str(cell_size), "--trial", "nonsense", "--out", str(tmp_path)]) == 2
    assert "--trial: nonsense is not a trial" in capsys.readouterr().err


def test_pareto_front_by_hand() -> None:
    # (cost, value): b is beaten by a (cheaper, as good); d by c (same cost, better); e costs most but is best
    cost = np.array([1.0, 2.0, 3.0, 3.0, 5.0, np.nan])
    value = np.array([70.0, 70.0, 72.0, 71.0, 75.0, 99.0])
    assert pareto_front(cost, value).tolist() == [True, False, True, False, True, False]
    assert pareto_front(cost, -value, maximize=False).tolist() == [True, False, True, False, True, False]


def test_legend_entries_read_row_by_row() -> None:
    # matplotlib fills legend columns first; with 3 columns, rows must read a b c / d e
    assert row_major(list("abcde"), 3) == list("adbec")


def test_tables_escape_their_formats() -> None:
    table = pd.DataFrame({"variant": ["a|b", "relu_l1"], "top-1 (%)": ["91.00 [90.00, 92.00]", "—"],
                          "Δ (pp)": ["−0.50", "<0.001"]})
    markdown = to_markdown(table)
    assert "a\\|b" in markdown and markdown.splitlines()[1] == "|:---|---:|---:|"
    latex = to_latex(table, caption="50% of it", label="tab:x")
    assert "relu\\_l1" in latex and "top-1 (\\%)" in latex and "$\\Delta$ (pp)" in latex and "$-$0.50" in latex
    assert "\\caption{50\\% of it}" in latex and "\\label{tab:x}" in latex and "\\bottomrule" in latex


@pytest.mark.slow
def test_report_on_a_real_smoke_sweep(tmp_path: Path) -> None:
    """The real pipeline: `kwlab sweep sweeps/smoke.yaml`, then `kwlab report` on its store."""
    for module in ("kwlab.sweep.command", "kwlab.train", "ray"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not importable yet; the real sweep cannot run")
    spec = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"
    assert kwlab_main(["sweep", str(spec), "--results", str(tmp_path)]) == 0
    store = tmp_path / "smoke"
    assert kwlab_main(["report", str(store)]) == 0
    out = store / "report"
    for stem in FIGURES:
        _written(out, stem)
    heatmaps = sorted(out.glob("heatmap_*.png"))
    assert heatmaps, "the KW variant has attention heatmaps"
    sweep = load_sweep(store)
    assert sweep.metric == "test_top1"  # the recipe evaluates the test split: the default metric, no fallback
    kw_trial = sweep.trials.loc[~sweep.trials["is_baseline"], "trial_id"].iloc[0]
    maps = attn.read_attention(sweep.trial_dir(kw_trial).file(ATTENTION))
    assert all(w.alpha.ndim == 2 and w.alpha.shape[0] == len(w.layers) for w in maps.values())
    text = (out / "report.md").read_text()
    assert FEW_SEEDS in text and FEW_PAIRS in text  # one seed: no interval, no test
    images = int(sweep.finished["test_images"].iloc[0])
    assert f"one test image = {100 / images:.2g} pp ({images:,} test images)" in text


def test_report_cli_options_and_several_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kwlab report STORE --out DIR --metric M --baseline NAME`, and `kwlab report A B` (report/ beside the stores,
    a subfolder per sweep, one combined figure), as a user types them."""
    root = tmp_path / "stores"
    cell = make_store(root, "cell_size", failed=False, running=False, attention=False)
    attention = make_store(root, "attention", failed=False, running=False, attention=False)
    out = tmp_path / "chosen"
    baseline = "cell_in_ratio=1,cell_out_ratio=1"
    # the store's summaries name the test at the best epoch as an older kwlab did (`_at_best_val`): read as `_at_best`
    assert kwlab_main(["report", str(cell), "--out", str(out), "--metric", "test_top1_at_best",
                       "--baseline", baseline]) == 0
    assert not (cell / "report").exists()  # --out, not STORE/report
    report = (out / "report.md").read_text()
    assert "test_top1_at_best" in report and "(`--metric test_top1_at_best`)" in report
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[summary["is_baseline"], "variant"].tolist() == [baseline]
    # static against the chosen baseline: the paired difference of the test top-1 at the best-val epoch, by hand
    trials = load_sweep(cell).trials.set_index(["variant", "seed"])["test_top1_at_best"]
    expected = float(np.mean([trials["static", s] - trials[baseline, s] for s in SEEDS]))
    assert summary.set_index("variant").loc["static", "diff"] == pytest.approx(expected)
    capsys.readouterr()
    assert kwlab_main(["report", str(cell), str(attention)]) == 0
    both = root / "report"
    assert (both / "cell_size" / "report.md").exists() and (both / "attention" / "report.md").exists()
    assert (both / "params_accuracy.png").exists() and (both / "macs_accuracy.png").exists()
    combined = (both / "report.md").read_text()
    assert "cell_size/report.md" in combined and "attention/report.md" in combined


def test_report_lists_the_seeds_the_spec_asks_for_that_the_store_lacks(tmp_path: Path) -> None:
    """A spec extended to more seeds (or a sweep not yet started on them): each missing (variant, seed) is listed."""
    folder = make_store(tmp_path, "cell_size", failed=False, running=False, attention=False)
    results = Store(folder)
    results.write_spec({**results.spec(), "seeds": [*SEEDS, 7]})
    assert kwlab_main(["report", str(folder)]) == 0
    report = (folder / "report" / "report.md").read_text()
    names = [v[0] for v in SWEEPS["cell_size"]["variants"]]
    listed = report.split("Missing (seeds the spec lists with no trial in the store):")[1]
    assert [line for line in listed.splitlines() if line.startswith("- ")][:3] == [f"- {n}, seed 7" for n in names]
    # a case with its own seeds is missing those, not the spec's
    results.write_spec({**results.spec(), "cases": [{"name": names[0], "seeds": [*SEEDS, 8]}]})
    assert kwlab_main(["report", str(folder)]) == 0
    listed = (folder / "report" / "report.md").read_text().split("Missing (seeds the spec lists")[1]
    lines = [line for line in listed.splitlines() if line.startswith("- ")]
    assert f"- {names[0]}, seed 8" in lines and f"- {names[0]}, seed 7" not in lines and f"- {names[1]}, seed 7" in lines


def test_a_legend_of_many_long_labels_stays_inside_the_figure() -> None:
    """Before: the Fashion study's 23 variants gave a three-column legend wider than the figure, cut at both edges."""
    names = ["static", *(f"static_width{w}" for w in (0.75, 1, 1.5, 2.25)), "sharing=network", "caf_no_init@4x",
             *(f"budget={b}" for b in ("1/4", "1/2", 1, 2, 4)), "sharing=none", "condconv", "odconv_4x"]
    points = pd.DataFrame({"variant": names, "label": names, "mean": np.linspace(84, 87, len(names)),
                           "ci_low": 83.5, "ci_high": 87.5, "is_baseline": [n == "static" for n in names],
                           "params_total": np.geomspace(2e4, 1.5e6, len(names))})
    fig = params_accuracy(points, family=points[points["variant"].str.startswith("static")])
    fig.canvas.draw()
    legend, frame = fig.legends[0].get_window_extent(), fig.bbox
    assert frame.x0 - 1 <= legend.x0 and legend.x1 <= frame.x1 + 1 and legend.y0 >= frame.y0 - 1
