"""`/metrics`, `/healthz` and `/readyz` of the running app, with values checked after a scripted run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.sandbox import SandboxServer
from tests.alert_fixtures import Clock, alert_bot, dataset
from tests.autopilot_server import AutopilotStandIn, CannedResponse
from tests.harness import Bot, running_bot
from tests.slack_server import SlackStandIn


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a Prometheus exposition by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
async def bot(slack: SlackStandIn) -> AsyncIterator[tuple[Bot, SandboxServer]]:
    async with SandboxServer() as sandbox:
        credentials = sandbox.credentials
        async with running_bot(slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token) as running:
            yield running, sandbox


async def test_metrics_after_scripted_lookups(bot: tuple[Bot, SandboxServer]) -> None:
    running, _ = bot
    await running.command("support-bot")
    await running.slack.next_response()
    await running.command("support-bot")
    await running.command("help")
    await running.runtime.tasks.drain(timeout=5)

    response = await running.http.get("/metrics")
    values = samples(response.text)

    assert response.status_code == 200
    assert values[("builds_upstream_requests_total", (("endpoint", "model_builds"), ("status", "200")))] == 1
    assert values[("builds_ack_seconds_count", ())] == 3
    assert values[("builds_command_seconds_count", (("command", "assistant_builds"),))] == 2
    assert values[("builds_command_seconds_count", (("command", "help"),))] == 1
    assert values[("builds_cache_lookups_total", (("result", "miss"),))] == 1
    assert values[("builds_cache_lookups_total", (("result", "hit"),))] == 1


async def test_metrics_count_retries(slack: SlackStandIn) -> None:
    async with AutopilotStandIn() as api:
        api.fail_next("/v1/Assistants/support-bot/ModelBuilds", CannedResponse(status=429, body="", headers={"Retry-After": "0"}))
        api.respond("/v1/Assistants/support-bot/ModelBuilds", CannedResponse(json={"model_builds": [], "meta": {"next_page_url": None}}))
        async with running_bot(slack, autopilot_url=api.base_url, account_sid="AC" + "1" * 32, auth_token="t") as running:
            await running.command("support-bot")
            await running.slack.next_response()
            values = samples((await running.http.get("/metrics")).text)

    assert values[("builds_upstream_retries_total", (("reason", "RateLimitedError"),))] == 1
    assert values[("builds_upstream_requests_total", (("endpoint", "model_builds"), ("status", "429")))] == 1
    assert values[("builds_upstream_requests_total", (("endpoint", "model_builds"), ("status", "200")))] == 1


async def test_metrics_alerts_outbox_and_poll_lag(slack: SlackStandIn) -> None:
    async with SandboxServer(dataset=dataset()) as sandbox, alert_bot(sandbox, slack, clock=Clock()) as bot:
        await bot.command("subscribe support-bot")
        await bot.poll()
        bot.add_build("failed", name="v42")
        await bot.poll()
        await bot.send()
        values = samples((await bot.http.get("/metrics")).text)

    assert values[("builds_alerts_sent_total", (("kind", "failure"),))] == 1
    assert values[("builds_outbox_size", ())] == 0
    assert ("builds_poll_lag_seconds", (("assistant", "support-bot"),)) in values


async def test_health_and_ready(bot: tuple[Bot, SandboxServer]) -> None:
    running, _ = bot

    health = await running.http.get("/healthz")
    ready = await running.http.get("/readyz")

    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_ready_reports_closed_store(bot: tuple[Bot, SandboxServer]) -> None:
    running, _ = bot
    assert running.runtime.alerts is not None
    await running.runtime.alerts.store.close()

    ready = await running.http.get("/readyz")

    assert ready.status_code == 503
    assert "state_store" in ready.json()["problems"]
