"""End-to-end tests: signed slash commands sent to the running app, as Slack sends them.

Each test runs the bot in HTTP mode (or Socket Mode) on 127.0.0.1 against the
sandbox Autopilot API and a local Slack stand-in, and asserts on what reached
Slack and how many requests reached the API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot.config import load_settings
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset
from bot.server import BotRuntime
from tests.conftest import bot_environment
from tests.harness import Bot as HarnessBot
from tests.harness import assert_valid_message, message_text
from tests.harness import running_bot as harness_bot
from tests.slack_server import SlackStandIn, command_form

HOSTILE_NAME = "<!channel> & <@U0BOSS|boss> <https://evil.example|click>"


@dataclass
class Bot:
    """A running bot with the sandbox API behind it."""

    harness: HarnessBot
    sandbox: SandboxServer

    @property
    def slack(self) -> SlackStandIn:
        return self.harness.slack

    @property
    def runtime(self) -> BotRuntime:
        return self.harness.runtime

    async def command(self, text: str, **options: Any) -> httpx.Response:
        """Send `/builds <text>` signed like Slack and return the app's HTTP response."""
        return await self.harness.command(text, **options)

    def list_requests(self) -> int:
        """Return how many model-build list requests reached the API."""
        return sum(1 for record in self.sandbox.requests if record.path.endswith("/ModelBuilds"))


@asynccontextmanager
async def running_bot(sandbox: SandboxServer, slack: SlackStandIn, **extra_env: str) -> AsyncIterator[Bot]:
    credentials = sandbox.credentials
    async with harness_bot(
        slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token, **extra_env
    ) as harness:
        yield Bot(harness, sandbox)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer() as server:
        yield server


@pytest.fixture
async def bot(sandbox: SandboxServer, slack: SlackStandIn) -> AsyncIterator[Bot]:
    async with running_bot(sandbox, slack) as running:
        yield running


async def test_assistant_lookup_replies_through_response_url(bot: Bot) -> None:
    response = await bot.command("support-bot")

    assert response.status_code == 200
    assert response.text == ""
    reply = await bot.slack.next_response()
    assert reply.body["response_type"] == "ephemeral"
    assert "Builds of support-bot" in message_text(reply.body)
    assert_valid_message(reply.body)
    assert bot.list_requests() == 1


async def test_cached_lookup_answers_in_ack(bot: Bot) -> None:
    await bot.command("support-bot")
    await bot.slack.next_response()

    second = await bot.command("support-bot failed")

    assert second.status_code == 200
    payload = second.json()
    assert payload["response_type"] == "ephemeral"
    assert "Builds of support-bot · failed" in message_text(payload)
    assert_valid_message(payload)
    assert bot.list_requests() == 1
    assert bot.slack.responses.empty()


async def test_failed_across_assistants_groups_by_assistant(bot: Bot) -> None:
    response = await bot.command("failed 7d")

    assert response.status_code == 200
    reply = await bot.slack.next_response()
    text = message_text(reply.body)
    assert "Failed builds · last 7d" in text
    assert "billing-assistant" in text
    assert "https://www.twilio.com/docs/errors/" in text
    assert_valid_message(reply.body)
    assistants = len(bot.sandbox.dataset.assistants_newest_first())
    assert bot.list_requests() == assistants


async def test_build_details_by_unique_name(bot: Bot) -> None:
    build = next(build for build in bot.sandbox.dataset.builds_newest_first("support-bot") if build["unique_name"])

    await bot.command(f"support-bot {build['unique_name']}")

    reply = await bot.slack.next_response()
    text = message_text(reply.body)
    assert build["sid"] in text
    assert "*Status*" in text
    assert_valid_message(reply.body)


async def test_help_answers_in_ack_without_api(bot: Bot) -> None:
    response = await bot.command("help")

    assert response.status_code == 200
    assert "/builds failed [window]" in message_text(response.json())
    assert_valid_message(response.json())
    assert bot.sandbox.requests == []


async def test_unknown_text_explains_and_shows_usage(bot: Bot) -> None:
    response = await bot.command("support-bot failed now please")

    payload = response.json()
    assert "Too many words" in message_text(payload)
    assert "/builds &lt;assistant&gt;" not in message_text(payload)
    assert "/builds <assistant>" in message_text(payload)
    assert bot.sandbox.requests == []


@pytest.mark.parametrize("identifier", ["../../v1/Assistants", "x%2F..%2Fy", "x?PageSize=1", "x#frag", ".."])
async def test_path_changing_identifier_rejected_without_api(bot: Bot, identifier: str) -> None:
    response = await bot.command(identifier)

    assert response.status_code == 200
    assert "is not a valid assistant SID or unique name" in message_text(response.json())
    assert bot.sandbox.requests == []


