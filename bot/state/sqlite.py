"""The state store on a local SQLite file, with every blocking call in one worker thread.

`SqliteStateStore` opens one `sqlite3` connection inside a single-thread
executor and sends every query to that thread, so the connection is only ever
used by the thread that created it. Calls from many coroutines therefore run
one after another, and each method body runs to its end before the next one
starts. The database runs in WAL mode with `synchronous=NORMAL`, so readers of
the file do not block the writer. By SQLite's `PRAGMA synchronous`
documentation, a commit then survives a crash of the bot, but the last commits
may roll back after a power loss or an operating system crash.

Times are stored as ISO 8601 UTC text with microseconds, which has a fixed
width, so SQL compares and sorts it in time order. Calendar days are stored as
ISO 8601 dates (`2026-12-04`). Booleans are stored as 0 and 1, and the build
of an alert as JSON text.

`PRAGMA user_version` is the schema version. Version 2 adds the `digests`
table to version 1. Every statement of `SCHEMA` is `CREATE … IF NOT EXISTS`,
so `open()` upgrades an older file in place by running them all, and it
rejects a file with a newer version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

from bot.errors import ConfigError, StateUnavailableError
from bot.state.base import (
    Alert,
    AssistantState,
    Digest,
    Mute,
    OutboxItem,
    SeenBuild,
    StateStore,
    Subscription,
    Thread,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 2
IN_MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT_MS = 5_000
URL_PREFIX = "sqlite:///"
URL_FORMS = "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:"

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS subscriptions (
        channel_id TEXT NOT NULL,
        assistant TEXT NOT NULL,
        level TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_alert_at TEXT,
        last_error TEXT,
        last_error_at TEXT,
        PRIMARY KEY (channel_id, assistant)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS assistant_states (
        assistant TEXT PRIMARY KEY,
        baseline_at TEXT NOT NULL,
        red INTEGER NOT NULL CHECK (red IN (0, 1)),
        assistant_sid TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS seen_builds (
        assistant TEXT NOT NULL,
        build_sid TEXT NOT NULL,
        status TEXT,
        date_created TEXT,
        stuck_alerted INTEGER NOT NULL CHECK (stuck_alerted IN (0, 1)),
        PRIMARY KEY (assistant, build_sid)
    )
    """,
    "CREATE INDEX IF NOT EXISTS seen_builds_date_created ON seen_builds (date_created)",
    """
    CREATE TABLE IF NOT EXISTS threads (
        channel_id TEXT NOT NULL,
        assistant TEXT NOT NULL,
        parent_ts TEXT NOT NULL,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL,
        opened_at TEXT NOT NULL,
        first_build TEXT,
        PRIMARY KEY (channel_id, assistant)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS mutes (
        channel_id TEXT NOT NULL,
        assistant TEXT NOT NULL,
        muted_by TEXT NOT NULL,
        until TEXT NOT NULL,
        PRIMARY KEY (channel_id, assistant)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id TEXT NOT NULL,
        assistant TEXT NOT NULL,
        kind TEXT NOT NULL,
        build TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_attempt_at TEXT NOT NULL,
        sent_at TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (next_attempt_at) WHERE sent_at IS NULL",
    # Added in schema version 2.
    """
    CREATE TABLE IF NOT EXISTS digests (
        channel_id TEXT PRIMARY KEY,
        time_of_day TEXT NOT NULL,
        timezone TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_sent_on TEXT
    )
    """,
)

SUBSCRIPTION_COLUMNS = "channel_id, assistant, level, created_by, created_at, last_alert_at, last_error, last_error_at"
OUTBOX_COLUMNS = "id, channel_id, assistant, kind, build, created_at, attempts, last_error, next_attempt_at"
DIGEST_COLUMNS = "channel_id, time_of_day, timezone, created_by, created_at, last_sent_on"


def store_from_url(url: str) -> StateStore:
    """Build the state store that a `BUILDS_STATE_URL` value names, without opening it.

    `redis://` and `rediss://` URLs give a `RedisStateStore` with the default
    key prefix, and the SQLite forms in `URL_FORMS` give a `SqliteStateStore`.

    Raises:
        ConfigError: the URL is neither a SQLite form nor a valid Redis URL.
            The message never shows the password of a Redis URL.
    """
    # Imported here, so that a bot on SQLite does not load redis-py.
    from bot.state.redis import URL_FORMS as REDIS_URL_FORMS
    from bot.state.redis import RedisStateStore

    if url.startswith(("redis://", "rediss://")):
        try:
            return RedisStateStore(url)
        except ValueError as error:
            raise ConfigError("BUILDS_STATE_URL", str(error)) from error

    if not url.startswith(URL_PREFIX):
        if url.startswith("sqlite:"):
            raise ConfigError("BUILDS_STATE_URL", f"{url!r} is not a valid SQLite URL: use {URL_FORMS}")
        raise ConfigError("BUILDS_STATE_URL", f"{url!r} is not supported yet: use sqlite:///path.db ({URL_FORMS}) or {REDIS_URL_FORMS}")

    path = url.removeprefix(URL_PREFIX)
    if not path or path == "/":
        raise ConfigError("BUILDS_STATE_URL", f"{url!r} names no database file: use {URL_FORMS}")

    if "?" in path or "#" in path:
        raise ConfigError("BUILDS_STATE_URL", f"{url!r} has a query or fragment, which is not supported: use {URL_FORMS}")

    return SqliteStateStore(path)


class SqliteStateStore:
    """The `StateStore` on one SQLite file, or on a private in-memory database for `:memory:`.

    The constructor does no I/O. `open()` starts the worker thread, connects,
    creates the schema and loads the mutes. `close()` stops both. A closed
    store can be opened again. Every other call on a closed store raises
    RuntimeError.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        self._path = Path(path)
        self._in_memory = str(path) == IN_MEMORY
        self._busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        # Set in the event loop thread before the first query, and cleared by the worker thread in `close()`.
        self._connection: sqlite3.Connection | None = None
        self._mutes: dict[tuple[str, str], Mute] = {}

    @property
    def path(self) -> Path:
        """Database file, or `:memory:`."""
        return self._path

    async def open(self) -> None:
        """Start the worker thread, connect, create or upgrade the schema and load the mutes.

        Raises:
            RuntimeError: the store is already open, or the file has a newer schema.
            FileNotFoundError: the directory of the database file does not exist.
        """
        if self._executor is not None:
            raise RuntimeError(f"SQLite state store {self._path} is already open")

        self._check_directory()

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-state")
        try:
            connection, mutes = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise

        self._connection = connection
        self._executor = executor
        self._mutes = {(mute.channel_id, mute.assistant): mute for mute in mutes}
        logger.info("state.sqlite_opened", extra={"path": str(self._path), "mutes": len(mutes)})

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Closing a closed store does nothing."""
        executor = self._executor
        if executor is None:
            return

        # Calls made from now on fail at once. Calls already queued run before the disconnect.
        self._executor = None
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            # The worker is idle once the disconnect has returned, so this wait is short.
            executor.shutdown(wait=True)
            self._mutes = {}

        logger.info("state.sqlite_closed", extra={"path": str(self._path)})

    async def ping(self) -> None:
        """Return when the database responds to a trivial query; raise `StateUnavailableError` when it fails."""
        try:
            await self._run(lambda connection: connection.execute("SELECT 1").fetchone())
        except (sqlite3.Error, RuntimeError) as error:
            raise StateUnavailableError(f"the SQLite state database {str(self._path)!r} is not usable: {error}") from error

    # Coordination: one process owns a SQLite file, so it holds every lease and claim.

    async def acquire_lease(self, name: str, holder: str, *, ttl: float) -> bool:
        """Return True: a SQLite store serves one process, which leads alone."""
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        """Do nothing: a SQLite store has no other replica to hand the lease to."""

    async def claim_alert(self, item_id: int, holder: str, *, ttl: float) -> bool:
        """Return True: no other replica sends from this store's outbox."""
        return True

    # Subscriptions

    async def subscribe(self, subscription: Subscription) -> None:
        """Insert or replace the subscription of a channel to an assistant."""
        row = _subscription_row(subscription)
        await self._run(lambda connection: _insert_subscription(connection, row))

    async def unsubscribe(self, channel_id: str, assistant: str) -> bool:
        """Delete a subscription and return whether one existed."""
        sql = "DELETE FROM subscriptions WHERE channel_id = ? AND assistant = ?"
        deleted = await self._run(lambda connection: connection.execute(sql, (channel_id, assistant)).rowcount)
        return deleted > 0

    async def subscriptions(self, channel_id: str | None = None) -> list[Subscription]:
        """Return the subscriptions of one channel, or of every channel, by creation time, channel and assistant."""
        rows = await self._run(lambda connection: _select_subscriptions(connection, channel_id))
        return [_subscription(row) for row in rows]

    async def record_delivery(self, channel_id: str, assistant: str, *, at: datetime, error: str | None) -> None:
        """Record on the subscription the last alert delivered or the last delivery error.

        With `error` None, this sets `last_alert_at` and clears `last_error` and
        `last_error_at`. Otherwise it sets `last_error` and `last_error_at` and
        keeps `last_alert_at`. A missing subscription is left missing.
        """
        if error is None:
            sql = "UPDATE subscriptions SET last_alert_at = ?, last_error = NULL, last_error_at = NULL"
            parameters: tuple[str | None, ...] = (_to_text(at), channel_id, assistant)
        else:
            sql = "UPDATE subscriptions SET last_error = ?, last_error_at = ?"
            parameters = (error, _to_text(at), channel_id, assistant)

        sql += " WHERE channel_id = ? AND assistant = ?"
        await self._run(lambda connection: connection.execute(sql, parameters))

    # Poller state

    async def assistant_state(self, assistant: str) -> AssistantState | None:
        """Return the stored poller state of an assistant, or None before its first poll."""
        sql = "SELECT assistant, baseline_at, red, assistant_sid FROM assistant_states WHERE assistant = ?"
        row = await self._run(lambda connection: connection.execute(sql, (assistant,)).fetchone())
        return None if row is None else _assistant_state(row)

    async def seen_builds(self, assistant: str) -> dict[str, SeenBuild]:
        """Return the seen builds of an assistant by build SID."""
        sql = "SELECT assistant, build_sid, status, date_created, stuck_alerted FROM seen_builds WHERE assistant = ?"
        rows = await self._run(lambda connection: connection.execute(sql, (assistant,)).fetchall())
        return {row["build_sid"]: _seen_build(row) for row in rows}

    async def record_poll(
        self,
        state: AssistantState,
        seen: Sequence[SeenBuild],
        alerts: Sequence[Alert],
        *,
        at: datetime,
    ) -> list[int]:
        """In one transaction: upsert the assistant state and seen builds, and enqueue `alerts`.

        Each alert enters the outbox with `created_at` and `next_attempt_at` set
        to `at`. Returns the outbox ids of the enqueued alerts, in order. If any
        statement fails, nothing of the poll is stored.
        """
        state_row = _assistant_state_row(state)
        seen_rows = [_seen_build_row(build) for build in seen]
        alert_rows = [_alert_row(alert, at=at) for alert in alerts]
        return await self._run(lambda connection: _write_poll(connection, state_row, seen_rows, alert_rows))

    async def prune_seen(self, older_than: datetime) -> int:
        """Delete seen builds created before `older_than` and return how many. Builds without a creation date stay."""
        sql = "DELETE FROM seen_builds WHERE date_created IS NOT NULL AND date_created < ?"
        cutoff = _to_text(older_than)
        return await self._run(lambda connection: connection.execute(sql, (cutoff,)).rowcount)

    # Threads

    async def thread(self, channel_id: str, assistant: str) -> Thread | None:
        """Return the alert thread of an assistant in a channel, or None."""
        sql = (
            "SELECT channel_id, assistant, parent_ts, state, failures, opened_at, first_build"
            " FROM threads WHERE channel_id = ? AND assistant = ?"
        )
        row = await self._run(lambda connection: connection.execute(sql, (channel_id, assistant)).fetchone())
        return None if row is None else _thread(row)

    async def save_thread(self, thread: Thread) -> None:
        """Insert or replace the alert thread of an assistant in a channel."""
        row = _thread_row(thread)
        await self._run(lambda connection: _insert_thread(connection, row))

    # Mutes

    async def mute(self, mute: Mute) -> None:
        """Insert or replace a mute, in the database and then in the in-memory copy."""
        stored = dataclasses.replace(mute, until=_from_text(_to_text(mute.until)))
        await self._run(lambda connection: self._write_mute(connection, stored))

    async def unmute(self, channel_id: str, assistant: str) -> bool:
        """Delete a mute from the database and the in-memory copy, and return whether one existed."""
        return await self._run(lambda connection: self._delete_mute(connection, channel_id, assistant))

    async def active_mute(self, channel_id: str, assistant: str, *, now: datetime) -> Mute | None:
        """Return the mute of an assistant in a channel if it lasts beyond `now`, else None."""
        sql = "SELECT channel_id, assistant, muted_by, until FROM mutes WHERE channel_id = ? AND assistant = ? AND until > ?"
        parameters = (channel_id, assistant, _to_text(now))
        row = await self._run(lambda connection: connection.execute(sql, parameters).fetchone())
        return None if row is None else _mute(row)

    async def mutes(self, *, now: datetime) -> list[Mute]:
        """Return every mute that lasts beyond `now`, ordered by channel then assistant."""
        sql = "SELECT channel_id, assistant, muted_by, until FROM mutes WHERE until > ? ORDER BY channel_id, assistant"
        parameters = (_to_text(now),)
        rows = await self._run(lambda connection: connection.execute(sql, parameters).fetchall())
        return [_mute(row) for row in rows]

    def cached_mute(self, channel_id: str, assistant: str, *, now: datetime) -> Mute | None:
        """Return the mute that `active_mute` would return, from memory and without I/O.

        The copy is loaded by `open()`. The worker thread updates it right after
        each `mute` and `unmute` of this store commits, so it follows the
        database in commit order, even when the calling coroutine is cancelled.

        NOTE: Mutes that another process writes to the same file after `open()`
        are missing from the copy until the store is opened again.

        Raises:
            RuntimeError: the store is closed.
        """
        if self._executor is None:
            raise RuntimeError(self._closed_message())
        _require_aware(now)

        mute = self._mutes.get((channel_id, assistant))
        if mute is None or mute.until <= now:
            return None
        return mute

    # Digests

    async def set_digest(self, digest: Digest) -> None:
        """Insert or replace the digest of a channel.

        Replacing keeps the stored `last_sent_on` and ignores the one of `digest`,
        so changing the time of a digest that went out today does not send it twice today.
        """
        row = _digest_row(digest)
        await self._run(lambda connection: _upsert_digest(connection, row))

    async def remove_digest(self, channel_id: str) -> bool:
        """Delete the digest of a channel and return whether one existed."""
        sql = "DELETE FROM digests WHERE channel_id = ?"
        deleted = await self._run(lambda connection: connection.execute(sql, (channel_id,)).rowcount)
        return deleted > 0

    async def digests(self) -> list[Digest]:
        """Return every channel's digest, ordered by channel."""
        sql = f"SELECT {DIGEST_COLUMNS} FROM digests ORDER BY channel_id"
        rows = await self._run(lambda connection: connection.execute(sql).fetchall())
        return [_digest(row) for row in rows]

    async def mark_digest_sent(self, channel_id: str, day: date) -> None:
        """Set `last_sent_on` of a channel's digest to the local day `day`. Does nothing when the channel has no digest."""
        sql = "UPDATE digests SET last_sent_on = ? WHERE channel_id = ?"
        parameters = (day.isoformat(), channel_id)
        await self._run(lambda connection: connection.execute(sql, parameters))

    # Outbox

    async def due_alerts(self, *, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Return at most `limit` unsent alerts whose next attempt is at or before `now`, by id.

        Raises:
            ValueError: `limit` is below 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")

        sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?"
        parameters = (_to_text(now), limit)
        rows = await self._run(lambda connection: connection.execute(sql, parameters).fetchall())
        return [_outbox_item(row) for row in rows]

    async def pending_alerts(self, channel_id: str | None = None) -> list[OutboxItem]:
        """Return every unsent alert, of one channel or of all, by id."""
        rows = await self._run(lambda connection: _select_pending(connection, channel_id))
        return [_outbox_item(row) for row in rows]

    async def mark_sent(self, item_id: int, *, at: datetime, thread: Thread | None = None) -> None:
        """In one transaction: mark an alert sent and, if given, upsert the thread it created or changed.

        Raises:
            LookupError: no outbox item has this id. The thread is not saved either.
        """
        sent_at = _to_text(at)
        thread_row = None if thread is None else _thread_row(thread)
        await self._run(lambda connection: _write_sent(connection, item_id, sent_at, thread_row))

    async def mark_failed(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        """Count a failed attempt, keep the error, and set when to try again.

        Raises:
            LookupError: no outbox item has this id.
        """
        sql = "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?"
        parameters = (error, _to_text(next_attempt_at), item_id)
        updated = await self._run(lambda connection: connection.execute(sql, parameters).rowcount)
        if updated == 0:
            raise LookupError(f"outbox item {item_id} not found")

    # Worker thread

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` with the connection in the worker thread and return its result."""
        executor = self._executor
        if executor is None:
            raise RuntimeError(self._closed_message())
        return await asyncio.get_running_loop().run_in_executor(executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Runs in the worker thread. The connection is gone if `close()` ran before this call.
        connection = self._connection
        if connection is None:
            raise RuntimeError(self._closed_message())
        return work(connection)

    def _connect(self) -> tuple[sqlite3.Connection, list[Mute]]:
        """Open and configure the connection, create or upgrade the schema and read the mutes, in the worker thread."""
        # isolation_level=None leaves transactions to explicit BEGIN statements.
        connection = sqlite3.connect(str(self._path), isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            self._configure(connection)
            _create_schema(connection, self._path)
            mutes = [_mute(row) for row in connection.execute("SELECT channel_id, assistant, muted_by, until FROM mutes")]
        except BaseException:
            connection.close()
            raise
        return connection, mutes

    def _configure(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        journal_mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if journal_mode != "wal" and not self._in_memory:
            logger.warning("state.sqlite_wal_unavailable", extra={"path": str(self._path), "journal_mode": journal_mode})
        connection.execute("PRAGMA synchronous = NORMAL")

    def _write_mute(self, connection: sqlite3.Connection, mute: Mute) -> None:
        row = (mute.channel_id, mute.assistant, mute.muted_by, _to_text(mute.until))
        connection.execute("INSERT OR REPLACE INTO mutes (channel_id, assistant, muted_by, until) VALUES (?, ?, ?, ?)", row)
        # While the store is open, only the worker thread changes the copy. Single dict operations are thread-safe,
        # so the event loop thread may read it meanwhile.
        self._mutes[(mute.channel_id, mute.assistant)] = mute

    def _delete_mute(self, connection: sqlite3.Connection, channel_id: str, assistant: str) -> bool:
        sql = "DELETE FROM mutes WHERE channel_id = ? AND assistant = ?"
        deleted = connection.execute(sql, (channel_id, assistant)).rowcount
        self._mutes.pop((channel_id, assistant), None)
        return deleted > 0

    def _disconnect(self) -> None:
        connection = self._connection
        self._connection = None
        if connection is not None:
            connection.close()

    def _check_directory(self) -> None:
        if self._in_memory or self._path.parent.is_dir():
            return
        raise FileNotFoundError(
            f"directory {str(self._path.parent)!r} of the state database does not exist: create it or change BUILDS_STATE_URL"
        )

    def _closed_message(self) -> str:
        return f"SQLite state store {self._path} is closed: call open() before using it"


# Statements run in the worker thread


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """Run the block in one write transaction, and roll it back if the block or the commit raises."""
    # IMMEDIATE takes the write lock at BEGIN. While another connection writes, BEGIN waits up to the busy timeout
    # and then fails, so a lock conflict cannot fail a later statement of the transaction.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def _create_schema(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"state database {path} has schema version {version}, newer than version {SCHEMA_VERSION} of this bot:"
            " upgrade the bot or use another database file"
        )

    with _transaction(connection):
        for statement in SCHEMA:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # Version 0 is a new, empty file.
    if 0 < version < SCHEMA_VERSION:
        logger.info("state.sqlite_upgraded", extra={"path": str(path), "from_version": version, "to_version": SCHEMA_VERSION})


def _insert_subscription(connection: sqlite3.Connection, row: tuple[str | None, ...]) -> None:
    connection.execute(f"INSERT OR REPLACE INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)


def _select_subscriptions(connection: sqlite3.Connection, channel_id: str | None) -> list[sqlite3.Row]:
    order = " ORDER BY created_at, channel_id, assistant"
    if channel_id is None:
        return connection.execute(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions{order}").fetchall()
    return connection.execute(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE channel_id = ?{order}", (channel_id,)).fetchall()


def _insert_thread(connection: sqlite3.Connection, row: tuple[object, ...]) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO threads (channel_id, assistant, parent_ts, state, failures, opened_at, first_build)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        row,
    )


def _write_poll(
    connection: sqlite3.Connection,
    state_row: tuple[object, ...],
    seen_rows: list[tuple[object, ...]],
    alert_rows: list[tuple[object, ...]],
) -> list[int]:
    ids: list[int] = []
    with _transaction(connection):
        connection.execute(
            "INSERT OR REPLACE INTO assistant_states (assistant, baseline_at, red, assistant_sid) VALUES (?, ?, ?, ?)",
            state_row,
        )
        connection.executemany(
            "INSERT OR REPLACE INTO seen_builds (assistant, build_sid, status, date_created, stuck_alerted) VALUES (?, ?, ?, ?, ?)",
            seen_rows,
        )
        for row in alert_rows:
            cursor = connection.execute(
                "INSERT INTO outbox (channel_id, assistant, kind, build, created_at, attempts, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, 0, ?)",
                row,
            )
            ids.append(_inserted_id(cursor))
    return ids


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    row_id = cursor.lastrowid
    if row_id is None:
        raise RuntimeError("SQLite returned no row id for an outbox insert")
    return row_id


def _upsert_digest(connection: sqlite3.Connection, row: tuple[str | None, ...]) -> None:
    connection.execute(
        f"INSERT INTO digests ({DIGEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (channel_id) DO UPDATE SET time_of_day = excluded.time_of_day, timezone = excluded.timezone,"
        " created_by = excluded.created_by, created_at = excluded.created_at",
        row,
    )


def _select_pending(connection: sqlite3.Connection, channel_id: str | None) -> list[sqlite3.Row]:
    if channel_id is None:
        return connection.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id").fetchall()
    sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL AND channel_id = ? ORDER BY id"
    return connection.execute(sql, (channel_id,)).fetchall()


def _write_sent(connection: sqlite3.Connection, item_id: int, sent_at: str, thread_row: tuple[object, ...] | None) -> None:
    with _transaction(connection):
        updated = connection.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", (sent_at, item_id)).rowcount
        if updated == 0:
            raise LookupError(f"outbox item {item_id} not found")
        if thread_row is not None:
            _insert_thread(connection, thread_row)


# Conversions between records and rows


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()!r}: the state store needs aware datetimes such as datetime.now(UTC)")
    return moment


def _to_text(moment: datetime) -> str:
    return _require_aware(moment).astimezone(UTC).isoformat(timespec="microseconds")


def _optional_text(moment: datetime | None) -> str | None:
    return None if moment is None else _to_text(moment)


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _optional_datetime(text: str | None) -> datetime | None:
    return None if text is None else _from_text(text)


def _subscription_row(subscription: Subscription) -> tuple[str | None, ...]:
    return (
        subscription.channel_id,
        subscription.assistant,
        subscription.level,
        subscription.created_by,
        _to_text(subscription.created_at),
        _optional_text(subscription.last_alert_at),
        subscription.last_error,
        _optional_text(subscription.last_error_at),
    )


def _subscription(row: sqlite3.Row) -> Subscription:
    return Subscription(
        channel_id=row["channel_id"],
        assistant=row["assistant"],
        level=row["level"],
        created_by=row["created_by"],
        created_at=_from_text(row["created_at"]),
        last_alert_at=_optional_datetime(row["last_alert_at"]),
        last_error=row["last_error"],
        last_error_at=_optional_datetime(row["last_error_at"]),
    )


def _assistant_state_row(state: AssistantState) -> tuple[object, ...]:
    return (state.assistant, _to_text(state.baseline_at), int(state.red), state.assistant_sid)


def _assistant_state(row: sqlite3.Row) -> AssistantState:
    return AssistantState(
        assistant=row["assistant"],
        baseline_at=_from_text(row["baseline_at"]),
        red=bool(row["red"]),
        assistant_sid=row["assistant_sid"],
    )


def _seen_build_row(build: SeenBuild) -> tuple[object, ...]:
    return (build.assistant, build.build_sid, build.status, _optional_text(build.date_created), int(build.stuck_alerted))


def _seen_build(row: sqlite3.Row) -> SeenBuild:
    return SeenBuild(
        assistant=row["assistant"],
        build_sid=row["build_sid"],
        status=row["status"],
        date_created=_optional_datetime(row["date_created"]),
        stuck_alerted=bool(row["stuck_alerted"]),
    )


def _thread_row(thread: Thread) -> tuple[object, ...]:
    return (
        thread.channel_id,
        thread.assistant,
        thread.parent_ts,
        thread.state,
        thread.failures,
        _to_text(thread.opened_at),
        thread.first_build,
    )


def _thread(row: sqlite3.Row) -> Thread:
    return Thread(
        channel_id=row["channel_id"],
        assistant=row["assistant"],
        parent_ts=row["parent_ts"],
        state=row["state"],
        failures=row["failures"],
        opened_at=_from_text(row["opened_at"]),
        first_build=row["first_build"],
    )


def _mute(row: sqlite3.Row) -> Mute:
    return Mute(
        channel_id=row["channel_id"],
        assistant=row["assistant"],
        muted_by=row["muted_by"],
        until=_from_text(row["until"]),
    )


def _digest_row(digest: Digest) -> tuple[str | None, ...]:
    last_sent_on = None if digest.last_sent_on is None else digest.last_sent_on.isoformat()
    return (digest.channel_id, digest.time_of_day, digest.timezone, digest.created_by, _to_text(digest.created_at), last_sent_on)


def _digest(row: sqlite3.Row) -> Digest:
    last_sent_on = row["last_sent_on"]
    return Digest(
        channel_id=row["channel_id"],
        time_of_day=row["time_of_day"],
        timezone=row["timezone"],
        created_by=row["created_by"],
        created_at=_from_text(row["created_at"]),
        last_sent_on=None if last_sent_on is None else date.fromisoformat(last_sent_on),
    )


def _alert_row(alert: Alert, *, at: datetime) -> tuple[object, ...]:
    enqueued_at = _to_text(at)
    return (alert.channel_id, alert.assistant, alert.kind, json.dumps(alert.build), enqueued_at, enqueued_at)


def _outbox_item(row: sqlite3.Row) -> OutboxItem:
    alert = Alert(
        channel_id=row["channel_id"],
        assistant=row["assistant"],
        kind=row["kind"],
        build=json.loads(row["build"]),
    )
    return OutboxItem(
        id=row["id"],
        alert=alert,
        created_at=_from_text(row["created_at"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=_from_text(row["next_attempt_at"]),
    )
