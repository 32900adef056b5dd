"""Tests for the daily digest: pure scheduling, summary and rendering, then the running app against the sandbox and a Slack stand-in.

The app-level tests move the bot's clock and call `send_due()` themselves
instead of waiting for the 30-second loop, so no test sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.autopilot import Listing
from bot.blocks import MAX_BLOCKS, MAX_SECTION_TEXT
from bot.core import ScopedBuilds
from bot.digest import DigestReport, DigestScheduler, due_day, render_digest, summarize
from bot.errors import NotFoundError, ServerError
from bot.models import ModelBuild
from bot.sandbox import SandboxServer
from bot.sandbox_data import format_timestamp
from bot.state.base import Digest
from bot.state.sqlite import SqliteStateStore
from tests.conftest import BOT_TOKEN
from tests.harness import assert_valid_message, message_text
from tests.slack_server import Fault, SlackStandIn
from tests.alert_fixtures import CHANNEL, AlertBot, Clock, alert_bot, dataset

# 2026-12-04 is a Friday in winter: Berlin is UTC+1 and New York UTC-5.
DAY = date(2026, 12, 4)
BERLIN_NINE = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
STUCK_AFTER = timedelta(minutes=30)


def digest(time_of_day: str = "09:00", timezone: str = "Europe/Berlin", last_sent_on: date | None = None, channel_id: str = CHANNEL) -> Digest:
    return Digest(channel_id, time_of_day, timezone, "U0ENGINEER", NOW - timedelta(days=3), last_sent_on)


def build(
    status: str,
    *,
    minutes_ago: float,
    name: str | None = None,
    duration: int | None = 95,
    now: datetime = NOW,
) -> ModelBuild:
    created = now - timedelta(minutes=minutes_ago)
    unique_name = name or f"{status}-{minutes_ago:g}m"
    return ModelBuild(f"UG{unique_name}", unique_name, status, "UA1", created, created, duration, 23001 if status == "failed" else None)


def scoped(assistant: str, *builds: ModelBuild, complete: bool = True) -> ScopedBuilds:
    """Return an assistant's builds newest first, as the API lists them."""
    newest_first = sorted(builds, key=lambda item: item.date_created or NOW, reverse=True)
    return ScopedBuilds(assistant, Listing(newest_first, complete))


# due_day


@pytest.mark.parametrize(
    ("setting", "now", "expected"),
    [
        # Berlin in winter, UTC+1.
        (digest(), datetime(2026, 12, 4, 7, 59, 59, tzinfo=UTC), None),
        (digest(), BERLIN_NINE, DAY),
        (digest(), NOW, DAY),
        (digest(last_sent_on=DAY), NOW, None),
        (digest(last_sent_on=DAY - timedelta(days=1)), NOW, DAY),
        # Berlin in summer, UTC+2.
        (digest(), datetime(2026, 7, 1, 6, 59, tzinfo=UTC), None),
        (digest(), datetime(2026, 7, 1, 7, 0, tzinfo=UTC), date(2026, 7, 1)),
        # Berlin skips 02:00 to 03:00 on 2026-03-29, so 02:30 is due at 03:00 local time.
        (digest("02:30"), datetime(2026, 3, 29, 0, 59, tzinfo=UTC), None),
        (digest("02:30"), datetime(2026, 3, 29, 1, 0, tzinfo=UTC), date(2026, 3, 29)),
        # New York in winter, UTC-5.
        (digest("09:00", "America/New_York"), datetime(2026, 12, 4, 13, 59, tzinfo=UTC), None),
        (digest("09:00", "America/New_York"), datetime(2026, 12, 4, 14, 0, tzinfo=UTC), DAY),
        # 20:30 in New York is already the next day in UTC, but the local day counts.
        (digest("20:00", "America/New_York"), datetime(2026, 12, 5, 1, 30, tzinfo=UTC), DAY),
        # New York repeats 01:00 to 02:00 on 2026-11-01: the first 01:30 (EDT) sends it, the second (EST) does not.
        (digest("01:30", "America/New_York"), datetime(2026, 11, 1, 5, 30, tzinfo=UTC), date(2026, 11, 1)),
        (digest("01:30", "America/New_York", last_sent_on=date(2026, 11, 1)), datetime(2026, 11, 1, 6, 30, tzinfo=UTC), None),
        # The command's default timezone is UTC.
        (digest("09:00", "UTC"), datetime(2026, 12, 4, 8, 59, 59, tzinfo=UTC), None),
        (digest("09:00", "UTC"), datetime(2026, 12, 4, 9, 0, tzinfo=UTC), DAY),
        (digest("00:00", "UTC"), datetime(2026, 12, 4, 0, 0, tzinfo=UTC), DAY),
    ],
)
def test_due_day_table(setting: Digest, now: datetime, expected: date | None) -> None:
    assert due_day(setting, now) == expected


