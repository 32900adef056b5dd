"""Tests for the shared lookup cache on Redis, with two caches standing for two replicas of the bot.

Each test that needs Redis starts a private redis-server on 127.0.0.1 and skips
when `redis-server` is not on PATH.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from bot.autopilot import Listing
from bot.models import Assistant, ModelBuild
from bot.shared_cache import DEFAULT_KEY_PREFIX, DEFAULT_SOCKET_TIMEOUT, SharedCache, decode_value, encode_value
from tests.redis_server import RedisServer, require_redis_server

KEY = ("builds", "support-bot")
TTL = 30.0
LOCK_TTL = 10.0
WAIT = 5.0
# A wait far beyond CONDITION_TIMEOUT, for a test that fails if the caller waits it out.
LONG_WAIT = 60.0
SHORT_TTL = 0.2
SHORT_WAIT = 0.2
CALLERS = 20
PASSWORD = "s3cret-cache-password"
CEST = timezone(timedelta(hours=2))
# Upper bound in seconds on polling for a condition that is normally true within milliseconds.
CONDITION_TIMEOUT = 5.0
CONDITION_POLL = 0.01

BUILD = ModelBuild(
    sid="UG0123456789abcdef0123456789abcdef",
    unique_name="release-42",
    status="completed",
    assistant_sid="UA0123456789abcdef0123456789abcdef",
    date_created=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    date_updated=datetime(2024, 5, 1, 12, 3, tzinfo=UTC),
    build_duration=180,
    error_code=None,
    url="https://autopilot.twilio.com/v1/Assistants/UA0123456789abcdef0123456789abcdef/ModelBuilds/UG0123456789abcdef0123456789abcdef",
)
EMPTY_BUILD = ModelBuild(
    sid=None,
    unique_name=None,
    status=None,
    assistant_sid=None,
    date_created=None,
    date_updated=None,
    build_duration=None,
    error_code=None,
)
FAILED_BUILD = ModelBuild(
    sid="UGfedcba9876543210fedcba9876543210",
    unique_name=None,
    status="failed",
    assistant_sid="UA0123456789abcdef0123456789abcdef",
    date_created=datetime(2024, 4, 30, 8, 0, tzinfo=UTC),
    date_updated=None,
    build_duration=None,
    error_code=23001,
)
ASSISTANT = Assistant(sid="UA0123456789abcdef0123456789abcdef", unique_name="support-bot", friendly_name="Support", date_created=datetime(2024, 1, 2, 9, 30, tzinfo=CEST))
UNNAMED_ASSISTANT = Assistant(sid="UAfedcba9876543210fedcba9876543210", unique_name=None, friendly_name=None)


class CountingFetch:
    """A fetch function that counts its calls, and can wait on an event and then raise."""

    def __init__(self, value: object = BUILD, *, release: asyncio.Event | None = None, error: Exception | None = None) -> None:
        self.value = value
        self.release = release
        self.error = error
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def wait_until(condition: Callable[[], Awaitable[bool]], *, timeout: float = CONDITION_TIMEOUT) -> None:
    """Poll `condition` until it returns True, and fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition {condition.__name__} was still false after {timeout} s")
        await asyncio.sleep(CONDITION_POLL)


