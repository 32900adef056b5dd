"""The state store on a Redis server, shared by several replicas of the bot.

`RedisStateStore` talks to Redis through one `redis.asyncio` connection pool
with string replies (`decode_responses=True`). Every key starts with a prefix
(`builds-bot:` by default), so several bots can share one Redis database.
With `P` for the prefix, the data model is:

    P subscriptions        hash: JSON [channel_id, assistant] -> JSON Subscription
    P assistant-states     hash: assistant -> JSON AssistantState
    P seen:<assistant>     hash: build SID -> JSON SeenBuild
    P seen-dates           sorted set: JSON [assistant, build SID], scored by date_created
    P threads              hash: JSON [channel_id, assistant] -> JSON Thread
    P mutes                hash: JSON [channel_id, assistant] -> JSON Mute
    P digests              hash: channel_id -> JSON Digest
    P outbox:next-id       counter that INCR turns into outbox ids, starting at 1
    P outbox:<id>          hash: channel_id, assistant, kind, build (JSON text), created_at,
                           attempts, next_attempt_at, and last_error and sent_at once set
    P outbox:unsent        sorted set: ids of unsent items, scored by next_attempt_at
    P lease:<name>         string: the holder of a lease, expiring with the lease
    P claim:<id>           string: the holder of a claim on an outbox item, expiring with the claim

Times in records are ISO 8601 UTC text with microseconds. Sorted set scores
are times in whole microseconds since the Unix epoch, which a double represents
exactly until the year 2255. Builds without a creation date have no entry in
`seen-dates`, so pruning keeps them.

Writes that belong together run in one Lua script, which Redis runs without
interleaving any other command: `record_poll` (state, seen builds and outbox
items with ids from INCR), `mark_sent` (the mark and the thread), and every
read-modify-write. Redis does not roll a script back when a command inside it
fails, so the store encodes and checks every value before it sends a script,
and its own input cannot fail halfway. A sent outbox item stays readable for
`SENT_RETENTION_MS` and then expires, where SQLite keeps it for good.

Commands are not retried: a retry after a timeout could run `record_poll`
twice and enqueue its alerts twice. A lost connection, a timeout or a refused
connection raises `StateUnavailableError`, and the caller decides when to try
again. The next command opens a new connection, so the same store works again
once the server is back.

NOTE: Whether writes survive a restart of Redis depends on the server's
persistence settings (RDB snapshots or the append-only file), not on this
store. The scripts build the keys `P seen:<assistant>` and `P outbox:<id>`
inside Redis, so this store runs on a single Redis server and not on Redis
Cluster.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import types
import typing
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from bot.errors import StateUnavailableError
from bot.state.base import Alert, AlertKind, AssistantState, Digest, Mute, OutboxItem, SeenBuild, Subscription, Thread

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

DEFAULT_KEY_PREFIX = "builds-bot:"
DEFAULT_PORT = 6379
# Seconds to wait for a connection or a reply before the call raises StateUnavailableError.
DEFAULT_SOCKET_TIMEOUT = 5.0
# Milliseconds that a sent outbox item stays readable before Redis deletes it: 7 days.
SENT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000
URL_SCHEMES = ("redis", "rediss")
URL_FORMS = "redis://host:6379/0, rediss://host:6380/0, or either with user:password@ before the host"

UNAVAILABLE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

# KEYS[1] assistant states, KEYS[2] seen dates, KEYS[3] outbox id counter, KEYS[4] unsent outbox ids,
# KEYS[5...] seen build hashes.
# ARGV[1] outbox item key prefix, ARGV[2] assistant, ARGV[3] state JSON, ARGV[4] number of seen builds,
# ARGV[5] number of alerts, ARGV[6] enqueue time as text, ARGV[7] enqueue time as a score.
# Then 5 values for each seen build: index of its hash in KEYS, build SID, record JSON, member in the seen
# dates, score or '' when it has no date. Then 4 values for each alert: channel id, assistant, kind, build JSON.
# Returns the new outbox ids in order.
RECORD_POLL_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local at = 8
for _ = 1, tonumber(ARGV[4]) do
    redis.call('HSET', KEYS[tonumber(ARGV[at])], ARGV[at + 1], ARGV[at + 2])
    if ARGV[at + 4] == '' then
        redis.call('ZREM', KEYS[2], ARGV[at + 3])
    else
        redis.call('ZADD', KEYS[2], ARGV[at + 4], ARGV[at + 3])
    end
    at = at + 5
end
local ids = {}
for index = 1, tonumber(ARGV[5]) do
    local id = redis.call('INCR', KEYS[3])
    redis.call('HSET', ARGV[1] .. id,
        'channel_id', ARGV[at], 'assistant', ARGV[at + 1], 'kind', ARGV[at + 2], 'build', ARGV[at + 3],
        'created_at', ARGV[6], 'next_attempt_at', ARGV[6], 'attempts', 0)
    redis.call('ZADD', KEYS[4], ARGV[7], id)
    ids[index] = id
    at = at + 4
end
return ids
"""

