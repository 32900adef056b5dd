"""A running bot whose alert machinery the test drives: polls, sends and the clock are under its control."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot.config import load_settings
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset, format_timestamp
from bot.server import BotRuntime
from tests.conftest import SIGNING_SECRET, bot_environment
from tests.harness import RecordingSleep, message_text
from tests.slack_server import SlackCall, SlackStandIn, sign, signed_action, signed_command

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CHANNEL = "C0INCIDENT"
ENGINEER = "U0ENGINEER"


@dataclass
class Clock:
    """The bot's wall clock, moved by the test."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class AlertBot:
    """A running bot with its alert machinery under the test's control."""

    runtime: BotRuntime
    http: httpx.AsyncClient
    slack: SlackStandIn
    sandbox: SandboxServer
    clock: Clock
    sleep: RecordingSleep = field(default_factory=RecordingSleep)

    async def command(self, text: str, *, user_id: str = ENGINEER) -> dict[str, Any]:
        """Run `/builds <text>` as Slack would and return the reply, from the ack or the response_url."""
        body, headers = signed_command(text, secret=SIGNING_SECRET, response_url=self.slack.response_url())
        body = body.replace(f"user_id={ENGINEER}", f"user_id={user_id}")
        headers = _resigned(body, headers)
        response = await self.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 200
        if response.text:
            return response.json()
        return (await self.slack.next_response()).body

    async def click(self, action_id: str, value: str) -> httpx.Response:
        """Click an alert button as Slack sends it."""
        body, headers = signed_action(action_id, value, secret=SIGNING_SECRET, response_url=self.slack.response_url())
        return await self.http.post("/slack/events", content=body, headers=headers)

    async def poll(self) -> int:
        assert self.runtime.alerts is not None
        return await self.runtime.alerts.poller.poll_all()

    async def send(self) -> int:
        assert self.runtime.alerts is not None
        return await self.runtime.alerts.sender.send_due()

    def posts(self) -> list[SlackCall]:
        return self.slack.api_calls("chat.postMessage")

    def updates(self) -> list[SlackCall]:
        return self.slack.api_calls("chat.update")

    def add_build(self, status: str, *, minutes_ago: float = 1, name: str | None = None, assistant: str = "support-bot") -> dict[str, Any]:
        created = format_timestamp(self.clock.now - timedelta(minutes=minutes_ago))
        fields: dict[str, Any] = {"status": status, "date_created": created, "date_updated": created, "unique_name": name}
        fields["build_duration"] = None if status in ("enqueued", "building") else 95
        fields["error_code"] = 23001 if status == "failed" else None
        return self.sandbox.dataset.add_build(assistant, **fields)


def _resigned(body: str, headers: dict[str, str]) -> dict[str, str]:
    return sign(body, secret=SIGNING_SECRET, timestamp=int(headers["X-Slack-Request-Timestamp"]))


def dataset(*assistants: str) -> SandboxDataset:
    data = SandboxDataset(now=NOW)
    for assistant in assistants or ("support-bot",):
        record = data.add_assistant(unique_name=assistant, friendly_name=assistant)
        created = format_timestamp(NOW - timedelta(days=2))
        data.add_build(record["sid"], unique_name=f"{assistant}-old-failure", status="failed", error_code=23002, date_created=created, date_updated=created)
        created = format_timestamp(NOW - timedelta(days=1))
        data.add_build(record["sid"], unique_name=f"{assistant}-baseline", status="completed", build_duration=80, date_created=created, date_updated=created)
    return data


@asynccontextmanager
async def alert_bot(
    sandbox: SandboxServer, slack: SlackStandIn, *, clock: Clock, state_url: str = "sqlite:///:memory:", **extra: str
) -> AsyncIterator[AlertBot]:
    environment = bot_environment(
        autopilot_url=sandbox.base_url,
        account_sid=sandbox.credentials.account_sid,
        auth_token=sandbox.credentials.auth_token,
        slack_api_url=slack.api_url,
        BUILDS_STATE_URL=state_url,
        BUILDS_CACHE_TTL="0",
        **extra,
    )
    sleep = RecordingSleep()
    runtime = BotRuntime(
        load_settings(environment), socket_mode=False, host="127.0.0.1", port=0, retry_sleep=sleep, clock=clock, run_alert_loops=False
    )
    await runtime.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.bound_port}", timeout=15) as http:
            yield AlertBot(runtime, http, slack, sandbox, clock, sleep)
    finally:
        await runtime.stop()
