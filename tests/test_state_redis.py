"""Tests for the Redis state store, on a private redis-server that this module starts on 127.0.0.1.

Each test gets its own key prefix on the module's server, so tests never see
each other's keys. Tests that stop the server or need a password start a
server of their own. Every test that needs a server skips when `redis-server`
is not on PATH.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from bot.errors import ConfigError, StateUnavailableError
from bot.state.base import ALL_ASSISTANTS, Alert, AssistantState, Digest, Mute, OutboxItem, SeenBuild, StateStore, Subscription, Thread
from bot.state.redis import DEFAULT_KEY_PREFIX, SENT_RETENTION_MS, RedisAddress, RedisStateStore, parse_redis_url, redact_url
from bot.state.sqlite import SqliteStateStore, store_from_url
from tests.redis_server import RedisServer, require_redis_server

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
CHANNEL = "C0123"
OTHER_CHANNEL = "C0456"
ASSISTANT = "support"
PASSWORD = "s3cret-redis-password"
# Upper bound on polls while a lease or claim of a few milliseconds expires. Each poll is one
# loopback round trip, so the loop normally ends after a few dozen.
MAX_EXPIRY_POLLS = 10_000
TINY_TTL = 0.005


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), binary=require_redis_server())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server for one test, which the test may stop and start again."""
    server = RedisServer(tmp_path, binary=require_redis_server())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def store(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisStateStore]:
    opened = RedisStateStore(redis_server.url, key_prefix=prefix)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    """A plain client on the module's server, to read what the store wrote."""
    client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def open_store(url: str, prefix: str) -> RedisStateStore:
    store = RedisStateStore(url, key_prefix=prefix)
    await store.open()
    return store


async def reopen(store: RedisStateStore, url: str) -> RedisStateStore:
    """Close the store and return a new, open store on the same server and prefix."""
    await store.close()
    return await open_store(url, store.key_prefix)


async def snapshot(client: redis_asyncio.Redis, prefix: str) -> dict[str, object]:
    """Return every key under `prefix` with its value, to compare what a call wrote."""
    values: dict[str, object] = {}
    async for key in client.scan_iter(match=f"{prefix}*"):
        key_type = await client.type(key)
        if key_type == "hash":
            values[key] = await client.hgetall(key)
        elif key_type == "zset":
            values[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            values[key] = await client.get(key)
    return values


def build(sid: str, status: str = "failed") -> dict[str, object]:
    return {
        "sid": sid,
        "unique_name": f"v-{sid}",
        "status": status,
        "error_code": 20001 if status == "failed" else None,
        "build_duration": 42,
        "date_created": "2024-05-01T11:58:00Z",
    }


def alert(sid: str, *, channel_id: str = CHANNEL, assistant: str = ASSISTANT) -> Alert:
    return Alert(channel_id=channel_id, assistant=assistant, kind="failure", build=build(sid))


def seen(sid: str, *, assistant: str = ASSISTANT, date_created: datetime | None = T0, status: str | None = "failed") -> SeenBuild:
    return SeenBuild(assistant=assistant, build_sid=sid, status=status, date_created=date_created)


def thread(*, channel_id: str = CHANNEL, parent_ts: str = "1714564800.000100", failures: int = 1) -> Thread:
    return Thread(
        channel_id=channel_id,
        assistant=ASSISTANT,
        parent_ts=parent_ts,
        state="red",
        failures=failures,
        opened_at=T0,
        first_build="UG1",
    )


def digest(*, channel_id: str = CHANNEL, time_of_day: str = "09:00", timezone: str = "Europe/Berlin", last_sent_on: date | None = None) -> Digest:
    return Digest(channel_id, time_of_day, timezone, "U01", T0, last_sent_on)


async def enqueue(store: StateStore, alerts: list[Alert], *, at: datetime = T0) -> list[int]:
    """Record a poll of ASSISTANT that only enqueues `alerts`."""
    return await store.record_poll(AssistantState(assistant=ASSISTANT, baseline_at=T0), [], alerts, at=at)


# Interface


def test_store_implements_every_protocol_method() -> None:
    names = [name for name in vars(StateStore) if callable(getattr(StateStore, name)) and not name.startswith("_")]

    assert "record_poll" in names
    for name in names:
        protocol_method = getattr(StateStore, name)
        redis_method = getattr(RedisStateStore, name)
        assert inspect.signature(redis_method) == inspect.signature(protocol_method), name
        assert inspect.iscoroutinefunction(redis_method) == inspect.iscoroutinefunction(protocol_method), name


# Subscriptions


async def test_subscribe_round_trips_every_field(store: RedisStateStore) -> None:
    subscription = Subscription(
        channel_id=CHANNEL,
        assistant=ASSISTANT,
        level="all",
        created_by="U01",
        created_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=CEST),
        last_alert_at=T0,
        last_error="channel_not_found",
        last_error_at=T0 + timedelta(minutes=5),
    )

    await store.subscribe(subscription)
    [stored] = await store.subscriptions(CHANNEL)

    assert stored == subscription
    assert stored.created_at.tzinfo is UTC
    assert stored.created_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def test_subscribe_existing_replaces_record(store: RedisStateStore) -> None:
    first = Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0, last_error="boom", last_error_at=T0)
    second = Subscription(CHANNEL, ASSISTANT, "all", "U02", T0 + timedelta(hours=1))

    await store.subscribe(first)
    await store.subscribe(second)

    assert await store.subscriptions() == [second]


async def test_unsubscribe_returns_whether_deleted(store: RedisStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0))

    assert await store.unsubscribe(CHANNEL, ASSISTANT) is True
    assert await store.unsubscribe(CHANNEL, ASSISTANT) is False
    assert await store.subscriptions() == []