def test_due_day_set_after_time_due_at_once() -> None:
    """A digest set at 13:00 for 09:00 goes out at the next check, not tomorrow."""
    setting = Digest(CHANNEL, "09:00", "Europe/Berlin", "U0ENGINEER", created_at=NOW, last_sent_on=None)

    assert due_day(setting, NOW) == DAY


def test_due_day_naive_now_raises() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        due_day(digest(), datetime(2026, 12, 4, 9, 0))


@pytest.mark.parametrize("time_of_day", ["9:00", "24:00", "09:60", "0900", "09:00:00", ""])
def test_due_day_invalid_time_raises(time_of_day: str) -> None:
    with pytest.raises(ValueError, match="invalid time of day"):
        due_day(digest(time_of_day), NOW)


def test_due_day_unknown_timezone_raises() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        due_day(digest(timezone="Mars/Olympus_Mons"), NOW)


# summarize


def test_summarize_failures_most_first() -> None:
    report = summarize(
        [
            scoped("quiet-bot", build("completed", minutes_ago=60)),
            scoped("flaky-bot", build("failed", minutes_ago=60), build("completed", minutes_ago=30)),
            scoped("broken-bot", build("failed", minutes_ago=90), build("failed", minutes_ago=60), build("failed", minutes_ago=25 * 60)),
            scoped("alpha-bot", build("failed", minutes_ago=10)),
        ],
        now=NOW,
        stuck_after=STUCK_AFTER,
    )

    assert [(item.assistant, item.failures) for item in report.assistants] == [
        ("broken-bot", 2),
        ("alpha-bot", 1),
        ("flaky-bot", 1),
        ("quiet-bot", 0),
    ]
    assert [item.builds for item in report.assistants] == [2, 1, 2, 1]
    assert report.failures == 4
    assert report.failing == 3
    assert report.checked == 4
    assert report.since == NOW - timedelta(hours=24)


def test_summarize_red_streak_longest_run() -> None:
    builds = [
        build("failed", minutes_ago=25 * 60, name="too-old"),
        build("failed", minutes_ago=600, name="a1"),
        build("completed", minutes_ago=500),
        build("failed", minutes_ago=400, name="b1"),
        build("building", minutes_ago=350, duration=None),
        build("failed", minutes_ago=300, name="b2"),
        build("failed", minutes_ago=200, name="b3"),
        build("canceled", minutes_ago=100),
    ]

    report = summarize([scoped("support-bot", *builds)], now=NOW, stuck_after=STUCK_AFTER)

    streak = report.red_streak
    assert streak is not None
    assert streak.assistant == "support-bot"
    assert streak.length == 3
    assert streak.first.unique_name == "b1"
    assert streak.last.unique_name == "b3"
    assert streak.ongoing is False


def test_summarize_red_streak_across_assistants() -> None:
    report = summarize(
        [
            scoped("older-bot", build("failed", minutes_ago=300), build("failed", minutes_ago=200)),
            scoped("newer-bot", build("failed", minutes_ago=120), build("failed", minutes_ago=60, name="newest")),
            scoped("short-bot", build("failed", minutes_ago=5)),
        ],
        now=NOW,
        stuck_after=STUCK_AFTER,
    )

    streak = report.red_streak
    assert streak is not None
    assert streak.assistant == "newer-bot"
    assert streak.length == 2
    assert streak.last.unique_name == "newest"
    assert streak.ongoing is True


def test_summarize_no_failures_no_streak() -> None:
    report = summarize([scoped("support-bot", build("completed", minutes_ago=60))], now=NOW, stuck_after=STUCK_AFTER)

    assert report.red_streak is None
    assert report.failures == 0


