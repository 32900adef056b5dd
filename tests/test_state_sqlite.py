"""Tests for the SQLite state store, each on its own database file in pytest's tmp_path."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.state.base import ALL_ASSISTANTS, Alert, AssistantState, Digest, Mute, OutboxItem, SeenBuild, StateStore, Subscription, Thread
from bot.state.sqlite import SCHEMA_VERSION, SqliteStateStore, store_from_url

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
CHANNEL = "C0123"
OTHER_CHANNEL = "C0456"
ASSISTANT = "support"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStateStore]:
    opened = SqliteStateStore(db_path)
    await opened.open()
    yield opened
    await opened.close()


async def reopen(store: SqliteStateStore) -> SqliteStateStore:
    """Close the store and return a new, open store on the same file."""
    await store.close()
    again = SqliteStateStore(store.path)
    await again.open()
    return again


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


async def enqueue(store: StateStore, alerts: list[Alert], *, at: datetime = T0) -> list[int]:
    """Record a poll of ASSISTANT that only enqueues `alerts`."""
    return await store.record_poll(AssistantState(assistant=ASSISTANT, baseline_at=T0), [], alerts, at=at)


def count_rows(path: Path, table: str) -> int:
    """Count the committed rows of a table through a second connection."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        connection.close()


# Subscriptions


async def test_subscribe_round_trips_every_field(store: SqliteStateStore) -> None:
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


async def test_subscribe_existing_replaces_row(store: SqliteStateStore) -> None:
    first = Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0, last_error="boom", last_error_at=T0)
    second = Subscription(CHANNEL, ASSISTANT, "all", "U02", T0 + timedelta(hours=1))

    await store.subscribe(first)
    await store.subscribe(second)

    assert await store.subscriptions() == [second]


async def test_unsubscribe_returns_whether_deleted(store: SqliteStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0))

    assert await store.unsubscribe(CHANNEL, ASSISTANT) is True
    assert await store.unsubscribe(CHANNEL, ASSISTANT) is False
    assert await store.subscriptions() == []


async def test_subscriptions_sorted_by_creation_time(store: SqliteStateStore) -> None:
    # Microseconds in the stored text must not break the time order.
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


async def test_record_delivery_success_clears_error(store: SqliteStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0, last_error="boom", last_error_at=T0))
    delivered_at = T0 + timedelta(minutes=3)

    await store.record_delivery(CHANNEL, ASSISTANT, at=delivered_at, error=None)
    [stored] = await store.subscriptions()

    assert stored.last_alert_at == delivered_at
    assert stored.last_error is None
    assert stored.last_error_at is None


async def test_record_delivery_error_keeps_last_alert(store: SqliteStateStore) -> None:
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0, last_alert_at=T0))
    failed_at = T0 + timedelta(minutes=3)

    await store.record_delivery(CHANNEL, ASSISTANT, at=failed_at, error="not_in_channel")
    [stored] = await store.subscriptions()

    assert stored.last_alert_at == T0
    assert stored.last_error == "not_in_channel"
    assert stored.last_error_at == failed_at


async def test_record_delivery_missing_subscription_ignored(store: SqliteStateStore) -> None:
    await store.record_delivery(CHANNEL, ASSISTANT, at=T0, error=None)
    await store.record_delivery(CHANNEL, ASSISTANT, at=T0, error="boom")

    assert await store.subscriptions() == []


# Poller state


async def test_record_poll_round_trips_state_and_seen(store: SqliteStateStore) -> None:
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


async def test_record_poll_existing_rows_are_updated(store: SqliteStateStore) -> None:
    await store.record_poll(AssistantState(ASSISTANT, T0, red=True), [seen("UG1", status="building")], [], at=T0)
    state = AssistantState(ASSISTANT, T0, red=False, assistant_sid="UA1")
    completed = SeenBuild(ASSISTANT, "UG1", "completed", T0, stuck_alerted=True)

    await store.record_poll(state, [completed, seen("UG2")], [], at=T0 + timedelta(minutes=1))

    assert await store.assistant_state(ASSISTANT) == state
    assert await store.seen_builds(ASSISTANT) == {"UG1": completed, "UG2": seen("UG2")}


