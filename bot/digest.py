"""The daily build digest: when a channel's digest is due, what it reports, how it renders, and the loop that sends it.

A digest is due once per local day of its timezone, at the first check at or
after its time of day. The state store keeps the local day that went out last
(`Digest.last_sent_on`). The scheduler posts first and records the day after
Slack accepted the post, so a crash between the two sends that day's digest
once more after the restart, and never more often.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, DividerBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot import stats
from bot.blocks import MAX_FALLBACK_TEXT, MAX_SECTION_TEXT, context, header, section
from bot.core import ScopedBuilds
from bot.delivery import slack_error_code
from bot.errors import AutopilotError, StateUnavailableError
from bot.formatting import humanize_duration, name, slack_date, status_label
from bot.models import ModelBuild
from bot.mrkdwn import truncate
from bot.render import Reply
from bot.state.base import Digest, StateStore

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 30.0
WINDOW = stats.RECENT_WINDOW
IN_PROGRESS = frozenset({"enqueued", "building"})
OLDEST = datetime.min.replace(tzinfo=UTC)
TIME_OF_DAY = re.compile(r"(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)")

# Lines per list, so the digest stays short. The assistants with the most failures come first, so a cut drops the quiet ones.
ASSISTANT_LINES = 30
STUCK_LINES = 10
# Section blocks per list. With the header, date line, summary, divider and up to three footers, that makes
# at most 37 blocks, under Slack's 50.
ASSISTANT_SECTIONS = 20
STUCK_SECTIONS = 10
ERRORS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class AssistantDigest:
    """One assistant's line: its builds and failures of the window and its median build duration."""

    assistant: str
    failures: int
    builds: int
    median_duration: float | None
    median_sample: int
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RedStreak:
    """The longest run of consecutive failed builds of one assistant in the window, `ongoing` when no later build finished."""

    assistant: str
    length: int
    first: ModelBuild
    last: ModelBuild
    ongoing: bool


@dataclass(frozen=True, slots=True)
class StuckBuild:
    """A build still enqueued or building after the stuck limit."""

    assistant: str
    build: ModelBuild


@dataclass(frozen=True, slots=True)
class DigestReport:
    """The facts of one digest, for every assistant in scope."""

    since: datetime
    stuck_after: timedelta
    assistants: Sequence[AssistantDigest]
    red_streak: RedStreak | None
    stuck: Sequence[StuckBuild]
    errors: Sequence[tuple[str, AutopilotError]] = ()

    @property
    def failures(self) -> int:
        """Failed builds of the window across all assistants."""
        return sum(item.failures for item in self.assistants)

    @property
    def failing(self) -> int:
        """Number of assistants with at least one failed build in the window."""
        return sum(1 for item in self.assistants if item.failures)

    @property
    def checked(self) -> int:
        """Number of assistants in scope, read or not."""
        return len(self.assistants) + len(self.errors)


# When a digest is due