def test_summarize_median_of_last_20_durations() -> None:
    # Durations are 1 to 25 s, newest first. The newest build has no duration yet, so 19 of the latest 20 have one.
    builds = [build("completed", minutes_ago=index * 10, duration=index + 1) for index in range(25)]
    builds.append(build("building", minutes_ago=5, duration=None))

    report = summarize([scoped("support-bot", *builds)], now=NOW, stuck_after=STUCK_AFTER)

    (item,) = report.assistants
    assert item.median_sample == 19
    assert item.median_duration == 10


def test_summarize_stuck_builds_oldest_first() -> None:
    report = summarize(
        [
            scoped("support-bot", build("building", minutes_ago=31, name="slow"), build("building", minutes_ago=10, name="fresh")),
            scoped("sales-bot", build("enqueued", minutes_ago=120, name="queued"), build("completed", minutes_ago=600)),
        ],
        now=NOW,
        stuck_after=STUCK_AFTER,
    )

    assert [(item.assistant, item.build.unique_name) for item in report.stuck] == [("sales-bot", "queued"), ("support-bot", "slow")]


def test_summarize_unreadable_assistants() -> None:
    error = ServerError("HTTP 503", status=503)
    report = summarize(
        [scoped("support-bot", build("failed", minutes_ago=5)), ScopedBuilds("sales-bot", None, error)],
        now=NOW,
        stuck_after=STUCK_AFTER,
    )

    assert [item.assistant for item in report.assistants] == ["support-bot"]
    assert report.errors == [("sales-bot", error)]
    assert report.checked == 2


# render_digest


def section_texts(payload: dict[str, Any]) -> list[str]:
    return [block["text"]["text"] for block in payload["blocks"] if block["type"] == "section"]


def test_render_digest_shows_facts() -> None:
    report = summarize(
        [
            scoped("support-bot", build("failed", minutes_ago=120, name="v41"), build("failed", minutes_ago=60, name="v42")),
            scoped("sales-bot", build("building", minutes_ago=45, name="slow", duration=None)),
            ScopedBuilds("faq-bot", None, NotFoundError("no such assistant", status=404)),
        ],
        now=NOW,
        stuck_after=STUCK_AFTER,
    )

    payload = render_digest(report, now=NOW, timezone="Europe/Berlin").to_dict()

    text = message_text(payload)
    assert_valid_message(payload)
    assert "Fri 2026-12-04 13:00 (Europe/Berlin)" in text
    assert "2 failed builds* in 1 of 3 assistants" in text
    assert "2 failed builds in a row from *v41* to *v42*, and it is still failing" in text
    assert "❌ *support-bot* · 2 of 2 builds failed · median 1m 35s (last 2)" in text
    assert "*slow* of *sales-bot* for 45m, since" in text
    assert "Could not read 1 assistant: faq-bot (not found)." in text
    assert payload["text"] == "Daily build digest: 2 failed builds in 1 of 3 assistants in the last 24 hours, 1 stuck build, 1 not readable."


def test_render_digest_sixty_assistants_within_limits() -> None:
    assistants = [
        scoped(f"bot-{index:02d}", *(build("failed", minutes_ago=minutes) for minutes in range(5, 5 + index % 4 + 1)), build("building", minutes_ago=90 + index))
        for index in range(60)
    ]
    report = summarize(assistants, now=NOW, stuck_after=STUCK_AFTER)

    payload = render_digest(report, now=NOW, timezone="UTC").to_dict()

    text = message_text(payload)
    assert_valid_message(payload)
    assert len(payload["blocks"]) <= MAX_BLOCKS
    assert all(len(section) <= MAX_SECTION_TEXT for section in section_texts(payload))
    assert "Showing 30 of 60 assistants, most failures first." in text
    assert "Showing 10 of 60 stuck builds, oldest first." in text
    assert "*bot-03*" in text
    assert "*bot-00*" not in text


