"""sweeps/baselines.yaml end to end in its smoke profile: KW against CondConv, DY-Conv and ODConv through Ray, then
the report's method comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

import kwlab.results
from sweep_helpers import kwlab_cli


@pytest.mark.slow
def test_the_baselines_sweep_and_its_method_comparison(tmp_path: Path) -> None:
    dry = kwlab_cli("sweep", "sweeps/baselines.yaml", "--dry-run")  # every variant priced before launch
    assert dry.returncode == 0 and "7 variants x 3 seeds = 21 trials" in dry.stdout
    result = kwlab_cli("sweep", "sweeps/baselines.yaml", "--profile", "smoke", "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "baselines-smoke"
    trials = kwlab.results.load(folder).trials.set_index("variant")
    assert (trials["status"] == "finished").all()
    assert trials["method"].to_dict() == {"static": "static", "kw_1x": "kw", "kw_4x": "kw", "condconv_8": "condconv",
                                          "dyconv_4": "dyconv", "odconv_1x": "odconv", "odconv_4x": "odconv"}
    assert trials.loc["odconv_4x", "params_total"] > trials.loc["odconv_1x", "params_total"]
    report = kwlab_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    out = folder / "report"
    text = (out / "report.md").read_text()
    assert (out / "params_accuracy_by_method.png").is_file() and (out / "macs_accuracy_by_method.png").is_file()
    for method in ("condconv", "dyconv", "odconv", "kw"):
        assert method in text
    assert any(p.name.startswith("heatmap_") for p in out.glob("*.png"))  # KW warehouses and routing groups