async def test_assistant_state_unknown_returns_none(store: SqliteStateStore) -> None:
    assert await store.assistant_state("never-polled") is None
    assert await store.seen_builds("never-polled") == {}


async def test_record_poll_enqueues_alerts_in_order(store: SqliteStateStore) -> None:
    alerts = [alert("UG1"), Alert(OTHER_CHANNEL, ASSISTANT, "recovery", build("UG2", "completed"))]
    at = T0 + timedelta(minutes=7)

    ids = await enqueue(store, alerts, at=at)

    assert ids == sorted(ids)
    assert len(set(ids)) == 2
    assert await store.pending_alerts() == [
        OutboxItem(id=ids[0], alert=alerts[0], created_at=at, attempts=0, last_error=None, next_attempt_at=at),
        OutboxItem(id=ids[1], alert=alerts[1], created_at=at, attempts=0, last_error=None, next_attempt_at=at),
    ]


def null_channel(alerts: list[Alert]) -> list[Alert]:
    return [alerts[0], dataclasses.replace(alerts[1], channel_id=None)]


def unserializable_build(alerts: list[Alert]) -> list[Alert]:
    return [alerts[0], dataclasses.replace(alerts[1], build={"date_created": T0})]


@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        (null_channel, sqlite3.IntegrityError, "NOT NULL constraint failed: outbox.channel_id"),
        (unserializable_build, TypeError, "not JSON serializable"),
    ],
)
async def test_record_poll_failed_alert_stores_nothing(
    store: SqliteStateStore,
    db_path: Path,
    spoil: Callable[[list[Alert]], list[Alert]],
    error: type[Exception],
    message: str,
) -> None:
    before = AssistantState(ASSISTANT, T0, red=False)
    await store.record_poll(before, [seen("UG1", status="building")], [], at=T0)
    red = AssistantState(ASSISTANT, T0, red=True, assistant_sid="UA1")

    with pytest.raises(error, match=message):
        await store.record_poll(red, [seen("UG1"), seen("UG2")], spoil([alert("UG1"), alert("UG2")]), at=T0)

    assert await store.assistant_state(ASSISTANT) == before
    assert await store.seen_builds(ASSISTANT) == {"UG1": seen("UG1", status="building")}
    assert await store.pending_alerts() == []
    assert count_rows(db_path, "seen_builds") == 1
    assert count_rows(db_path, "outbox") == 0
    assert await enqueue(store, [alert("UG3")]) != []


async def test_prune_seen_deletes_older_keeps_undated(store: SqliteStateStore) -> None:
    builds = [
        seen("old", date_created=T0 - timedelta(days=30)),
        seen("edge", date_created=T0),
        seen("new", date_created=T0 + timedelta(days=1)),
        seen("undated", date_created=None),
    ]
    await store.record_poll(AssistantState(ASSISTANT, T0), builds, [], at=T0)

    deleted = await store.prune_seen(T0)

    assert deleted == 1
    assert sorted(await store.seen_builds(ASSISTANT)) == ["edge", "new", "undated"]
    assert await store.prune_seen(T0) == 0


# Threads


async def test_save_thread_round_trips_and_replaces(store: SqliteStateStore) -> None:
    first = thread()
    second = dataclasses.replace(thread(failures=3), state="green", first_build=None, opened_at=T0.astimezone(CEST))

    assert await store.thread(CHANNEL, ASSISTANT) is None
    await store.save_thread(first)
    assert await store.thread(CHANNEL, ASSISTANT) == first

    await store.save_thread(second)
    assert await store.thread(CHANNEL, ASSISTANT) == second
    assert await store.thread(OTHER_CHANNEL, ASSISTANT) is None


# Mutes


async def test_active_mute_expires_at_until(store: SqliteStateStore) -> None:
    mute = Mute(CHANNEL, ASSISTANT, muted_by="U01", until=T0 + timedelta(hours=1))
    await store.mute(mute)

    assert await store.active_mute(CHANNEL, ASSISTANT, now=T0) == mute
    assert await store.active_mute(CHANNEL, ASSISTANT, now=mute.until - timedelta(microseconds=1)) == mute
    assert await store.active_mute(CHANNEL, ASSISTANT, now=mute.until) is None
    assert await store.active_mute(CHANNEL, ASSISTANT, now=mute.until + timedelta(days=1)) is None
    assert await store.active_mute(OTHER_CHANNEL, ASSISTANT, now=T0) is None