def test_render_digest_long_hostile_names_within_limits() -> None:
    """Names that grow fivefold when escaped still fit, spread over more sections."""
    hostile = "&<>" * 100
    assistants = [scoped(f"{index:02d}{hostile}", build("failed", minutes_ago=10, name=hostile), build("building", minutes_ago=60, name=hostile)) for index in range(60)]
    errors = [ScopedBuilds(f"{index:02d}{hostile}", None, ServerError("HTTP 500", status=500)) for index in range(15)]
    report = summarize(assistants + errors, now=NOW, stuck_after=STUCK_AFTER)

    payload = render_digest(report, now=NOW, timezone="America/New_York").to_dict()

    assert_valid_message(payload)
    assert all(len(section) <= MAX_SECTION_TEXT for section in section_texts(payload))
    assert "Showing 30 of 60 assistants" in message_text(payload)
    assert "and 5 more." in message_text(payload)


def test_render_digest_escapes_upstream_strings() -> None:
    assistant = "<!channel> & <@U0BOSS>"
    build_name = "<https://evil.example|click me>"
    report = summarize(
        [
            scoped(assistant, build("failed", minutes_ago=10, name=build_name), build("building", minutes_ago=60, name=build_name)),
            ScopedBuilds("<!here>", None, ServerError("HTTP 500", status=500)),
        ],
        now=NOW,
        stuck_after=STUCK_AFTER,
    )

    payload = render_digest(report, now=NOW, timezone="Europe/Berlin").to_dict()

    text = message_text(payload)
    assert "<!channel>" not in text
    assert "<@U0BOSS>" not in text
    assert "<https://evil.example" not in text
    assert "<!here>" not in text
    assert "&lt;!channel&gt; &amp; &lt;@U0BOSS&gt;" in text
    assert "&lt;https://evil.example|click me&gt;" in text
    assert "&lt;!here&gt;" in text


def test_render_digest_empty_report() -> None:
    report = summarize([], now=NOW, stuck_after=STUCK_AFTER)

    payload = render_digest(report, now=NOW, timezone="UTC").to_dict()

    assert_valid_message(payload)
    assert payload["text"] == "Daily build digest: 0 failed builds in 0 of 0 assistants in the last 24 hours."
    assert "No assistants in scope" in message_text(payload)
    assert len(payload["blocks"]) == 3


def test_render_digest_quiet_day() -> None:
    report = summarize([scoped("support-bot", build("completed", minutes_ago=60))], now=NOW, stuck_after=STUCK_AFTER)

    text = message_text(render_digest(report, now=NOW, timezone="UTC").to_dict())

    assert "No failed builds in 1 assistant since" in text
    assert "No build has been enqueued or building for more than 30m." in text
    assert "✅ *support-bot* · 1 build, none failed" in text
    assert "red streak" not in text


# DigestScheduler on its own, with a scripted build loader


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(dataset=dataset()) as server:
        yield server


@pytest.fixture
async def store() -> AsyncIterator[SqliteStateStore]:
    opened = SqliteStateStore(":memory:")
    await opened.open()
    yield opened
    await opened.close()