# KEYS[1] outbox item, KEYS[2] unsent outbox ids, KEYS[3] threads.
# ARGV[1] item id, ARGV[2] sent time, ARGV[3] retention in ms, ARGV[4] thread field or '' for none, ARGV[5] thread JSON.
# Returns 0 when the item does not exist, and then writes nothing.
MARK_SENT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'sent_at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
end
return 1
"""

# KEYS[1] outbox item, KEYS[2] unsent outbox ids.
# ARGV[1] item id, ARGV[2] error, ARGV[3] next attempt as text, ARGV[4] next attempt as a score.
# A sent item keeps its count and error but is not scheduled again. Returns 0 when the item does not exist.
MARK_FAILED_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2], 'next_attempt_at', ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'sent_at') == 0 then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
return 1
"""

# KEYS[1] seen dates. ARGV[1] seen build hash key prefix, ARGV[2] cutoff score.
# Deletes the seen builds dated strictly before the cutoff and returns how many it deleted.
PRUNE_SEEN_SCRIPT = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
local deleted = 0
for _, member in ipairs(members) do
    local entry = cjson.decode(member)
    deleted = deleted + redis.call('HDEL', ARGV[1] .. entry[1], entry[2])
end
if #members > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
end
return deleted
"""

# KEYS[1] a hash of JSON records. ARGV[1] field, ARGV[2] JSON object of the fields to change, ARGV[3] JSON record
# to store when the field is missing, or '' to store nothing then. Returns 1 when the field existed.
UPDATE_RECORD_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then
    if ARGV[3] ~= '' then
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    end
    return 0
end
local record = cjson.decode(stored)
for name, value in pairs(cjson.decode(ARGV[2])) do
    record[name] = value
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
return 1
"""

# KEYS[1] the lease or claim. ARGV[1] holder, ARGV[2] time to live in ms.
# Takes the key when it is free, or renews it when its value is ARGV[1]. Returns 1 when its value is ARGV[1] now.
ACQUIRE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
"""

# KEYS[1] the lease. ARGV[1] holder. Deletes the lease only when ARGV[1] holds it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclasses.dataclass(frozen=True, slots=True)
class RedisAddress:
    """Host, port, database index and TLS flag (`rediss://`) of a Redis URL."""

    host: str
    port: int
    db: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.db}"


def redact_url(url: str) -> str:
    """Return `url` with any user name and password replaced by `***`, for messages and logs."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def parse_redis_url(url: str) -> RedisAddress:
    """Check a `redis://` or `rediss://` URL and return where it points.

    Raises:
        ValueError: the scheme, host, port or database index is invalid, or the
            URL has a query or fragment. The message shows the URL without its
            password.
    """
    redacted = repr(redact_url(url))
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(f"{redacted} is not a Redis URL: use {URL_FORMS}")
    if parts.query or parts.fragment:
        raise ValueError(f"{redacted} has a query or fragment, which is not supported: use {URL_FORMS}")
    if not parts.hostname:
        raise ValueError(f"{redacted} names no host: use {URL_FORMS}")

    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{redacted} has an invalid port: use a number from 1 to 65535, as in {URL_FORMS}") from None

    db_text = parts.path.removeprefix("/") or "0"
    if not db_text.isascii() or not db_text.isdigit():
        raise ValueError(f"{redacted} has an invalid database index {db_text!r}: use a number such as /0, as in {URL_FORMS}")

    return RedisAddress(host=parts.hostname, port=port, db=int(db_text), tls=parts.scheme == "rediss")