async def test_subscriptions_sorted_by_creation_time(store: RedisStateStore) -> None:
    earliest = Subscription(OTHER_CHANNEL, ASSISTANT, "failures", "U01", T0 - timedelta(microseconds=1))
    tie_all = Subscription(CHANNEL, ALL_ASSISTANTS, "all", "U01", T0)
    tie_billing = Subscription(CHANNEL, "billing", "failures", "U01", T0)
    tie_other_channel = Subscription(OTHER_CHANNEL, "billing", "failures", "U01", T0)
    later = Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0 + timedelta(seconds=1))

    for subscription in (later, tie_other_channel, tie_billing, tie_all, earliest):
        await store.subscribe(subscription)

    assert await store.subscriptions() == [earliest, tie_all, tie_billing, tie_other_channel, later]
    assert await store.subscriptions(CHANNEL) == [tie_all, tie_billing, later]
    assert await store.subscriptions("C-none") == []


async def test_subscription_ids_with_separators_stay_apart(store: RedisStateStore) -> None:
    """Channel and assistant ids that contain ':' or quotes must not collide in the hash field."""
    first = Subscription("C1:a", "b", "all", "U01", T0)
    second = Subscription("C1", "a:b", "all", "U01", T0)
    quoted = Subscription('C1","a', "b", "all", "U01", T0)

    for subscription in (first, second, quoted):
        await store.subscribe(subscription)

    assert len(await store.subscriptions()) == 3
    assert await store.subscriptions("C1") == [second]
    assert await store.unsubscribe("C1", "a:b") is True
    assert await store.subscriptions("C1:a") == [first]


async def test_record_delivery_success_clears_error(store: RedisStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0, last_error="boom", last_error_at=T0))
    delivered_at = T0 + timedelta(minutes=3)

    await store.record_delivery(CHANNEL, ASSISTANT, at=delivered_at, error=None)
    [stored] = await store.subscriptions()

    assert stored.last_alert_at == delivered_at
    assert stored.last_error is None
    assert stored.last_error_at is None
    assert stored.created_by == "U01"


async def test_record_delivery_error_keeps_last_alert(store: RedisStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0, last_alert_at=T0))
    failed_at = T0 + timedelta(minutes=3)

    await store.record_delivery(CHANNEL, ASSISTANT, at=failed_at, error="not_in_channel")
    [stored] = await store.subscriptions()

    assert stored.last_alert_at == T0
    assert stored.last_error == "not_in_channel"
    assert stored.last_error_at == failed_at


async def test_record_delivery_keeps_non_ascii_error(store: RedisStateStore) -> None:
    """The Lua script decodes and encodes the record again, which must keep every character."""
    subscription = Subscription(CHANNEL, ASSISTANT, "failures", "U/ünï", T0)
    error = 'rejected: "ünïcödé" 🚀 path/to\\thing'
    await store.subscribe(subscription)

    await store.record_delivery(CHANNEL, ASSISTANT, at=T0, error=error)

    assert await store.subscriptions() == [dataclasses.replace(subscription, last_error=error, last_error_at=T0)]


async def test_record_delivery_missing_subscription_ignored(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    await store.record_delivery(CHANNEL, ASSISTANT, at=T0, error=None)
    await store.record_delivery(CHANNEL, ASSISTANT, at=T0, error="boom")

    assert await store.subscriptions() == []
    assert await snapshot(raw, store.key_prefix) == {}


# Poller state


async def test_record_poll_round_trips_state_and_seen(store: RedisStateStore) -> None:
    state = AssistantState(assistant=ASSISTANT, baseline_at=T0.astimezone(CEST), red=True, assistant_sid="UA" + "0" * 32)
    builds = [
        SeenBuild(ASSISTANT, "UG1", "failed", T0, stuck_alerted=True),
        SeenBuild(ASSISTANT, "UG2", None, None),
        seen("UG3", assistant="billing"),
    ]

    ids = await store.record_poll(state, builds, [], at=T0)

    assert ids == []
    assert await store.assistant_state(ASSISTANT) == state
    assert await store.seen_builds(ASSISTANT) == {"UG1": builds[0], "UG2": builds[1]}
    assert await store.seen_builds("billing") == {"UG3": builds[2]}


async def test_record_poll_existing_records_are_updated(store: RedisStateStore) -> None:
    await store.record_poll(AssistantState(ASSISTANT, T0, red=True), [seen("UG1", status="building")], [], at=T0)
    state = AssistantState(ASSISTANT, T0, red=False, assistant_sid="UA1")
    completed = SeenBuild(ASSISTANT, "UG1", "completed", T0, stuck_alerted=True)

    await store.record_poll(state, [completed, seen("UG2")], [], at=T0 + timedelta(minutes=1))

    assert await store.assistant_state(ASSISTANT) == state
    assert await store.seen_builds(ASSISTANT) == {"UG1": completed, "UG2": seen("UG2")}


async def test_assistant_state_unknown_returns_none(store: RedisStateStore) -> None:
    assert await store.assistant_state("never-polled") is None
    assert await store.seen_builds("never-polled") == {}


async def test_record_poll_enqueues_alerts_in_order(store: RedisStateStore) -> None:
    alerts = [alert("UG1"), Alert(OTHER_CHANNEL, ASSISTANT, "recovery", build("UG2", "completed"))]
    at = T0 + timedelta(minutes=7)

    ids = await enqueue(store, alerts, at=at)
    later_ids = await enqueue(store, [alert("UG3")], at=at)

    assert ids == sorted(ids)
    assert len(set(ids)) == 2
    assert later_ids[0] > ids[-1]
    assert await store.pending_alerts() == [
        OutboxItem(id=ids[0], alert=alerts[0], created_at=at, attempts=0, last_error=None, next_attempt_at=at),
        OutboxItem(id=ids[1], alert=alerts[1], created_at=at, attempts=0, last_error=None, next_attempt_at=at),
        OutboxItem(id=later_ids[0], alert=alert("UG3"), created_at=at, attempts=0, last_error=None, next_attempt_at=at),
    ]


def null_channel(alerts: list[Alert]) -> list[Alert]:
    return [alerts[0], dataclasses.replace(alerts[1], channel_id=None)]


def unserializable_build(alerts: list[Alert]) -> list[Alert]:
    return [alerts[0], dataclasses.replace(alerts[1], build={"date_created": T0})]


@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        (null_channel, TypeError, r"Alert\.channel_id is None"),
        (unserializable_build, TypeError, "not JSON serializable"),
    ],
)
async def test_record_poll_failed_alert_stores_nothing(
    store: RedisStateStore,
    raw: redis_asyncio.Redis,
    spoil: Callable[[list[Alert]], list[Alert]],
    error: type[Exception],
    message: str,
) -> None:
    before = AssistantState(ASSISTANT, T0, red=False)
    await store.record_poll(before, [seen("UG1", status="building")], [], at=T0)
    written = await snapshot(raw, store.key_prefix)
    red = AssistantState(ASSISTANT, T0, red=True, assistant_sid="UA1")

    with pytest.raises(error, match=message):
        await store.record_poll(red, [seen("UG1"), seen("UG2")], spoil([alert("UG1"), alert("UG2")]), at=T0)

    assert await snapshot(raw, store.key_prefix) == written
    assert await store.assistant_state(ASSISTANT) == before
    assert await store.seen_builds(ASSISTANT) == {"UG1": seen("UG1", status="building")}
    assert await store.pending_alerts() == []
    assert await enqueue(store, [alert("UG3")]) == [1]


