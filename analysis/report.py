"""Write every figure and table of a sweep and a report.md that shows them in order, one sentence each.

Works on a sweep that is still running (on the trials finished so far) and lists the trials that are stopped early,
failed, unfinished or missing. What the report holds is analysis.sections' list of parts, each writing its own
files; the header, Status and Method sections are written here. Several stores give one report each plus a combined
report (analysis.combined).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis import declared, power, stats
from analysis.analyse import Analysis, analyse
from analysis.combined import write_combined
from analysis.sections import PARTS
from analysis.status import status_lines
from analysis.sweep import Sweep, diff_unit, fixed_factors, load_sweep, metric_label, resolution, short_name
from kwlab import store
from kwlab.errors import KWLabError
from kwlab.store import Store


def _report_sweep(sweep: Sweep, out: Path, *, baseline: str | None, interval: str, effect: float | None,
                  resamples: int, seed: int, heatmap_trials: tuple[str, ...]) -> Analysis:
    """One sweep's report in `out`: every part's files and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    result = analyse(sweep, baseline, interval=interval, effect=effect, resamples=resamples, seed=seed,
                     heatmap_trials=heatmap_trials)
    sections = [section for part in PARTS for section in part.write(result, out)]
    lines = _head(result, resamples, seed) + [line for section in sections for line in section.markdown(out)]
    (out / "report.md").write_text("\n".join(lines))
    return result


def _clear_previous(out: Path) -> None:
    """Remove the files of an earlier report in `out` (recognised by its report.md), so none is left stale."""
    if (out / "report.md").is_file():
        for path in {p for part in PARTS for p in part.written(out)}:
            path.unlink()


def _provenance(sweep: Sweep) -> str:
    manifest = sweep.manifest
    git = manifest.get("git") or {}
    commit = git.get("commit")
    version = (manifest.get("versions") or {}).get("kwlab")
    parts = [f"kwlab {version}"] if version else [f"no {store.MANIFEST}"] if not manifest else []
    if commit:
        parts.append(f"git {commit[:10]}{' (dirty)' if git.get('dirty') else ''}")
    if manifest.get("command"):
        parts.append(f"`{manifest['command']}`")
    if manifest.get("profile"):
        parts.append(f"profile {manifest['profile']}")
    return ", ".join(parts)


def _method_text(result: Analysis, resamples: int, seed: int) -> str:
    """The Method paragraph: metric, direction, resolution, intervals, test, correction, MDD, what is not
    estimable."""
    sweep = result.sweep
    compared = int(result.summary["p"].notna().sum()) if not result.summary.empty else 0
    unit = diff_unit(sweep.metric) or "the metric's unit"
    found = resolution(sweep)
    interval = ("a 95% t interval (mean ± t(n−1, 0.975)·sd/√n)" if result.interval == "t" else
                f"a 95% percentile-bootstrap interval ({resamples:,} resamples, generator seed {seed}; with three "
                f"seeds it is the range of the seeds)")
    scaled = " The store holds it as fractions; it is shown in percent." if sweep.scaled_to_percent else ""
    text = (f"{sweep.metric_note}{scaled} For {metric_label(sweep.metric)} {result.better}"
            f"{', so a negative difference is an improvement' if sweep.goal == 'minimize' else ''}. "
            + (f"Resolution: {found}; a difference smaller than that is within one image. " if found else "")
            + f"Each variant's mean over its seeds comes with {interval}. Differences to the baseline "
            f"({result.baseline or 'none'}) are taken seed by seed on the seeds both finished (stopped and failed "
            f"trials are left out), with the paired 95% t interval and the two-sided paired t-test on the same t, "
            f"so a difference is *resolved* exactly when its interval excludes 0 (unadjusted p < 0.05); p (Holm) is "
            f"Holm-corrected across the variants tested against the baseline ({compared} so far). With fewer than "
            f"{stats.MIN_SEEDS} paired seeds, or paired differences identical on every seed, there is no estimate "
            f"of the seed-to-seed noise: the interval, p and MDD are not estimable and shown as a dash with a "
            f"footnote. MDD is the minimal detectable difference: the smallest true difference (in {unit}) that "
            f"the paired seeds detect with {power.POWER:.0%} power at α = {power.ALPHA:g} (two-sided), from the "
            f"observed sd of the paired differences (noncentral t); for an unresolved difference, 'seeds for Δ' "
            f"is how many paired seeds would resolve the observed difference with that power (`kwlab power` "
            f"prints the same for any effect).")
    if result.equal_cost:
        text += (" At equal cost: the sweep's static variants (the static family) are interpolated, seed by seed and "
                 "linearly in log cost between the two nearest widths, to each variant's parameter count and to "
                 "its MACs per image, and the variant is compared with that interpolated static model with the "
                 "same paired t interval, test, Holm correction (across the variants at each cost) and MDD; a "
                 "variant whose cost lies outside the family's span is out of range and never extrapolated.")
        if result.schedules is not None:
            text += (" With several training lengths, each variant is compared with the static family of its own "
                     "length (Holm across the variants at each cost and length), never across lengths.")
    fixed = fixed_factors(result.variants, sweep.factors) if not result.variants.empty else {}
    fixed = {k: v for k, v in fixed.items() if not declared.is_section(k)}
    if fixed:
        text += " Fixed wherever set: " + ", ".join(f"{short_name(k)} = {v}" for k, v in fixed.items()) + "."
    return text