class BuildLoader:
    """A `load_builds` stand-in that counts its calls and raises `error` when set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    async def __call__(self) -> list[ScopedBuilds]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [scoped("support-bot", build("failed", minutes_ago=30, now=BERLIN_NINE))]


def make_scheduler(store: SqliteStateStore, slack: SlackStandIn, loader: BuildLoader, clock: Clock) -> DigestScheduler:
    client = AsyncWebClient(base_url=slack.api_url)
    return DigestScheduler(store=store, load_builds=loader, client=client, token=BOT_TOKEN, clock=clock, stuck_after=STUCK_AFTER)


async def test_scheduler_reads_builds_only_when_due(store: SqliteStateStore, slack: SlackStandIn) -> None:
    loader = BuildLoader()
    clock = Clock(BERLIN_NINE - timedelta(minutes=1))
    scheduler = make_scheduler(store, slack, loader, clock)
    await store.set_digest(digest())
    await store.set_digest(digest("08:00", channel_id="C0OTHER"))

    before = await scheduler.send_due()
    calls_before = loader.calls
    clock.now = BERLIN_NINE
    at_nine = await scheduler.send_due()

    assert before == 1
    assert calls_before == 1
    assert at_nine == 1
    assert loader.calls == 2
    assert [call.body["channel"] for call in slack.api_calls("chat.postMessage")] == ["C0OTHER", CHANNEL]


async def test_scheduler_nothing_due_reads_nothing(store: SqliteStateStore, slack: SlackStandIn) -> None:
    loader = BuildLoader()
    scheduler = make_scheduler(store, slack, loader, Clock(BERLIN_NINE))
    await store.set_digest(digest(last_sent_on=DAY))

    assert await scheduler.send_due() == 0
    assert loader.calls == 0
    assert slack.api_calls("chat.postMessage") == []


async def test_scheduler_autopilot_error_marks_nothing(store: SqliteStateStore, slack: SlackStandIn, caplog: pytest.LogCaptureFixture) -> None:
    loader = BuildLoader()
    loader.error = ServerError("HTTP 503 from the Autopilot API", status=503)
    scheduler = make_scheduler(store, slack, loader, Clock(BERLIN_NINE))
    await store.set_digest(digest())

    with caplog.at_level(logging.WARNING, logger="bot.digest"):
        failed = await scheduler.send_due()
    loader.error = None
    retried = await scheduler.send_due()

    records = [record for record in caplog.records if record.getMessage() == "digest.builds_unavailable"]
    assert failed == 0
    assert len(records) == 1
    assert records[0].channel_ids == [CHANNEL]
    assert "HTTP 503" in records[0].error
    assert retried == 1
    assert len(slack.api_calls("chat.postMessage")) == 1
    assert (await store.digests())[0].last_sent_on == DAY


async def test_scheduler_invalid_setting_skipped(store: SqliteStateStore, slack: SlackStandIn, caplog: pytest.LogCaptureFixture) -> None:
    """A stored timezone that no longer exists is logged once and does not block other channels."""
    loader = BuildLoader()
    scheduler = make_scheduler(store, slack, loader, Clock(BERLIN_NINE))
    await store.set_digest(digest(timezone="Mars/Olympus_Mons", channel_id="C0BROKEN"))
    await store.set_digest(digest())

    with caplog.at_level(logging.ERROR, logger="bot.digest"):
        sent = await scheduler.send_due()
        sent_again = await scheduler.send_due()

    records = [record for record in caplog.records if record.getMessage() == "digest.invalid_setting"]
    assert sent == 1
    assert sent_again == 0
    assert len(records) == 1
    assert records[0].channel_id == "C0BROKEN"


async def test_scheduler_run_sends_then_stops(store: SqliteStateStore, slack: SlackStandIn) -> None:
    scheduler = make_scheduler(store, slack, BuildLoader(), Clock(BERLIN_NINE))
    await store.set_digest(digest())
    stop = asyncio.Event()

    task = asyncio.create_task(scheduler.run(stop))
    posts = await slack.wait_for_call("chat.postMessage")
    stop.set()
    await asyncio.wait_for(task, timeout=5)

    assert len(posts) == 1
    assert (await store.digests())[0].last_sent_on == DAY


# The running app


def scheduler_of(bot: AlertBot) -> DigestScheduler:
    assert bot.runtime.alerts is not None
    assert bot.runtime.alerts.digests is not None
    return bot.runtime.alerts.digests


async def stored_digests(bot: AlertBot) -> list[Digest]:
    assert bot.runtime.alerts is not None
    return await bot.runtime.alerts.store.digests()


def add_failure(sandbox: SandboxServer, at: datetime, name: str) -> None:
    created = format_timestamp(at)
    sandbox.dataset.add_build("support-bot", unique_name=name, status="failed", error_code=23001, date_created=created, date_updated=created)


async def test_digest_command_stores_setting(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    async with alert_bot(sandbox, slack, clock=Clock(BERLIN_NINE)) as bot:
        reply = await bot.command("digest 09:00 Europe/Berlin")
        stored = await stored_digests(bot)

    assert "daily build digest at 09:00 (Europe/Berlin)" in message_text(reply)
    assert [(item.channel_id, item.time_of_day, item.timezone, item.last_sent_on) for item in stored] == [(CHANNEL, "09:00", "Europe/Berlin", None)]


async def test_digest_sent_once_at_local_time(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    clock = Clock(BERLIN_NINE - timedelta(minutes=30))
    add_failure(sandbox, BERLIN_NINE - timedelta(hours=1), "v42-nightly")
    async with alert_bot(sandbox, slack, clock=clock) as bot:
        await bot.command("digest 09:00 Europe/Berlin")

        before = await scheduler_of(bot).send_due()
        posts_before = len(bot.posts())
        clock.now = BERLIN_NINE
        at_nine = await scheduler_of(bot).send_due()
        clock.now = BERLIN_NINE + timedelta(hours=10)
        later = await scheduler_of(bot).send_due()
        stored = await stored_digests(bot)

    posts = slack.api_calls("chat.postMessage")
    assert before == 0
    assert posts_before == 0
    assert at_nine == 1
    assert later == 0
    assert len(posts) == 1
    body = posts[0].body
    assert body["channel"] == CHANNEL
    assert body["link_names"] is False
    assert body["parse"] == "none"
    assert body["unfurl_links"] is False
    assert "Daily build digest" in message_text(body)
    assert "*v42-nightly*" in message_text(body)
    assert "❌ *support-bot* · 1 of 2 builds failed" in message_text(body)
    assert_valid_message(body)
    assert stored[0].last_sent_on == DAY


async def test_digest_restart_same_day_then_next_day(sandbox: SandboxServer, slack: SlackStandIn, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    clock = Clock(BERLIN_NINE)
    async with alert_bot(sandbox, slack, clock=clock, state_url=state_url) as bot:
        await bot.command("digest 09:00 Europe/Berlin")
        first = await scheduler_of(bot).send_due()

    clock.now = BERLIN_NINE + timedelta(hours=2)
    async with alert_bot(sandbox, slack, clock=clock, state_url=state_url) as restarted:
        same_day = await scheduler_of(restarted).send_due()
        clock.now = BERLIN_NINE + timedelta(days=1)
        next_day = await scheduler_of(restarted).send_due()
        again = await scheduler_of(restarted).send_due()
        stored = await stored_digests(restarted)

    assert first == 1
    assert same_day == 0
    assert next_day == 1
    assert again == 0
    assert len(slack.api_calls("chat.postMessage")) == 2
    assert stored[0].last_sent_on == DAY + timedelta(days=1)


async def test_digest_off_stops_sending(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    clock = Clock(BERLIN_NINE)
    async with alert_bot(sandbox, slack, clock=clock) as bot:
        await bot.command("digest 09:00 Europe/Berlin")
        first = await scheduler_of(bot).send_due()
        reply = await bot.command("digest off")
        clock.now = BERLIN_NINE + timedelta(days=1)
        next_day = await scheduler_of(bot).send_due()
        stored = await stored_digests(bot)

    assert first == 1
    assert "no longer gets the daily build digest" in message_text(reply)
    assert next_day == 0
    assert stored == []
    assert len(slack.api_calls("chat.postMessage")) == 1


async def test_digest_slack_failure_retried_next_check(
    sandbox: SandboxServer, slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(BERLIN_NINE)
    async with alert_bot(sandbox, slack, clock=clock) as bot:
        await bot.command("digest 09:00 Europe/Berlin")
        slack.fail("chat.postMessage", Fault(200, '{"ok": false, "error": "not_in_channel"}'))

        with caplog.at_level(logging.ERROR, logger="bot.digest"):
            failed = await scheduler_of(bot).send_due()
        after_failure = await stored_digests(bot)
        clock.now += timedelta(seconds=30)
        retried = await scheduler_of(bot).send_due()
        after_retry = await stored_digests(bot)

    records = [record for record in caplog.records if record.getMessage() == "digest.send_failed"]
    assert failed == 0
    assert after_failure[0].last_sent_on is None
    assert len(records) == 1
    assert records[0].channel_id == CHANNEL
    assert records[0].error == "not_in_channel"
    assert retried == 1
    assert after_retry[0].last_sent_on == DAY
    assert len(slack.api_calls("chat.postMessage")) == 2


async def test_digest_loop_runs_with_alert_loops(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    async with alert_bot(sandbox, slack, clock=Clock(BERLIN_NINE)) as bot:
        await bot.command("digest 09:00 Europe/Berlin")
        assert bot.runtime.alerts is not None
        bot.runtime.alerts.start_loops()

        posts = await slack.wait_for_call("chat.postMessage")
        # The lock of send_due waits for the loop's check to finish, so the day is recorded by then.
        sent_again = await scheduler_of(bot).send_due()
        stored = await stored_digests(bot)

    assert len(posts) == 1
    assert "Daily build digest" in message_text(posts[0].body)
    assert sent_again == 0
    assert stored[0].last_sent_on == DAY
