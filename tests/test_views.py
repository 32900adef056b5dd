"""Interactive lookups: button values, paging, filters, refresh, details and sharing, through the running app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot import views
from bot.errors import InputError
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset, format_timestamp
from bot.views import ButtonCodec, ViewState, codec_key
from tests.conftest import SIGNING_SECRET
from tests.harness import Bot, assert_valid_message, message_text, running_bot
from tests.slack_server import SlackStandIn, signed_action

NOW = datetime.now(UTC).replace(microsecond=0)
CODEC = ButtonCodec(codec_key(SIGNING_SECRET))


@pytest.mark.parametrize(
    "state",
    [ViewState("support-bot"), ViewState("support-bot", "failed", 20), ViewState("UA" + "a" * 32, None, 0, "UG" + "b" * 32)],
)
def test_codec_round_trip(state: ViewState) -> None:
    value = CODEC.encode(state)

    assert CODEC.decode(value) == state
    assert len(value) <= views.MAX_VALUE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        '{"a":"support-bot"}|0000000000000000',
        CODEC.encode(ViewState("support-bot")).replace("support-bot", "billing-bot"),
        ButtonCodec(codec_key("another secret")).encode(ViewState("support-bot")),
        CODEC.encode(ViewState("support-bot")) + "x" * 2000,
    ],
    ids=["empty", "no-tag", "wrong-tag", "altered", "other-key", "too-long"],
)
def test_codec_rejects_forged(value: str) -> None:
    with pytest.raises(InputError, match="button's value is invalid"):
        CODEC.decode(value)


@pytest.mark.parametrize(
    "body",
    ['{"a":"../x"}', '{"a":"ok","o":-1}', '{"a":"ok","o":999999}', '{"a":"ok","s":"exploded"}', '["a"]', '{"a":"ok","b":"../x"}'],
)
def test_codec_rejects_tagged_bad_state(body: str) -> None:
    """Even a correctly tagged value must hold a valid state."""
    tag = CODEC._tag(body)

    with pytest.raises(InputError, match="button's value is invalid"):
        CODEC.decode(f"{body}|{tag}")


def dataset() -> SandboxDataset:
    data = SandboxDataset(now=NOW)
    assistant = data.add_assistant(unique_name="support-bot", friendly_name="Support")
    for index in range(25):
        created = format_timestamp(NOW - timedelta(hours=index))
        status = "failed" if index % 3 == 0 else "completed"
        data.add_build(assistant["sid"], unique_name=f"b{index:02d}", status=status, date_created=created, date_updated=created,
                       build_duration=60 + index, error_code=23001 if status == "failed" else None)
    return data


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(dataset=dataset()) as server:
        yield server


@pytest.fixture
async def bot(sandbox: SandboxServer, slack: SlackStandIn) -> AsyncIterator[Bot]:
    credentials = sandbox.credentials
    async with running_bot(slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token) as running:
        yield running


def list_requests(sandbox: SandboxServer) -> int:
    return sum(1 for record in sandbox.requests if record.path.endswith("/ModelBuilds"))


def buttons(payload: dict[str, Any]) -> dict[str, str]:
    """Return the action_id → value of every button in a message (the last one wins for Details)."""
    found: dict[str, str] = {}
    for block in payload["blocks"]:
        elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory") or {}]
        for element in elements:
            if element.get("type") == "button":
                found[element["action_id"]] = element["value"]
    return found


async def lookup(bot: Bot, text: str) -> dict[str, Any]:
    response = await bot.command(text)
    if response.text:
        return response.json()
    return (await bot.slack.next_response()).body


async def click(bot: Bot, action_id: str, value: str) -> dict[str, Any]:
    body, headers = signed_action(action_id, value, secret=SIGNING_SECRET, response_url=bot.slack.response_url())
    response = await bot.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200
    return (await bot.slack.next_response()).body


async def test_lookup_has_buttons(bot: Bot) -> None:
    reply = await lookup(bot, "support-bot")

    found = buttons(reply)
    assert set(found) == {views.OLDER, views.FAILED_ONLY, views.REFRESH, views.SHARE, views.DETAILS}
    assert_valid_message(reply)


async def test_older_then_newer_pages(bot: Bot, sandbox: SandboxServer) -> None:
    first = await lookup(bot, "support-bot")

    older = await click(bot, views.OLDER, buttons(first)[views.OLDER])
    newer = await click(bot, views.NEWER, buttons(older)[views.NEWER])

    assert older["replace_original"] is True
    assert "Showing 11–20 of 25 builds." in message_text(older)
    assert "*b10*" in message_text(older)
    assert "*b00*" not in message_text(older)
    assert "Showing 10 of 25 builds." in message_text(newer)
    assert views.NEWER not in buttons(newer)
    assert list_requests(sandbox) == 1


async def test_failed_only_filters(bot: Bot) -> None:
    first = await lookup(bot, "support-bot")

    filtered = await click(bot, views.FAILED_ONLY, buttons(first)[views.FAILED_ONLY])

    assert "Builds of support-bot · failed" in message_text(filtered)
    assert "✅ completed" not in message_text(filtered)
    assert views.ALL_BUILDS in buttons(filtered)


async def test_refresh_bypasses_cache(bot: Bot, sandbox: SandboxServer) -> None:
    first = await lookup(bot, "support-bot")
    before = list_requests(sandbox)

    refreshed = await click(bot, views.REFRESH, buttons(first)[views.REFRESH])

    assert "Builds of support-bot" in message_text(refreshed)
    assert list_requests(sandbox) == before + 1


async def test_details_and_back(bot: Bot) -> None:
    first = await lookup(bot, "support-bot")

    details = await click(bot, views.DETAILS, buttons(first)[views.DETAILS])
    back = await click(bot, views.BACK, buttons(details)[views.BACK])

    assert "Build details · support-bot" in message_text(details)
    assert "*Build SID*" in message_text(details)
    assert "Builds of support-bot" in message_text(back)
    assert_valid_message(details)


async def test_share_posts_in_channel_attributed(bot: Bot) -> None:
    first = await lookup(bot, "support-bot")

    shared = await click(bot, views.SHARE, buttons(first)[views.SHARE])

    assert shared["response_type"] == "in_channel"
    assert shared["replace_original"] is False
    assert "Shared by <@U0ENGINEER>" in message_text(shared)
    assert buttons(shared) == {}
    assert_valid_message(shared)


async def test_old_message_button_still_works(bot: Bot) -> None:
    """A value made hours ago needs no server-side state: it decodes and gets a reply."""
    value = CODEC.encode(ViewState("support-bot", "failed", 0))

    reply = await click(bot, views.OLDER, value)

    assert "Builds of support-bot · failed" in message_text(reply)


async def test_forged_value_rejected_without_api(bot: Bot, sandbox: SandboxServer) -> None:
    forged = json.dumps({"a": "support-bot", "o": 10}, separators=(",", ":")) + "|deadbeefdeadbeef"
    body, headers = signed_action(views.OLDER, forged, secret=SIGNING_SECRET, response_url=bot.slack.response_url())

    response = await bot.http.post("/slack/events", content=body, headers=headers)
    await bot.runtime.tasks.drain(timeout=5)

    assert response.status_code == 200
    assert list_requests(sandbox) == 0
    assert bot.slack.responses.empty()
