"""The `builds-bot` command line, run as a user runs it: a separate process on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.sandbox import SandboxServer
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, bot_environment
from tests.slack_server import Fault, SlackStandIn, signed_command

CONSOLE_SCRIPT = Path(sys.executable).with_name("builds-bot")
PROCESS_TIMEOUT = 60


def command_line(*args: str) -> list[str]:
    """Return the argv for the installed console script, or the module when it is not installed."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT), *args]
    return [sys.executable, "-m", "bot.cli", *args]


def clean_environment(**variables: str) -> dict[str, str]:
    """Return an environment with none of the caller's bot settings, plus `variables`."""
    keep = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "SYSTEMROOT") if key in os.environ}
    return {**keep, "PYTHONUNBUFFERED": "1", **variables}


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command_line(*args), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer() as server:
        yield server


async def test_demo_prints_failed_builds() -> None:
    code, stdout, stderr = await run("demo", env=clean_environment())

    assert code == 0, stderr
    assert "Failed builds · last 24h" in stdout
    assert "failed builds in" in stdout
    assert "https://www.twilio.com/docs/errors/230" in stdout
    assert "<!date" not in stdout
    assert "Sandbox Autopilot API at http://127.0.0.1:" in stderr


async def test_demo_json_prints_block_kit() -> None:
    code, stdout, _ = await run("demo", "support-bot", "--json", env=clean_environment())

    payload = json.loads(stdout)
    assert code == 0
    assert payload["text"]
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][0]["text"]["text"] == "Builds of support-bot"


async def test_demo_ignores_callers_twilio_settings() -> None:
    env = clean_environment(TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN="real-token", BUILDS_ASSISTANTS="prod-bot")

    code, stdout, stderr = await run("demo", env=env)

    assert code == 0, stderr
    assert "Failed builds" in stdout


async def test_query_uses_configured_api(sandbox: SandboxServer) -> None:
    env = clean_environment(
        AUTOPILOT_BASE_URL=sandbox.base_url,
        TWILIO_ACCOUNT_SID=sandbox.credentials.account_sid,
        TWILIO_AUTH_TOKEN=sandbox.credentials.auth_token,
    )

    code, stdout, _ = await run("query", "billing-assistant failed", env=env)

    assert code == 0
    assert "Builds of billing-assistant · failed" in stdout
    assert sum(1 for record in sandbox.requests if record.path.endswith("/ModelBuilds")) == 1


async def test_query_wrong_token_exits_nonzero(sandbox: SandboxServer) -> None:
    env = clean_environment(
        AUTOPILOT_BASE_URL=sandbox.base_url,
        TWILIO_ACCOUNT_SID=sandbox.credentials.account_sid,
        TWILIO_AUTH_TOKEN="0" * 32,
    )

    code, stdout, stderr = await run("query", "support-bot", env=env)

    assert code == 1
    assert "rejected the bot's credentials" in stdout
    assert "TWILIO_AUTH_TOKEN" in stdout
    assert "0" * 32 not in stdout + stderr
    assert "Traceback" not in stdout + stderr


async def test_serve_without_settings_names_variable() -> None:
    code, stdout, stderr = await run("serve", env=clean_environment())

    assert code == 2
    assert stdout == ""
    assert stderr.strip().splitlines() == [
        "builds-bot: configuration error: TWILIO_ACCOUNT_SID: missing. "
        "Set it to your Twilio account SID (AC followed by 32 hex digits)."
    ]


async def test_serve_bad_cache_ttl_names_variable(sandbox: SandboxServer) -> None:
    env = clean_environment(
        TWILIO_ACCOUNT_SID=sandbox.credentials.account_sid, TWILIO_AUTH_TOKEN="x", BUILDS_CACHE_TTL="soon"
    )

    code, _, stderr = await run("query", "help", env=env)

    assert code == 2
    assert "BUILDS_CACHE_TTL" in stderr
    assert "'soon'" in stderr
    assert len(stderr.strip().splitlines()) == 1


async def test_serve_http_answers_and_stops_on_sigterm() -> None:
    """The real entry point serves a signed command; SIGTERM during the 1 s lookup lets the reply finish."""
    async with SandboxServer(latency=1.0) as sandbox, SlackStandIn() as slack:
        env = clean_environment(
            **bot_environment(
                autopilot_url=sandbox.base_url,
                account_sid=sandbox.credentials.account_sid,
                auth_token=sandbox.credentials.auth_token,
                slack_api_url=slack.api_url,
            )
        )
        process = await asyncio.create_subprocess_exec(
            *command_line("serve", "--http", "--host", "127.0.0.1", "--port", "0"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            port, startup_log = await _wait_for_port(process)
            body, headers = signed_command("support-bot", secret=SIGNING_SECRET, response_url=slack.response_url())
            async with httpx.AsyncClient() as http:
                response = await http.post(f"http://127.0.0.1:{port}/slack/events", content=body, headers=headers)
                health = await http.get(f"http://127.0.0.1:{port}/healthz")

            process.send_signal(signal.SIGTERM)
            assert slack.responses.empty()
            reply = await slack.next_response()
            _, rest = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    log = startup_log + rest.decode()
    assert response.status_code == 200
    assert health.json() == {"status": "ok"}
    assert "Builds of support-bot" in json.dumps(reply.body, ensure_ascii=False)
    assert process.returncode == 0
    assert "server.stopped" in log
    for secret in (BOT_TOKEN, SIGNING_SECRET, sandbox.credentials.auth_token):
        assert secret not in log


async def _wait_for_port(process: asyncio.subprocess.Process) -> tuple[int, str]:
    assert process.stderr is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), PROCESS_TIMEOUT)).decode()
        if not line:
            raise AssertionError("the server exited before it started:\n" + "".join(lines))
        lines.append(line)
        match = re.search(r"server\.started .*port=(\d+)", line)
        if match:
            return int(match.group(1)), "".join(lines)


