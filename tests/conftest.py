"""Shared fixtures: paths to the reference material beside the repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.slack_server import SlackStandIn

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ROOT = REPO_ROOT.parent / "shared"


def shared_file(*parts: str) -> Path:
    """Return a file of the reference folder beside the checkout, or skip the test."""
    path = SHARED_ROOT.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing: this test needs the reference material in ../shared beside the checkout")
    return path


SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-0000000000-test-bot-token"


def bot_environment(*, autopilot_url: str, account_sid: str, auth_token: str, slack_api_url: str, **extra: str) -> dict[str, str]:
    """Return the environment variables that point the bot at loopback stand-ins."""
    return {
        "AUTOPILOT_BASE_URL": autopilot_url,
        "TWILIO_ACCOUNT_SID": account_sid,
        "TWILIO_AUTH_TOKEN": auth_token,
        "SLACK_API_URL": slack_api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        # Each bot gets a private store unless a test names a file to share across restarts.
        "BUILDS_STATE_URL": "sqlite:///:memory:",
        **extra,
    }


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    """Run a Slack stand-in on 127.0.0.1 for one test."""
    async with SlackStandIn() as stand_in:
        yield stand_in
