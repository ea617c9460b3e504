"""One item of report.md, as every section builder (analysis.report, analysis.importance) returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    """One item of report.md: a heading, the sentence saying what was compared, and the files it shows."""

    heading: str
    sentence: str
    images: list[Path] = field(default_factory=list)  # PNGs shown inline (PDF next to each)
    text: str = ""  # Markdown inserted after the sentence (e.g. a table)
