"""One figure style for every plot: paper-column sizes, fonts, colours, and saving as PNG and PDF.

Sizes follow two-column papers: a single column is about 3.4 in wide, a full page width about 7 in. Fonts are set
so that, printed at that size, tick labels are 7 pt and axis labels 8 pt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Colormap, LinearSegmentedColormap, to_hex, to_rgb  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
PAGE_WIDTH = 7.0  # inches, both columns
BASELINE_COLOR = "#222222"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
SHADES = (0.15, 0.85)  # the part of a light-to-dark ramp that shades use: visible on white, not black
FORMATS = ("png", "pdf")
DPI = 300

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "figure.dpi": 150,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by paper submission systems
    "ps.fonttype": 42,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Context in which figures are built with the paper style (rc parameters restored afterwards)."""
    with plt.rc_context(RC):
        yield


def new_figure(width: float = COLUMN_WIDTH, height: float = 2.5, **subplots: object) -> tuple[Figure, np.ndarray]:
    """A figure of the given size in inches with constrained layout; returns (figure, axes array)."""
    fig, axes = plt.subplots(figsize=(width, height), layout="constrained", squeeze=False, **subplots)
    return fig, axes


def palette(labels: Sequence[str], baseline: str | None = None, ordinal: bool = False) -> dict[str, str]:
    """A colour per label: dark grey for the baseline; an ordered map (viridis, yellow end cut) when the labels are
    ordered values of one numeric factor, else a colour-blind-safe categorical palette."""
    others = [label for label in dict.fromkeys(labels) if label != baseline]
    if ordinal:
        cmap: Colormap = plt.get_cmap("viridis")
        points = np.linspace(0.0, 0.85, max(len(others), 2))[: len(others)]
        colors = [to_hex(cmap(p)) for p in points]
    else:
        import seaborn as sns

        colors = [to_hex(c) for c in sns.color_palette("colorblind", max(len(others), 1))]
        if len(others) > 10:
            colors = [to_hex(c) for c in sns.color_palette("husl", len(others))]
    mapping = dict(zip(others, colors, strict=False))
    if baseline is not None:
        mapping[baseline] = BASELINE_COLOR
    return mapping


def shades(base: str, count: int) -> list[str]:
    """`count` shades of one hue, light to dark around `base` (a colour): from `base` mixed with white to `base`
    mixed with black, within SHADES of that range; one alone is `base` itself."""
    light, dark = (to_hex(np.add(np.multiply(to_rgb(base), 1 - w), np.multiply(end, w))) for end, w in
                   (((1, 1, 1), 0.65), ((0, 0, 0), 0.55)))
    ramp = LinearSegmentedColormap.from_list(base, [light, base, dark])
    points = np.linspace(*SHADES, count) if count > 1 else [0.5] * count
    return [to_hex(ramp(p)) for p in points]


def marker_cycle(labels: Sequence[str]) -> dict[str, str]:
    """A marker per label, in turn from MARKERS."""
    return {label: MARKERS[i % len(MARKERS)] for i, label in enumerate(dict.fromkeys(labels))}


def legend_columns(fig: Figure, names: Sequence[str], most: int = 3) -> int:
    """Columns for a figure-level legend of `names` (at most `most`), widening `fig` where a row of them would run
    past its edges (constrained layout makes room below the axes, never beside them)."""
    fontsize = plt.rcParams["legend.fontsize"]
    fontsize = fontsize if isinstance(fontsize, (int, float)) else 7
    longest = max((len(name) for name in names), default=1)
    column = (longest * 0.55 * fontsize + 3.5 * fontsize) / 72  # ~0.55 em a character, then handle and spacing
    ncols = max(1, min(most, len(names)))
    fig.set_figwidth(max(fig.get_figwidth(), ncols * column))
    return ncols


LEGEND_ENTRIES = 40  # a legend longer than this names its first entries and how many more there are


def figure_legend(fig: Figure, handles: dict[str, Artist], title: str | None = None) -> None:
    """A legend of `handles` (name -> artist) below the axes of `fig`, read row by row, in as many columns as fit;
    past LEGEND_ENTRIES entries (a sweep of hundreds of variants), the first ones and a count of the rest."""
    if not handles:
        return
    if len(handles) > LEGEND_ENTRIES:
        rest = len(handles) - LEGEND_ENTRIES + 1
        handles = {**dict(list(handles.items())[: LEGEND_ENTRIES - 1]),
                   f"... and {rest:,} more (see the tables)": Line2D([], [], linestyle="none")}
    ncols = legend_columns(fig, list(handles))
    names = row_major(list(handles), ncols)
    fig.legend([handles[n] for n in names], names, title=title, loc="outside lower center", ncols=ncols,
               handletextpad=0.4, columnspacing=1.0)


def plural(count: int, noun: str) -> str:
    """'1 trial', '3 trials'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def row_major(items: list[str], ncols: int) -> list[str]:
    """Reorder legend entries so that matplotlib's column-by-column filling reads left to right, row by row."""
    rows = -(-len(items) // ncols)
    return [items[r * ncols + c] for c in range(ncols) for r in range(rows) if r * ncols + c < len(items)]


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `fig` as stem.png and stem.pdf (tight bounding box) and close it; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: a stem may contain dots
        fig.savefig(path, dpi=DPI)  # constrained layout already fits every label inside the figure
        fig.set_layout_engine("none")  # the layout is done: the next format reuses it instead of redoing it
        paths.append(path)
    plt.close(fig)
    return paths


def human_count(value: float) -> str:
    """1234567 -> '1.23M', 45678 -> '45.7K', 999 -> '999'."""
    if value is None or not np.isfinite(value):
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}" if value / size < 100 else f"{value / size:.0f}{unit}"
    return f"{value:.0f}"


def count_scale(values: Sequence[float]) -> tuple[float, str]:
    """Divisor and unit suffix so that the largest value reads between 1 and 1000: (1e6, 'M'), (1e3, 'K'), ..."""
    finite = [abs(v) for v in values if v is not None and np.isfinite(v)]
    largest = max(finite) if finite else 1.0
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if largest >= size:
            return size, unit
    return 1.0, ""
