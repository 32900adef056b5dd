"""Fault injection: the reply a user gets, and how many attempts reach the API, when Twilio misbehaves.

Every test runs the command core (or the whole app) against a scripted
Autopilot stand-in on 127.0.0.1 and counts the requests the stand-in received.
Retry waits go through a recording sleep, so no test waits for real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from bot import autopilot
from bot.autopilot import AutopilotClient
from bot.cache import LookupCache
from bot.config import load_settings
from bot.core import BuildsCore, is_outage
from bot.render import Reply
from bot.retry import RetryPolicy
from tests.autopilot_server import AutopilotStandIn, CannedResponse, twilio_error
from tests.harness import RecordingSleep

ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "fault-injection-token"
ASSISTANT = "support-bot"
BUILDS_PATH = f"/v1/Assistants/{ASSISTANT}/ModelBuilds"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class FakeTimer:
    """A monotonic clock for the cache that tests move forward by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(number: int, *, status: str = "failed", hours_ago: float = 1.0) -> dict[str, Any]:
    created = (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "sid": f"UG{number:032x}",
        "unique_name": f"build-{number}",
        "status": status,
        "assistant_sid": "UA" + "a" * 32,
        "date_created": created,
        "date_updated": created,
        "build_duration": 60 + number,
        "error_code": 23001 if status == "failed" else None,
    }


def page(items: list[dict[str, Any]], next_page_url: str | None = None) -> CannedResponse:
    return CannedResponse(json={"model_builds": items, "meta": {"key": "model_builds", "next_page_url": next_page_url}})


def text_of(reply: Reply) -> str:
    return json.dumps(reply.to_dict(), ensure_ascii=False)


@pytest.fixture
async def api() -> AsyncIterator[AutopilotStandIn]:
    async with AutopilotStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@asynccontextmanager
async def core_against(
    api: AutopilotStandIn,
    sleep: RecordingSleep,
    *,
    cache: LookupCache[Any] | None = None,
    page_size: int = autopilot.DEFAULT_PAGE_SIZE,
    **environment: str,
) -> AsyncIterator[BuildsCore]:
    settings = load_settings(
        {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "AUTOPILOT_BASE_URL": api.base_url, **environment}
    )
    retry = RetryPolicy(attempts=settings.retry_attempts, deadline=settings.lookup_timeout, sleep=sleep)
    async with AutopilotClient(settings, retry=retry, page_size=page_size) as client:
        yield BuildsCore(settings=settings, client=client, cache=cache, clock=lambda: NOW)