async def test_cached_mute_matches_active_mute(store: SqliteStateStore) -> None:
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


async def test_unmute_returns_whether_deleted(store: SqliteStateStore) -> None:
    await store.mute(Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1)))

    assert await store.unmute(CHANNEL, ASSISTANT) is True
    assert await store.unmute(CHANNEL, ASSISTANT) is False
    assert await store.active_mute(CHANNEL, ASSISTANT, now=T0) is None
    assert store.cached_mute(CHANNEL, ASSISTANT, now=T0) is None


async def test_cached_mute_reloaded_after_reopen(store: SqliteStateStore) -> None:
    kept_mute = Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))
    await store.mute(kept_mute)
    await store.mute(Mute(OTHER_CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1)))
    await store.unmute(OTHER_CHANNEL, ASSISTANT)

    again = await reopen(store)
    try:
        assert again.cached_mute(CHANNEL, ASSISTANT, now=T0) == kept_mute
        assert again.cached_mute(CHANNEL, ASSISTANT, now=T0) == await again.active_mute(CHANNEL, ASSISTANT, now=T0)
        assert again.cached_mute(OTHER_CHANNEL, ASSISTANT, now=T0) is None
        assert again.cached_mute(CHANNEL, ASSISTANT, now=kept_mute.until) is None
    finally:
        await again.close()


# Outbox


async def test_due_alerts_ordered_by_id_up_to_limit(store: SqliteStateStore) -> None:
    first_ids = await enqueue(store, [alert("UG1"), alert("UG2")], at=T0 + timedelta(minutes=1))
    later_ids = await enqueue(store, [alert("UG3")], at=T0)

    due = await store.due_alerts(now=T0 + timedelta(minutes=1))
    limited = await store.due_alerts(now=T0 + timedelta(minutes=1), limit=2)

    assert [item.id for item in due] == first_ids + later_ids
    assert [item.id for item in limited] == first_ids
    assert [item.id for item in await store.due_alerts(now=T0)] == later_ids


async def test_due_alerts_future_attempt_not_due(store: SqliteStateStore) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])
    retry_at = T0 + timedelta(seconds=30)

    await store.mark_failed(item_id, error="ratelimited", next_attempt_at=retry_at)

    assert await store.due_alerts(now=retry_at - timedelta(microseconds=1)) == []
    assert [item.id for item in await store.due_alerts(now=retry_at)] == [item_id]


async def test_due_alerts_limit_below_one_raises(store: SqliteStateStore) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        await store.due_alerts(now=T0, limit=0)


async def test_mark_failed_counts_attempts(store: SqliteStateStore) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])

    await store.mark_failed(item_id, error="timeout", next_attempt_at=T0 + timedelta(seconds=10))
    await store.mark_failed(item_id, error="channel_not_found", next_attempt_at=T0 + timedelta(seconds=40))
    [item] = await store.pending_alerts()

    assert item.attempts == 2
    assert item.last_error == "channel_not_found"
    assert item.next_attempt_at == T0 + timedelta(seconds=40)
    assert item.created_at == T0


async def test_mark_failed_unknown_id_raises(store: SqliteStateStore) -> None:
    with pytest.raises(LookupError, match="outbox item 99 not found"):
        await store.mark_failed(99, error="timeout", next_attempt_at=T0)


async def test_pending_alerts_filters_channel_in_id_order(store: SqliteStateStore) -> None:
    ids = await enqueue(store, [alert("UG1"), alert("UG2", channel_id=OTHER_CHANNEL), alert("UG3")])
    await store.mark_failed(ids[0], error="timeout", next_attempt_at=T0 + timedelta(days=1))

    assert [item.id for item in await store.pending_alerts()] == ids
    assert [item.id for item in await store.pending_alerts(CHANNEL)] == [ids[0], ids[2]]
    assert [item.id for item in await store.pending_alerts(OTHER_CHANNEL)] == [ids[1]]


