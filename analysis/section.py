"""The items of report.md and the parts that write them.

A `Section` is one item of report.md: a heading, the sentence saying what was compared, its figures and a table. A
`Part` is one kind of section: the function that writes its files and returns its sections, and the names of the
files it writes, so that a new figure is one new part (analysis.sections lists them in report order) and a report
written again removes what an earlier one left (`Part.written`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parts take an Analysis; analysis.analyse does not import this module
    from analysis.analyse import Analysis

FIGURE_SUFFIXES = (".png", ".pdf")


@dataclass
class Section:
    """One item of report.md: a heading, the sentence saying what was compared, and the files it shows."""

    heading: str
    sentence: str
    images: list[Path] = field(default_factory=list)  # PNGs shown inline (PDF next to each)
    text: str = ""  # Markdown inserted after the sentence (e.g. a table)

    def markdown(self, out: Path) -> list[str]:
        """The section's lines of report.md, image paths relative to `out`."""
        lines = [f"## {self.heading}", "", self.sentence, ""]
        if self.text:
            lines += [self.text, ""]
        for png in [p for p in self.images if p.suffix == ".png"]:
            lines += [f"![{self.heading}]({png.relative_to(out).as_posix()})", "", figure_links(self.images, out), ""]
        return lines


@dataclass(frozen=True)
class Part:
    """One kind of report section: `write(result, out)` writes its files into `out` and returns its sections (none
    when the sweep has nothing for it); `figures` are the stems of its figures (each written as PNG and PDF) and
    `files` its other files, both as glob patterns; `lines(result)` what `kwlab report` prints for it."""

    name: str
    write: Callable[[Analysis, Path], list[Section]]
    figures: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    lines: Callable[[Analysis], list[str]] | None = None

    def written(self, out: Path) -> list[Path]:
        """The files of `out` this part writes: what a report written again removes first."""
        found = [p for stem in self.figures for p in out.glob(f"{stem}.*") if p.suffix in FIGURE_SUFFIXES]
        return found + [p for pattern in self.files for p in out.glob(pattern) if p.is_file()]


def figure_links(paths: list[Path], out: Path) -> str:
    """'[PNG](a.png) · [PDF](a.pdf)': a figure's files, relative to `out`."""
    return " · ".join(f"[{p.suffix[1:].upper()}]({p.relative_to(out).as_posix()})" for p in paths)


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9+-]+", "_", text).strip("_") or "variant"
