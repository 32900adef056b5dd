"""Small pure formatters for build fields in Slack mrkdwn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.errors import TWILIO_ERROR_DOCS
from bot.mrkdwn import escape_shortened
from bot.stats import Trend

PLACEHOLDER = "—"
MAX_NAME_CHARACTERS = 80

STATUS_LABELS = {
    "completed": ("✅", "completed"),
    "failed": ("❌", "failed"),
    "building": ("🔨", "building"),
    "enqueued": ("🕒", "enqueued"),
    "canceled": ("⏹️", "canceled"),
}
UNKNOWN_STATUS_EMOJI = "❔"


def status_label(status: str | None) -> str:
    """Return an emoji and a word for a build status; an unknown status is shown as sent."""
    if status is None:
        return f"{UNKNOWN_STATUS_EMOJI} unknown"

    emoji, word = STATUS_LABELS.get(status, (UNKNOWN_STATUS_EMOJI, status))
    return f"{emoji} {escape_shortened(word, 40)}"


def humanize_duration(seconds: int | float | None) -> str:
    """Return a duration such as `3m 10s`, `2h 5m` or `45s`; None gives the placeholder."""
    if seconds is None or seconds < 0:
        return PLACEHOLDER

    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def humanize_age(moment: datetime, now: datetime) -> str:
    """Return how long ago `moment` was, such as `5m ago`, for plain-text fallbacks."""
    delta = now - moment
    if delta < timedelta(minutes=1):
        return "just now"

    # Seconds are noise in an age, so the age is rounded down to whole minutes.
    whole_minutes = int(delta.total_seconds()) // 60 * 60
    return f"{humanize_duration(whole_minutes).removesuffix(' 0s').removesuffix(' 0m')} ago"


def slack_date(moment: datetime | None, *, now: datetime, relative: bool = False) -> str:
    """Return a Slack date token, so each reader sees the time in their own timezone.

    The text after `|` is the fallback that clients without date support show.
    """
    if moment is None:
        return PLACEHOLDER

    timestamp = int(moment.timestamp())
    if relative:
        return f"<!date^{timestamp}^{{ago}}|{humanize_age(moment, now)}>"
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{timestamp}^{{date_short_pretty}} {{time}}|{fallback}>"


def error_link(code: int | None) -> str:
    """Return a Twilio error code linked to its documentation page, or the placeholder."""
    if code is None:
        return PLACEHOLDER
    return f"<{TWILIO_ERROR_DOCS.format(code=code)}|{code}>"


def name(text: str | None, *, limit: int = MAX_NAME_CHARACTERS) -> str:
    """Return an upstream or user string shortened and escaped for mrkdwn, or the placeholder."""
    if not text:
        return PLACEHOLDER
    return escape_shortened(text, limit)


def trend_text(value: Trend) -> str:
    """Return a compact trend: failure rate, median duration and the duration sparkline, oldest first."""
    rate = f"{value.failure_rate:.0%} failed" if value.failure_rate is not None else "no finished builds"
    text = f"{rate} of last {value.finished}, median {humanize_duration(value.median_duration)}"
    return f"{text} `{value.sparkline}`" if value.sparkline else text
