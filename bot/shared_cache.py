"""A lookup cache on Redis that several replicas of the bot share, so they fetch each lookup once.

Each replica keeps its in-process `LookupCache` in front. On a miss there,
`SharedCache.fetch_once` reads the shared value, and when none is stored it lets
one replica fetch while the others wait for the result:

1. One Lua script returns the stored value if there is one, or else tries
   `SET lock NX PX lock_ttl`, so a replica that finds no value either takes
   the lock or learns that another replica holds it.
2. The lock holder calls `fetch()`, stores a successful result with `SET PX ttl`,
   and then deletes its lock. An error is never stored. It reaches the caller,
   and the lock is deleted all the same.
3. Every other replica polls the value and the lock together with MGET. It returns
   the value once it appears. It calls `fetch()` itself when the lock is gone
   without a value (the holder failed) or when `wait` seconds pass (the holder
   hangs or died, and its lock has not expired yet).

With `P` for the key prefix (`builds-bot:cache:` by default), `K` for a lookup
key as a JSON array such as `["builds","support-bot"]`, and `v1` for the
format version, the keys are:

    P v1:value:K    string: JSON {"fetched_at": ISO 8601 text, "value": encoded value}
    P v1:lock:K     string: a random token of the replica that fetches K, expiring after lock_ttl

Values are the Autopilot lookups that `LookupCache` holds: a `Listing[ModelBuild]`,
a `Listing[Assistant]` or one `ModelBuild`, as JSON with a type tag (see
`encode_value`).

The cache never makes a lookup fail: when Redis refuses the connection, times
out (`socket_timeout`, 2 s by default) or returns an error, `fetch_once` calls
`fetch()` directly, `get` returns None and `put` stores nothing. The first
failure of an outage is logged as one `shared_cache.unavailable` warning, and
the first success after it as `shared_cache.recovered`. Commands are not
retried, so a lookup waits for at most one timeout per command before it falls
back. The next command opens a new connection, so the same object works again
once the server is back.

NOTE: While the server hangs, every `fetch_once` still spends up to one
`socket_timeout` on its first command before it calls `fetch()`. Nothing
skips Redis for a while after a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import secrets
import typing
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from bot.autopilot import Listing
from bot.models import Assistant, ModelBuild
from bot.state.redis import parse_redis_url, redact_url

logger = logging.getLogger(__name__)

V = TypeVar("V")

DEFAULT_KEY_PREFIX = "builds-bot:cache:"
# Seconds to wait for a connection or a reply before a command counts as failed.
DEFAULT_SOCKET_TIMEOUT = 2.0
# Seconds between two reads of a replica that waits for another replica's fetch.
DEFAULT_POLL_INTERVAL = 0.05
# Part of every key. NOTE: bump it when a field of ModelBuild, Assistant or Listing changes, because
# a replica on the old code cannot decode records with the new fields, and reads them as misses.
FORMAT_VERSION = "v1"

# Failures of the server or the connection. The cache logs them and falls back, so none makes a lookup fail.
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)

# KEYS[1] the value, KEYS[2] the lock. ARGV[1] lock token, ARGV[2] lock time to live in ms.
# Returns {1, value} when the value is stored, {2, ''} when this caller took the lock, and {0, ''}
# when another caller holds it.
LOOKUP_OR_LOCK_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value then
    return {1, value}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {2, ''}
end
return {0, ''}
"""

# KEYS[1] the lock. ARGV[1] lock token. Deletes the lock only while this token holds it, because
# after it expired another replica may have taken it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Statuses that LOOKUP_OR_LOCK_SCRIPT returns, besides 0 for a lock that another caller holds.
_FOUND = 1
_LOCK_TAKEN = 2


@dataclasses.dataclass(frozen=True, slots=True)
class _Connection:
    """The connection pool of an open cache and its scripts, which run by EVALSHA and load again after a server restart."""

    client: redis_asyncio.Redis
    lookup_or_lock: AsyncScript
    release: AsyncScript


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Serialisation of cached values

