"""The report's end-of-training check, in every report (analysis.catching_up): which variants were still gaining
faster than their baseline when training stopped (end_of_training.csv)."""

from __future__ import annotations

from pathlib import Path

from analysis.analyse import Analysis
from analysis.catching_up import FLAG, METRIC
from analysis.section import Part, Section
from analysis.style import plural
from analysis.sweep import diff_unit, metric_label
from analysis.tables import estimate


def write(result: Analysis, out: Path) -> list[Section]:
    """The flagged variants with their late gains and the rule, or a sentence saying none was flagged."""
    late = result.late
    if late.empty:
        return []
    late.to_csv(out / "end_of_training.csv", index=False)
    label, unit = metric_label(METRIC).removesuffix(" (%)"), diff_unit(METRIC)
    rule = (f"The check: a variant's {label} gain over the last quarter of its E epochs (at epoch E minus at epoch "
            f"⌊3E/4⌋, seed by seed) against its baseline's gain over the same epochs on the same seeds; it is "
            f"flagged when the paired 95% t interval of the difference of the two gains lies above 0 (three or more "
            f"paired seeds). [CSV](end_of_training.csv).")
    flagged = late[late["flagged"]]
    if flagged.empty:
        return [Section("End of training", f"No variant was still gaining faster than its baseline when training "
                        f"stopped. {rule}")]
    items = [f"- {row['variant']}: {FLAG}. Its {label} gained {row['gain']:+.2f} {unit} from epoch {row['start']} "
             f"to {row['end']} (mean over seeds), its baseline {row['baseline']} {row['baseline_gain']:+.2f} {unit}; "
             f"difference {estimate(row['diff'], row['diff_low'], row['diff_high'], signed=True)} {unit}."
             for row in flagged.to_dict("records")]
    return [Section("End of training", f"{plural(len(flagged), 'variant')} still gaining faster than the baseline "
                    f"when training stopped (marked in the ablation table). {rule}", text="\n".join(items))]


PART = Part("end of training", write, files=("end_of_training.csv",))