async def test_mark_sent_saves_thread_and_clears_item(store: SqliteStateStore) -> None:
    ids = await enqueue(store, [alert("UG1"), alert("UG2")])

    await store.mark_sent(ids[0], at=T0, thread=thread())
    await store.mark_sent(ids[1], at=T0)

    assert await store.pending_alerts() == []
    assert await store.due_alerts(now=T0 + timedelta(days=1)) == []
    assert await store.thread(CHANNEL, ASSISTANT) == thread()


async def test_mark_sent_failed_thread_keeps_item_unsent(store: SqliteStateStore, db_path: Path) -> None:
    [item_id] = await enqueue(store, [alert("UG1")])
    await store.save_thread(thread(failures=1))
    broken = dataclasses.replace(thread(failures=2), parent_ts=None)

    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed: threads.parent_ts"):
        await store.mark_sent(item_id, at=T0, thread=broken)

    assert [item.id for item in await store.pending_alerts()] == [item_id]
    assert [item.id for item in await store.due_alerts(now=T0)] == [item_id]
    assert await store.thread(CHANNEL, ASSISTANT) == thread(failures=1)
    assert count_rows(db_path, "outbox WHERE sent_at IS NOT NULL") == 0
    await store.mark_sent(item_id, at=T0, thread=thread(failures=2))
    assert await store.pending_alerts() == []


async def test_mark_sent_unknown_id_saves_no_thread(store: SqliteStateStore) -> None:
    with pytest.raises(LookupError, match="outbox item 99 not found"):
        await store.mark_sent(99, at=T0, thread=thread())

    assert await store.thread(CHANNEL, ASSISTANT) is None


# Digests


def digest(*, channel_id: str = CHANNEL, time_of_day: str = "09:00", timezone: str = "Europe/Berlin", last_sent_on: date | None = None) -> Digest:
    return Digest(channel_id, time_of_day, timezone, "U01", T0, last_sent_on)


async def test_digest_round_trips_in_channel_order(store: SqliteStateStore) -> None:
    later = digest(channel_id=OTHER_CHANNEL, time_of_day="17:30", timezone="UTC", last_sent_on=date(2024, 4, 30))
    earlier = dataclasses.replace(digest(), created_at=T0.astimezone(CEST))

    assert await store.digests() == []
    await store.set_digest(later)
    await store.set_digest(earlier)

    assert await store.digests() == [digest(), later]


async def test_set_digest_replace_keeps_last_sent_on(store: SqliteStateStore) -> None:
    await store.set_digest(digest())
    await store.mark_digest_sent(CHANNEL, date(2024, 5, 1))
    replacement = Digest(CHANNEL, "17:30", "America/New_York", "U02", T0 + timedelta(hours=1), last_sent_on=None)

    await store.set_digest(replacement)

    assert await store.digests() == [dataclasses.replace(replacement, last_sent_on=date(2024, 5, 1))]


async def test_remove_digest_returns_whether_deleted(store: SqliteStateStore) -> None:
    await store.set_digest(digest())
    await store.set_digest(digest(channel_id=OTHER_CHANNEL))

    assert await store.remove_digest(CHANNEL) is True
    assert await store.remove_digest(CHANNEL) is False
    assert [item.channel_id for item in await store.digests()] == [OTHER_CHANNEL]


async def test_mark_digest_sent_sets_day_of_one_channel(store: SqliteStateStore) -> None:
    await store.set_digest(digest())
    await store.set_digest(digest(channel_id=OTHER_CHANNEL))

    await store.mark_digest_sent(CHANNEL, date(2024, 5, 1))
    await store.mark_digest_sent(CHANNEL, date(2024, 5, 2))

    assert await store.digests() == [digest(last_sent_on=date(2024, 5, 2)), digest(channel_id=OTHER_CHANNEL)]


async def test_mark_digest_sent_without_digest_does_nothing(store: SqliteStateStore) -> None:
    await store.mark_digest_sent(CHANNEL, date(2024, 5, 1))

    assert await store.digests() == []