async def test_rate_limit_honours_retry_after_seconds(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    api.fail_next(BUILDS_PATH, CannedResponse(status=429, json={"code": 20429, "message": "Too Many Requests", "status": 429}, headers={"Retry-After": "7"}))
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    assert reply.ok
    assert "build-1" in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 2
    assert sleep.waits == [7.0]


async def test_rate_limit_honours_retry_after_date(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    api.fail_next(BUILDS_PATH, CannedResponse(status=429, body="slow down", headers={"Retry-After": later}))
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    assert reply.ok
    assert len(api.requests_to(BUILDS_PATH)) == 2
    assert len(sleep.waits) == 1
    assert 3.0 <= sleep.waits[0] <= 5.0


async def test_rate_limit_without_retry_after_backs_off(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    api.fail_next(BUILDS_PATH, CannedResponse(status=429, body=""), CannedResponse(status=429, body=""))
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    assert reply.ok
    assert len(api.requests_to(BUILDS_PATH)) == 3
    assert len(sleep.waits) == 2
    assert 0.0 <= sleep.waits[0] <= autopilot_base_delay(1)
    assert 0.0 <= sleep.waits[1] <= autopilot_base_delay(2)


def autopilot_base_delay(retry: int) -> float:
    policy = RetryPolicy()
    return min(policy.max_delay, policy.base_delay * 2 ** (retry - 1))


async def test_rate_limit_past_deadline_not_waited(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    """A Retry-After longer than the lookup may take is reported at once, with the wait in the reply."""
    api.respond(BUILDS_PATH, CannedResponse(status=429, body="", headers={"Retry-After": "120"}))

    async with core_against(api, sleep, BUILDS_LOOKUP_TIMEOUT="30") as core:
        reply = await core.reply(ASSISTANT)

    assert not reply.ok
    assert "rate limiting requests. Try again in 120 s." in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 1
    assert sleep.waits == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_error_retried_then_served(api: AutopilotStandIn, sleep: RecordingSleep, status: int) -> None:
    api.fail_next(BUILDS_PATH, CannedResponse(status=status, body="upstream trouble"))
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep, page_size=50) as core:
        reply = await core.reply(ASSISTANT)

    assert reply.ok
    assert len(api.requests_to(BUILDS_PATH)) == 2
    assert len(sleep.waits) == 1


async def test_server_error_persistent_explained(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    api.respond(BUILDS_PATH, twilio_error(503, 20503, "Service Unavailable"))

    async with core_against(api, sleep, page_size=50, BUILDS_RETRY_ATTEMPTS="4") as core:
        reply = await core.reply(ASSISTANT)

    text = text_of(reply)
    assert not reply.ok
    assert "the Autopilot API failed with HTTP 503. Try again in a minute." in text
    assert "https://www.twilio.com/docs/errors/20503" in text
    assert "Traceback" not in text
    assert len(api.requests_to(BUILDS_PATH)) == 4
    assert len(sleep.waits) == 3


async def test_server_error_on_large_page_retried_smaller(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    api.fail_next(BUILDS_PATH, CannedResponse(status=500, body="page too large"), query="PageSize=1000")
    api.respond(BUILDS_PATH, page([build(1), build(2)]))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    queries = [request.query for request in api.requests_to(BUILDS_PATH)]
    assert reply.ok
    assert queries == ["PageSize=1000", "PageSize=50"]
    assert sleep.waits == []


async def test_failed_page_resumes_not_restarts(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    second_page = f"{api.base_url}{BUILDS_PATH}?PageSize=1&Page=1&PageToken=PA%2B1"
    api.fail_next(BUILDS_PATH, CannedResponse(status=503, body=""), query="PageToken=PA%2B1")
    api.respond(BUILDS_PATH, _two_pages(second_page))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    queries = [request.query for request in api.requests_to(BUILDS_PATH)]
    assert reply.ok
    assert "Showing 2 of 2 builds." in text_of(reply)
    assert queries == ["PageSize=1000", "PageSize=1&Page=1&PageToken=PA%2B1", "PageSize=1&Page=1&PageToken=PA%2B1"]


def _two_pages(second_page: str) -> Any:
    async def handler(request: Any) -> Any:
        if "PageToken" in request.raw_path:
            return page([build(2, hours_ago=2)]).to_response()
        return page([build(1)], next_page_url=second_page).to_response()

    return handler


async def test_timeout_retried_within_deadline(
    api: AutopilotStandIn, sleep: RecordingSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autopilot, "REQUEST_DEADLINE", 0.2)
    api.hold(asyncio.Event(), BUILDS_PATH)

    async with core_against(api, sleep, BUILDS_RETRY_ATTEMPTS="3") as core:
        reply = await core.reply(ASSISTANT)

    assert not reply.ok
    assert "the Autopilot API timed out. Try again in a minute." in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 3


@pytest.mark.parametrize(
    "response",
    [
        CannedResponse(status=200, body="{not json", content_type="application/json"),
        CannedResponse(status=200, body="<html><body>Maintenance</body></html>", content_type="text/html"),
        CannedResponse(status=200, body=b""),
        CannedResponse(status=200, json={"model_builds": "none"}),
    ],
    ids=["malformed-json", "html", "empty", "wrong-shape"],
)
async def test_invalid_response_not_retried(api: AutopilotStandIn, sleep: RecordingSleep, response: CannedResponse) -> None:
    api.respond(BUILDS_PATH, response)

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    assert not reply.ok
    assert "sent a response that is not the documented JSON" in text_of(reply)
    assert "No builds yet" not in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 1


async def test_wrong_credentials_not_retried(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    api.respond(BUILDS_PATH, twilio_error(401, 20003, "Authenticate"))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    text = text_of(reply)
    assert "rejected the bot's credentials" in text
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in text
    assert len(api.requests_to(BUILDS_PATH)) == 1
    assert sleep.waits == []


async def test_repeating_next_url_marks_incomplete(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    looping = f"{api.base_url}{BUILDS_PATH}?PageSize=1&Page=1&PageToken=loop"
    api.respond(BUILDS_PATH, page([build(1)], next_page_url=looping))

    async with core_against(api, sleep) as core:
        reply = await core.reply(ASSISTANT)

    assert reply.ok
    assert "Paging stopped early" in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 2


async def test_cross_origin_next_url_not_followed(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    async with AutopilotStandIn() as elsewhere:
        api.respond(BUILDS_PATH, page([build(1)], next_page_url=f"{elsewhere.base_url}{BUILDS_PATH}?Page=1"))

        async with core_against(api, sleep) as core:
            reply = await core.reply(ASSISTANT)

    assert "Paging stopped early" in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 1
    assert elsewhere.requests == []


async def test_redirect_reported_not_followed(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    async with AutopilotStandIn() as elsewhere:
        api.respond(BUILDS_PATH, CannedResponse(status=302, body="", headers={"Location": f"{elsewhere.base_url}{BUILDS_PATH}"}))

        async with core_against(api, sleep) as core:
            reply = await core.reply(ASSISTANT)

    assert "not the documented JSON" in text_of(reply)
    assert len(api.requests_to(BUILDS_PATH)) == 1
    assert elsewhere.requests == []


async def test_latency_below_deadline_waits_for_answer(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    release = asyncio.Event()
    api.hold(release, BUILDS_PATH)
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep) as core:
        pending = asyncio.ensure_future(core.reply(ASSISTANT))
        await api.wait_for_in_flight(1)
        assert not pending.done()
        release.set()
        reply = await pending

    assert reply.ok
    assert len(api.requests_to(BUILDS_PATH)) == 1


async def test_outage_serves_cached_lookup_as_stale(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    """During a full outage a lookup made before it is served from cache, marked; another explains the outage."""
    timer = FakeTimer()
    cache: LookupCache[Any] = LookupCache(ttl=30, stale_max=3600, stale_on=is_outage, timer=timer, now=lambda: NOW)
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep, cache=cache, BUILDS_RETRY_ATTEMPTS="2") as core:
        before = await core.reply(ASSISTANT)
        timer.now += 60
        api.respond(BUILDS_PATH, CannedResponse(status=503, body="down"))
        api.respond("/v1/Assistants/billing-assistant/ModelBuilds", CannedResponse(status=503, body="down"))

        during = await core.reply(ASSISTANT)
        never_cached = await core.reply("billing-assistant")

    stale_text = text_of(during)
    assert before.ok
    assert "Twilio API unavailable (HTTP 503): showing data as of <!date^1796385600^" in stale_text
    assert "build-1" in stale_text
    assert during.text.startswith("⚠️ Twilio API unavailable, data as of 2026-12-04 12:00 UTC.")
    assert "Could not read the builds of billing-assistant: the Autopilot API failed with HTTP 503" in text_of(never_cached)
    # One request before the outage. During it: one at PageSize=1000, then two attempts at PageSize=50.
    assert len(api.requests_to(BUILDS_PATH)) == 1 + 3


async def test_stale_data_expires_after_stale_max(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    timer = FakeTimer()
    cache: LookupCache[Any] = LookupCache(ttl=30, stale_max=3600, stale_on=is_outage, timer=timer, now=lambda: NOW)
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep, cache=cache, BUILDS_RETRY_ATTEMPTS="1") as core:
        await core.reply(ASSISTANT)
        timer.now += 3601
        api.respond(BUILDS_PATH, CannedResponse(status=503, body="down"))
        reply = await core.reply(ASSISTANT)

    assert not reply.ok
    assert "build-1" not in text_of(reply)
    assert "failed with HTTP 503" in text_of(reply)


async def test_not_found_never_served_stale(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    timer = FakeTimer()
    cache: LookupCache[Any] = LookupCache(ttl=30, stale_max=3600, stale_on=is_outage, timer=timer, now=lambda: NOW)
    api.respond(BUILDS_PATH, page([build(1)]))

    async with core_against(api, sleep, cache=cache) as core:
        await core.reply(ASSISTANT)
        timer.now += 60
        api.respond(BUILDS_PATH, twilio_error(404, 20404, "not found"))
        reply = await core.reply(ASSISTANT)

    assert "No assistant support-bot found" in text_of(reply)


async def test_concurrent_lookups_beyond_pool_no_timeout(api: AutopilotStandIn, sleep: RecordingSleep) -> None:
    """More concurrent lookups of different assistants than connections all finish, never above the bound."""
    count = autopilot.MAX_CONNECTIONS + 10
    release = asyncio.Event()
    api.hold(release)
    for index in range(count):
        api.respond(f"/v1/Assistants/assistant-{index}/ModelBuilds", page([build(index)]))

    async with core_against(api, sleep) as core:
        replies = asyncio.gather(*(core.reply(f"assistant-{index}") for index in range(count)))
        await api.wait_for_in_flight(autopilot.MAX_CONNECTIONS)
        release.set()
        results = await replies

    assert all(reply.ok for reply in results)
    assert api.max_in_flight == autopilot.MAX_CONNECTIONS
    assert len(api.requests) == count
    assert sleep.waits == []
