"""The App Home tab and link previews, through the running app with signed Events API deliveries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.home import HOME_REFRESH
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset, format_timestamp
from tests.conftest import SIGNING_SECRET
from tests.harness import Bot, assert_valid_message, message_text, running_bot
from tests.slack_server import SlackStandIn, signed_action, signed_event

NOW = datetime.now(UTC).replace(microsecond=0)
USER = "U0ENGINEER"


def dataset(assistants: int = 3) -> SandboxDataset:
    data = SandboxDataset(now=NOW)
    for index in range(assistants):
        record = data.add_assistant(unique_name=f"assistant-{index:02d}", friendly_name=f"Assistant {index}")
        for age in range(3):
            created = format_timestamp(NOW - timedelta(hours=age + index))
            status = "failed" if (index + age) % 4 == 0 else "completed"
            data.add_build(record["sid"], unique_name=f"a{index}-b{age}", status=status, date_created=created, date_updated=created, build_duration=90)
    return data


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(dataset=dataset()) as server:
        yield server


@pytest.fixture
async def bot(sandbox: SandboxServer, slack: SlackStandIn) -> AsyncIterator[Bot]:
    credentials = sandbox.credentials
    async with running_bot(slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token) as running:
        yield running


async def send_event(bot: Bot, event: dict[str, object]) -> int:
    body, headers = signed_event(event, secret=SIGNING_SECRET)
    response = await bot.http.post("/slack/events", content=body, headers=headers)
    return response.status_code


def home_view(bot: Bot) -> dict[str, object]:
    return bot.slack.api_calls("views.publish")[-1].body["view"]


async def test_home_opened_publishes_overview(bot: Bot) -> None:
    await bot.command("subscribe assistant-01")
    await bot.slack.next_response()
    await bot.command("mute assistant-02 2h")
    await bot.slack.next_response()

    status = await send_event(bot, {"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "home"})
    calls = await bot.slack.wait_for_call("views.publish")

    view = calls[0].body["view"]
    text = message_text(view)
    assert status == 200
    assert calls[0].body["user_id"] == USER
    assert view["type"] == "home"
    assert "Build status · 3 assistants" in text
    assert "*Your subscriptions*\\n<#C0INCIDENT> · assistant-01 · failures" in text
    assert "<#C0INCIDENT> · assistant-02 until" in text
    assert HOME_REFRESH in text
    assert len(view["blocks"]) <= 100
    assert_valid_message({"text": "home", "blocks": view["blocks"]})


async def test_home_messages_tab_ignored(bot: Bot) -> None:
    await send_event(bot, {"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "messages"})
    await bot.runtime.tasks.drain(timeout=5)

    assert bot.slack.api_calls("views.publish") == []


async def test_home_refresh_button_republishes(bot: Bot) -> None:
    body, headers = signed_action(HOME_REFRESH, "refresh", secret=SIGNING_SECRET, response_url=bot.slack.response_url())

    response = await bot.http.post("/slack/events", content=body, headers=headers)
    calls = await bot.slack.wait_for_call("views.publish")

    assert response.status_code == 200
    assert calls[0].body["user_id"] == USER


async def test_home_with_many_assistants_within_limit(slack: SlackStandIn) -> None:
    async with SandboxServer(dataset=dataset(120)) as sandbox:
        credentials = sandbox.credentials
        async with running_bot(slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token) as bot:
            await send_event(bot, {"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "home"})
            calls = await bot.slack.wait_for_call("views.publish", timeout=20)

    view = calls[0].body["view"]
    assert len(view["blocks"]) <= 100
    assert "Showing" not in message_text(view) or "of 120 assistants" in message_text(view)
    assert_valid_message({"text": "home", "blocks": view["blocks"]})


async def test_link_to_build_unfurled(bot: Bot, sandbox: SandboxServer) -> None:
    build = sandbox.dataset.builds_newest_first("assistant-00")[0]
    url = f"{sandbox.base_url}/v1/Assistants/{build['assistant_sid']}/ModelBuilds/{build['sid']}"

    status = await send_event(
        bot, {"type": "link_shared", "channel": "C0INCIDENT", "user": USER, "message_ts": "1796385600.000100", "links": [{"domain": "127.0.0.1", "url": url}]}
    )
    calls = await bot.slack.wait_for_call("chat.unfurl")

    body = calls[0].body
    assert status == 200
    assert body["channel"] == "C0INCIDENT"
    assert body["ts"] == "1796385600.000100"
    unfurls = body["unfurls"] if isinstance(body["unfurls"], dict) else json.loads(body["unfurls"])
    assert list(unfurls) == [url]
    assert build["sid"] in message_text(unfurls[url])
    assert "*Duration*" in message_text(unfurls[url])


async def test_link_to_assistant_unfurled(bot: Bot, sandbox: SandboxServer) -> None:
    url = f"{sandbox.base_url}/v1/Assistants/assistant-01"

    await send_event(bot, {"type": "link_shared", "channel": "C0INCIDENT", "user": USER, "message_ts": "1.2", "links": [{"domain": "127.0.0.1", "url": url}]})
    calls = await bot.slack.wait_for_call("chat.unfurl")

    text = message_text(calls[0].body)
    assert "Builds of assistant-01" in text
    assert "builds_refresh" not in text


async def test_foreign_link_not_read(bot: Bot, sandbox: SandboxServer) -> None:
    await send_event(
        bot,
        {"type": "link_shared", "channel": "C0INCIDENT", "user": USER, "message_ts": "1.3",
         "links": [{"domain": "127.0.0.2", "url": "http://127.0.0.2:9/v1/Assistants/assistant-01"}]},
    )
    await bot.runtime.tasks.drain(timeout=5)

    assert bot.slack.api_calls("chat.unfurl") == []
    assert sandbox.requests == []