async def test_digest_survives_reopen(store: SqliteStateStore) -> None:
    await store.set_digest(digest(last_sent_on=date(2024, 5, 1)))

    again = await reopen(store)
    try:
        assert await again.digests() == [digest(last_sent_on=date(2024, 5, 1))]
    finally:
        await again.close()


async def test_open_upgrades_version_1_file(store: SqliteStateStore, db_path: Path) -> None:
    """A version-1 file is the current schema without the digests table."""
    subscription = Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0)
    await store.subscribe(subscription)
    await store.close()
    connection = sqlite3.connect(db_path)
    connection.execute("DROP TABLE digests")
    connection.execute("PRAGMA user_version = 1")
    connection.close()

    upgraded = SqliteStateStore(db_path)
    await upgraded.open()
    try:
        assert await upgraded.subscriptions() == [subscription]
        assert await upgraded.digests() == []
        await upgraded.set_digest(digest())
        assert await upgraded.digests() == [digest()]
    finally:
        await upgraded.close()

    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        connection.close()


# Durability, times and lifecycle


async def test_reopen_keeps_every_record(store: SqliteStateStore, db_path: Path) -> None:
    subscription = Subscription(CHANNEL, ALL_ASSISTANTS, "all", "U01", T0)
    state = AssistantState(ASSISTANT, T0, red=True, assistant_sid="UA1")
    mute = Mute(CHANNEL, ASSISTANT, "U01", until=T0 + timedelta(hours=1))
    await store.subscribe(subscription)
    sent_id, unsent_id = await store.record_poll(state, [seen("UG1"), seen("UG2", date_created=None)], [alert("UG1"), alert("UG2")], at=T0)
    await store.mark_sent(sent_id, at=T0, thread=thread())
    await store.mute(mute)

    again = await reopen(store)
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


async def test_open_sets_schema_version_and_wal(store: SqliteStateStore, db_path: Path) -> None:
    await store.close()

    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


async def test_open_newer_schema_raises(db_path: Path) -> None:
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA user_version = 3")
    connection.close()
    store = SqliteStateStore(db_path)

    with pytest.raises(RuntimeError, match="has schema version 3, newer than version 2"):
        await store.open()

    with pytest.raises(RuntimeError, match="is closed"):
        await store.subscriptions()


async def test_open_missing_directory_raises(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "missing" / "state.db")

    with pytest.raises(FileNotFoundError, match="missing'? of the state database does not exist"):
        await store.open()


async def test_open_twice_raises(store: SqliteStateStore) -> None:
    with pytest.raises(RuntimeError, match="is already open"):
        await store.open()


async def test_naive_datetime_raises(store: SqliteStateStore) -> None:
    naive = datetime(2024, 5, 1, 12, 0)

    with pytest.raises(ValueError, match="naive datetime '2024-05-01T12:00:00'"):
        await store.subscribe(Subscription(CHANNEL, ASSISTANT, "all", "U01", naive))
    with pytest.raises(ValueError, match="naive datetime"):
        await store.due_alerts(now=naive)
    with pytest.raises(ValueError, match="naive datetime"):
        store.cached_mute(CHANNEL, ASSISTANT, now=naive)


async def test_closed_store_raises_runtime_error(store: SqliteStateStore) -> None:
    await store.close()
    closed = re.escape(f"SQLite state store {store.path} is closed: call open() before using it")

    with pytest.raises(RuntimeError, match=closed):
        await store.subscriptions()
    with pytest.raises(RuntimeError, match=closed):
        await enqueue(store, [alert("UG1")])
    with pytest.raises(RuntimeError, match=closed):
        store.cached_mute(CHANNEL, ASSISTANT, now=T0)
    await store.close()


async def test_unopened_store_raises_runtime_error(db_path: Path) -> None:
    with pytest.raises(RuntimeError, match="is closed: call open"):
        await SqliteStateStore(db_path).thread(CHANNEL, ASSISTANT)


async def test_close_waits_for_queued_calls(store: SqliteStateStore) -> None:
    subscriptions = [Subscription(f"C{index:03}", ASSISTANT, "failures", "U01", T0) for index in range(10)]

    await asyncio.gather(*(store.subscribe(subscription) for subscription in subscriptions), store.close())

    await store.open()
    assert await store.subscriptions() == subscriptions