async def test_socket_mode_rejected_app_token_names_variable(sandbox: SandboxServer) -> None:
    async with SlackStandIn() as slack:
        slack.fail("apps.connections.open", Fault(200, '{"ok": false, "error": "invalid_auth"}'))
        env = clean_environment(
            **bot_environment(
                autopilot_url=sandbox.base_url,
                account_sid=sandbox.credentials.account_sid,
                auth_token=sandbox.credentials.auth_token,
                slack_api_url=slack.api_url,
                SLACK_APP_TOKEN="xapp-1-A0BUILDS01-revoked",
            )
        )

        code, _, stderr = await run("serve", env=env)

    assert code == 2
    assert "builds-bot: configuration error: SLACK_APP_TOKEN: Slack rejected the app-level token (invalid_auth)" in stderr
    assert "Traceback" not in stderr


async def test_socket_mode_stops_on_sigterm_while_connecting(sandbox: SandboxServer) -> None:
    """SIGTERM ends the bot even while Slack keeps refusing the Socket Mode connection."""
    async with SlackStandIn() as slack:
        env = clean_environment(
            **bot_environment(
                autopilot_url=sandbox.base_url,
                account_sid=sandbox.credentials.account_sid,
                auth_token=sandbox.credentials.auth_token,
                slack_api_url=slack.api_url,
                SLACK_APP_TOKEN="xapp-1-A0BUILDS01-test",
            )
        )
        # The first call checks the token; later ones, from slack-sdk's connect loop, keep failing.
        slack.fail("apps.connections.open", Fault(200, '{"ok": true, "url": "ws://127.0.0.1:9/closed"}'))
        slack.fail("apps.connections.open", *[Fault(200, '{"ok": false, "error": "internal_error"}')] * 20)
        process = await asyncio.create_subprocess_exec(
            *command_line("serve"), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            await slack.wait_for_call("apps.connections.open", timeout=PROCESS_TIMEOUT)
            await _wait_for_calls(slack, "apps.connections.open", 2)
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert process.returncode == 0
    assert "server.stopped" in stderr.decode()


async def _wait_for_calls(slack: SlackStandIn, method: str, count: int) -> None:
    while len(slack.api_calls(method)) < count:
        await slack.wait_for_next_call()


async def test_demo_bad_log_level_names_variable() -> None:
    code, _, stderr = await run("demo", env=clean_environment(BUILDS_LOG_LEVEL="verbose"))

    assert code == 2
    assert stderr.strip().splitlines() == [
        "builds-bot: configuration error: BUILDS_LOG_LEVEL: invalid value 'VERBOSE': use one of DEBUG, INFO, WARNING, ERROR."
    ]


async def test_query_logs_credentials_conflict(sandbox: SandboxServer) -> None:
    env = clean_environment(
        AUTOPILOT_BASE_URL=sandbox.base_url,
        TWILIO_ACCOUNT_SID=sandbox.credentials.account_sid,
        TWILIO_AUTH_TOKEN=sandbox.credentials.auth_token,
        TWILIO_API_KEY="SK" + "2" * 32,
        TWILIO_API_SECRET="api-secret-value",
    )

    _, _, stderr = await run("query", "help", env=env)

    assert "WARNING bot.cli config.credentials_conflict: TWILIO_API_KEY is used and TWILIO_AUTH_TOKEN ignored" in stderr
    assert "api-secret-value" not in stderr


async def test_sandbox_port_in_use_explained(sandbox: SandboxServer) -> None:
    port = sandbox.base_url.rsplit(":", 1)[1]

    code, _, stderr = await run("sandbox", "--port", port, env=clean_environment())

    assert code == 2
    assert f"builds-bot: cannot listen on 127.0.0.1:{port}" in stderr
    assert "pick another --port" in stderr
    assert "Traceback" not in stderr


async def test_check_reports_serve_only_problems(sandbox: SandboxServer, tmp_path: Path) -> None:
    env = clean_environment(
        AUTOPILOT_BASE_URL=sandbox.base_url,
        TWILIO_ACCOUNT_SID=sandbox.credentials.account_sid,
        TWILIO_AUTH_TOKEN=sandbox.credentials.auth_token,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        BUILDS_STATE_URL=f"sqlite:///{tmp_path / 'missing' / 'state.db'}",
    )

    code, stdout, _ = await run("check", env=env)

    assert code == 1
    assert "FAIL  configuration: BUILDS_STATE_URL: the folder" in stdout
    assert "does not exist" in stdout