async def set_calls(raw: redis_asyncio.Redis) -> int:
    """Return how many SET commands the server has run, counting those that scripts ran.

    Every `fetch_once` on a missing key tries SET NX on the lock once, so this
    count rises by one for each caller that has passed the lock.
    """
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server for one test, which the test may stop, start, pause and resume."""
    server = RedisServer(tmp_path, binary=require_redis_server())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    """A plain client for inspecting the private server."""
    client = redis_asyncio.Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def replicas(server: RedisServer) -> AsyncIterator[tuple[SharedCache, SharedCache]]:
    """Two open caches on the private server, as two replicas of the bot have."""
    first = SharedCache(server.url)
    second = SharedCache(server.url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


# Serialisation


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(BUILD, id="build"),
        pytest.param(EMPTY_BUILD, id="build-all-none"),
        pytest.param(Listing([BUILD, EMPTY_BUILD, FAILED_BUILD], complete=False), id="builds-incomplete"),
        pytest.param(Listing([ASSISTANT, UNNAMED_ASSISTANT]), id="assistants"),
        pytest.param(Listing([]), id="empty-listing"),
    ],
)
def test_encode_value_round_trips(value: object) -> None:
    decoded = decode_value(encode_value(value))

    assert decoded == value
    assert type(decoded) is type(value)


def test_decode_value_keeps_utc_offsets() -> None:
    decoded = decode_value(encode_value(Listing([ASSISTANT])))

    assert isinstance(decoded, Listing)
    date_created = decoded.items[0].date_created
    assert date_created == ASSISTANT.date_created
    assert date_created.utcoffset() == timedelta(hours=2)


def test_decode_value_returns_model_types() -> None:
    decoded = decode_value(encode_value(Listing([BUILD])))

    assert isinstance(decoded, Listing)
    assert isinstance(decoded.items[0], ModelBuild)
    assert decoded.items[0].date_created == BUILD.date_created
    assert decoded.items[0].date_created.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("text", id="str"),
        pytest.param({"sid": "UG1"}, id="dict"),
        pytest.param(ASSISTANT, id="bare-assistant"),
        pytest.param(Listing(["UG1"]), id="listing-of-str"),
        pytest.param(Listing([BUILD, ASSISTANT]), id="mixed-listing"),
        pytest.param(Listing((BUILD,)), id="listing-of-tuple"),
        pytest.param(dataclasses.replace(EMPTY_BUILD, build_duration=object()), id="field-of-other-type"),
        pytest.param(None, id="none"),
    ],
)
def test_encode_value_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError, match="cannot cache"):
        encode_value(value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[]", id="array"),
        pytest.param('{"type": "assistant", "fields": {}}', id="unknown-type"),
        pytest.param('{"type": "model_build", "fields": {"sid": "UG1", "colour": "red"}}', id="unknown-field"),
        pytest.param('{"type": "listing", "complete": true, "item_type": null, "items": [{"sid": "UG1"}]}', id="items-without-type"),
        pytest.param('{"type": "listing", "complete": "yes", "item_type": null, "items": []}', id="complete-not-bool"),
    ],
)
def test_decode_value_rejects_invalid_text(text: str) -> None:
    with pytest.raises(ValueError):
        decode_value(text)


# Arguments and lifecycle


def test_shared_cache_rejects_invalid_url() -> None:
    with pytest.raises(ValueError, match="is not a Redis URL"):
        SharedCache("http://127.0.0.1:6379/0")


async def test_closed_cache_raises_runtime_error() -> None:
    cache = SharedCache("redis://127.0.0.1:1/0")

    with pytest.raises(RuntimeError, match="is closed: call open"):
        await cache.get(KEY)
    with pytest.raises(RuntimeError, match="is closed: call open"):
        await cache.fetch_once(KEY, CountingFetch(), ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)


async def test_fetch_once_rejects_invalid_arguments(replicas: tuple[SharedCache, SharedCache]) -> None:
    cache, _ = replicas
    fetch = CountingFetch()

    with pytest.raises(TypeError, match="tuples of strings"):
        await cache.fetch_once(["builds", "support-bot"], fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        await cache.fetch_once(KEY, fetch, ttl=0, lock_ttl=LOCK_TTL, wait=WAIT)
    with pytest.raises(ValueError, match="lock_ttl must be a positive number"):
        await cache.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=-1, wait=WAIT)
    with pytest.raises(ValueError, match="wait must be"):
        await cache.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=-1)
    assert fetch.calls == 0


async def test_open_and_close_logged_without_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path, password=PASSWORD, binary=require_redis_server())
    server.start()
    caplog.set_level(logging.INFO, logger="bot.shared_cache")
    try:
        cache = SharedCache(server.url)
        await cache.open()
        stored = await cache.fetch_once(KEY, CountingFetch(), ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
        found = await cache.get(KEY)
        await cache.close()
    finally:
        server.stop()

    assert found == stored
    assert PASSWORD not in repr(cache)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["shared_cache.opened", "shared_cache.closed"]
    for record in caplog.records:
        assert record.url == f"redis://***@127.0.0.1:{server.port}/0"
        assert PASSWORD not in str(record.__dict__)


# Sharing between replicas


async def test_put_stores_value_for_other_replica(replicas: tuple[SharedCache, SharedCache], raw: redis_asyncio.Redis) -> None:
    first, second = replicas
    fetched_at = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)

    await first.put(KEY, Listing([BUILD]), fetched_at, TTL)
    found = await second.get(KEY)

    assert found == (Listing([BUILD]), fetched_at)
    keys = await raw.keys("*")
    assert len(keys) == 1
    assert keys[0].startswith(DEFAULT_KEY_PREFIX)
    assert 0 < await raw.pttl(keys[0]) <= TTL * 1000


async def test_get_missing_key_returns_none(replicas: tuple[SharedCache, SharedCache]) -> None:
    cache, _ = replicas

    assert await cache.get(KEY) is None


async def test_fetch_once_single_flight_across_replicas(replicas: tuple[SharedCache, SharedCache], raw: redis_asyncio.Redis) -> None:
    """Twenty callers spread over two replicas make one call of `fetch`, and all get its result."""
    release = asyncio.Event()
    fetch = CountingFetch(Listing([BUILD, FAILED_BUILD]), release=release)
    set_calls_before = await set_calls(raw)

    tasks = [
        asyncio.create_task(replicas[index % 2].fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT))
        for index in range(CALLERS)
    ]

    async def all_callers_passed_lock() -> bool:
        return await set_calls(raw) - set_calls_before >= CALLERS

    await wait_until(all_callers_passed_lock)
    assert fetch.calls == 1
    release.set()
    results = await asyncio.gather(*tasks)

    assert fetch.calls == 1
    assert all(value == Listing([BUILD, FAILED_BUILD]) for value, _ in results)
    assert len({fetched_at for _, fetched_at in results}) == 1
    assert await replicas[1].get(KEY) == results[0]


async def test_fetch_once_hit_skips_fetch(replicas: tuple[SharedCache, SharedCache]) -> None:
    first, second = replicas
    fetch = CountingFetch()

    stored = await first.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    found = await second.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)

    assert fetch.calls == 1
    assert found == stored


async def test_fetch_once_value_expires_after_ttl(replicas: tuple[SharedCache, SharedCache]) -> None:
    first, second = replicas
    fetch = CountingFetch()

    await first.fetch_once(KEY, fetch, ttl=SHORT_TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    assert await second.get(KEY) is not None

    async def expired() -> bool:
        return await second.get(KEY) is None

    await wait_until(expired)
    await second.fetch_once(KEY, fetch, ttl=SHORT_TTL, lock_ttl=LOCK_TTL, wait=WAIT)

    assert fetch.calls == 2


async def test_fetch_once_error_not_cached(replicas: tuple[SharedCache, SharedCache], raw: redis_asyncio.Redis) -> None:
    first, second = replicas
    error = RuntimeError("upstream failed")
    failing = CountingFetch(error=error)

    with pytest.raises(RuntimeError, match="upstream failed") as raised:
        await first.fetch_once(KEY, failing, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)

    assert raised.value is error
    assert await second.get(KEY) is None
    # The lock holder deleted its lock, so the next caller fetches at once instead of waiting.
    assert await raw.keys("*") == []

    working = CountingFetch()
    value, _ = await second.fetch_once(KEY, working, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    assert value == BUILD
    assert working.calls == 1


async def test_fetch_once_loser_fetches_after_winner_fails(replicas: tuple[SharedCache, SharedCache], raw: redis_asyncio.Redis) -> None:
    """A waiting replica fetches itself as soon as the lock holder's fetch fails, long before `wait` ends."""
    first, second = replicas
    release = asyncio.Event()
    failing = CountingFetch(release=release, error=RuntimeError("upstream failed"))
    own = CountingFetch(Listing([FAILED_BUILD]))

    winner = asyncio.create_task(first.fetch_once(KEY, failing, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT))
    await failing.started.wait()
    set_calls_before = await set_calls(raw)
    loser = asyncio.create_task(second.fetch_once(KEY, own, ttl=TTL, lock_ttl=LOCK_TTL, wait=LONG_WAIT))

    async def loser_passed_lock() -> bool:
        return await set_calls(raw) > set_calls_before

    await wait_until(loser_passed_lock)
    release.set()

    with pytest.raises(RuntimeError, match="upstream failed"):
        await winner
    value, _ = await asyncio.wait_for(loser, timeout=CONDITION_TIMEOUT)

    assert value == Listing([FAILED_BUILD])
    assert failing.calls == 1
    assert own.calls == 1


