"""The README and the studies' READMEs quote the committed Fashion-MNIST study and the schedule study's pilot: every
difference they quote is the one in the committed summary, equal-cost or per-length table (`kwlab report` output)
it says it comes from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
STUDY = ROOT / "analysis" / "studies" / "fashion-mnist"
# (report folder, variant) of every difference the READMEs quote
QUOTED = {
    ".": ["budget=1/4", "budget=1/2", "budget=1", "budget=2", "budget=4", "dyconv_4", "condconv_8", "odconv_1x",
          "odconv_4x", "sharing=none"],
    "vs-kw-1x": ["budget=4", "cell=1/2", "sharing=none", "sharing=role", "sharing=2", "sharing=network", "dyconv_4"],
    "vs-caf-4x": ["softmax@4x", "sigmoid@4x", "caf_no_init@4x", "relu_l1@4x", "dyconv_4"],
}
# (cost, variant) of every equal-cost difference the READMEs quote (equal_cost.csv)
QUOTED_AT_EQUAL_COST = {
    "params": ["sharing=none", "budget=1/4", "budget=1"],
    "macs": ["sharing=none", "sharing=network", "budget=1", "budget=4", "dyconv_4", "condconv_8"],
}


def quoted(row: pd.Series) -> str:
    """'+0.58 [+0.27, +0.90]' with typographic minus signs, as the READMEs write a difference and its interval."""
    return f"{row['diff']:+.2f} [{row['diff_low']:+.2f}, {row['diff_high']:+.2f}]".replace("-", "−")


@pytest.mark.parametrize("readme", [ROOT / "README.md", STUDY / "README.md"], ids=["README", "study README"])
def test_quoted_differences_are_the_committed_ones(readme: Path) -> None:
    text = " ".join(readme.read_text().split())  # a quote may wrap across lines
    for folder, variants in QUOTED.items():
        summary = pd.read_csv(STUDY / folder / "summary.csv").set_index("variant")
        for variant in variants:
            assert quoted(summary.loc[variant]) in text, f"{readme.name}: {folder}/{variant}"
    equal_cost = pd.read_csv(STUDY / "equal_cost.csv").set_index(["cost", "variant"])
    for cost, variants in QUOTED_AT_EQUAL_COST.items():
        for variant in variants:
            assert quoted(equal_cost.loc[(cost, variant)]) in text, f"{readme.name}: equal {cost}/{variant}"


SCHEDULE = ROOT / "analysis" / "studies" / "fashion-schedule"
KW_AND_BASELINES = ["budget=1/4", "budget=1", "budget=4", "dyconv_4", "odconv_1x"]
# readme -> (group, comparison, epochs or "change") of every per-length difference it quotes (the pilot's
# schedules.csv, written by `kwlab report analysis/studies/fashion-schedule/pilot`)
QUOTED_PER_LENGTH = {
    SCHEDULE / "README.md": [(g, c, e) for g in KW_AND_BASELINES for c in ("params", "macs") for e in (10, 40, "change")],
    ROOT / "README.md": [("budget=1", c, e) for c in ("params", "macs") for e in (10, 40, "change")]
    + [("budget=1/4", "macs", 40), ("budget=4", "macs", 40)],
    STUDY / "README.md": [("budget=1", c, 40) for c in ("params", "macs")],
}


@pytest.mark.parametrize("readme", list(QUOTED_PER_LENGTH), ids=["schedule study README", "README", "study README"])
def test_quoted_per_length_differences_are_the_pilots(readme: Path) -> None:
    text = " ".join(readme.read_text().split())
    table = pd.read_csv(SCHEDULE / "pilot" / "report" / "schedules.csv")
    at = table[table["kind"] == "at"].set_index(["group", "comparison", "epochs"])
    change = table[table["kind"] == "change"].set_index(["group", "comparison"])
    for group, comparison, epochs in QUOTED_PER_LENGTH[readme]:
        row = change.loc[(group, comparison)] if epochs == "change" else at.loc[(group, comparison, epochs)]
        assert quoted(row) in text, f"{readme.name}: {group} at {comparison}, {epochs}"