async def test_record_poll_naive_seen_date_stores_nothing(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    naive = seen("UG2", date_created=datetime(2024, 5, 1, 12, 0))

    with pytest.raises(ValueError, match="naive datetime '2024-05-01T12:00:00'"):
        await store.record_poll(AssistantState(ASSISTANT, T0), [seen("UG1"), naive], [alert("UG1")], at=T0)

    assert await snapshot(raw, store.key_prefix) == {}


async def test_prune_seen_deletes_older_keeps_undated(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    builds = [
        seen("old", date_created=T0 - timedelta(days=30)),
        seen("edge", date_created=T0),
        seen("new", date_created=T0 + timedelta(days=1)),
        seen("undated", date_created=None),
        seen("other-old", assistant="billing", date_created=T0 - timedelta(microseconds=1)),
    ]
    await store.record_poll(AssistantState(ASSISTANT, T0), builds, [], at=T0)

    deleted = await store.prune_seen(T0)

    assert deleted == 2
    assert sorted(await store.seen_builds(ASSISTANT)) == ["edge", "new", "undated"]
    assert await store.seen_builds("billing") == {}
    assert await raw.zrange(f"{store.key_prefix}seen-dates", 0, -1) == ['["support","edge"]', '["support","new"]']
    assert await store.prune_seen(T0) == 0


async def test_prune_seen_keeps_build_whose_date_was_cleared(store: RedisStateStore) -> None:
    await store.record_poll(AssistantState(ASSISTANT, T0), [seen("UG1", date_created=T0 - timedelta(days=30))], [], at=T0)
    await store.record_poll(AssistantState(ASSISTANT, T0), [seen("UG1", date_created=None)], [], at=T0)

    assert await store.prune_seen(T0) == 0
    assert await store.seen_builds(ASSISTANT) == {"UG1": seen("UG1", date_created=None)}


# Threads


async def test_save_thread_round_trips_and_replaces(store: RedisStateStore) -> None:
    first = thread()
    second = dataclasses.replace(thread(failures=3), state="green", first_build=None, opened_at=T0.astimezone(CEST))

    assert await store.thread(CHANNEL, ASSISTANT) is None
    await store.save_thread(first)
    assert await store.thread(CHANNEL, ASSISTANT) == first

    await store.save_thread(second)
    assert await store.thread(CHANNEL, ASSISTANT) == second
    assert await store.thread(OTHER_CHANNEL, ASSISTANT) is None


# Mutes


async def test_active_mute_expires_at_until(store: RedisStateStore) -> None:
    mute = Mute(CHANNEL, ASSISTANT, muted_by="U01", until=T0 + timedelta(hours=1))
    await store.mute(mute)

    assert await store.active_mute(CHANNEL, ASSISTANT, now=T0) == mute
    assert await store.active_mute(CHANNEL, ASSISTANT, now=mute.until - timedelta(microseconds=1)) == mute
    assert await store.active_mute(CHANNEL, ASSISTANT, now=mute.until) is None
    assert await store.active_mute(CHANNEL, ASSISTANT, now=mute.until + timedelta(days=1)) is None
    assert await store.active_mute(OTHER_CHANNEL, ASSISTANT, now=T0) is None


async def test_cached_mute_matches_active_mute(store: RedisStateStore) -> None:
    await store.mute(Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1)))
    await store.mute(Mute(CHANNEL, ASSISTANT, "U02", until=(T0 + timedelta(hours=2)).astimezone(CEST)))
    await store.mute(Mute(OTHER_CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(minutes=5)))

    for now in (T0, T0 + timedelta(minutes=5), T0 + timedelta(hours=1, minutes=30), T0 + timedelta(hours=2)):
        for channel_id in (CHANNEL, OTHER_CHANNEL, "C-none"):
            expected = await store.active_mute(channel_id, ASSISTANT, now=now)
            assert store.cached_mute(channel_id, ASSISTANT, now=now) == expected, (channel_id, now)

    cached = store.cached_mute(CHANNEL, ASSISTANT, now=T0)
    assert cached is not None
    assert cached.muted_by == "U02"
    assert cached.until.tzinfo is UTC


async def test_unmute_returns_whether_deleted(store: RedisStateStore) -> None:
    await store.mute(Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1)))

    assert await store.unmute(CHANNEL, ASSISTANT) is True
    assert await store.unmute(CHANNEL, ASSISTANT) is False
    assert await store.active_mute(CHANNEL, ASSISTANT, now=T0) is None
    assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) is None