async def test_fetch_once_loser_fetches_after_wait(replicas: tuple[SharedCache, SharedCache]) -> None:
    """A waiting replica fetches itself after `wait` seconds when the lock holder hangs."""
    first, second = replicas
    hanging = CountingFetch(release=asyncio.Event())
    own = CountingFetch(Listing([FAILED_BUILD]))

    winner = asyncio.create_task(first.fetch_once(KEY, hanging, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT))
    await hanging.started.wait()
    try:
        waiting = second.fetch_once(KEY, own, ttl=TTL, lock_ttl=LOCK_TTL, wait=SHORT_WAIT)
        value, _ = await asyncio.wait_for(waiting, timeout=CONDITION_TIMEOUT)
        found = await first.get(KEY)
    finally:
        winner.cancel()

    assert value == Listing([FAILED_BUILD])
    assert own.calls == 1
    assert found is not None
    assert found[0] == Listing([FAILED_BUILD])
    with pytest.raises(asyncio.CancelledError):
        await winner


# Outages


def unavailable_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == "shared_cache.unavailable"]


async def test_fetch_once_with_server_stopped_calls_fetch(
    server: RedisServer, replicas: tuple[SharedCache, SharedCache], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = replicas
    caplog.set_level(logging.INFO, logger="bot.shared_cache")
    fetch = CountingFetch()
    server.stop()

    first_value, _ = await first.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    second_value, _ = await first.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    await first.put(KEY, BUILD, datetime.now(UTC), TTL)
    found = await first.get(KEY)

    assert first_value == BUILD
    assert second_value == BUILD
    assert fetch.calls == 2
    assert found is None
    assert len(unavailable_warnings(caplog)) == 1

    server.start()
    stored = await first.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    shared = await second.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)

    assert fetch.calls == 3
    assert shared == stored
    assert [record.getMessage() for record in caplog.records].count("shared_cache.recovered") == 1


