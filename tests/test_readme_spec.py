"""The README's annotated sweep spec is a spec that runs: validated in the default suite, swept through Ray (shortened
with --set, the way a user tries it first) in the slow one; and `kwlab validate --schema` prints its JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kwlab.results
from kwlab.cli import main
from sweep_helpers import FASHION_MISSING, ROOT, kwlab_cli

# the attention function a user's my_attention.py could register (the README's spec imports it)
MY_ATTENTION = '''
import torch
from kwlab import register_attention


@register_attention("my_softsign")
def my_softsign(logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softsign(logits) / logits.shape[-1]
'''


def readme_spec(folder: Path) -> Path:
    """The README's example spec, written as `folder/sweeps/cell_size.yaml` beside a `my_attention.py`, with `base`
    pointing at this checkout's configs/default.yaml (the README's path is relative to sweeps/)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("A sweep spec is YAML")[1].split("```yaml\n")[1].split("```")[0]
    assert "base: ../configs/default.yaml" in block and "imports: [my_attention.py]" in block
    (folder / "sweeps").mkdir()
    (folder / "configs").mkdir()
    (folder / "configs" / "default.yaml").write_text((ROOT / "configs" / "default.yaml").read_text())
    (folder / "sweeps" / "my_attention.py").write_text(MY_ATTENTION)
    path = folder / "sweeps" / "cell_size.yaml"
    path.write_text(block)
    return path


@pytest.mark.parametrize("profile", ["default", pytest.param("fashion", marks=FASHION_MISSING)])
def test_the_readme_spec_validates_in_every_profile(tmp_path: Path, profile: str,
                                                     capsys: pytest.CaptureFixture) -> None:
    spec = readme_spec(tmp_path)
    assert main(["validate", str(spec), "--profile", profile]) == 0
    # 3 zipped cell ratios + static at 3 seeds, odconv at its own 6; the constraint drops cell ratio 1/4 (> 5M params)
    assert capsys.readouterr().out.strip().endswith(": ok: grid sweep 'cell_size', 4 variants x 3-6 seeds = 15 trials")


def test_validate_schema_prints_the_json_schema(capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"name", "base", "fixed", "parameters", "cases", "imports", "profiles"} <= set(schema["properties"])


@pytest.mark.slow
def test_the_readme_spec_runs_through_ray(tmp_path: Path) -> None:
    spec = readme_spec(tmp_path)
    short = ["--set", "seeds=[0]", "--set", "epochs=2", "--set", "data.train_size=300",
             "--set", "early_terminate.grace_period=1", "--results", str(tmp_path / "results")]
    result = kwlab_cli("sweep", str(spec), *short)
    assert result.returncode == 0, result.stderr
    trials = kwlab.results.load(tmp_path / "results" / "cell_size").trials
    assert len(trials) == 3 + 6 and set(trials["status"]) <= {"finished", "stopped"}  # odconv keeps its own seeds
    assert set(trials["method"]) == {"kw", "static", "odconv"}
    report = kwlab_cli("report", str(tmp_path / "results" / "cell_size"))
    assert report.returncode == 0, report.stderr