async def test_cached_mute_reloaded_after_reopen(store: RedisStateStore, redis_server: RedisServer) -> None:
    kept_mute = Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))
    await store.mute(kept_mute)
    await store.mute(Mute(OTHER_CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1)))
    await store.unmute(OTHER_CHANNEL, ASSISTANT)

    again = await reopen(store, redis_server.url)
    try:
        assert again.cached_mute(CHANNEL, ASSISTANT, now=T0) == kept_mute
        assert again.cached_mute(CHANNEL, ASSISTANT, now=T0) == await again.active_mute(CHANNEL, ASSISTANT, now=T0)
        assert again.cached_mute(OTHER_CHANNEL, ASSISTANT, now=T0) is None
        assert again.cached_mute(CHANNEL, ASSISTANT, now=kept_mute.until) is None
    finally:
        await again.close()


async def test_cached_mute_of_other_replica_after_refresh(store: RedisStateStore, redis_server: RedisServer) -> None:
    """A mute written by another store reaches the copy at the next active_mute or mutes call."""
    replica = await open_store(redis_server.url, store.key_prefix)
    mute = Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))
    other_mute = Mute(OTHER_CHANNEL, ASSISTANT, "U02", until=T0 + timedelta(hours=1))
    try:
        await replica.mute(mute)
        await replica.mute(other_mute)
        assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) is None

        assert await store.active_mute(CHANNEL, ASSISTANT, now=T0) == mute
        assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) == mute
        assert store.cached_mute(OTHER_CHANNEL, ASSISTANT, now=T0) is None

        assert await store.mutes(now=T0) == [mute, other_mute]
        assert store.cached_mute(OTHER_CHANNEL, ASSISTANT, now=T0) == other_mute

        await replica.unmute(CHANNEL, ASSISTANT)
        assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) == mute
        assert await store.active_mute(CHANNEL, ASSISTANT, now=T0) is None
        assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) is None

        await replica.unmute(OTHER_CHANNEL, ASSISTANT)
        assert await store.mutes(now=T0) == []
        assert store.cached_mute(OTHER_CHANNEL, ASSISTANT, now=T0) is None
    finally:
        await replica.close()


async def test_mutes_lists_active_only_in_order(store: RedisStateStore) -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    await store.mute(Mute("C2", "support-bot", "U1", now + timedelta(hours=1)))
    await store.mute(Mute("C1", "zeta", "U2", now + timedelta(minutes=5)))
    await store.mute(Mute("C1", "billing", "U2", now + timedelta(minutes=5)))
    await store.mute(Mute("C1", "expired", "U1", now - timedelta(minutes=1)))

    active = await store.mutes(now=now)

    assert [(mute.channel_id, mute.assistant) for mute in active] == [("C1", "billing"), ("C1", "zeta"), ("C2", "support-bot")]
    assert store.cached_mute("C1", "expired", now=now) is None


# Outbox


async def test_due_alerts_ordered_by_id_up_to_limit(store: RedisStateStore) -> None:
    first_ids = await enqueue(store, [alert("UG1"), alert("UG2")], at=T0 + timedelta(minutes=1))
    later_ids = await enqueue(store, [alert("UG3")], at=T0)

    due = await store.due_alerts(now=T0 + timedelta(minutes=1))
    limited = await store.due_alerts(now=T0 + timedelta(minutes=1), limit=2)

    assert [item.id for item in due] == first_ids + later_ids
    assert [item.id for item in limited] == first_ids
    assert [item.id for item in await store.due_alerts(now=T0)] == later_ids


async def test_due_alerts_future_attempt_not_due(store: RedisStateStore) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])
    retry_at = T0 + timedelta(seconds=30)

    await store.mark_failed(item_id, error="ratelimited", next_attempt_at=retry_at)

    assert await store.due_alerts(now=retry_at - timedelta(microseconds=1)) == []
    assert [item.id for item in await store.due_alerts(now=retry_at)] == [item_id]


async def test_due_alerts_limit_below_one_raises(store: RedisStateStore) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        await store.due_alerts(now=T0, limit=0)


async def test_mark_failed_counts_attempts(store: RedisStateStore) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])

    await store.mark_failed(item_id, error="timeout", next_attempt_at=T0 + timedelta(seconds=10))
    await store.mark_failed(item_id, error="channel_not_found", next_attempt_at=T0 + timedelta(seconds=40))
    [item] = await store.pending_alerts()

    assert item.attempts == 2
    assert item.last_error == "channel_not_found"
    assert item.next_attempt_at == T0 + timedelta(seconds=40)
    assert item.created_at == T0


async def test_mark_failed_unknown_id_raises(store: RedisStateStore) -> None:
    with pytest.raises(LookupError, match="outbox item 99 not found"):
        await store.mark_failed(99, error="timeout", next_attempt_at=T0)


async def test_mark_failed_after_sent_keeps_item_sent(store: RedisStateStore) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])
    await store.mark_sent(item_id, at=T0)

    await store.mark_failed(item_id, error="late failure", next_attempt_at=T0)

    assert await store.pending_alerts() == []
    assert await store.due_alerts(now=T0 + timedelta(days=1)) == []


async def test_pending_alerts_filters_channel_in_id_order(store: RedisStateStore) -> None:
    ids = await enqueue(store, [alert("UG1"), alert("UG2", channel_id=OTHER_CHANNEL), alert("UG3")])
    await store.mark_failed(ids[0], error="timeout", next_attempt_at=T0 + timedelta(days=1))

    assert [item.id for item in await store.pending_alerts()] == ids
    assert [item.id for item in await store.pending_alerts(CHANNEL)] == [ids[0], ids[2]]
    assert [item.id for item in await store.pending_alerts(OTHER_CHANNEL)] == [ids[1]]


