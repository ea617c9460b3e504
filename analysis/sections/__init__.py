"""The parts of a report, one module each, in the order report.md shows them. A new figure or table is one new
module with its `PART` (`analysis.section.Part`: what it writes and how), named once in this list."""

from analysis.sections import (ablation, compared, curves, end_of_training, equal_cost, heatmaps, importance,
                               methods, prices, schedules)
from analysis.section import Part

PARTS: tuple[Part, ...] = (equal_cost.PART, ablation.PART, schedules.PART, end_of_training.PART, prices.PART,
                           methods.PART, curves.PART, heatmaps.PART, compared.PART, importance.PART)
