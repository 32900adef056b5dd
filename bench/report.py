"""Percentiles, ratios and Markdown tables for benchmark figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the nearest-rank percentile of `values`. An `inf` entry stands for a command that got no reply."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def ms(seconds: float, *, cap: float | None = None) -> str:
    """Format seconds as milliseconds. `inf` becomes `> cap` when the wait was capped, else `never`."""
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return f"> {cap * 1000:,.0f}" if cap is not None else "never"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f}"
    if seconds < 1:
        return f"{seconds * 1000:.1f}"
    return f"{seconds * 1000:,.0f}"


def ratio(baseline: float, bot: float) -> str:
    """Format how many times larger `baseline` is than `bot`, with `>` when the baseline was capped."""
    if math.isnan(baseline) or math.isnan(bot) or bot <= 0:
        return "n/a"
    if math.isinf(baseline):
        return "n/a (baseline capped)"
    return f"{baseline / bot:,.1f}x"


def lower_bound_ratio(baseline: float, bot: float, cap: float) -> str:
    """Format the ratio, or its lower bound `> cap / bot` when the baseline got no reply within `cap`."""
    if math.isinf(baseline) and bot > 0:
        return f"> {cap / bot:,.0f}x"
    return ratio(baseline, bot)


@dataclass
class Table:
    """One benchmark's figures: a title, column names, rows of cells and notes printed under it."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append one row; every cell is shown with `str()`."""
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {self.title!r} needs {len(self.columns)} cells, got {len(cells)}")
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        """Return the table as GitHub Markdown, with its notes as a list under it."""
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"