async def test_mark_sent_saves_thread_and_clears_item(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    ids = await enqueue(store, [alert("UG1"), alert("UG2")])

    await store.mark_sent(ids[0], at=T0, thread=thread())
    await store.mark_sent(ids[1], at=T0)

    assert await store.pending_alerts() == []
    assert await store.due_alerts(now=T0 + timedelta(days=1)) == []
    assert await store.thread(CHANNEL, ASSISTANT) == thread()
    ttl_ms = await raw.pttl(f"{store.key_prefix}outbox:{ids[0]}")
    assert 0 < ttl_ms <= SENT_RETENTION_MS


def naive_opened_at(item: Thread) -> Thread:
    return dataclasses.replace(item, opened_at=datetime(2024, 5, 1, 12, 0))


def null_parent_ts(item: Thread) -> Thread:
    return dataclasses.replace(item, parent_ts=None)


def unserializable_first_build(item: Thread) -> Thread:
    return dataclasses.replace(item, first_build=object())


@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        (naive_opened_at, ValueError, "naive datetime"),
        (null_parent_ts, TypeError, r"Thread\.parent_ts is None"),
        (unserializable_first_build, TypeError, "not JSON serializable"),
    ],
)
async def test_mark_sent_failed_thread_keeps_item_unsent(
    store: RedisStateStore,
    raw: redis_asyncio.Redis,
    spoil: Callable[[Thread], Thread],
    error: type[Exception],
    message: str,
) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])
    await store.save_thread(thread(failures=1))
    written = await snapshot(raw, store.key_prefix)

    with pytest.raises(error, match=message):
        await store.mark_sent(item_id, at=T0, thread=spoil(thread(failures=2)))

    assert await snapshot(raw, store.key_prefix) == written
    assert [item.id for item in await store.pending_alerts()] == [item_id]
    assert [item.id for item in await store.due_alerts(now=T0)] == [item_id]
    assert await store.thread(CHANNEL, ASSISTANT) == thread(failures=1)
    await store.mark_sent(item_id, at=T0, thread=thread(failures=2))
    assert await store.pending_alerts() == []
    assert await store.thread(CHANNEL, ASSISTANT) == thread(failures=2)