def _map_unavailable(
    method: Callable[Concatenate[RedisStateStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisStateStore, P], Coroutine[Any, Any, T]]:
    """Wrap a store method so that connection failures and timeouts raise `StateUnavailableError`."""

    @functools.wraps(method)
    async def wrapper(store: RedisStateStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(store, *args, **kwargs)
        except UNAVAILABLE_ERRORS as error:
            raise StateUnavailableError(store._unavailable_message(error)) from error

    return wrapper


@dataclasses.dataclass(frozen=True, slots=True)
class _Scripts:
    record_poll: AsyncScript
    mark_sent: AsyncScript
    mark_failed: AsyncScript
    prune_seen: AsyncScript
    update_record: AsyncScript
    acquire: AsyncScript
    release: AsyncScript


class RedisStateStore:
    """The `StateStore` on a Redis server, for one or several replicas of the bot.

    The constructor checks the URL and does no I/O. `open()` connects, checks
    that the server responds and loads the mutes. `close()` closes the
    connection pool. A closed store can be opened again. Every other call on a
    closed store raises RuntimeError, except `ping()`, which raises
    `StateUnavailableError`.

        store = RedisStateStore("redis://localhost:6379/0", key_prefix="builds-bot-staging:")
        await store.open()
        try:
            await store.subscribe(subscription)
        finally:
            await store.close()

    Raises:
        ValueError: `url` is not a valid Redis URL (see `parse_redis_url`), or
            `key_prefix` is empty.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> None:
        self._address = parse_redis_url(url)
        if not key_prefix:
            raise ValueError("key_prefix is empty: use a prefix such as 'builds-bot:' so the keys of the bot stay apart")
        # The URL may contain a password: only `self._address` goes into messages and logs.
        self._url = url
        self._prefix = key_prefix
        self._socket_timeout = socket_timeout
        self._client: redis_asyncio.Redis | None = None
        self._scripts: _Scripts | None = None
        self._mutes: dict[tuple[str, str], Mute] = {}

    def __repr__(self) -> str:
        return f"RedisStateStore({str(self._address)!r}, key_prefix={self._prefix!r})"

    @property
    def address(self) -> RedisAddress:
        """Host, port and database index of the server."""
        return self._address

    @property
    def key_prefix(self) -> str:
        """Prefix of every key this store reads and writes."""
        return self._prefix

    async def open(self) -> None:
        """Connect, check that the server responds, and load the mutes into memory.

        Raises:
            RuntimeError: the store is already open.
            StateUnavailableError: the server cannot be reached or does not reply in time.
        """
        if self._client is not None:
            raise RuntimeError(f"Redis state store {self._address} is already open")

        client = redis_asyncio.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            retry=Retry(NoBackoff(), retries=0),
        )
        try:
            await client.ping()
            mutes = await client.hgetall(self._key("mutes"))
        except BaseException as error:
            await self._close_client(client)
            if isinstance(error, UNAVAILABLE_ERRORS):
                raise StateUnavailableError(self._unavailable_message(error)) from error
            raise

        self._client = client
        self._scripts = _register_scripts(client)
        self._replace_mirror(mutes.values())
        logger.info("state.redis_opened", extra={"address": str(self._address), "key_prefix": self._prefix, "mutes": len(mutes)})

    async def close(self) -> None:
        """Close the connection pool. Closing a closed store does nothing."""
        client = self._client
        if client is None:
            return

        self._client = None
        self._scripts = None
        self._mutes = {}
        await self._close_client(client)
        logger.info("state.redis_closed", extra={"address": str(self._address), "key_prefix": self._prefix})

    @_map_unavailable
    async def ping(self) -> None:
        """Return when the server replies to PING; raise `StateUnavailableError` when it does not or the store is closed."""
        if self._client is None:
            raise StateUnavailableError(self._closed_message())
        await self._client.ping()

    # Coordination between replicas

    @_map_unavailable
    async def acquire_lease(self, name: str, holder: str, *, ttl: float) -> bool:
        """Take the lease `name` if it is free, or renew it if `holder` holds it; return whether `holder` holds it now.

        Raises:
            ValueError: `ttl` is not a positive number of seconds.
        """
        acquired = await self._require_scripts().acquire(keys=[self._key(f"lease:{name}")], args=[holder, _milliseconds(ttl)])
        return int(acquired) == 1

    @_map_unavailable
    async def release_lease(self, name: str, holder: str) -> None:
        """Delete the lease `name` if `holder` holds it; a lease of another holder stays."""
        await self._require_scripts().release(keys=[self._key(f"lease:{name}")], args=[holder])

    @_map_unavailable
    async def claim_alert(self, item_id: int, holder: str, *, ttl: float) -> bool:
        """Claim an outbox alert for `ttl` seconds; return False when another holder has a claim on it.

        A holder that already has the claim gets True, and its claim lasts `ttl` seconds from now.

        Raises:
            ValueError: `ttl` is not a positive number of seconds.
        """
        claimed = await self._require_scripts().acquire(keys=[self._key(f"claim:{item_id}")], args=[holder, _milliseconds(ttl)])
        return int(claimed) == 1

    # Subscriptions

    @_map_unavailable
    async def subscribe(self, subscription: Subscription) -> None:
        """Insert or replace the subscription of a channel to an assistant."""
        record = _dump(subscription)
        await self._require_client().hset(self._key("subscriptions"), _pair(subscription.channel_id, subscription.assistant), record)

    @_map_unavailable
    async def unsubscribe(self, channel_id: str, assistant: str) -> bool:
        """Delete a subscription and return whether one existed."""
        deleted = await self._require_client().hdel(self._key("subscriptions"), _pair(channel_id, assistant))
        return deleted > 0

    @_map_unavailable
    async def subscriptions(self, channel_id: str | None = None) -> list[Subscription]:
        """Return the subscriptions of one channel, or of every channel, by creation time, channel and assistant."""
        records = await self._require_client().hvals(self._key("subscriptions"))
        subscriptions = [_load(Subscription, record) for record in records]
        if channel_id is not None:
            subscriptions = [subscription for subscription in subscriptions if subscription.channel_id == channel_id]
        return sorted(subscriptions, key=lambda item: (item.created_at, item.channel_id, item.assistant))

    @_map_unavailable
    async def record_delivery(self, channel_id: str, assistant: str, *, at: datetime, error: str | None) -> None:
        """Record on the subscription the last alert delivered or the last delivery error.

        With `error` None, this sets `last_alert_at` and clears `last_error` and
        `last_error_at`. Otherwise it sets `last_error` and `last_error_at` and
        keeps `last_alert_at`. A missing subscription is left missing.
        """
        changes: dict[str, str | None]
        if error is None:
            changes = {"last_alert_at": _to_text(at), "last_error": None, "last_error_at": None}
        else:
            changes = {"last_error": error, "last_error_at": _to_text(at)}
        await self._update_record("subscriptions", _pair(channel_id, assistant), changes)

    # Poller state

    @_map_unavailable
    async def assistant_state(self, assistant: str) -> AssistantState | None:
        """Return the stored poller state of an assistant, or None before its first poll."""
        record = await self._require_client().hget(self._key("assistant-states"), assistant)
        return None if record is None else _load(AssistantState, record)

    @_map_unavailable
    async def seen_builds(self, assistant: str) -> dict[str, SeenBuild]:
        """Return the seen builds of an assistant by build SID."""
        records = await self._require_client().hvals(self._key(f"seen:{assistant}"))
        builds = [_load(SeenBuild, record) for record in records]
        return {build.build_sid: build for build in builds}

    @_map_unavailable
    async def record_poll(
        self,
        state: AssistantState,
        seen: Sequence[SeenBuild],
        alerts: Sequence[Alert],
        *,
        at: datetime,
    ) -> list[int]:
        """In one Lua script: upsert the assistant state and seen builds, and enqueue `alerts`.

        Each alert enters the outbox with `created_at` and `next_attempt_at` set
        to `at`, and an id from the INCR counter, so later alerts get higher
        ids. Returns the outbox ids of the enqueued alerts, in order. A record
        that cannot be encoded raises before anything is sent to Redis.

        Raises:
            ValueError: a time is naive.
            TypeError: a required field is None, or a build is not JSON serializable.
        """
        keys = [self._key("assistant-states"), self._key("seen-dates"), self._key("outbox:next-id"), self._key("outbox:unsent")]
        args: list[str | int] = [self._key("outbox:"), state.assistant, _dump(state), len(seen), len(alerts), _to_text(at), _score(at)]

        # Lua indexes KEYS from 1, so each seen build names its hash by position.
        seen_key_positions: dict[str, int] = {}
        for build in seen:
            seen_key = self._key(f"seen:{build.assistant}")
            if seen_key not in seen_key_positions:
                keys.append(seen_key)
                seen_key_positions[seen_key] = len(keys)
            date_score = "" if build.date_created is None else _score(build.date_created)
            args += [seen_key_positions[seen_key], build.build_sid, _dump(build), _pair(build.assistant, build.build_sid), date_score]

        for alert in alerts:
            _check_required(alert)
            args += [alert.channel_id, alert.assistant, alert.kind, json.dumps(alert.build)]

        ids = await self._require_scripts().record_poll(keys=keys, args=args)
        return [int(item_id) for item_id in ids]

    @_map_unavailable
    async def prune_seen(self, older_than: datetime) -> int:
        """Delete seen builds created before `older_than` and return how many. Builds without a creation date stay."""
        deleted = await self._require_scripts().prune_seen(keys=[self._key("seen-dates")], args=[self._key("seen:"), _score(older_than)])
        return int(deleted)

    # Threads

    @_map_unavailable
    async def thread(self, channel_id: str, assistant: str) -> Thread | None:
        """Return the alert thread of an assistant in a channel, or None."""
        record = await self._require_client().hget(self._key("threads"), _pair(channel_id, assistant))
        return None if record is None else _load(Thread, record)

    @_map_unavailable
    async def save_thread(self, thread: Thread) -> None:
        """Insert or replace the alert thread of an assistant in a channel."""
        record = _dump(thread)
        await self._require_client().hset(self._key("threads"), _pair(thread.channel_id, thread.assistant), record)

    # Mutes

    @_map_unavailable
    async def mute(self, mute: Mute) -> None:
        """Insert or replace a mute in Redis, and then in the in-memory copy."""
        record = _dump(mute)
        await self._require_client().hset(self._key("mutes"), _pair(mute.channel_id, mute.assistant), record)
        self._mutes[(mute.channel_id, mute.assistant)] = _load(Mute, record)

    @_map_unavailable
    async def unmute(self, channel_id: str, assistant: str) -> bool:
        """Delete a mute from Redis and the in-memory copy, and return whether one existed."""
        deleted = await self._require_client().hdel(self._key("mutes"), _pair(channel_id, assistant))
        self._mutes.pop((channel_id, assistant), None)
        return deleted > 0

    @_map_unavailable
    async def active_mute(self, channel_id: str, assistant: str, *, now: datetime) -> Mute | None:
        """Return the mute of an assistant in a channel if it lasts beyond `now`, else None.

        The mute read from Redis, or its absence, also replaces that entry of the in-memory copy.
        """
        _require_aware(now)
        record = await self._require_client().hget(self._key("mutes"), _pair(channel_id, assistant))
        if record is None:
            self._mutes.pop((channel_id, assistant), None)
            return None

        mute = _load(Mute, record)
        self._mutes[(channel_id, assistant)] = mute
        return mute if mute.until > now else None

    @_map_unavailable
    async def mutes(self, *, now: datetime) -> list[Mute]:
        """Return every mute that lasts beyond `now`, ordered by channel then assistant.

        The mutes read from Redis also replace the whole in-memory copy.
        """
        _require_aware(now)
        records = await self._require_client().hvals(self._key("mutes"))
        self._replace_mirror(records)
        active = [mute for mute in self._mutes.values() if mute.until > now]
        return sorted(active, key=lambda mute: (mute.channel_id, mute.assistant))

    def cached_mute(self, channel_id: str, assistant: str, *, now: datetime) -> Mute | None:
        """Return the mute that `active_mute` would return, from memory and without I/O.

        `open()` loads the copy. Each `mute` and `unmute` of this store updates
        it after Redis has applied the write, and each `active_mute` and
        `mutes` call refreshes it from Redis.

        NOTE: Mutes that other replicas write reach this copy only at the next
        `active_mute` or `mutes` call of this store, or at the next `open()`.
        Until then, this method may return a mute that another replica
        removed, or miss one that it added.

        Raises:
            RuntimeError: the store is closed.
            ValueError: `now` is naive.
        """
        if self._client is None:
            raise RuntimeError(self._closed_message())
        _require_aware(now)

        mute = self._mutes.get((channel_id, assistant))
        if mute is None or mute.until <= now:
            return None
        return mute

    # Digests

    @_map_unavailable
    async def set_digest(self, digest: Digest) -> None:
        """Insert or replace the digest of a channel.

        Replacing keeps the stored `last_sent_on` and ignores the one of `digest`,
        so changing the time of a digest that went out today does not send it twice today.
        """
        record = _dump(digest)
        changes = json.loads(record)
        del changes["last_sent_on"]
        await self._update_record("digests", digest.channel_id, changes, insert=record)

    @_map_unavailable
    async def remove_digest(self, channel_id: str) -> bool:
        """Delete the digest of a channel and return whether one existed."""
        deleted = await self._require_client().hdel(self._key("digests"), channel_id)
        return deleted > 0

    @_map_unavailable
    async def digests(self) -> list[Digest]:
        """Return every channel's digest, ordered by channel."""
        records = await self._require_client().hvals(self._key("digests"))
        return sorted((_load(Digest, record) for record in records), key=lambda digest: digest.channel_id)

    @_map_unavailable
    async def mark_digest_sent(self, channel_id: str, day: date) -> None:
        """Set `last_sent_on` of a channel's digest to the local day `day`. Does nothing when the channel has no digest."""
        await self._update_record("digests", channel_id, {"last_sent_on": day.isoformat()})

    # Outbox

    @_map_unavailable
    async def due_alerts(self, *, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Return at most `limit` unsent alerts whose next attempt is at or before `now`, by id.

        Raises:
            ValueError: `limit` is below 1, or `now` is naive.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")

        # The index is ordered by next attempt, so every due id is read and sorted here before the limit applies.
        ids = cast("list[str]", await self._require_client().zrangebyscore(self._key("outbox:unsent"), "-inf", _score(now)))
        items = await self._outbox_items(ids)
        return items[:limit]

    @_map_unavailable
    async def pending_alerts(self, channel_id: str | None = None) -> list[OutboxItem]:
        """Return every unsent alert, of one channel or of all, by id."""
        ids = cast("list[str]", await self._require_client().zrange(self._key("outbox:unsent"), 0, -1))
        items = await self._outbox_items(ids)
        if channel_id is None:
            return items
        return [item for item in items if item.alert.channel_id == channel_id]

    @_map_unavailable
    async def mark_sent(self, item_id: int, *, at: datetime, thread: Thread | None = None) -> None:
        """In one Lua script: mark an alert sent and, if given, upsert the thread it created or changed.

        The sent item expires from Redis `SENT_RETENTION_MS` later. A thread
        that cannot be encoded raises before anything is sent to Redis.

        Raises:
            LookupError: no outbox item has this id. The thread is not saved either.
        """
        thread_field = "" if thread is None else _pair(thread.channel_id, thread.assistant)
        thread_record = "" if thread is None else _dump(thread)
        keys = [self._key(f"outbox:{item_id}"), self._key("outbox:unsent"), self._key("threads")]
        args: list[str | int] = [item_id, _to_text(at), SENT_RETENTION_MS, thread_field, thread_record]

        if await self._require_scripts().mark_sent(keys=keys, args=args) == 0:
            raise LookupError(f"outbox item {item_id} not found")

    @_map_unavailable
    async def mark_failed(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        """Count a failed attempt, keep the error, and set when to try again.

        Raises:
            LookupError: no outbox item has this id.
        """
        keys = [self._key(f"outbox:{item_id}"), self._key("outbox:unsent")]
        args: list[str | int] = [item_id, error, _to_text(next_attempt_at), _score(next_attempt_at)]

        if await self._require_scripts().mark_failed(keys=keys, args=args) == 0:
            raise LookupError(f"outbox item {item_id} not found")

    # Helpers

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def _require_client(self) -> redis_asyncio.Redis:
        if self._client is None:
            raise RuntimeError(self._closed_message())
        return self._client

    def _require_scripts(self) -> _Scripts:
        if self._scripts is None:
            raise RuntimeError(self._closed_message())
        return self._scripts

    async def _update_record(self, hash_name: str, field: str, changes: dict[str, Any], *, insert: str = "") -> None:
        """Change fields of the JSON record in `field` of a hash, or store `insert` there when the field is missing."""
        await self._require_scripts().update_record(keys=[self._key(hash_name)], args=[field, json.dumps(changes), insert])

    async def _outbox_items(self, ids: Sequence[str]) -> list[OutboxItem]:
        """Read outbox items by id, in id order, without those sent or expired since the ids were read."""
        ordered = sorted(int(item_id) for item_id in ids)
        pipeline = self._require_client().pipeline(transaction=False)
        for item_id in ordered:
            pipeline.hgetall(self._key(f"outbox:{item_id}"))
        fields_by_item = await pipeline.execute()

        return [
            _outbox_item(item_id, fields)
            for item_id, fields in zip(ordered, fields_by_item, strict=True)
            if fields and "sent_at" not in fields
        ]

    def _replace_mirror(self, records: Iterable[str | bytes]) -> None:
        mutes = [_load(Mute, record) for record in records]
        self._mutes = {(mute.channel_id, mute.assistant): mute for mute in mutes}

    async def _close_client(self, client: redis_asyncio.Redis) -> None:
        try:
            await client.aclose()
        except UNAVAILABLE_ERRORS as error:
            logger.warning("state.redis_close_failed", extra={"address": str(self._address), "error": repr(error)})

    def _unavailable_message(self, error: BaseException) -> str:
        return (
            f"the Redis state server at {self._address} is unavailable ({type(error).__name__}: {error}):"
            " check that it runs and that BUILDS_STATE_URL points to it"
        )

    def _closed_message(self) -> str:
        return f"Redis state store {self._address} is closed: call open() before using it"


def _register_scripts(client: redis_asyncio.Redis) -> _Scripts:
    """Wrap the Lua scripts for `client`; each runs by EVALSHA and is loaded again after a server restart."""
    return _Scripts(
        record_poll=client.register_script(RECORD_POLL_SCRIPT),
        mark_sent=client.register_script(MARK_SENT_SCRIPT),
        mark_failed=client.register_script(MARK_FAILED_SCRIPT),
        prune_seen=client.register_script(PRUNE_SEEN_SCRIPT),
        update_record=client.register_script(UPDATE_RECORD_SCRIPT),
        acquire=client.register_script(ACQUIRE_SCRIPT),
        release=client.register_script(RELEASE_SCRIPT),
    )


# Conversions between records and Redis values


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    nullable: bool
    # datetime or date for fields stored as ISO 8601 text, else None.
    time_type: type | None


def _read_field_specs(record_type: type) -> tuple[_FieldSpec, ...]:
    """Read from the type hints of a record which fields may be None and which are times or days."""
    hints = typing.get_type_hints(record_type)
    specs = []
    for field in dataclasses.fields(record_type):
        hint = hints[field.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        time_type: type | None = None
        if datetime in members:
            time_type = datetime
        elif date in members:
            time_type = date
        specs.append(_FieldSpec(field.name, type(None) in members, time_type))
    return tuple(specs)


# The records this store encodes, read once at import.
_RECORD_TYPES: tuple[type, ...] = (Subscription, AssistantState, SeenBuild, Thread, Mute, Digest, Alert)
_FIELD_SPECS: dict[type, tuple[_FieldSpec, ...]] = {record_type: _read_field_specs(record_type) for record_type in _RECORD_TYPES}


def _check_required(record: object) -> None:
    for spec in _FIELD_SPECS[type(record)]:
        if not spec.nullable and getattr(record, spec.name) is None:
            raise TypeError(f"{type(record).__name__}.{spec.name} is None: the state store needs a value for it")


def _dump(record: object) -> str:
    """Encode a record as a JSON object, with times as ISO 8601 UTC text and days as ISO 8601 dates."""
    _check_required(record)
    values: dict[str, object] = {}
    for spec in _FIELD_SPECS[type(record)]:
        value = getattr(record, spec.name)
        if isinstance(value, datetime):
            value = _to_text(value)
        elif isinstance(value, date):
            value = value.isoformat()
        values[spec.name] = value
    return json.dumps(values)


def _load(record_type: type[R], record: str | bytes) -> R:
    values = json.loads(record)
    for spec in _FIELD_SPECS[record_type]:
        text = values.get(spec.name)
        if text is None or spec.time_type is None:
            continue
        values[spec.name] = _from_text(text) if spec.time_type is datetime else date.fromisoformat(text)
    return record_type(**values)


def _outbox_item(item_id: int, fields: dict[str, str]) -> OutboxItem:
    alert = Alert(
        channel_id=fields["channel_id"],
        assistant=fields["assistant"],
        kind=cast(AlertKind, fields["kind"]),
        build=json.loads(fields["build"]),
    )
    return OutboxItem(
        id=item_id,
        alert=alert,
        created_at=_from_text(fields["created_at"]),
        attempts=int(fields["attempts"]),
        last_error=fields.get("last_error"),
        next_attempt_at=_from_text(fields["next_attempt_at"]),
    )


def _pair(first: str, second: str) -> str:
    """Return the hash field for a pair of ids, as a JSON array so no id can run into the other."""
    return json.dumps([first, second], separators=(",", ":"))


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()!r}: the state store needs aware datetimes such as datetime.now(UTC)")
    return moment


def _to_text(moment: datetime) -> str:
    return _require_aware(moment).astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _score(moment: datetime) -> int:
    """Return a time as whole microseconds since the Unix epoch, for sorted set scores."""
    delta = _require_aware(moment) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _milliseconds(ttl: float) -> int:
    """Return a time to live in seconds as whole milliseconds, rounded up and at least 1."""
    if not ttl > 0 or math.isinf(ttl):
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))