def _head(result: Analysis, resamples: int, seed: int) -> list[str]:
    """report.md's title, provenance, Status and Method sections."""
    sweep = result.sweep
    lines = [f"# {sweep.name}", ""]
    if sweep.description:
        lines += [sweep.description, ""]
    lines += [f"Results store `{sweep.path}` ({_provenance(sweep)}); report written "
              f"{dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} by `kwlab report`.", ""]
    lines += ["## Status", "", *status_lines(sweep, list(result.variants.get("variant", [])), result.changes), ""]
    notes = result.summary.loc[result.summary["note"].astype(bool), ["variant", "note"]] \
        if not result.summary.empty else pd.DataFrame()
    lines += ["## Method", "", _method_text(result, resamples, seed)]
    if len(notes):
        lines += ["", "Numbers left out, and why:", ""]
        lines += [f"- {row['variant']}: {row['note']}" for row in notes.to_dict("records")]
    return [*lines, ""]


def write_report(
    stores: list[str | Path],
    out: str | Path | None = None,
    *,
    metric: str | None = None,
    baseline: str | None = None,
    interval: str = "t",
    effect: float | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    heatmap_trials: tuple[str, ...] = (),
    echo: Callable[[str], None] | None = None,
) -> Path:
    """One store: its report (in `out`, default STORE/report). Several: each in OUT/<name>/ and a combined
    report.md with one parameters-vs-accuracy figure over all of them (OUT defaults to the stores' parent/report).

    `metric` defaults to test_top1 (best_val_top1 for a store without test metrics); `interval` is the interval of
    each variant's mean ("t" or "bootstrap", with `resamples` and `seed`); `effect` adds the seeds needed to
    resolve a difference of that size; `echo` receives the lines each part prints for each sweep (what `kwlab
    report` prints: the equal-cost differences, the differences per training length)."""
    if heatmap_trials:
        known = set().union(*(_trial_ids(Path(store)) for store in stores))
        unknown = [t for t in heatmap_trials if t not in known]
        if unknown:
            raise KWLabError(f"--trial: {', '.join(unknown)} is not a trial of {', '.join(map(str, stores))}")
    say = echo or (lambda line: None)
    if len(stores) == 1:
        sweep = load_sweep(stores[0], metric)
        folder = Path(out) if out is not None else sweep.path / "report"
        _echo(_report_sweep(sweep, folder, baseline=baseline, interval=interval, effect=effect, resamples=resamples,
                            seed=seed, heatmap_trials=heatmap_trials), say)
        return folder / "report.md"
    paths = [Path(s) for s in stores]
    out = Path(out) if out is not None else _common_parent(paths) / "report"
    out.mkdir(parents=True, exist_ok=True)
    results, reports, used = [], [], set()
    for path in paths:
        sweep = load_sweep(path, metric)
        name = sweep.name if sweep.name not in used else f"{sweep.name}_{len(used)}"
        used.add(name)
        result = _report_sweep(sweep, out / name, baseline=baseline, interval=interval, effect=effect,
                               resamples=resamples, seed=seed, heatmap_trials=heatmap_trials)
        results.append((name, result))
        reports.append((name, out / name / "report.md"))
        _echo(result, say)
    return write_combined(results, reports, out)


def _echo(result: Analysis, say: Callable[[str], None]) -> None:
    """Hand every part's printed lines for one sweep to `say`."""
    for part in PARTS:
        for line in part.lines(result) if part.lines else []:
            say(line)


def _trial_ids(store: Path) -> set[str]:
    return set(Store(store).trial_ids()) if Store(store).exists() else set()


def _common_parent(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([p.resolve().parent for p in paths]))