_JSON_SCALARS = (str, int, float, bool, type(None))
_RECORD_TYPES: dict[str, type[Any]] = {"model_build": ModelBuild, "assistant": Assistant}
_TYPE_TAGS: dict[type[Any], str] = {record_type: tag for tag, record_type in _RECORD_TYPES.items()}


def _datetime_fields(record_type: type[Any]) -> frozenset[str]:
    """Read from the type hints of a record which of its fields hold datetimes."""
    hints = typing.get_type_hints(record_type)
    names = set()
    for field in dataclasses.fields(record_type):
        hint = hints[field.name]
        if hint is datetime or datetime in typing.get_args(hint):
            names.add(field.name)
    return frozenset(names)


# The datetime fields of each record type, read once at import.
_DATETIME_FIELDS: dict[type[Any], frozenset[str]] = {record_type: _datetime_fields(record_type) for record_type in _TYPE_TAGS}


def encode_value(value: object) -> str:
    """Encode a `ModelBuild`, `Listing[ModelBuild]` or `Listing[Assistant]` as JSON text with a type tag.

    Datetimes become ISO 8601 text with their UTC offset, so `decode_value`
    returns an equal object with the same offsets. The forms are
    `{"type": "model_build", "fields": {...}}` and
    `{"type": "listing", "complete": bool, "item_type": "model_build" | "assistant" | null, "items": [{...}]}`,
    where `item_type` is null for an empty listing.

    Raises:
        TypeError: `value` is of another type, a listing mixes item types or contains
            items of another type, or a field contains a value that JSON cannot encode.
    """
    return json.dumps(_value_to_json(value), separators=(",", ":"))


def decode_value(text: str | bytes) -> object:
    """Decode JSON text from `encode_value` into an equal `ModelBuild` or `Listing`.

    Raises:
        ValueError: `text` is not JSON, or not the form that `encode_value` writes,
            such as a record with a field that the model does not have.
    """
    return _value_from_json(json.loads(text))


def _value_from_json(data: object) -> object:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object with a 'type' tag, got {type(data).__name__}")

    tag = data.get("type")
    if tag == "model_build":
        return _record_from_json(ModelBuild, data.get("fields"))
    if tag == "listing":
        return _listing_from_json(data)
    raise ValueError(f"unknown cached value type {tag!r}: expected 'model_build' or 'listing'")


def _value_to_json(value: object) -> dict[str, Any]:
    if isinstance(value, ModelBuild):
        return {"type": "model_build", "fields": _record_to_json(value)}
    if isinstance(value, Listing):
        return _listing_to_json(value)
    raise TypeError(f"cannot cache a value of type {type(value).__name__}: the shared cache stores ModelBuild, Listing[ModelBuild] and Listing[Assistant]")


def _listing_to_json(listing: Listing[Any]) -> dict[str, Any]:
    if not isinstance(listing.items, list):
        raise TypeError(f"cannot cache a Listing whose items are of type {type(listing.items).__name__}: expected a list")

    item_types = {type(item) for item in listing.items}
    if len(item_types) > 1 or not item_types <= {ModelBuild, Assistant}:
        names = ", ".join(sorted(item_type.__name__ for item_type in item_types))
        raise TypeError(f"cannot cache a Listing of {names}: the shared cache stores listings of only ModelBuild or only Assistant")

    item_type = _TYPE_TAGS[item_types.pop()] if item_types else None
    return {
        "type": "listing",
        "complete": listing.complete,
        "item_type": item_type,
        "items": [_record_to_json(item) for item in listing.items],
    }


def _listing_from_json(data: dict[str, Any]) -> Listing[Any]:
    complete = data.get("complete")
    items = data.get("items")
    if not isinstance(complete, bool) or not isinstance(items, list):
        raise ValueError("expected a listing with a boolean 'complete' and a list of 'items'")

    item_tag = data.get("item_type")
    if item_tag is None:
        if items:
            raise ValueError("a listing with items needs an 'item_type'")
        return Listing([], complete)

    record_type = _RECORD_TYPES.get(item_tag)
    if record_type is None:
        raise ValueError(f"unknown listing item type {item_tag!r}: expected 'model_build' or 'assistant'")
    return Listing([_record_from_json(record_type, item) for item in items], complete)


