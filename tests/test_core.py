"""The command core against a real sandbox API on loopback: data edge cases, paging, scope and caching."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.autopilot import AutopilotClient
from bot.config import load_settings
from bot.core import BuildsCore
from bot.errors import CacheMiss
from bot.render import Reply
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset, format_timestamp

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@asynccontextmanager
async def core_for(sandbox: SandboxServer, *, page_size: int = 1000, **environment: str) -> AsyncIterator[BuildsCore]:
    settings = load_settings(
        {
            "AUTOPILOT_BASE_URL": sandbox.base_url,
            "TWILIO_ACCOUNT_SID": sandbox.credentials.account_sid,
            "TWILIO_AUTH_TOKEN": sandbox.credentials.auth_token,
            **environment,
        }
    )
    async with AutopilotClient(settings, page_size=page_size) as client:
        yield BuildsCore(settings=settings, client=client, clock=lambda: NOW)


def list_requests(sandbox: SandboxServer) -> list[str]:
    return [record.query_string for record in sandbox.requests if record.path.endswith("/ModelBuilds")]


def payload_of(reply: Reply) -> dict[str, Any]:
    payload = reply.to_dict()
    for block in payload["blocks"]:
        Block.parse(block).validate_json()
    return payload


def text_of(reply: Reply) -> str:
    return json.dumps(payload_of(reply), ensure_ascii=False)


def dataset_with(builds: Iterator[dict[str, Any]] | list[dict[str, Any]], *, unique_name: str = "edge-bot") -> SandboxDataset:
    dataset = SandboxDataset(now=NOW)
    assistant = dataset.add_assistant(unique_name=unique_name, friendly_name="Edge cases")
    for fields in builds:
        dataset.add_build(assistant["sid"], **fields)
    return dataset


def hours_ago(hours: float) -> str:
    return format_timestamp(NOW - timedelta(hours=hours))


async def test_paging_reads_every_page() -> None:
    dataset = dataset_with({"unique_name": f"b{index:03}", "date_created": hours_ago(index)} for index in range(25))

    async with SandboxServer(dataset=dataset) as sandbox, core_for(sandbox, page_size=10) as core:
        reply = await core.reply("edge-bot")

    queries = list_requests(sandbox)
    assert len(queries) == 3
    assert queries[0] == "PageSize=10"
    assert "PageToken=" in queries[1]
    assert "Showing 10 of 25 builds." in text_of(reply)
    assert reply.ok


async def test_null_fields_and_unknown_status_render() -> None:
    nulls = {key: None for key in ("status", "unique_name", "date_created", "date_updated", "build_duration", "error_code")}
    dataset = dataset_with([nulls, {"unique_name": "odd", "status": "archived", "date_created": hours_ago(1)}])

    async with SandboxServer(dataset=dataset) as sandbox, core_for(sandbox) as core:
        reply = await core.reply("edge-bot")

    text = text_of(reply)
    assert "❔ archived" in text
    assert "❔ unknown" in text
    assert "None" not in text
    assert "null" not in text


async def test_rfc2822_and_iso_dates_order_together() -> None:
    dataset = dataset_with(
        [
            {"unique_name": "older-iso", "date_created": "2026-12-04T09:00:00.123+00:00", "status": "failed"},
            {"unique_name": "newer-rfc", "date_created": "Fri, 04 Dec 2026 11:00:00 +0000", "status": "failed"},
            {"unique_name": "middle-offset", "date_created": "2026-12-04T12:00:00+02:00", "status": "failed"},
        ]
    )

    async with SandboxServer(dataset=dataset) as sandbox, core_for(sandbox) as core:
        reply = await core.reply("edge-bot failed")

    text = text_of(reply)
    assert text.index("newer-rfc") < text.index("middle-offset") < text.index("older-iso")
    assert "<!date^1796382000^" in text


async def test_four_hundred_failures_stay_within_limits() -> None:
    dataset = dataset_with(
        {"unique_name": f"broken-{index}", "status": "failed", "error_code": 23001, "date_created": hours_ago(index / 10)}
        for index in range(400)
    )

    async with SandboxServer(dataset=dataset) as sandbox, core_for(sandbox) as core:
        assistant_reply = await core.reply("edge-bot failed")
        failed_reply = await core.reply("failed 90d")

    assert "Showing 10 of 400 builds." in text_of(assistant_reply)
    assert len(payload_of(assistant_reply)["blocks"]) <= 50
    assert "*400* failed builds" in text_of(failed_reply)
    assert "…and 395 more" in text_of(failed_reply)
    assert len(payload_of(failed_reply)["text"]) < 3000


async def test_sixty_four_character_names() -> None:
    long_name = "a" * 64
    dataset = dataset_with([{"unique_name": "b" * 64, "status": "failed", "date_created": hours_ago(1)}], unique_name=long_name)

    async with SandboxServer(dataset=dataset) as sandbox, core_for(sandbox) as core:
        reply = await core.reply(f"{long_name} {'b' * 64}")

    assert long_name in text_of(reply)
    assert reply.ok


async def test_failed_uses_configured_scope_only() -> None:
    async with SandboxServer() as sandbox, core_for(sandbox, BUILDS_ASSISTANTS="support-bot, billing-assistant") as core:
        reply = await core.reply("failed 7d")

    paths = [record.path for record in sandbox.requests]
    assert "/v1/Assistants" not in paths
    assert sorted(paths) == ["/v1/Assistants/billing-assistant/ModelBuilds", "/v1/Assistants/support-bot/ModelBuilds"]
    assert "of 2 assistants" in text_of(reply)


async def test_failed_reports_unreadable_assistant() -> None:
    async with SandboxServer() as sandbox, core_for(sandbox, BUILDS_ASSISTANTS="support-bot,retired-bot") as core:
        reply = await core.reply("failed 7d")

    text = text_of(reply)
    assert "Could not read 1 assistant: retired-bot (not found)." in text
    assert "support-bot" in text


async def test_failed_discovers_every_assistant() -> None:
    async with SandboxServer() as sandbox, core_for(sandbox) as core:
        await core.reply("failed")

    assistants = len(sandbox.dataset.assistants)
    assert len(list_requests(sandbox)) == assistants
    assert [record.path for record in sandbox.requests].count("/v1/Assistants") == 1


async def test_cached_only_raises_until_fetched() -> None:
    async with SandboxServer() as sandbox, core_for(sandbox) as core:
        with pytest.raises(CacheMiss, match="support-bot"):
            await core.reply("support-bot", cached_only=True)
        fetched = await core.reply("support-bot")
        cached = await core.reply("support-bot", cached_only=True)

    assert payload_of(cached) == payload_of(fetched)
    assert len(list_requests(sandbox)) == 1


async def test_wrong_credentials_explained_once() -> None:
    async with SandboxServer() as sandbox:
        settings = load_settings(
            {"AUTOPILOT_BASE_URL": sandbox.base_url, "TWILIO_ACCOUNT_SID": sandbox.credentials.account_sid, "TWILIO_AUTH_TOKEN": "wrong"}
        )
        async with AutopilotClient(settings) as client:
            reply = await BuildsCore(settings=settings, client=client).reply("support-bot")

    text = text_of(reply)
    assert "rejected the bot's credentials" in text
    assert "https://www.twilio.com/docs/errors/20003" in text
    assert not reply.ok


async def test_unknown_build_explained() -> None:
    async with SandboxServer() as sandbox, core_for(sandbox) as core:
        reply = await core.reply("support-bot no-such-build")

    assert "No build no-such-build found in assistant support-bot" in text_of(reply)
    assert not reply.ok
