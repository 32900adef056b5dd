"""Fault injection on the Slack side: rate limits, expired response URLs, retried requests, dropped sockets.

The bot runs against the sandbox API and a Slack stand-in on 127.0.0.1 that
fails on cue. Each test counts the attempts that reached the stand-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import load_settings
from bot.delivery import RESPONSE_URL_LIFETIME, ReplyDelivery, ReplyTarget, ResponseUrls
from bot.render import render_help
from bot.sandbox import SandboxServer
from bot.server import BotRuntime
from bot.slack_retry import build_retry_handlers
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, bot_environment
from tests.harness import Bot, RecordingSleep, assert_valid_message, message_text, running_bot
from tests.slack_server import Fault, SlackStandIn, command_form, signed_command

USER = "U0ENGINEER"
CHANNEL = "C0INCIDENT"
RATE_LIMITED_JSON = Fault(429, '{"ok": false, "error": "ratelimited"}', headers={"Retry-After": "3"})
RATE_LIMITED_HTML = Fault(429, "<html><body>Too Many Requests</body></html>", content_type="text/html", headers={"Retry-After": "2"})
RATE_LIMITED_TEXT = Fault(429, "rate limited", content_type="text/plain", headers={"Retry-After": "4"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer() as server:
        yield server


@pytest.fixture
async def bot(sandbox: SandboxServer, slack: SlackStandIn) -> AsyncIterator[Bot]:
    credentials = sandbox.credentials
    async with running_bot(
        slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token
    ) as running:
        yield running


def model_build_requests(sandbox: SandboxServer) -> int:
    return sum(1 for record in sandbox.requests if record.path.endswith("/ModelBuilds"))


def delivery_for(slack: SlackStandIn, sleep: RecordingSleep, clock: FakeClock | None = None) -> ReplyDelivery:
    handlers = build_retry_handlers(sleep=sleep)
    client = AsyncWebClient(base_url=slack.api_url, retry_handlers=handlers)
    urls = ResponseUrls(clock=clock) if clock else ResponseUrls()
    return ReplyDelivery(client=client, token=BOT_TOKEN, response_urls=urls, retry_handlers=handlers)


async def test_expired_response_url_falls_back_to_ephemeral(bot: Bot) -> None:
    bot.slack.fail("response_url", Fault(404, "expired_url", content_type="text/plain"))

    await bot.command("support-bot")
    await bot.slack.wait_for_call("chat.postEphemeral")

    ephemeral = bot.slack.api_calls("chat.postEphemeral")
    assert len(bot.slack.response_url_calls()) == 1
    assert len(ephemeral) == 1
    assert ephemeral[0].body["channel"] == CHANNEL
    assert ephemeral[0].body["user"] == USER
    assert "Builds of support-bot" in message_text(ephemeral[0].body)
    assert ephemeral[0].headers["Authorization"] == f"Bearer {BOT_TOKEN}"


async def test_rate_limited_response_url_retried_once(bot: Bot) -> None:
    bot.slack.fail("response_url", RATE_LIMITED_TEXT)

    await bot.command("support-bot")
    reply = await bot.slack.next_response()

    assert "Builds of support-bot" in message_text(reply.body)
    assert len(bot.slack.response_url_calls()) == 2
    assert bot.slack.api_calls("chat.postEphemeral") == []
    assert bot.sleep.waits == [4.0]


@pytest.mark.parametrize("fault", [RATE_LIMITED_JSON, RATE_LIMITED_HTML, RATE_LIMITED_TEXT], ids=["json", "html", "text"])
async def test_web_api_rate_limit_retried_any_body(slack: SlackStandIn, fault: Fault) -> None:
    sleep = RecordingSleep()
    slack.fail("chat.postEphemeral", fault)
    delivery = delivery_for(slack, sleep)

    channel = await delivery.send(render_help("/builds"), ReplyTarget(None, CHANNEL, USER))

    assert channel == "ephemeral"
    assert len(slack.api_calls("chat.postEphemeral")) == 2
    assert sleep.waits == [float(fault.headers["Retry-After"])]


async def test_web_api_server_error_retried(slack: SlackStandIn) -> None:
    sleep = RecordingSleep()
    slack.fail("chat.postEphemeral", Fault(503, '{"ok": false, "error": "service_unavailable"}'))
    delivery = delivery_for(slack, sleep)

    channel = await delivery.send(render_help("/builds"), ReplyTarget(None, CHANNEL, USER))

    assert channel == "ephemeral"
    assert len(slack.api_calls("chat.postEphemeral")) == 2
    assert len(sleep.waits) == 1


async def test_response_url_used_five_times_then_ephemeral(slack: SlackStandIn) -> None:
    """Slack allows five messages per response_url; the sixth goes through chat.postEphemeral."""
    delivery = delivery_for(slack, RecordingSleep())
    url = slack.response_url()
    delivery.response_urls.register(url)

    channels = [await delivery.send(render_help("/builds"), ReplyTarget(url, CHANNEL, USER)) for _ in range(6)]

    assert channels == ["response_url"] * 5 + ["ephemeral"]
    assert len(slack.response_url_calls()) == 5
    assert len(slack.api_calls("chat.postEphemeral")) == 1


async def test_response_url_after_thirty_minutes_not_used(slack: SlackStandIn) -> None:
    clock = FakeClock()
    delivery = delivery_for(slack, RecordingSleep(), clock)
    url = slack.response_url()
    delivery.response_urls.register(url)
    clock.now += RESPONSE_URL_LIFETIME + 1

    channel = await delivery.send(render_help("/builds"), ReplyTarget(url, CHANNEL, USER))

    assert channel == "ephemeral"
    assert slack.response_url_calls() == []


async def test_every_channel_failing_is_logged(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    bot.slack.fail("response_url", Fault(404, "used_url", content_type="text/plain"))
    bot.slack.fail("chat.postEphemeral", Fault(200, '{"ok": false, "error": "not_in_channel"}'))
    caplog.set_level(logging.INFO, logger="bot")

    await bot.command("support-bot")
    await bot.runtime.tasks.drain(timeout=10)

    events = [record.getMessage() for record in caplog.records]
    assert "delivery.failed" in events
    assert "command.reply_lost" in events
    failed = next(record for record in caplog.records if record.getMessage() == "delivery.failed")
    assert failed.slack_error == "not_in_channel"
    assert failed.user_id == USER


async def test_slack_retry_of_command_ignored(bot: Bot, sandbox: SandboxServer) -> None:
    url = bot.slack.response_url()
    body, headers = signed_command("billing-assistant", secret=SIGNING_SECRET, response_url=url)

    first = await bot.http.post("/slack/events", content=body, headers=headers)
    retry = await bot.http.post(
        "/slack/events", content=body, headers={**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    await bot.slack.next_response()
    await bot.runtime.tasks.drain(timeout=10)

    assert first.status_code == 200
    assert retry.status_code == 200
    assert retry.text == ""
    assert len(bot.slack.response_url_calls()) == 1
    assert model_build_requests(sandbox) == 1


async def test_socket_mode_recovers_from_drop(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    """After Slack drops the connection, and the first reconnect fails, the bot reconnects and serves commands."""
    runtime = _socket_runtime(sandbox, slack)
    await runtime.start()
    try:
        await slack.wait_for_socket()
        slack.fail("apps.connections.open", Fault(500, '{"ok": false, "error": "internal_error"}'))
        await slack.drop_sockets()

        await slack.wait_for_socket(timeout=20)
        payload = command_form("support-bot", response_url=slack.response_url())
        await slack.send_envelope({"envelope_id": "env-2", "type": "slash_commands", "accepts_response_payload": True, "payload": payload})
        ack = await asyncio.wait_for(slack.socket_acks.get(), 10)
        reply = await slack.next_response()
    finally:
        await runtime.stop()

    assert ack["envelope_id"] == "env-2"
    assert "Builds of support-bot" in message_text(reply.body)
    assert_valid_message(reply.body)
    assert len(slack.api_calls("apps.connections.open")) >= 3


def _socket_runtime(sandbox: SandboxServer, slack: SlackStandIn) -> BotRuntime:
    environment = bot_environment(
        autopilot_url=sandbox.base_url,
        account_sid=sandbox.credentials.account_sid,
        auth_token=sandbox.credentials.auth_token,
        slack_api_url=slack.api_url,
        SLACK_APP_TOKEN="xapp-1-A0BUILDS01-test-app-token",
    )
    return BotRuntime(load_settings(environment), socket_mode=True, host="127.0.0.1", port=0, retry_sleep=RecordingSleep(), socket_ping_interval=0.2)