def _record_to_json(record: object) -> dict[str, Any]:
    """Return the fields of a model as a JSON object, with datetimes as ISO 8601 text."""
    datetime_fields = _DATETIME_FIELDS[type(record)]
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cast(Any, record)):
        value = getattr(record, field.name)
        if field.name in datetime_fields and isinstance(value, datetime):
            value = value.isoformat()
        elif not isinstance(value, _JSON_SCALARS):
            raise TypeError(f"cannot cache {type(record).__name__}.{field.name} of type {type(value).__name__}: expected the type the model declares")
        fields[field.name] = value
    return fields


def _record_from_json(record_type: type[Any], fields: object) -> Any:
    if not isinstance(fields, dict):
        raise ValueError(f"expected a JSON object of {record_type.__name__} fields, got {type(fields).__name__}")

    values = dict(fields)
    for name in _DATETIME_FIELDS[record_type]:
        text = values.get(name)
        if text is not None:
            values[name] = datetime.fromisoformat(text)
    try:
        return record_type(**values)
    except TypeError as error:
        raise ValueError(f"invalid {record_type.__name__} fields: {error}") from error


def _encode_record(value: object, fetched_at: datetime) -> str:
    return json.dumps({"fetched_at": fetched_at.isoformat(), "value": _value_to_json(value)}, separators=(",", ":"))


def _decode_record(text: str) -> tuple[object, datetime]:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("fetched_at"), str):
        raise ValueError("expected a JSON object with 'fetched_at' text and a 'value'")
    return _value_from_json(data.get("value")), datetime.fromisoformat(data["fetched_at"])


# The cache