async def test_mark_sent_unknown_id_saves_no_thread(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    with pytest.raises(LookupError, match="outbox item 99 not found"):
        await store.mark_sent(99, at=T0, thread=thread())

    assert await store.thread(CHANNEL, ASSISTANT) is None
    assert await snapshot(raw, store.key_prefix) == {}


# Digests


async def test_digest_round_trips_in_channel_order(store: RedisStateStore) -> None:
    later = digest(channel_id=OTHER_CHANNEL, time_of_day="17:30", timezone="UTC", last_sent_on=date(2024, 4, 30))
    earlier = dataclasses.replace(digest(), created_at=T0.astimezone(CEST))

    assert await store.digests() == []
    await store.set_digest(later)
    await store.set_digest(earlier)

    assert await store.digests() == [digest(), later]


async def test_set_digest_replace_keeps_last_sent_on(store: RedisStateStore) -> None:
    await store.set_digest(digest())
    await store.mark_digest_sent(CHANNEL, date(2024, 5, 1))
    replacement = Digest(CHANNEL, "17:30", "America/New_York", "U02", T0 + timedelta(hours=1), last_sent_on=None)

    await store.set_digest(replacement)

    assert await store.digests() == [dataclasses.replace(replacement, last_sent_on=date(2024, 5, 1))]


async def test_set_digest_replace_ignores_given_last_sent_on(store: RedisStateStore) -> None:
    await store.set_digest(digest())

    await store.set_digest(digest(time_of_day="10:00", last_sent_on=date(2024, 5, 1)))

    assert await store.digests() == [digest(time_of_day="10:00")]


async def test_remove_digest_returns_whether_deleted(store: RedisStateStore) -> None:
    await store.set_digest(digest())
    await store.set_digest(digest(channel_id=OTHER_CHANNEL))

    assert await store.remove_digest(CHANNEL) is True
    assert await store.remove_digest(CHANNEL) is False
    assert [item.channel_id for item in await store.digests()] == [OTHER_CHANNEL]


async def test_mark_digest_sent_sets_day_of_one_channel(store: RedisStateStore) -> None:
    await store.set_digest(digest())
    await store.set_digest(digest(channel_id=OTHER_CHANNEL))

    await store.mark_digest_sent(CHANNEL, date(2024, 5, 1))
    await store.mark_digest_sent(CHANNEL, date(2024, 5, 2))

    assert await store.digests() == [digest(last_sent_on=date(2024, 5, 2)), digest(channel_id=OTHER_CHANNEL)]


async def test_mark_digest_sent_without_digest_does_nothing(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    await store.mark_digest_sent(CHANNEL, date(2024, 5, 1))

    assert await store.digests() == []
    assert await snapshot(raw, store.key_prefix) == {}


async def test_digest_survives_reopen(store: RedisStateStore, redis_server: RedisServer) -> None:
    await store.set_digest(digest(last_sent_on=date(2024, 5, 1)))

    again = await reopen(store, redis_server.url)
    try:
        assert await again.digests() == [digest(last_sent_on=date(2024, 5, 1))]
    finally:
        await again.close()


# Leases and claims


async def test_acquire_lease_one_holder_at_a_time(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    assert await store.acquire_lease("poller", "replica-a", ttl=30) is True
    assert await store.acquire_lease("poller", "replica-b", ttl=30) is False
    assert await store.acquire_lease("digest", "replica-b", ttl=30) is True

    assert await raw.get(f"{store.key_prefix}lease:poller") == "replica-a"
    assert 0 < await raw.pttl(f"{store.key_prefix}lease:poller") <= 30_000


async def test_acquire_lease_holder_renews_ttl(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    key = f"{store.key_prefix}lease:poller"
    assert await store.acquire_lease("poller", "replica-a", ttl=10) is True
    assert await raw.pttl(key) <= 10_000

    assert await store.acquire_lease("poller", "replica-a", ttl=60) is True

    assert 10_000 < await raw.pttl(key) <= 60_000
    assert await store.acquire_lease("poller", "replica-b", ttl=60) is False


async def test_acquire_lease_after_expiry_other_holder_takes_it(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    assert await store.acquire_lease("poller", "replica-a", ttl=TINY_TTL) is True
    assert 0 < await raw.pttl(f"{store.key_prefix}lease:poller") <= 5

    polls = 0
    while not await store.acquire_lease("poller", "replica-b", ttl=30):
        polls += 1
        assert polls < MAX_EXPIRY_POLLS, "the lease did not expire"

    assert await raw.get(f"{store.key_prefix}lease:poller") == "replica-b"
    assert await store.acquire_lease("poller", "replica-a", ttl=30) is False


async def test_release_lease_only_by_holder(store: RedisStateStore) -> None:
    await store.acquire_lease("poller", "replica-a", ttl=30)

    await store.release_lease("poller", "replica-b")
    assert await store.acquire_lease("poller", "replica-b", ttl=30) is False

    await store.release_lease("poller", "replica-a")
    assert await store.acquire_lease("poller", "replica-b", ttl=30) is True
    await store.release_lease("never-taken", "replica-a")


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
async def test_acquire_lease_invalid_ttl_raises(store: RedisStateStore, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        await store.acquire_lease("poller", "replica-a", ttl=ttl)
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        await store.claim_alert(1, "replica-a", ttl=ttl)


async def test_claim_alert_second_claimer_refused(store: RedisStateStore, raw: redis_asyncio.Redis) -> None:
    assert await store.claim_alert(7, "replica-a", ttl=30) is True
    assert await store.claim_alert(7, "replica-b", ttl=30) is False
    assert await store.claim_alert(7, "replica-a", ttl=30) is True
    assert await store.claim_alert(8, "replica-b", ttl=30) is True

    assert await raw.get(f"{store.key_prefix}claim:7") == "replica-a"
    assert 0 < await raw.pttl(f"{store.key_prefix}claim:7") <= 30_000


async def test_claim_alert_after_ttl_other_can_claim(store: RedisStateStore) -> None:
    assert await store.claim_alert(7, "replica-a", ttl=TINY_TTL) is True

    polls = 0
    while not await store.claim_alert(7, "replica-b", ttl=30):
        polls += 1
        assert polls < MAX_EXPIRY_POLLS, "the claim did not expire"

    assert await store.claim_alert(7, "replica-a", ttl=30) is False


# Durability, replicas and lifecycle


async def test_reopen_keeps_every_record(store: RedisStateStore, redis_server: RedisServer) -> None:
    subscription = Subscription(CHANNEL, ALL_ASSISTANTS, "all", "U01", T0)
    state = AssistantState(ASSISTANT, T0, red=True, assistant_sid="UA1")
    mute = Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))
    await store.subscribe(subscription)
    sent_id, unsent_id = await store.record_poll(state, [seen("UG1"), seen("UG2", date_created=None)], [alert("UG1"), alert("UG2")], at=T0)
    await store.mark_sent(sent_id, at=T0, thread=thread())
    await store.mute(mute)

    again = await reopen(store, redis_server.url)
    try:
        assert await again.subscriptions() == [subscription]
        assert await again.assistant_state(ASSISTANT) == state
        assert await again.seen_builds(ASSISTANT) == {"UG1": seen("UG1"), "UG2": seen("UG2", date_created=None)}
        assert await again.thread(CHANNEL, ASSISTANT) == thread()
        assert await again.active_mute(CHANNEL, ASSISTANT, now=T0) == mute
        assert [item.id for item in await again.due_alerts(now=T0)] == [unsent_id]
        assert [item.id for item in await again.pending_alerts()] == [unsent_id]
        assert await enqueue(again, [alert("UG3")]) == [unsent_id + 1]
    finally:
        await again.close()


async def test_key_prefixes_keep_stores_apart(store: RedisStateStore, redis_server: RedisServer, raw: redis_asyncio.Redis) -> None:
    other = await open_store(redis_server.url, f"other-{store.key_prefix}")
    try:
        await store.subscribe(Subscription(CHANNEL, ASSISTANT, "all", "U01", T0))
        assert await enqueue(store, [alert("UG1")]) == [1]
        assert await store.acquire_lease("poller", "replica-a", ttl=30) is True

        assert await other.subscriptions() == []
        assert await other.pending_alerts() == []
        assert await enqueue(other, [alert("UG1")]) == [1]
        assert await other.acquire_lease("poller", "replica-b", ttl=30) is True
    finally:
        await other.close()

    async for key in raw.scan_iter(match=f"*{store.key_prefix}*"):
        assert key.startswith((store.key_prefix, f"other-{store.key_prefix}")), key


async def test_record_poll_concurrent_replicas_get_distinct_ids(store: RedisStateStore, redis_server: RedisServer) -> None:
    replica = await open_store(redis_server.url, store.key_prefix)
    assistants = [f"assistant-{index:02}" for index in range(40)]

    async def poll(target: RedisStateStore, assistant: str) -> list[int]:
        state = AssistantState(assistant, T0, red=True)
        builds = [seen(f"{assistant}-UG1", assistant=assistant), seen(f"{assistant}-UG2", assistant=assistant)]
        return await target.record_poll(state, builds, [alert(f"{assistant}-UG1", assistant=assistant)], at=T0)

    try:
        polls = [poll(store if index % 2 else replica, assistant) for index, assistant in enumerate(assistants)]
        results = await asyncio.gather(*polls)
    finally:
        await replica.close()
    ids_by_assistant = dict(zip(assistants, results, strict=True))
    pending = await store.pending_alerts()

    assert sorted(item_id for ids in results for item_id in ids) == [item.id for item in pending]
    assert len(pending) == 40
    for item in pending:
        assert ids_by_assistant[item.alert.assistant] == [item.id]
    for assistant in assistants:
        assert await store.assistant_state(assistant) == AssistantState(assistant, T0, red=True)
        assert len(await store.seen_builds(assistant)) == 2


async def test_open_twice_raises(store: RedisStateStore) -> None:
    with pytest.raises(RuntimeError, match="is already open"):
        await store.open()


async def test_naive_datetime_raises(store: RedisStateStore) -> None:
    naive = datetime(2024, 5, 1, 12, 0)

    with pytest.raises(ValueError, match="naive datetime '2024-05-01T12:00:00'"):
        await store.subscribe(Subscription(CHANNEL, ASSISTANT, "all", "U01", naive))
    with pytest.raises(ValueError, match="naive datetime"):
        await store.due_alerts(now=naive)
    with pytest.raises(ValueError, match="naive datetime"):
        await store.active_mute(CHANNEL, ASSISTANT, now=naive)
    with pytest.raises(ValueError, match="naive datetime"):
        store.cached_mute(CHANNEL, ASSISTANT, now=naive)


async def test_closed_store_raises_runtime_error(store: RedisStateStore, redis_server: RedisServer) -> None:
    await store.close()
    closed = re.escape(f"Redis state store 127.0.0.1:{redis_server.port}/0 is closed: call open() before using it")

    with pytest.raises(RuntimeError, match=closed):
        await store.subscriptions()
    with pytest.raises(RuntimeError, match=closed):
        await enqueue(store, [alert("UG1")])
    with pytest.raises(RuntimeError, match=closed):
        store.cached_mute(CHANNEL, ASSISTANT, now=T0)
    with pytest.raises(StateUnavailableError, match=closed):
        await store.ping()
    await store.close()


async def test_close_then_open_works_again(store: RedisStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "all", "U01", T0))
    await store.close()

    await store.open()

    assert len(await store.subscriptions()) == 1


async def test_open_and_close_logged_without_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path, password=PASSWORD, binary=require_redis_server())
    server.start()
    caplog.set_level(logging.INFO, logger="bot.state.redis")
    try:
        store = await open_store(server.url, DEFAULT_KEY_PREFIX)
        await store.ping()
        await store.close()
    finally:
        server.stop()

    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["state.redis_opened", "state.redis_closed"]
    for record in caplog.records:
        assert record.levelno == logging.INFO
        assert vars(record)["address"] == f"127.0.0.1:{server.port}/0"
        assert PASSWORD not in repr(vars(record))
    assert PASSWORD not in repr(store)


async def test_open_wrong_password_raises_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password=PASSWORD, binary=require_redis_server())
    server.start()
    store = RedisStateStore(f"redis://:wrong-password@127.0.0.1:{server.port}/0")
    try:
        with pytest.raises(StateUnavailableError, match=f"Redis state server at 127.0.0.1:{server.port}/0 is unavailable") as raised:
            await store.open()
    finally:
        server.stop()

    assert "wrong-password" not in str(raised.value)
    with pytest.raises(RuntimeError, match="is closed"):
        await store.subscriptions()


async def test_open_while_server_down_raises_unavailable(own_server: RedisServer) -> None:
    own_server.stop()
    store = RedisStateStore(own_server.url)

    with pytest.raises(StateUnavailableError, match=f"Redis state server at 127.0.0.1:{own_server.port}/0 is unavailable"):
        await store.open()

    own_server.start()
    await store.open()
    await store.ping()
    await store.close()


REMOTE_CALLS: dict[str, Callable[[RedisStateStore], Awaitable[object]]] = {
    "ping": lambda store: store.ping(),
    "acquire_lease": lambda store: store.acquire_lease("poller", "replica-a", ttl=30),
    "release_lease": lambda store: store.release_lease("poller", "replica-a"),
    "claim_alert": lambda store: store.claim_alert(1, "replica-a", ttl=30),
    "subscribe": lambda store: store.subscribe(Subscription(CHANNEL, ASSISTANT, "all", "U01", T0)),
    "unsubscribe": lambda store: store.unsubscribe(CHANNEL, ASSISTANT),
    "subscriptions": lambda store: store.subscriptions(),
    "record_delivery": lambda store: store.record_delivery(CHANNEL, ASSISTANT, at=T0, error=None),
    "assistant_state": lambda store: store.assistant_state(ASSISTANT),
    "seen_builds": lambda store: store.seen_builds(ASSISTANT),
    "record_poll": lambda store: enqueue(store, [alert("UG1")]),
    "prune_seen": lambda store: store.prune_seen(T0),
    "thread": lambda store: store.thread(CHANNEL, ASSISTANT),
    "save_thread": lambda store: store.save_thread(thread()),
    "mute": lambda store: store.mute(Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))),
    "unmute": lambda store: store.unmute(CHANNEL, ASSISTANT),
    "active_mute": lambda store: store.active_mute(CHANNEL, ASSISTANT, now=T0),
    "mutes": lambda store: store.mutes(now=T0),
    "set_digest": lambda store: store.set_digest(digest()),
    "remove_digest": lambda store: store.remove_digest(CHANNEL),
    "digests": lambda store: store.digests(),
    "mark_digest_sent": lambda store: store.mark_digest_sent(CHANNEL, date(2024, 5, 1)),
    "due_alerts": lambda store: store.due_alerts(now=T0),
    "pending_alerts": lambda store: store.pending_alerts(),
    "mark_sent": lambda store: store.mark_sent(1, at=T0),
    "mark_failed": lambda store: store.mark_failed(1, error="timeout", next_attempt_at=T0),
}


