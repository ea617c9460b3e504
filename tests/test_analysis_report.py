"""`kwlab report` end to end on synthetic results stores that follow the store contract of kwlab.results and
kwlab.train.records (trial directories with sweep.json, metrics.jsonl, summary.json, error.json, attention.npz;
tables rebuilt by kwlab.results.write_tables), plus one slow test on a real smoke sweep.

Provenance of the synthetic numbers: accuracies are invented (variant effect + seed effect, below), the attention
matrices have the warehouse shapes of `kwlab.plan("cifar_resnet8", kw, width=0.5)` for each variant's kw config.
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
import yaml

from analysis import attention as attn
from analysis.figures import pareto_front
from analysis.report import write_report
from analysis.style import row_major
from analysis.stats import summarize
from analysis.sweep import load_sweep
from analysis.tables import to_latex, to_markdown
from kwlab.cli import main as kwlab_main
from kwlab import plan
from kwlab.store import ATTENTION, TRIALS, Store

MODEL = dict(num_classes=10, in_chans=1, width=0.5)
SEEDS = (0, 1, 2)
EPOCHS = 4

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


def make_store(root: Path, kind: str = "cell_size", *, fractions: bool = False, failed: bool = True,
               running: bool = True, attention: bool = True, seeds: tuple[int, ...] = SEEDS) -> Path:
    """A results store like `kwlab sweep` writes. With `failed`/`running`, the last variant's last seed failed and
    the first KW variant's last seed is still running (2 epochs done). `fractions` stores top-1 in [0, 1];
    `attention=False` leaves out attention.npz."""
    sweep = SWEEPS[kind]
    store = root / kind
    spec = {"name": kind, "description": f"synthetic {kind} sweep", "method": "grid",
            "parameters": sweep["parameters"], "zip": sweep["zip"], "cases": sweep["cases"], "baseline": "static",
            "seeds": list(seeds), "metric": {"name": "val_top1", "goal": "maximize"}}
    results = Store(store)
    (store / TRIALS).mkdir(parents=True)
    results.write_spec(spec)
    results.write_manifest({"command": f"kwlab sweep sweeps/{kind}.yaml", "versions": {"kwlab": "0.1.0"},
                            "git": {"commit": "0" * 40, "dirty": False}})
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
            done = 2 if is_running else (1 if is_failed else EPOCHS)
            history = [{"epoch": e, "train_loss": 1.0 / e, "train_top1": scale * (final - 8 / e),
                        "val_loss": 1.2 / e, "val_top1": scale * (final - 6 / e + 1.5 * (e == EPOCHS - 1)),
                        "val_top5": scale * 99.0, "lr": 0.1 / e, "tau": None if kw is None else max(0.0, 1 - e / 2),
                        "epoch_time_s": 1.0, "images_per_s": 500.0, "peak_memory_mb": 300.0}
                       for e in range(1, done + 1)]
            trial.write_metrics(history)
            if is_failed:
                trial.write_error("RuntimeError: loss is NaN\nmore lines")
                continue
            if is_running:
                continue
            top1 = [m["val_top1"] for m in history]
            summary = {"params_total": params, "params_warehouse": 0, "params_attention": 0,
                       "params_other": params, "macs_per_image": params * 12, "best_val_top1": max(top1),
                       "final_val_top1": top1[-1], "epochs": EPOCHS, "seed": seed, "wall_time_s": 10.0,
                       "versions": {"kwlab": "0.1.0"}, "git": {"commit": None, "dirty": None}, "device": "cpu",
                       "status": "finished"}
            trial.write_summary(summary)
            if kw is not None and attention:
                trial.write_attention(attention_arrays(kw, rng))
    results.write_tables()
    return store


FIGURES = ["params_accuracy", "macs_accuracy", "learning_curves"]
ONE_TRIAL = _id("cell_size", "cell_in_ratio=1,cell_out_ratio=1", 0)


def _written(out: Path, stem: str) -> None:
    for suffix in (".png", ".pdf"):
        path = out / f"{stem}{suffix}"
        assert path.is_file() and path.stat().st_size > 1000, path


@pytest.fixture(scope="module")
def cell_size(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cell_size store (one failed, one running trial) reported through the CLI into STORE/report."""
    store = make_store(tmp_path_factory.mktemp("stores"))
    assert kwlab_main(["report", str(store), "--resamples", "1000", "--trial", ONE_TRIAL]) == 0
    return store


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An attention store holding fractions, reported together with a complete cell_size store without attention
    files (kept cheap: no heatmaps); returns the output folder."""
    root = tmp_path_factory.mktemp("stores")
    attention = make_store(root, "attention", fractions=True)
    cell_size = make_store(root, "cell_size", failed=False, running=False, attention=False)
    out = tmp_path_factory.mktemp("both")
    write_report([cell_size, attention], out, resamples=1000)
    return out


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
    assert "7 of 9 trials finished, 1 failed, 1 running, 0 pending" in report
    images = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert images == [f"{s}.png" for s in ["params_accuracy", "macs_accuracy",
                                                                  "learning_curves", "heatmap_cell_in_ratio_1",
                                                                  "heatmap_cell_in_ratio_1_2",
                                                                  f"heatmap_trial_{ONE_TRIAL}"]]
    tex = (out / "ablation.tex").read_text()
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule")) and "cell\\_in\\_ratio" in tex
    table = (out / "ablation.md").read_text().splitlines()
    assert len(table) == 2 + 3 and table[0].startswith("| variant | cell_in_ratio = cell_out_ratio | params")


def test_report_numbers_by_hand(cell_size: Path) -> None:
    # best val top-1 = 90 + effect + seed effect - 0.5 (epoch 3). Finished seeds: static 0, 1, 2; ratio 1 and
    # ratio 1/2 seeds 0 and 1 (seed 2 is running or failed). Every seed moves all variants alike, so the paired
    # differences are exactly the effects 1.0 and 1.6 and do not vary: no test.
    csv = pd.read_csv(cell_size / "report" / "summary.csv")
    assert csv["variant"].tolist() == [v[0] for v in SWEEPS["cell_size"]["variants"]]
    assert csv["mean"].tolist() == pytest.approx([(89.5 + 89.0 + 89.8) / 3, 90.25, 90.85])
    assert (csv["ci_low"][0], csv["ci_high"][0]) == pytest.approx((89.0, 89.8))  # 3 seeds: their range
    assert csv["diff"].tolist()[1:] == pytest.approx([1.0, 1.6])
    assert csv["n_pairs"].tolist() == [0, 2, 2] and csv["p"].isna().all()
    assert summarize(load_sweep(cell_size).trials, resamples=1000)["mean"].tolist() == pytest.approx(csv["mean"])
    assert "| static (baseline) | — | 48K | 576K | 89.43 [89.00, 89.80] | reference |" in (
        cell_size / "report" / "ablation.md").read_text()


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
        single = [attn.read_attention(sweep.trial_dir(t) / ATTENTION) for t in variant["trial_id"]]
        np.testing.assert_allclose(maps["stage0.dense"].alpha, np.mean([m["stage0.dense"].alpha for m in single], 0),
                                   rtol=1e-6)


def test_attention_sweep_in_a_combined_report(combined: Path) -> None:
    out = combined / "attention"
    for stem in [*FIGURES, "attention_functions", "attention_values", "heatmap_attention_caf",
                 "heatmap_attention_softmax", "heatmap_caf_no_init"]:
        _written(out, stem)
    text = (out / "report.md").read_text()
    assert "stored as fractions and shown in percent" in text
    assert "budget = 4" in text  # the fixed factor is stated once, not a table column
    csv = pd.read_csv(out / "summary.csv")
    assert csv["mean"].between(80, 100).all()  # fractions are shown in percent
    assert csv["p"].notna().sum() >= 2  # seeds move variants differently here: tested, Holm-corrected
    _written(combined, "params_accuracy")
    _written(combined, "macs_accuracy")
    summary = (combined / "report.md").read_text()
    assert "[cell_size](cell_size/report.md)" in summary and "[attention](attention/report.md)" in summary
    assert "9 of 9 trials finished" in (combined / "cell_size" / "report.md").read_text()
    assert not list((combined / "cell_size").glob("heatmap_*"))  # no attention.npz, no heatmaps, no error


def test_a_store_with_nothing_finished_still_reports(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    trial = Store(empty).trial("t0")
    trial.path.mkdir(parents=True)
    trial.write_sweep_meta({"trial_id": "t0", "variant_id": "v0", "variant": "static", "is_baseline": True,
                            "seed": 0, "parameters": {"kw": None}})
    report = write_report([empty], resamples=1000)
    text = report.read_text()
    assert "0 of 1 trials finished" in text and "`t0` static, seed 0 (pending" in text
    assert "static: no finished trial" in text
    _written(report.parent, "params_accuracy")
    (tmp_path / "none" / TRIALS).mkdir(parents=True)  # a store whose runner has not created any trial yet
    assert "0 of 0 trials finished" in write_report([tmp_path / "none"], resamples=1000).read_text()


def test_cli_errors_are_one_line(cell_size: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kwlab_main(["report", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert kwlab_main(["report", str(cell_size), "--metric", "nonsense", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--metric" in err
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
    assert kwlab_main(["report", str(store), "--resamples", "1000"]) == 0
    out = store / "report"
    for stem in FIGURES:
        _written(out, stem)
    heatmaps = sorted(out.glob("heatmap_*.png"))
    assert heatmaps, "the KW variant has attention heatmaps"
    sweep = load_sweep(store)
    kw_trial = sweep.trials.loc[~sweep.trials["is_baseline"], "trial_id"].iloc[0]
    maps = attn.read_attention(sweep.trial_dir(kw_trial) / ATTENTION)
    assert all(w.alpha.ndim == 2 and w.alpha.shape[0] == len(w.layers) for w in maps.values())
    assert "1 seed: no interval" in (out / "report.md").read_text()
