"""`/builds status`: one line per assistant in scope, red first, read in one round of concurrent requests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.autopilot import AutopilotClient
from bot.config import load_settings
from bot.core import BuildsCore
from bot.models import ModelBuild
from bot.overview import overview_row, render_overview, sort_rows
from bot.state.base import Mute
from bot.stats import sparkline, trend
from tests.autopilot_server import AutopilotStandIn, CannedResponse
from tests.harness import assert_valid_message, message_text

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def build(number: int, status: str, *, hours_ago: float, duration: int | None = 100) -> ModelBuild:
    created = NOW - timedelta(hours=hours_ago)
    return ModelBuild(f"UG{number:032x}", f"b{number}", status, None, created, created, duration, 23001 if status == "failed" else None)


def test_sort_red_then_building_then_green() -> None:
    rows = [
        overview_row("green", [build(1, "completed", hours_ago=1)], now=NOW),
        overview_row("building", [build(2, "building", hours_ago=0.1, duration=None)], now=NOW),
        overview_row("red", [build(3, "failed", hours_ago=5)], now=NOW),
        overview_row("empty", [], now=NOW),
    ]

    assert [row.assistant for row in sort_rows(rows)] == ["red", "building", "green", "empty"]


def test_overview_line_shows_trend_and_mute() -> None:
    builds = [build(index, "failed" if index % 4 == 0 else "completed", hours_ago=index, duration=60 * (index + 1)) for index in range(8)]
    mute = Mute("C1", "support-bot", "U1", NOW + timedelta(hours=1))

    reply = render_overview([overview_row("support-bot", builds, now=NOW, mute=mute)], now=NOW)

    text = message_text(reply.to_dict())
    assert "❌ failed *support-bot*" in text
    assert "25% failed of last 8, median 4m 30s" in text
    assert f"`{sparkline([60 * (index + 1) for index in reversed(range(8))])}`" in text
    assert "🔕 muted" in text
    assert "2 failed in 24 h" in text


def test_trend_counts_finished_builds_only() -> None:
    builds = [build(1, "building", hours_ago=0, duration=None), build(2, "failed", hours_ago=1), build(3, "completed", hours_ago=2)]

    result = trend(builds)

    assert result.finished == 2
    assert result.failure_rate == 0.5
    assert result.sparkline.endswith("·")


def test_overview_hundred_assistants_within_limits() -> None:
    rows = [overview_row(f"assistant-{index:03d}", [build(index, "failed", hours_ago=index)], now=NOW) for index in range(100)]

    reply = render_overview(sort_rows(rows), now=NOW)
    payload = reply.to_dict()

    assert_valid_message(payload)
    assert "assistant-099" in message_text(payload)
    assert reply.text == "100 of 100 assistants need attention"


def builds_body(index: int) -> dict[str, Any]:
    status = "failed" if index % 3 == 0 else "completed"
    created = (NOW - timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
    item = {"sid": f"UG{index:032x}", "unique_name": f"b{index}", "status": status, "date_created": created, "date_updated": created, "build_duration": 90}
    return {"model_builds": [item], "meta": {"next_page_url": None}}


async def test_status_thirty_assistants_one_concurrent_round() -> None:
    """Every assistant's builds are requested at once: all 30 are in flight together before any response."""
    async with AutopilotStandIn() as api:
        names = [f"assistant-{index:02d}" for index in range(30)]
        for index, assistant in enumerate(names):
            api.respond(f"/v1/Assistants/{assistant}/ModelBuilds", CannedResponse(json=builds_body(index)))
        release = asyncio.Event()
        api.hold(release)
        settings = load_settings(
            {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "t", "AUTOPILOT_BASE_URL": api.base_url, "BUILDS_ASSISTANTS": ",".join(names)}
        )
        async with AutopilotClient(settings) as client:
            core = BuildsCore(settings=settings, client=client, clock=lambda: NOW)
            pending = asyncio.ensure_future(core.reply("status"))
            await api.wait_for_in_flight(30)
            release.set()
            reply = await pending

    text = message_text(reply.to_dict())
    assert len(api.requests) == 30
    assert api.max_in_flight == 30
    assert "Build status · 30 assistants" in text
    assert "*10* need attention" in text
    assert text.index("assistant-00") < text.index("assistant-01")
    assert_valid_message(reply.to_dict())


async def test_status_lists_unreadable_assistant_first() -> None:
    async with AutopilotStandIn() as api:
        api.respond("/v1/Assistants/good/ModelBuilds", CannedResponse(json=builds_body(1)))
        settings = load_settings(
            {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "t", "AUTOPILOT_BASE_URL": api.base_url,
             "BUILDS_ASSISTANTS": "good,gone", "BUILDS_RETRY_ATTEMPTS": "1"}
        )
        async with AutopilotClient(settings) as client:
            reply = await BuildsCore(settings=settings, client=client, clock=lambda: NOW).reply("status")

    text = message_text(reply.to_dict())
    assert text.index("*gone* · could not be read (not found)") < text.index("*good*")