async def test_record_poll_concurrent_calls_stay_consistent(store: SqliteStateStore) -> None:
    assistants = [f"assistant-{index:02}" for index in range(50)]

    async def poll(assistant: str) -> list[int]:
        state = AssistantState(assistant, T0, red=True)
        builds = [seen(f"{assistant}-UG1", assistant=assistant), seen(f"{assistant}-UG2", assistant=assistant)]
        return await store.record_poll(state, builds, [alert(f"{assistant}-UG1", assistant=assistant)], at=T0)

    results = await asyncio.gather(*(poll(assistant) for assistant in assistants), store.pending_alerts())
    ids_by_assistant = dict(zip(assistants, results[:-1], strict=True))
    pending = await store.pending_alerts()

    assert sorted(id_ for ids in ids_by_assistant.values() for id_ in ids) == [item.id for item in pending]
    assert len(pending) == 50
    for item in pending:
        assert ids_by_assistant[item.alert.assistant] == [item.id]
    for assistant in assistants:
        assert await store.assistant_state(assistant) == AssistantState(assistant, T0, red=True)
        assert len(await store.seen_builds(assistant)) == 2


async def test_store_queries_run_in_one_thread(store: SqliteStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    thread_ids: set[int] = set()
    call = store._call

    def recording_call(work: Callable[[sqlite3.Connection], object]) -> object:
        thread_ids.add(threading.get_ident())
        return call(work)

    monkeypatch.setattr(store, "_call", recording_call)
    await asyncio.gather(*(store.assistant_state(f"assistant-{index}") for index in range(20)), enqueue(store, [alert("UG1")]))

    assert len(thread_ids) == 1
    assert threading.get_ident() not in thread_ids


# store_from_url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative/path.db", Path("relative/path.db")),
        ("sqlite:////absolute/path.db", Path("/absolute/path.db")),
        ("sqlite:///:memory:", Path(":memory:")),
    ],
)
def test_store_from_url_accepted_forms(url: str, path: Path) -> None:
    store = store_from_url(url)

    assert isinstance(store, SqliteStateStore)
    assert store.path == path


async def test_store_from_url_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "state").mkdir()
    store = store_from_url("sqlite:///state/bot.db")

    await store.open()
    await store.subscribe(Subscription(CHANNEL, ASSISTANT, "failures", "U01", T0))
    await store.close()

    assert count_rows(tmp_path / "state" / "bot.db", "subscriptions") == 1


async def test_store_from_url_memory_database_works() -> None:
    store = store_from_url("sqlite:///:memory:")

    await store.open()
    try:
        ids = await enqueue(store, [alert("UG1")])
        assert [item.id for item in await store.pending_alerts()] == ids
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://bot@localhost/builds", "is not supported yet: use sqlite:///path.db"),
        ("", "is not supported yet"),
        ("sqlite://state.db", "is not a valid SQLite URL"),
        ("sqlite:/state.db", "is not a valid SQLite URL"),
        ("sqlite:///", "names no database file"),
        ("sqlite:////", "names no database file"),
        ("sqlite:///state.db?mode=ro", "has a query or fragment, which is not supported"),
    ],
)
def test_store_from_url_invalid_raises_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^BUILDS_STATE_URL: {re.escape(repr(url))} {re.escape(message)}") as raised:
        store_from_url(url)

    assert raised.value.variable == "BUILDS_STATE_URL"
    assert "sqlite:////absolute/path.db or sqlite:///:memory:" in str(raised.value)


async def test_mutes_lists_active_only(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "mutes.db")
    await store.open()
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    try:
        await store.mute(Mute("C2", "support-bot", "U1", now + timedelta(hours=1)))
        await store.mute(Mute("C1", "billing", "U2", now + timedelta(minutes=5)))
        await store.mute(Mute("C1", "expired", "U1", now - timedelta(minutes=1)))

        active = await store.mutes(now=now)
    finally:
        await store.close()

    assert [(mute.channel_id, mute.assistant) for mute in active] == [("C1", "billing"), ("C2", "support-bot")]