def test_outage_calls_cover_every_remote_method() -> None:
    coroutine_methods = {name for name in vars(StateStore) if inspect.iscoroutinefunction(getattr(StateStore, name))}

    assert set(REMOTE_CALLS) == coroutine_methods - {"open", "close"}


@pytest.mark.parametrize("method", sorted(REMOTE_CALLS))
async def test_outage_call_raises_unavailable(own_server: RedisServer, method: str) -> None:
    store = await open_store(own_server.url, DEFAULT_KEY_PREFIX)
    try:
        own_server.stop()

        with pytest.raises(StateUnavailableError, match=f"^the Redis state server at 127.0.0.1:{own_server.port}/0 is unavailable"):
            await REMOTE_CALLS[method](store)
    finally:
        await store.close()


async def test_outage_same_store_works_after_restart(own_server: RedisServer) -> None:
    store = await open_store(own_server.url, DEFAULT_KEY_PREFIX)
    mute = Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))
    await store.mute(mute)
    await store.acquire_lease("poller", "replica-a", ttl=30)
    try:
        own_server.stop()
        with pytest.raises(StateUnavailableError, match="is unavailable"):
            await store.subscriptions()
        assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) == mute

        # The new server starts empty: it has no persistence, and the scripts must be loaded again.
        own_server.start()
        await store.ping()
        await store.subscribe(Subscription(CHANNEL, ASSISTANT, "all", "U01", T0))
        assert [subscription.channel_id for subscription in await store.subscriptions()] == [CHANNEL]
        assert await enqueue(store, [alert("UG1")]) == [1]
        assert await store.acquire_lease("poller", "replica-b", ttl=30) is True
        await store.mark_sent(1, at=T0, thread=thread())
        assert await store.thread(CHANNEL, ASSISTANT) == thread()
        assert await store.mutes(now=T0) == []
        assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) is None
    finally:
        await store.close()


