"""The one-glance overview of every assistant in scope: red first, then building, then green.

Each line shows the latest build's status and age, the last successful build
and the failures in the last 24 h. It adds the failure rate, median duration
and a duration sparkline of the last 20 builds, and whether alerts are muted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import Block

from bot.blocks import MAX_SECTION_TEXT, context, header, section
from bot.errors import AutopilotError
from bot.formatting import name, slack_date, status_label, trend_text
from bot.models import ModelBuild
from bot.render import Reply
from bot.state.base import Mute
from bot.stats import Trend, summarize, trend

LINES_PER_SECTION = 10
RANKS = {"failed": 0, "building": 1, "enqueued": 1, "completed": 2}
UNREADABLE_RANK = 0
OTHER_RANK = 3


@dataclass(frozen=True, slots=True)
class OverviewRow:
    """The overview data of one assistant, or the error that kept it from being read."""

    assistant: str
    latest: ModelBuild | None = None
    last_success: ModelBuild | None = None
    failed_recently: int = 0
    trend: Trend | None = None
    mute: Mute | None = None
    error: AutopilotError | None = None

    @property
    def rank(self) -> int:
        """Return the sort rank: red and unreadable first, then building, then green, then the rest."""
        if self.error is not None:
            return UNREADABLE_RANK
        if self.latest is None or self.latest.status is None:
            return OTHER_RANK
        return RANKS.get(self.latest.status, OTHER_RANK)


def overview_row(
    assistant: str,
    builds: Sequence[ModelBuild] | None,
    *,
    now: datetime,
    error: AutopilotError | None = None,
    mute: Mute | None = None,
) -> OverviewRow:
    """Build the overview line data of one assistant from its builds, newest first."""
    if builds is None:
        return OverviewRow(assistant, mute=mute, error=error)

    summary = summarize(builds, now=now)
    return OverviewRow(
        assistant,
        latest=summary.latest,
        last_success=summary.last_success,
        failed_recently=summary.failed_recently,
        trend=trend(builds),
        mute=mute,
    )


def sort_rows(rows: Sequence[OverviewRow]) -> list[OverviewRow]:
    """Return the rows red first, then building, then green, most recent first within each group."""
    def newest(row: OverviewRow) -> float:
        created = row.latest.date_created if row.latest else None
        return -created.timestamp() if created else 0.0

    return sorted(rows, key=lambda row: (row.rank, newest(row), row.assistant))


def overview_lines(rows: Sequence[OverviewRow], *, now: datetime) -> list[str]:
    """Return one mrkdwn line per assistant, in the order of `rows`."""
    return [_line(row, now=now) for row in rows]


def render_overview(rows: Sequence[OverviewRow], *, now: datetime, max_blocks: int = 50, command: str = "/builds") -> Reply:
    """Render the overview of `rows` (already sorted) within `max_blocks` blocks."""
    lines = overview_lines(rows, now=now)
    red = sum(1 for row in rows if row.rank == 0)
    blocks: list[Block] = [header(f"Build status · {len(rows)} assistants"), context(_legend(red, len(rows), command))]
    chunks = _chunks(lines)
    room = max_blocks - len(blocks) - 1
    blocks.extend(section(chunk) for chunk in chunks[:room])
    if len(chunks) > room:
        shown = sum(chunk.count("\n") + 1 for chunk in chunks[:room])
        blocks.append(context(f"Showing {shown} of {len(rows)} assistants."))
    if not rows:
        blocks.append(section("No assistants in scope. Set BUILDS_ASSISTANTS, or create an assistant."))

    text = f"{red} of {len(rows)} assistants need attention" if red else f"All {len(rows)} assistants look fine"
    return Reply(text=text, blocks=blocks)


def _line(row: OverviewRow, *, now: datetime) -> str:
    muted = " · 🔕 muted" if row.mute is not None else ""
    if row.error is not None:
        return f"❔ *{name(row.assistant)}* · could not be read ({row.error.summary}){muted}"
    if row.latest is None:
        return f"⚪ *{name(row.assistant)}* · no builds yet{muted}"

    parts = [f"{status_label(row.latest.status)} *{name(row.assistant)}* {slack_date(row.latest.date_created, now=now, relative=True)}"]
    parts.append("last success " + (slack_date(row.last_success.date_created, now=now, relative=True) if row.last_success else "never"))
    parts.append(f"{row.failed_recently} failed in 24 h")
    if row.trend is not None:
        parts.append(trend_text(row.trend))
    return " · ".join(parts) + muted


def _legend(red: int, total: int, command: str) -> str:
    attention = f"*{red}* need attention" if red else "none need attention"
    return f"{attention} · red first, then building, then green · `{command} <assistant>` for details"


def _chunks(lines: Sequence[str]) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for line in lines:
        if current and (len(current) >= LINES_PER_SECTION or len("\n".join([*current, line])) > MAX_SECTION_TEXT - 100):
            chunks.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        chunks.append("\n".join(current))
    return chunks