class SharedCache:
    """Cached lookups on a Redis server, shared by the replicas of the bot.

    The constructor checks the URL and does no I/O. `open()` creates the
    connection pool, and `close()` closes it. A closed cache can be opened
    again. Every other call on a closed cache raises RuntimeError.

        shared = SharedCache("redis://localhost:6379/0")
        await shared.open()
        try:
            builds, fetched_at = await shared.fetch_once(
                ("builds", "support-bot"), fetch, ttl=30, lock_ttl=15, wait=15
            )
        finally:
            await shared.close()

    Keys are tuples of strings, such as `("builds", "support-bot")`.

    Raises:
        ValueError: `url` is not a valid Redis URL (see `parse_redis_url`),
            `key_prefix` is empty, or a timeout or interval is not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        # Checks the URL here, so a bad setting fails at startup instead of at the first lookup.
        parse_redis_url(url)
        if not key_prefix:
            raise ValueError("key_prefix is empty: use a prefix such as 'builds-bot:cache:' so the keys of the cache stay apart")
        _require_positive("socket_timeout", socket_timeout)
        _require_positive("poll_interval", poll_interval)

        # The URL may contain a password: only `self._redacted_url` goes into messages and logs.
        self._url = url
        self._redacted_url = redact_url(url)
        self._prefix = key_prefix
        self._socket_timeout = socket_timeout
        self._poll_interval = poll_interval
        self._now = now
        self._connection: _Connection | None = None
        self._available = True

    def __repr__(self) -> str:
        return f"SharedCache({self._redacted_url!r}, key_prefix={self._prefix!r})"

    async def open(self) -> None:
        """Create the connection pool and check with PING that the server replies.

        An unreachable server is logged as an outage and does not raise, because
        every call falls back to fetching directly until the server is back.

        Raises:
            RuntimeError: the cache is already open.
        """
        if self._connection is not None:
            raise RuntimeError(f"shared cache {self._redacted_url} is already open")

        client = redis_asyncio.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            retry=Retry(NoBackoff(), retries=0),
        )
        self._connection = _Connection(
            client=client,
            lookup_or_lock=client.register_script(LOOKUP_OR_LOCK_SCRIPT),
            release=client.register_script(RELEASE_SCRIPT),
        )
        logger.info("shared_cache.opened", extra={"url": self._redacted_url, "key_prefix": self._prefix})

        try:
            await self._call(client.ping(), operation="ping", key=None)
        except REDIS_ERRORS:
            # `_call` logged the outage.
            return

    async def close(self) -> None:
        """Close the connection pool. Closing a closed cache does nothing."""
        connection = self._connection
        if connection is None:
            return

        self._connection = None
        try:
            await connection.client.aclose()
        except REDIS_ERRORS as error:
            logger.warning("shared_cache.close_failed", extra={"url": self._redacted_url, "error": repr(error)})
        logger.info("shared_cache.closed", extra={"url": self._redacted_url, "key_prefix": self._prefix})

    async def get(self, key: tuple[str, ...]) -> tuple[object, datetime] | None:
        """Return the stored value of `key` and when it was fetched, or None when none is stored or Redis fails."""
        value_key = self._value_key(key)
        try:
            text = await self._call(self._require_connection().client.get(value_key), operation="get", key=key)
        except REDIS_ERRORS:
            return None

        if text is None:
            return None
        return self._decode_or_none(key, text)

    async def put(self, key: tuple[str, ...], value: object, fetched_at: datetime, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds, or nothing when Redis fails.

        Raises:
            TypeError: `value` is not a type that `encode_value` accepts.
            ValueError: `ttl` is not a positive number of seconds.
        """
        record = _encode_record(value, fetched_at)
        milliseconds = _milliseconds("ttl", ttl)
        command = self._require_connection().client.set(self._value_key(key), record, px=milliseconds)
        try:
            await self._call(command, operation="put", key=key)
        except REDIS_ERRORS:
            return

    async def fetch_once(
        self,
        key: tuple[str, ...],
        fetch: Callable[[], Awaitable[V]],
        *,
        ttl: float,
        lock_ttl: float,
        wait: float,
    ) -> tuple[V, datetime]:
        """Return the stored value of `key` and when it was fetched, or call `fetch()` once for all replicas.

        The replica that takes the lock calls `fetch()` and stores a successful
        result for `ttl` seconds. The others wait up to `wait` seconds for that
        result, and call `fetch()` themselves when it does not come. `lock_ttl`
        should exceed the longest fetch, because once the lock expires another
        replica fetches too. When Redis fails, `fetch()` is called directly.

        Raises:
            Exception: whatever `fetch()` raises, unchanged. Errors are never stored.
            TypeError: `fetch()` returned a type that `encode_value` does not accept.
            ValueError: `ttl` or `lock_ttl` is not positive, or `wait` is negative.
        """
        lock_milliseconds = _milliseconds("lock_ttl", lock_ttl)
        _require_positive("ttl", ttl)
        if not wait >= 0 or math.isinf(wait):
            raise ValueError(f"wait must be a finite number of seconds of 0 or more, got {wait!r}")

        token = secrets.token_hex(16)
        lookup = self._require_connection().lookup_or_lock(keys=[self._value_key(key), self._lock_key(key)], args=[token, lock_milliseconds])
        try:
            status, text = await self._call(lookup, operation="fetch_once", key=key)
        except REDIS_ERRORS:
            return await self._fetch_directly(fetch)

        if int(status) == _FOUND:
            found = self._decode_or_none(key, text)
            if found is not None:
                return cast(tuple[V, datetime], found)
            # An undecodable record is a miss: this replica fetches and overwrites it.
            return await self._fetch_and_store(key, fetch, ttl=ttl)

        if int(status) == _LOCK_TAKEN:
            return await self._fetch_as_lock_holder(key, fetch, ttl=ttl, token=token)

        # Another replica holds the lock and fetches.
        waited = await self._wait_for_value(key, wait)
        if waited is not None:
            return cast(tuple[V, datetime], waited)
        return await self._fetch_and_store(key, fetch, ttl=ttl)

    # Steps of fetch_once

    async def _fetch_as_lock_holder(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[V]], *, ttl: float, token: str) -> tuple[V, datetime]:
        """Fetch and store the value while holding the lock, and delete the lock afterwards, also after an error."""
        try:
            return await self._fetch_and_store(key, fetch, ttl=ttl)
        finally:
            await self._release_lock(key, token)

    async def _release_lock(self, key: tuple[str, ...], token: str) -> None:
        connection = self._connection
        if connection is None:
            # The cache was closed during the fetch, and the lock expires after lock_ttl.
            return
        try:
            await self._call(connection.release(keys=[self._lock_key(key)], args=[token]), operation="release", key=key)
        except REDIS_ERRORS:
            # The lock expires after lock_ttl, and until then the other replicas fetch after `wait`.
            return

    async def _fetch_and_store(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[V]], *, ttl: float) -> tuple[V, datetime]:
        value = await fetch()
        fetched_at = self._now()
        await self.put(key, value, fetched_at, ttl)
        return value, fetched_at

    async def _fetch_directly(self, fetch: Callable[[], Awaitable[V]]) -> tuple[V, datetime]:
        value = await fetch()
        return value, self._now()

    async def _wait_for_value(self, key: tuple[str, ...], wait: float) -> tuple[object, datetime] | None:
        """Poll until another replica stores the value, and return it.

        Returns None when the lock is gone without a value, when `wait` seconds
        pass, or when Redis fails, so the caller fetches itself.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        keys = [self._value_key(key), self._lock_key(key)]
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.info("shared_cache.wait_timed_out", extra={"key": repr(key), "wait": wait})
                return None
            await asyncio.sleep(min(self._poll_interval, remaining))

            try:
                text, lock = await self._call(self._require_connection().client.mget(keys), operation="wait", key=key)
            except REDIS_ERRORS:
                return None

            # MGET reads both keys at one moment, and the holder stores the value before it deletes
            # the lock, so a missing lock without a value means the holder's fetch failed or its lock expired.
            if text is not None:
                return self._decode_or_none(key, text)
            if lock is None:
                logger.debug("shared_cache.lock_released_without_value", extra={"key": repr(key)})
                return None

    # Helpers

    async def _call(self, command: Awaitable[Any], *, operation: str, key: tuple[str, ...] | None) -> Any:
        """Await a Redis command, log the first failure of an outage and the first success after it, and re-raise failures."""
        try:
            result = await command
        except REDIS_ERRORS as error:
            if self._available:
                self._available = False
                logger.warning(
                    "shared_cache.unavailable",
                    extra={"url": self._redacted_url, "operation": operation, "key": repr(key), "error": repr(error)},
                )
            raise

        if not self._available:
            self._available = True
            logger.info("shared_cache.recovered", extra={"url": self._redacted_url, "operation": operation})
        return result

    def _decode_or_none(self, key: tuple[str, ...], text: str) -> tuple[object, datetime] | None:
        try:
            return _decode_record(text)
        except ValueError as error:
            logger.warning("shared_cache.undecodable", extra={"key": repr(key), "error": repr(error)})
            return None

    def _value_key(self, key: tuple[str, ...]) -> str:
        return f"{self._prefix}{FORMAT_VERSION}:value:{_key_text(key)}"

    def _lock_key(self, key: tuple[str, ...]) -> str:
        return f"{self._prefix}{FORMAT_VERSION}:lock:{_key_text(key)}"

    def _require_connection(self) -> _Connection:
        if self._connection is None:
            raise RuntimeError(f"shared cache {self._redacted_url} is closed: call open() before using it")
        return self._connection


def _key_text(key: tuple[str, ...]) -> str:
    """Return a lookup key as a JSON array, so no part can run into the next."""
    if not isinstance(key, tuple) or not all(isinstance(part, str) for part in key):
        raise TypeError(f"shared cache keys are tuples of strings such as ('builds', 'support-bot'), got {key!r}")
    return json.dumps(list(key), separators=(",", ":"))


def _require_positive(name: str, seconds: float) -> None:
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")


def _milliseconds(name: str, seconds: float) -> int:
    """Return a time to live in seconds as whole milliseconds, rounded up and at least 1."""
    _require_positive(name, seconds)
    return max(1, math.ceil(seconds * 1000))