async def test_second_outage_logs_again(server: RedisServer, replicas: tuple[SharedCache, SharedCache], caplog: pytest.LogCaptureFixture) -> None:
    cache, _ = replicas
    caplog.set_level(logging.INFO, logger="bot.shared_cache")

    for _ in range(2):
        server.stop()
        assert await cache.get(KEY) is None
        assert await cache.get(KEY) is None
        server.start()
        assert await cache.get(KEY) is None

    assert len(unavailable_warnings(caplog)) == 2


async def test_open_with_server_stopped_does_not_raise(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.shared_cache")
    server.stop()
    cache = SharedCache(server.url)
    fetch = CountingFetch()

    await cache.open()
    try:
        value, _ = await cache.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
    finally:
        await cache.close()

    assert value == BUILD
    assert fetch.calls == 1
    assert len(unavailable_warnings(caplog)) == 1


async def test_fetch_once_with_server_paused_calls_fetch(server: RedisServer) -> None:
    """A hung server costs one socket timeout, after which `fetch` runs directly."""
    socket_timeout = 0.2
    cache = SharedCache(server.url, socket_timeout=socket_timeout)
    await cache.open()
    fetch = CountingFetch()
    loop = asyncio.get_running_loop()

    server.pause()
    try:
        started_at = loop.time()
        value, _ = await cache.fetch_once(KEY, fetch, ttl=TTL, lock_ttl=LOCK_TTL, wait=WAIT)
        elapsed = loop.time() - started_at
    finally:
        server.resume()

    try:
        await cache.put(KEY, BUILD, datetime.now(UTC), TTL)
        found = await cache.get(KEY)
    finally:
        await cache.close()

    assert value == BUILD
    assert fetch.calls == 1
    assert elapsed < DEFAULT_SOCKET_TIMEOUT
    assert found is not None
    assert found[0] == BUILD