async def test_invalid_signature_rejected_without_api(bot: Bot) -> None:
    response = await bot.command("support-bot", secret="not-the-signing-secret")

    assert response.status_code == 401
    assert bot.sandbox.requests == []
    assert bot.slack.responses.empty()


async def test_stale_timestamp_rejected_without_api(bot: Bot) -> None:
    ten_minutes_ago = int(time.time()) - 600

    response = await bot.command("support-bot", timestamp=ten_minutes_ago)

    assert response.status_code == 401
    assert bot.sandbox.requests == []


async def test_concurrent_identical_lookups_share_one_request(bot: Bot) -> None:
    responses = await asyncio.gather(*(bot.command("billing-assistant") for _ in range(20)))

    assert all(response.status_code == 200 for response in responses)
    replies = [await bot.slack.next_response() for _ in range(sum(1 for r in responses if not r.text))]
    answered_in_ack = [response for response in responses if response.text]
    assert len(replies) + len(answered_in_ack) == 20
    assert bot.list_requests() == 1


async def test_hostile_names_are_escaped(slack: SlackStandIn) -> None:
    dataset = SandboxDataset()
    assistant = dataset.add_assistant(unique_name="hostile", friendly_name=HOSTILE_NAME)
    dataset.add_build(assistant["sid"], unique_name=None, status="failed", error_code=23001)
    dataset.add_build(assistant["sid"], unique_name="x" * 60, status="failed")
    build = dataset.add_build(assistant["sid"], status="failed", error_code=23002)
    build["unique_name"] = HOSTILE_NAME

    async with SandboxServer(dataset=dataset) as sandbox, running_bot(sandbox, slack) as bot:
        await bot.command("hostile failed")
        reply = await bot.slack.next_response()

    text = message_text(reply.body)
    assert "&lt;!channel&gt; &amp; &lt;@U0BOSS|boss&gt;" in text
    assert "<!channel>" not in text
    assert "<@U0BOSS" not in text
    assert "<https://evil" not in text
    assert_valid_message(reply.body)


async def test_slow_api_still_acknowledged_at_once(slack: SlackStandIn) -> None:
    """With the API taking 5 s, the ack comes well inside Slack's 3 s and the reply follows."""
    async with SandboxServer(latency=5.0) as sandbox, running_bot(sandbox, slack) as bot:
        started = time.monotonic()
        response = await bot.command("support-bot")
        acknowledged = time.monotonic() - started

        reply = await bot.slack.next_response(timeout=15)
        replied = time.monotonic() - started

    assert response.status_code == 200
    assert acknowledged < 3.0
    assert replied >= 5.0
    assert "Builds of support-bot" in message_text(reply.body)


async def test_shutdown_finishes_in_flight_reply(slack: SlackStandIn) -> None:
    async with SandboxServer(latency=1.0) as sandbox:
        bot_context = running_bot(sandbox, slack)
        bot = await bot_context.__aenter__()
        response = await bot.command("support-bot")
        assert response.status_code == 200

        await bot_context.__aexit__(None, None, None)

    assert slack.responses.qsize() == 1
    reply = slack.responses.get_nowait()
    assert "Builds of support-bot" in message_text(reply.body)


async def test_unknown_assistant_explained(bot: Bot) -> None:
    await bot.command("no-such-assistant")

    reply = await bot.slack.next_response()
    assert "No assistant no-such-assistant found" in message_text(reply.body)
    assert_valid_message(reply.body)


async def test_auth_test_called_once_at_start(bot: Bot) -> None:
    await bot.command("help")
    await bot.command("support-bot")
    await bot.slack.next_response()

    assert len(bot.slack.api_calls("auth.test")) == 1


async def test_socket_mode_serves_commands(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    environment = bot_environment(
        autopilot_url=sandbox.base_url,
        account_sid=sandbox.credentials.account_sid,
        auth_token=sandbox.credentials.auth_token,
        slack_api_url=slack.api_url,
        SLACK_APP_TOKEN="xapp-1-A0BUILDS01-test-app-token",
    )
    runtime = BotRuntime(load_settings(environment), socket_mode=True, host="127.0.0.1", port=0)
    await runtime.start()
    try:
        await slack.wait_for_socket()
        payload = command_form("support-bot", response_url=slack.response_url())
        await slack.send_envelope(
            {"envelope_id": "env-1", "type": "slash_commands", "accepts_response_payload": True, "payload": payload}
        )

        ack = await asyncio.wait_for(slack.socket_acks.get(), 10)
        reply = await slack.next_response()
    finally:
        await runtime.stop()

    assert ack["envelope_id"] == "env-1"
    assert "Builds of support-bot" in message_text(reply.body)
    assert len(slack.api_calls("apps.connections.open")) >= 1
