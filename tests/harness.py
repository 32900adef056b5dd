"""A running bot wired to loopback stand-ins, shared by the end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from slack_sdk.models.blocks import Block

from bot.config import load_settings
from bot.server import BotRuntime
from tests.conftest import SIGNING_SECRET, bot_environment
from tests.slack_server import SlackStandIn, signed_command


@dataclass
class RecordingSleep:
    """A sleep function that records each requested wait and returns at once."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Bot:
    """A running bot and the Slack stand-in it talks to."""

    runtime: BotRuntime
    http: httpx.AsyncClient
    slack: SlackStandIn
    sleep: RecordingSleep

    async def command(
        self, text: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None, response_url: str | None = None
    ) -> httpx.Response:
        """Send `/builds <text>` signed like Slack and return the app's HTTP response."""
        body, headers = signed_command(
            text, secret=secret, response_url=response_url or self.slack.response_url(), timestamp=timestamp
        )
        return await self.http.post("/slack/events", content=body, headers=headers)


@asynccontextmanager
async def running_bot(
    slack: SlackStandIn, *, autopilot_url: str, account_sid: str, auth_token: str, **extra_env: str
) -> AsyncIterator[Bot]:
    """Run the bot in HTTP mode on 127.0.0.1 against `autopilot_url` and `slack`, with retry waits recorded."""
    environment = bot_environment(
        autopilot_url=autopilot_url, account_sid=account_sid, auth_token=auth_token, slack_api_url=slack.api_url, **extra_env
    )
    sleep = RecordingSleep()
    runtime = BotRuntime(load_settings(environment), socket_mode=False, host="127.0.0.1", port=0, retry_sleep=sleep)
    await runtime.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.bound_port}", timeout=15) as http:
            yield Bot(runtime, http, slack, sleep)
    finally:
        await runtime.stop()


def assert_valid_message(payload: dict[str, Any]) -> None:
    """Check a message against Slack's limits with slack-sdk's block models."""
    assert payload["text"].strip()
    assert len(payload["text"]) < 3000
    assert 0 < len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()


def message_text(payload: dict[str, Any]) -> str:
    """Return the whole payload as one string, for searching."""
    return json.dumps(payload, ensure_ascii=False)