def due_day(digest: Digest, now: datetime) -> date | None:
    """Return the local day whose digest is due at `now`, or None when none is due.

    The digest is due when the local time in `digest.timezone` is at or past
    `time_of_day` and `last_sent_on` is not today's local date. A digest set up
    after today's time of day is therefore due at once, not tomorrow. On a day
    when a DST change skips the time of day, the digest is due at the first
    moment after the gap. When the time of day occurs twice, the first one sends it.

    Raises:
        ValueError: `now` is naive, `time_of_day` is not 24-hour `HH:MM`, or the timezone name is malformed.
        ZoneInfoNotFoundError: no timezone has that name.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()!r}: pass an aware datetime such as datetime.now(UTC)")

    local = now.astimezone(ZoneInfo(digest.timezone))
    if local.time() < _parse_time_of_day(digest.time_of_day):
        return None

    today = local.date()
    return None if digest.last_sent_on == today else today


def _parse_time_of_day(text: str) -> time:
    match = TIME_OF_DAY.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid time of day {text!r}: use 24-hour HH:MM, such as 09:00")
    return time(int(match["hour"]), int(match["minute"]))


# What a digest reports


def summarize(scoped: Sequence[ScopedBuilds], *, now: datetime, stuck_after: timedelta) -> DigestReport:
    """Summarize the builds of the 24 hours before `now` for every assistant that could be read."""
    since = now - WINDOW
    readable = [(item.assistant, item.listing) for item in scoped if item.listing is not None]

    assistants = [_assistant_digest(assistant, listing.items, listing.complete, now=now) for assistant, listing in readable]
    assistants.sort(key=lambda item: (-item.failures, item.assistant))

    streaks: list[RedStreak] = []
    stuck: list[StuckBuild] = []
    for assistant, listing in readable:
        streak = _longest_streak(assistant, listing.items, since=since)
        if streak is not None:
            streaks.append(streak)
        stuck.extend(_stuck_builds(assistant, listing.items, cutoff=now - stuck_after))

    # `max` keeps the first of equal keys, so sorting by name first makes the choice between equal streaks stable.
    streaks.sort(key=lambda streak: streak.assistant)
    stuck.sort(key=lambda item: (_created_or_oldest(item.build), item.assistant))

    return DigestReport(
        since=since,
        stuck_after=stuck_after,
        assistants=assistants,
        red_streak=max(streaks, key=_streak_rank, default=None),
        stuck=stuck,
        errors=[(item.assistant, item.error) for item in scoped if item.error is not None],
    )


def _assistant_digest(assistant: str, builds: Sequence[ModelBuild], complete: bool, *, now: datetime) -> AssistantDigest:
    newest_first = sorted(builds, key=_created_or_oldest, reverse=True)
    summary = stats.summarize(newest_first, now=now)
    since = now - WINDOW

    return AssistantDigest(
        assistant=assistant,
        failures=summary.failed_recently,
        builds=sum(1 for build in builds if build.date_created is not None and build.date_created >= since),
        median_duration=summary.median_duration,
        median_sample=summary.median_sample,
        complete=complete,
    )


def _longest_streak(assistant: str, builds: Sequence[ModelBuild], *, since: datetime) -> RedStreak | None:
    """Return the longest run of failed builds created since `since`, and of equal runs the later one.

    Builds still enqueued or building have no outcome yet, so they neither extend nor end a run.
    Any other status ends it.
    """
    finished = sorted(
        (build for build in builds if build.date_created is not None and build.date_created >= since and build.status not in IN_PROGRESS),
        key=_created_or_oldest,
    )

    best: RedStreak | None = None
    start = 0
    for index, build in enumerate(finished):
        if build.status != "failed":
            start = index + 1
            continue

        length = index - start + 1
        if best is None or length >= best.length:
            best = RedStreak(assistant, length, finished[start], build, ongoing=index == len(finished) - 1)
    return best


def _streak_rank(streak: RedStreak) -> tuple[int, datetime]:
    # The longest run wins. Of equal runs, the one whose last failure is newest wins.
    return (streak.length, _created_or_oldest(streak.last))


def _stuck_builds(assistant: str, builds: Sequence[ModelBuild], *, cutoff: datetime) -> list[StuckBuild]:
    return [
        StuckBuild(assistant, build)
        for build in builds
        if build.status in IN_PROGRESS and build.date_created is not None and build.date_created < cutoff
    ]


def _created_or_oldest(build: ModelBuild) -> datetime:
    return build.date_created if build.date_created is not None else OLDEST


# How a digest renders


def render_digest(report: DigestReport, *, now: datetime, timezone: str) -> Reply:
    """Render a digest in Block Kit, within Slack's limits whatever the number of assistants and builds.

    `timezone` is the IANA name the digest's date line uses. Builds show as Slack
    date tokens, which each reader sees in their own timezone.

    Raises:
        ValueError, ZoneInfoNotFoundError: `timezone` is not a known IANA name.
    """
    blocks: list[Block] = [
        header("Daily build digest"),
        context(_date_line(now=now, timezone=timezone)),
        section(_summary(report, now=now)),
    ]
    footers = _error_footers(report)

    assistant_lines = [_assistant_line(item) for item in report.assistants[:ASSISTANT_LINES]]
    texts, shown_count = _pack("*Assistants*", assistant_lines, max_sections=ASSISTANT_SECTIONS)
    if assistant_lines:
        blocks.append(DividerBlock())
        blocks.extend(section(text) for text in texts)
    if shown_count < len(report.assistants):
        footers.append(f"Showing {shown_count} of {len(report.assistants)} assistants, most failures first.")

    stuck_lines = [_stuck_line(item, now=now) for item in report.stuck[:STUCK_LINES]]
    texts, shown_count = _pack("*Stuck builds*", stuck_lines, max_sections=STUCK_SECTIONS)
    if stuck_lines:
        blocks.extend(section(text) for text in texts)
    if shown_count < len(report.stuck):
        footers.append(f"Showing {shown_count} of {len(report.stuck)} stuck builds, oldest first.")

    blocks.extend(context(text) for text in footers)
    return Reply(text=_fallback(report), blocks=blocks)


def _date_line(*, now: datetime, timezone: str) -> str:
    local = now.astimezone(ZoneInfo(timezone))
    return f"{local:%a %Y-%m-%d %H:%M} ({name(timezone)}) · builds created in the last 24 hours"


def _summary(report: DigestReport, *, now: datetime) -> str:
    if not report.checked:
        return "No assistants in scope, so there are no builds to report."

    since = slack_date(report.since, now=now)
    if report.failures:
        lines = [f"*{_count(report.failures, 'failed build')}* in {report.failing} of {_count(report.checked, 'assistant')} since {since}."]
    else:
        lines = [f"No failed builds in {_count(report.checked, 'assistant')} since {since}."]

    if report.red_streak is not None:
        lines.append(_streak_line(report.red_streak))

    limit = _duration_text(report.stuck_after)
    if report.stuck:
        lines.append(f"🕒 *{_count(len(report.stuck), 'build')}* enqueued or building for more than {limit}.")
    else:
        lines.append(f"No build has been enqueued or building for more than {limit}.")
    return "\n".join(lines)


def _streak_line(streak: RedStreak) -> str:
    still = ", and it is still failing" if streak.ongoing else ""
    if streak.length == 1:
        return f"🔴 Longest red streak: *{name(streak.assistant)}*, one failed build (*{name(streak.first.name)}*){still}."
    return (
        f"🔴 Longest red streak: *{name(streak.assistant)}*, {streak.length} failed builds in a row "
        f"from *{name(streak.first.name)}* to *{name(streak.last.name)}*{still}."
    )


def _assistant_line(item: AssistantDigest) -> str:
    if item.failures:
        facts = [f"❌ *{name(item.assistant)}*", f"{item.failures} of {_count(item.builds, 'build')} failed"]
    elif item.builds:
        facts = [f"✅ *{name(item.assistant)}*", f"{_count(item.builds, 'build')}, none failed"]
    else:
        facts = [f"➖ *{name(item.assistant)}*", "no builds in 24 hours"]

    if item.median_sample:
        facts.append(f"median {humanize_duration(item.median_duration)} (last {item.median_sample})")
    if not item.complete:
        facts.append("⚠️ paging stopped early, so older builds may be missing")
    return " · ".join(facts)


def _stuck_line(item: StuckBuild, *, now: datetime) -> str:
    build = item.build
    age = _duration_text(now - build.date_created) if build.date_created else "an unknown time"
    return (
        f"{status_label(build.status)} *{name(build.name)}* of *{name(item.assistant)}* for {age}, "
        f"since {slack_date(build.date_created, now=now)}"
    )


def _duration_text(duration: timedelta) -> str:
    # Whole minutes read better without the seconds: `30m`, not `30m 0s`.
    return humanize_duration(duration.total_seconds()).removesuffix(" 0s")


def _pack(title: str, lines: Sequence[str], *, max_sections: int) -> tuple[list[str], int]:
    """Join `title` and `lines` into at most `max_sections` section texts, and return them with the number of lines they contain."""
    texts: list[str] = []
    current = title
    shown_count = 0
    for line in lines:
        if len(current) + 1 + len(line) <= MAX_SECTION_TEXT:
            current = f"{current}\n{line}"
        elif len(texts) + 1 < max_sections:
            texts.append(current)
            current = line
        else:
            break
        shown_count += 1

    texts.append(current)
    return texts, shown_count


def _error_footers(report: DigestReport) -> list[str]:
    if not report.errors:
        return []

    entries = [f"{name(assistant, limit=40)} ({error.summary})" for assistant, error in report.errors[:ERRORS_SHOWN]]
    more = len(report.errors) - len(entries)
    text = f"⚠️ Could not read {_count(len(report.errors), 'assistant')}: " + ", ".join(entries)
    return [text + (f", and {more} more." if more > 0 else ".")]


def _fallback(report: DigestReport) -> str:
    text = f"Daily build digest: {_count(report.failures, 'failed build')} in {report.failing} of {_count(report.checked, 'assistant')} in the last 24 hours"
    if report.stuck:
        text += f", {_count(len(report.stuck), 'stuck build')}"
    if report.errors:
        text += f", {len(report.errors)} not readable"
    return truncate(text + ".", MAX_FALLBACK_TEXT)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# Sending


class DigestScheduler:
    """Post each channel's digest once per local day, at the first check at or after its time of day."""

    def __init__(
        self,
        *,
        store: StateStore,
        load_builds: Callable[[], Awaitable[list[ScopedBuilds]]],
        client: AsyncWebClient,
        token: str,
        clock: Callable[[], datetime],
        stuck_after: timedelta,
    ) -> None:
        self._store = store
        self._load_builds = load_builds
        self._client = client
        self._token = token
        self._clock = clock
        self._stuck_after = stuck_after
        self._lock = asyncio.Lock()
        # Consecutive failures, counted in the logs so that a repeating error shows how long it has lasted.
        self._load_failures = 0
        self._post_failures: dict[str, int] = {}
        self._invalid_reported: set[tuple[str, str, str]] = set()

    async def run(self, stop: asyncio.Event, *, leading: Callable[[], bool] = lambda: True) -> None:
        """Send due digests while `leading()` is true, at once and then every 30 seconds, until `stop` is set."""
        logger.info("digest.scheduler_started", extra={"interval": CHECK_INTERVAL})
        while not stop.is_set():
            if leading():
                try:
                    await self.send_due()
                except StateUnavailableError as error:
                    logger.warning("digest.state_unavailable", extra={"error": str(error)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=CHECK_INTERVAL)
        logger.info("digest.scheduler_stopped")

    async def send_due(self) -> int:
        """Post every due digest, record its local day, and return how many went out.

        The builds are read once per call, and only when a digest is due. When
        they cannot be read, nothing is posted or recorded. A digest whose post
        failed stays due, so the next check sends it.
        """
        async with self._lock:
            now = self._clock()
            due = await self._due(now)
            if not due:
                return 0

            scoped = await self._read_builds([digest.channel_id for digest, _ in due])
            if scoped is None:
                return 0

            report = summarize(scoped, now=now, stuck_after=self._stuck_after)
            sent = 0
            for digest, day in due:
                if await self._send(digest, day, report, now=now):
                    sent += 1
            return sent

    async def _due(self, now: datetime) -> list[tuple[Digest, date]]:
        due: list[tuple[Digest, date]] = []
        for digest in await self._store.digests():
            try:
                day = due_day(digest, now)
            except (ValueError, ZoneInfoNotFoundError) as error:
                self._report_invalid(digest, error)
                continue
            if day is not None:
                due.append((digest, day))
        return due

    async def _read_builds(self, channels: list[str]) -> list[ScopedBuilds] | None:
        try:
            scoped = await self._load_builds()
        except AutopilotError as error:
            self._load_failures += 1
            logger.warning(
                "digest.builds_unavailable",
                extra={"channel_ids": channels, "error": str(error), "consecutive_failures": self._load_failures},
            )
            return None

        self._load_failures = 0
        return scoped

    async def _send(self, digest: Digest, day: date, report: DigestReport, *, now: datetime) -> bool:
        ids = {"channel_id": digest.channel_id, "day": day.isoformat()}
        reply = render_digest(report, now=now, timezone=digest.timezone)
        try:
            await self._post(digest.channel_id, reply)
        except SlackApiError as error:
            self._report_post_failure(ids, slack_error_code(error))
            return False
        except (ClientError, TimeoutError) as error:
            self._report_post_failure(ids, type(error).__name__)
            return False

        await self._store.mark_digest_sent(digest.channel_id, day)
        self._post_failures.pop(digest.channel_id, None)
        logger.info("digest.sent", extra=ids)
        return True

    async def _post(self, channel: str, reply: Reply) -> None:
        payload = reply.to_dict()
        await self._client.chat_postMessage(
            token=self._token,
            channel=channel,
            text=payload["text"],
            blocks=payload["blocks"],
            unfurl_links=False,
            unfurl_media=False,
            link_names=False,
            parse="none",
        )

    def _report_post_failure(self, ids: dict[str, str], error: str) -> None:
        # NOTE: A channel that keeps rejecting posts, such as one the bot has left, is tried again at every check
        # until the bot is invited back or someone runs `digest off` there.
        failures = self._post_failures.get(ids["channel_id"], 0) + 1
        self._post_failures[ids["channel_id"]] = failures
        logger.error("digest.send_failed", extra={**ids, "error": error, "consecutive_failures": failures})

    def _report_invalid(self, digest: Digest, error: Exception) -> None:
        # Logged once per setting and process, because the same row fails at every check.
        key = (digest.channel_id, digest.time_of_day, digest.timezone)
        if key in self._invalid_reported:
            return
        self._invalid_reported.add(key)
        logger.error(
            "digest.invalid_setting",
            extra={"channel_id": digest.channel_id, "time_of_day": digest.time_of_day, "timezone": digest.timezone, "error": repr(error)},
        )