async def test_hung_server_times_out_as_unavailable(own_server: RedisServer) -> None:
    store = RedisStateStore(own_server.url, socket_timeout=0.2)
    await store.open()
    try:
        own_server.pause()
        with pytest.raises(StateUnavailableError, match=r"is unavailable \(TimeoutError: Timeout reading from"):
            await store.subscriptions()

        own_server.resume()
        assert await store.subscriptions() == []
    finally:
        own_server.resume()
        await store.close()


async def test_outage_error_hides_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password=PASSWORD, binary=require_redis_server())
    server.start()
    try:
        store = await open_store(server.url, DEFAULT_KEY_PREFIX)
    finally:
        server.stop()

    with pytest.raises(StateUnavailableError, match=f"Redis state server at 127.0.0.1:{server.port}/0 is unavailable") as raised:
        await store.subscriptions()
    await store.close()

    assert PASSWORD not in str(raised.value)


# URLs and store_from_url


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://localhost:6379/0", RedisAddress("localhost", 6379, 0, tls=False)),
        ("redis://redis.internal", RedisAddress("redis.internal", 6379, 0, tls=False)),
        ("redis://redis.internal/", RedisAddress("redis.internal", 6379, 0, tls=False)),
        ("redis://:pass@10.0.0.5:6380/3", RedisAddress("10.0.0.5", 6380, 3, tls=False)),
        ("rediss://bot:pass@cache.example.com:6380/15", RedisAddress("cache.example.com", 6380, 15, tls=True)),
        ("redis://[::1]:6379/1", RedisAddress("::1", 6379, 1, tls=False)),
    ],
)
def test_store_from_url_redis_forms(url: str, address: RedisAddress) -> None:
    store = store_from_url(url)

    assert isinstance(store, RedisStateStore)
    assert store.address == address
    assert store.key_prefix == DEFAULT_KEY_PREFIX
    assert "pass" not in repr(store)


def test_redis_address_shows_host_port_and_db() -> None:
    assert str(parse_redis_url("redis://:pass@localhost:6380/2")) == "localhost:6380/2"
    assert str(parse_redis_url("redis://[::1]/0")) == "[::1]:6379/0"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://", "names no host"),
        ("redis://:hunter2@/0", "names no host"),
        ("redis://:hunter2@localhost:99999/0", "has an invalid port"),
        ("redis://localhost:port/0", "has an invalid port"),
        ("redis://:hunter2@localhost:6379/zero", "has an invalid database index 'zero'"),
        ("redis://localhost:6379/0/1", "has an invalid database index '0/1'"),
        ("redis://localhost:6379/-1", "has an invalid database index '-1'"),
        ("redis://:hunter2@localhost:6379/0?ssl_cert_reqs=none", "has a query or fragment, which is not supported"),
        ("rediss://localhost:6379/0#primary", "has a query or fragment, which is not supported"),
    ],
)
def test_store_from_url_invalid_redis_raises_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^BUILDS_STATE_URL: {re.escape(repr(redact_url(url)))} {re.escape(message)}") as raised:
        store_from_url(url)

    assert raised.value.variable == "BUILDS_STATE_URL"
    assert "hunter2" not in str(raised.value)
    assert "redis://host:6379/0" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://bot@localhost/builds", "is not supported yet"),
        ("unix:///run/redis.sock", "is not supported yet"),
        ("sqlite://state.db", "is not a valid SQLite URL"),
    ],
)
def test_store_from_url_other_scheme_lists_both_stores(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        store_from_url(url)

    assert "sqlite:////absolute/path.db" in str(raised.value)
    if not url.startswith("sqlite:"):
        assert "redis://host:6379/0" in str(raised.value)


def test_store_from_url_sqlite_forms_unchanged() -> None:
    store = store_from_url("sqlite:///:memory:")

    assert isinstance(store, SqliteStateStore)
    assert store.path == Path(":memory:")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:hunter2@localhost:6379/0", "redis://***@localhost:6379/0"),
        ("rediss://bot:hunter2@host/1", "rediss://***@host/1"),
        ("redis://hunter2@host", "redis://***@host"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:p@ss@host/0", "redis://***@host/0"),
    ],
)
def test_redact_url_hides_credentials(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_constructor_empty_prefix_raises() -> None:
    with pytest.raises(ValueError, match="key_prefix is empty"):
        RedisStateStore("redis://localhost:6379/0", key_prefix="")
