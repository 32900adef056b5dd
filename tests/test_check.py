"""`builds-bot check` against loopback stand-ins: one line per check, exit status 0 only when all pass."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.check import run_checks
from bot.sandbox import SandboxServer
from tests.conftest import bot_environment
from tests.slack_server import Fault, SlackStandIn
from tests.test_cli import clean_environment, run


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer() as server:
        yield server


def environment(sandbox: SandboxServer, slack: SlackStandIn, **extra: str) -> dict[str, str]:
    return bot_environment(
        autopilot_url=sandbox.base_url,
        account_sid=sandbox.credentials.account_sid,
        auth_token=sandbox.credentials.auth_token,
        slack_api_url=slack.api_url,
        **extra,
    )


async def test_check_all_pass(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    code, stdout, _ = await run("check", env=clean_environment(**environment(sandbox, slack)))

    lines = stdout.splitlines()
    assert code == 0
    assert [line.split(":")[0] for line in lines] == ["ok    configuration", "ok    slack", "ok    autopilot"]
    assert len(slack.api_calls("auth.test")) == 1
    assert [record.query_string for record in sandbox.requests] == ["PageSize=1"]


async def test_check_wrong_twilio_token(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    env = environment(sandbox, slack, TWILIO_AUTH_TOKEN="f" * 32)

    code, stdout, _ = await run("check", env=clean_environment(**env))

    assert code == 1
    assert "FAIL  autopilot: " in stdout
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in stdout
    assert "ok    slack" in stdout
    assert len(sandbox.requests) == 1
    assert "f" * 32 not in stdout


async def test_check_revoked_slack_token(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    slack.fail("auth.test", Fault(200, '{"ok": false, "error": "invalid_auth"}'))

    results = await run_checks(environment(sandbox, slack))

    slack_result = next(result for result in results if result.name == "slack")
    assert not slack_result.ok
    assert "Slack returned invalid_auth" in slack_result.detail
    assert "copy the Bot User OAuth Token" in slack_result.detail


async def test_check_bad_configuration_skips_network(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    env = environment(sandbox, slack, BUILDS_CACHE_TTL="forever")

    code, stdout, _ = await run("check", env=clean_environment(**env))

    assert code == 1
    assert stdout.splitlines()[0].startswith("FAIL  configuration: BUILDS_CACHE_TTL: invalid value 'forever'")
    assert "skipped until the configuration is valid" in stdout
    assert slack.calls == []
    assert sandbox.requests == []


async def test_check_socket_mode_token(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    slack.fail("apps.connections.open", Fault(200, '{"ok": false, "error": "not_allowed_token_type"}'))

    results = await run_checks(environment(sandbox, slack, SLACK_APP_TOKEN="xapp-1-wrong"))

    socket_result = next(result for result in results if result.name == "socket mode")
    assert not socket_result.ok
    assert "connections:write" in socket_result.detail


async def test_check_unreachable_api(slack: SlackStandIn) -> None:
    env = bot_environment(
        autopilot_url="http://127.0.0.1:9", account_sid="AC" + "1" * 32, auth_token="t", slack_api_url=slack.api_url
    )

    results = await run_checks(env)

    autopilot_result = next(result for result in results if result.name == "autopilot")
    assert not autopilot_result.ok
    assert "could not be reached" in autopilot_result.detail


async def test_check_redis_not_responding(sandbox: SandboxServer, slack: SlackStandIn) -> None:
    # Port 9 on loopback has no Redis, so the connection is refused at once.
    results = await run_checks(environment(sandbox, slack, BUILDS_STATE_URL="redis://127.0.0.1:9/0", BUILDS_CACHE_URL="redis://127.0.0.1:9/1"))

    by_name = {result.name: result for result in results}
    assert not by_name["state store"].ok
    assert "redis://127.0.0.1:9/0 does not respond" in by_name["state store"].detail
    assert not by_name["shared cache"].ok
