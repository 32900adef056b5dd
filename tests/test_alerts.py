"""Channel alerts end to end: the running app, the sandbox API changing builds between polls, and a Slack stand-in.

Polls and sends are started by the test (`poll()`, `send()`) instead of by the
background loops, and the clock is a field the test moves, so every step is
deterministic without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.alerts.messages import MUTE_ACTION, RECENT_BUILDS_ACTION
from bot.config import load_settings
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset, format_timestamp
from bot.server import BotRuntime
from tests.alert_fixtures import CHANNEL, ENGINEER, NOW, AlertBot, Clock, alert_bot, dataset
from tests.harness import assert_valid_message, message_text
from tests.slack_server import Fault, SlackCall, SlackStandIn

@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(dataset=dataset()) as server:
        yield server


@pytest.fixture
async def bot(sandbox: SandboxServer, slack: SlackStandIn) -> AsyncIterator[AlertBot]:
    async with alert_bot(sandbox, slack, clock=Clock()) as running:
        reply = await running.command("subscribe support-bot")
        assert "now gets alerts for support-bot" in message_text(reply)
        await running.poll()
        yield running


def blocks_text(call: SlackCall) -> str:
    return message_text(call.body)


async def test_baseline_sends_nothing(bot: AlertBot) -> None:
    assert await bot.send() == 0
    assert bot.posts() == []


async def test_failure_alerted_once(bot: AlertBot) -> None:
    bot.add_build("failed", name="v42-nightly")

    await bot.poll()
    sent = await bot.send()
    await bot.poll()
    sent_again = await bot.send()

    posts = bot.posts()
    assert sent == 1
    assert sent_again == 0
    assert len(posts) == 1
    assert posts[0].body["channel"] == CHANNEL
    assert "build *v42-nightly* failed" in blocks_text(posts[0])
    assert "https://www.twilio.com/docs/errors/23001" in blocks_text(posts[0])
    assert RECENT_BUILDS_ACTION in blocks_text(posts[0])
    assert MUTE_ACTION in blocks_text(posts[0])
    assert posts[0].body.get("thread_ts") is None
    assert_valid_message(posts[0].body)


async def test_second_failure_threads_and_updates_parent(bot: AlertBot) -> None:
    bot.add_build("failed", name="v42", minutes_ago=10)
    await bot.poll()
    await bot.send()
    bot.add_build("failed", name="v43", minutes_ago=2)

    await bot.poll()
    await bot.send()

    posts = bot.posts()
    updates = bot.updates()
    parent_ts = bot.slack.posted_ts[0]
    assert len(posts) == 2
    assert posts[1].body["thread_ts"] == parent_ts
    assert "Failure 2 in a row: build *v43*" in blocks_text(posts[1])
    assert len(updates) == 1
    assert updates[0].body["ts"] == parent_ts
    assert "2 failures in a row, since build v42" in blocks_text(updates[0])
    assert "build *v43* failed" in blocks_text(updates[0])


async def test_recovery_replies_and_turns_parent_green(bot: AlertBot) -> None:
    bot.add_build("failed", name="v42", minutes_ago=10)
    await bot.poll()
    await bot.send()
    bot.add_build("completed", name="v43", minutes_ago=2)

    await bot.poll()
    await bot.send()

    posts = bot.posts()
    updates = bot.updates()
    assert len(posts) == 2
    assert "Recovered: build *v43* completed" in blocks_text(posts[1])
    assert posts[1].body["thread_ts"] == bot.slack.posted_ts[0]
    assert updates[0].body["ts"] == bot.slack.posted_ts[0]
    assert "✅ *support-bot* recovered: build *v43* completed after 1 failure" in blocks_text(updates[0])


async def test_new_streak_after_recovery_opens_new_thread(bot: AlertBot) -> None:
    for status, minutes in (("failed", 30), ("completed", 20), ("failed", 5)):
        bot.add_build(status, minutes_ago=minutes)
        await bot.poll()
        await bot.send()

    posts = bot.posts()
    assert len(posts) == 3
    assert posts[2].body.get("thread_ts") is None
    assert "1 failure so far" in blocks_text(posts[2])


async def test_stuck_build_alerted_once(bot: AlertBot) -> None:
    bot.add_build("building", name="slow-build", minutes_ago=31)

    await bot.poll()
    await bot.send()
    await bot.poll()
    await bot.send()

    posts = bot.posts()
    assert len(posts) == 1
    assert "build *slow-build* has been building for 31m" in blocks_text(posts[0])


async def test_building_under_limit_not_stuck(bot: AlertBot) -> None:
    bot.add_build("building", minutes_ago=10)

    await bot.poll()

    assert await bot.send() == 0


async def test_canceled_ignored(bot: AlertBot) -> None:
    bot.add_build("canceled", name="stopped")

    await bot.poll()

    assert await bot.send() == 0
    assert bot.posts() == []


async def test_completed_posted_only_for_level_all(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    async with alert_bot(sandbox, slack, clock=Clock()) as bot:
        await bot.command("subscribe support-bot all")
        await bot.poll()
        bot.add_build("completed", name="v50")

        await bot.poll()
        await bot.send()

    assert len(bot.posts()) == 1
    assert "build *v50* completed" in blocks_text(bot.posts()[0])


async def test_restart_sends_no_duplicate(sandbox: SandboxServer, slack: SlackStandIn, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    async with alert_bot(sandbox, slack, clock=Clock(), state_url=state_url) as bot:
        await bot.command("subscribe support-bot")
        await bot.poll()
        bot.add_build("failed", name="v42")
        await bot.poll()
        await bot.send()

    async with alert_bot(sandbox, slack, clock=Clock(), state_url=state_url) as restarted:
        await restarted.poll()
        sent = await restarted.send()

    assert sent == 0
    assert len(slack.api_calls("chat.postMessage")) == 1


async def test_unsent_alert_delivered_after_restart(sandbox: SandboxServer, slack: SlackStandIn, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    async with alert_bot(sandbox, slack, clock=Clock(), state_url=state_url) as bot:
        await bot.command("subscribe support-bot")
        await bot.poll()
        bot.add_build("failed", name="v42")
        await bot.poll()

    async with alert_bot(sandbox, slack, clock=Clock(), state_url=state_url) as restarted:
        sent = await restarted.send()

    assert sent == 1
    assert len(slack.api_calls("chat.postMessage")) == 1


async def test_failure_while_down_alerted_on_start(sandbox: SandboxServer, slack: SlackStandIn, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    clock = Clock()
    async with alert_bot(sandbox, slack, clock=clock, state_url=state_url) as bot:
        await bot.command("subscribe support-bot")
        await bot.poll()

    clock.now += timedelta(hours=2)
    sandbox.dataset.add_build("support-bot", unique_name="while-down", status="failed", error_code=23001,
                              date_created=format_timestamp(clock.now - timedelta(hours=1)), date_updated=format_timestamp(clock.now - timedelta(hours=1)))
    sandbox.dataset.add_build("support-bot", unique_name="too-old", status="failed", error_code=23001,
                              date_created=format_timestamp(clock.now - timedelta(hours=7)), date_updated=format_timestamp(clock.now - timedelta(hours=7)))

    async with alert_bot(sandbox, slack, clock=clock, state_url=state_url) as restarted:
        await restarted.poll()
        await restarted.send()

    posts = slack.api_calls("chat.postMessage")
    assert len(posts) == 1
    assert "while-down" in blocks_text(posts[0])


async def test_rate_limited_twice_delivered_once(bot: AlertBot) -> None:
    limited = Fault(429, '{"ok": false, "error": "ratelimited"}', headers={"Retry-After": "2"})
    bot.slack.fail("chat.postMessage", limited, limited)
    bot.add_build("failed", name="v42")

    await bot.poll()
    sent = await bot.send()

    assert sent == 1
    assert len(bot.posts()) == 3
    assert bot.sleep.waits.count(2.0) == 2
    assert bot.runtime.alerts is not None
    assert await bot.runtime.alerts.store.pending_alerts() == []


async def test_failed_delivery_kept_shown_and_retried(bot: AlertBot) -> None:
    bot.slack.fail("chat.postMessage", Fault(200, '{"ok": false, "error": "not_in_channel"}'))
    bot.add_build("failed", name="v42")
    await bot.poll()

    first = await bot.send()
    listing = await bot.command("subscriptions")
    bot.clock.now += timedelta(minutes=1)
    second = await bot.send()
    after = await bot.command("subscriptions")

    assert first == 0
    assert "Last delivery error: `not_in_channel`" in message_text(listing)
    assert "1 alert is waiting to be delivered" in message_text(listing)
    assert second == 1
    assert "waiting to be delivered" not in message_text(after)
    assert "Last delivery error" not in message_text(after)


async def test_burst_paced_per_channel_in_order(slack: SlackStandIn) -> None:
    names = [f"assistant-{index}" for index in range(5)]
    async with SandboxServer(dataset=dataset(*names)) as sandbox, alert_bot(sandbox, slack, clock=Clock(), BUILDS_ASSISTANTS=",".join(names)) as bot:
        await bot.command("subscribe all")
        await bot.poll()
        for index, assistant in enumerate(names):
            bot.add_build("failed", name=f"{assistant}-broken", minutes_ago=10 - index, assistant=assistant)

        await bot.poll()
        assert bot.runtime.alerts is not None
        queued = [item.alert.assistant for item in await bot.runtime.alerts.store.pending_alerts()]
        sent = await bot.send()

    posts = [blocks_text(call) for call in slack.api_calls("chat.postMessage")]
    assert sent == 5
    assert len(posts) == 5
    assert sorted(queued) == sorted(names)
    for assistant, post in zip(queued, posts, strict=True):
        assert f"{assistant}-broken" in post
    # Slack takes about one message per second per channel: each post after the first waits its turn.
    assert len(bot.sleep.waits) == 4
    assert all(0.9 <= wait <= 1.0 for wait in bot.sleep.waits)


async def test_mute_suppresses_until_expiry(bot: AlertBot) -> None:
    reply = await bot.command("mute support-bot 1h")
    bot.add_build("failed", name="while-muted", minutes_ago=5)
    await bot.poll()
    muted_sent = await bot.send()
    lookup = await bot.command("support-bot")
    listing = await bot.command("subscriptions")

    bot.clock.now += timedelta(minutes=61)
    bot.add_build("failed", name="after-mute", minutes_ago=1)
    await bot.poll()
    await bot.send()

    assert "muted in this channel until" in message_text(reply)
    assert muted_sent == 1
    assert "Last alert delivered: none yet" in message_text(listing)
    assert f"Alerts muted in this channel by <@{ENGINEER}> until" in message_text(lookup)
    assert len(bot.posts()) == 1
    assert "after-mute" in blocks_text(bot.posts()[0])


async def test_unmute_ends_mute_early(bot: AlertBot) -> None:
    await bot.command("mute support-bot 2h")
    reply = await bot.command("unmute support-bot")
    bot.add_build("failed", name="v42")
    await bot.poll()
    await bot.send()

    assert "are on again" in message_text(reply)
    assert len(bot.posts()) == 1


async def test_admin_only_changes(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    async with alert_bot(sandbox, slack, clock=Clock(), BUILDS_ADMINS="U0BOSS1,U0BOSS2") as bot:
        rejected = await bot.command("subscribe support-bot")
        muted = await bot.command("mute support-bot 1h")
        lookup = await bot.command("support-bot")
        allowed = await bot.command("subscribe support-bot", user_id="U0BOSS1")
        listing = await bot.command("subscriptions")

    assert "Only <@U0BOSS1>, <@U0BOSS2> can change subscriptions and mutes" in message_text(rejected)
    assert "Only <@U0BOSS1>" in message_text(muted)
    assert "Builds of support-bot" in message_text(lookup)
    assert "now gets alerts" in message_text(allowed)
    assert "added by <@U0BOSS1>" in message_text(listing)


async def test_unsubscribe_stops_alerts(bot: AlertBot) -> None:
    reply = await bot.command("unsubscribe support-bot")
    bot.add_build("failed", name="v42")
    await bot.poll()

    assert "no longer gets alerts for support-bot" in message_text(reply)
    assert await bot.send() == 0


async def test_subscriptions_list(bot: AlertBot) -> None:
    reply = await bot.command("subscriptions")

    text = message_text(reply)
    assert "*support-bot* · failures · added by <@U0ENGINEER>" in text
    assert "Last alert delivered: none yet" in text
    assert_valid_message(reply)


async def test_hostile_build_name_escaped_in_alert(bot: AlertBot) -> None:
    bot.add_build("failed", name="<!channel> <!here> <@U0BOSS> <!subteam^S123>")

    await bot.poll()
    await bot.send()

    post = bot.posts()[0]
    text = blocks_text(post)
    for markup in ("<!channel>", "<!here>", "<@U0BOSS>", "<!subteam"):
        assert markup not in text
    assert "&lt;!channel&gt;" in text
    assert post.body["link_names"] is False


async def test_alert_channel_setting_subscribes_at_start(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    async with alert_bot(sandbox, slack, clock=Clock(), BUILDS_ALERT_CHANNEL="C0ALERTS", BUILDS_ASSISTANTS="support-bot") as bot:
        assert bot.runtime.alerts is not None
        subscriptions = await bot.runtime.alerts.store.subscriptions("C0ALERTS")

    assert [(item.assistant, item.level) for item in subscriptions] == [("support-bot", "failures")]


async def test_mute_button_mutes_for_an_hour(bot: AlertBot) -> None:
    response = await bot.click(MUTE_ACTION, "support-bot")
    confirmation = await bot.slack.next_response()

    assert response.status_code == 200
    assert "muted in this channel until" in message_text(confirmation.body)
    assert confirmation.body["replace_original"] is False
    assert bot.runtime.alerts is not None
    mute = await bot.runtime.alerts.store.active_mute(CHANNEL, "support-bot", now=bot.clock.now)
    assert mute is not None
    assert mute.until == NOW + timedelta(hours=1)


async def test_recent_builds_button_shows_lookup(bot: AlertBot) -> None:
    response = await bot.click(RECENT_BUILDS_ACTION, "support-bot")
    reply = await bot.slack.next_response()

    assert response.status_code == 200
    assert "Builds of support-bot" in message_text(reply.body)


async def test_forged_button_value_rejected(bot: AlertBot) -> None:
    before = len(bot.sandbox.requests)

    response = await bot.click(RECENT_BUILDS_ACTION, "../../v1/Assistants")
    await bot.runtime.tasks.drain(timeout=5)

    assert response.status_code == 200
    assert len(bot.sandbox.requests) == before
    assert bot.slack.responses.empty()


async def test_state_command_from_terminal_explained(sandbox: SandboxServer) -> None:
    from bot.cli import answer

    settings = load_settings(
        {"AUTOPILOT_BASE_URL": sandbox.base_url, "TWILIO_ACCOUNT_SID": sandbox.credentials.account_sid, "TWILIO_AUTH_TOKEN": sandbox.credentials.auth_token}
    )

    reply = await answer(settings, "subscribe support-bot")

    assert "run this command in Slack" in json.dumps(reply.to_dict())
    assert not reply.ok


async def test_completion_after_unannounced_failure(slack: SlackStandIn) -> None:
    """A channel that follows every build hears of a completion even when it saw no failure streak."""
    data = dataset()
    created = format_timestamp(NOW - timedelta(hours=12))
    data.add_build("support-bot", unique_name="red-before-subscribing", status="failed", date_created=created, date_updated=created)
    async with SandboxServer(dataset=data) as sandbox, alert_bot(sandbox, slack, clock=Clock()) as bot:
        await bot.command("subscribe support-bot all")
        await bot.poll()
        bot.add_build("completed", name="green-again")
        await bot.poll()
        await bot.send()

    assert len(bot.posts()) == 1
    assert "build *green-again* completed" in blocks_text(bot.posts()[0])


async def test_muted_failure_still_counts_in_streak(bot: AlertBot) -> None:
    bot.add_build("failed", name="first", minutes_ago=30)
    await bot.poll()
    await bot.send()
    await bot.command("mute support-bot 10m")
    bot.add_build("failed", name="while-muted", minutes_ago=20)
    await bot.poll()
    await bot.send()

    bot.clock.now += timedelta(minutes=11)
    bot.add_build("failed", name="third", minutes_ago=1)
    await bot.poll()
    await bot.send()

    posts = bot.posts()
    assert len(posts) == 2
    assert "Failure 3 in a row: build *third*" in blocks_text(posts[1])
    assert "3 failures in a row, since build first" in blocks_text(bot.updates()[-1])
