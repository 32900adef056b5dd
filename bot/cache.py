"""A bounded TTL cache of lookups with single-flight fetching and stale-if-error.

Concurrent callers of one key share one in-flight fetch, so twenty people
asking for the same assistant at once cause one upstream request. Only
successful results are stored: an error reaches every waiting caller and the
next call fetches again. When a refresh fails with an error that `stale_on`
accepts, the last good result of that key is returned instead, for up to
`stale_max` seconds after it was fetched, marked with the error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from cachetools import TTLCache

from bot.errors import CacheMiss
from bot.metrics import Metrics
from bot.shared_cache import SharedCache

logger = logging.getLogger(__name__)

V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 1024
# A replica waits at most this long for another replica's fetch of the same key before fetching itself.
DEFAULT_SHARED_WAIT = 30.0


def _shareable(key: Hashable) -> tuple[str, ...] | None:
    if isinstance(key, tuple) and all(isinstance(part, str) for part in key):
        return key
    return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _never(_: Exception) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Entry(Generic[V]):
    """A cached value, when it was fetched, and the error that made it stale, if any."""

    value: V
    fetched_at: datetime
    stale_because: Exception | None = None

    @property
    def stale(self) -> bool:
        """Return whether this value is served because a refresh failed."""
        return self.stale_because is not None


class LookupCache(Generic[V]):
    """Cache results by key for `ttl` seconds, fetching each missing key once at a time."""

    def __init__(
        self,
        *,
        ttl: float,
        stale_max: float = 0.0,
        stale_on: Callable[[Exception], bool] = _never,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        timer: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        metrics: Metrics | None = None,
        shared: SharedCache | None = None,
        shared_wait: float = DEFAULT_SHARED_WAIT,
    ) -> None:
        self._ttl = ttl
        self._entries: TTLCache[Hashable, Entry[V]] | None = None
        if ttl > 0:
            self._entries = TTLCache(maxsize=max_entries, ttl=ttl, timer=timer)
        self._last_good: TTLCache[Hashable, Entry[V]] | None = None
        if stale_max > 0:
            self._last_good = TTLCache(maxsize=max_entries, ttl=stale_max, timer=timer)
        self._stale_on = stale_on
        self._now = now
        self._metrics = metrics or Metrics()
        self._shared = shared
        self._shared_wait = shared_wait
        self._in_flight: dict[Hashable, asyncio.Task[Entry[V]]] = {}

    def __len__(self) -> int:
        return 0 if self._entries is None else len(self._entries)

    def peek(self, key: Hashable) -> V:
        """Return the fresh cached value for `key` without fetching, or raise `CacheMiss`."""
        return self.peek_entry(key).value

    def peek_entry(self, key: Hashable) -> Entry[V]:
        """Return the fresh cache entry for `key` without fetching, or raise `CacheMiss`."""
        if self._entries is not None and key in self._entries:
            return self._entries[key]
        raise CacheMiss(f"{key!r} is not cached")

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> V:
        """Return the cached value for `key`, or await one shared call of `fetch`."""
        return (await self.get_entry(key, fetch)).value

    async def get_entry(self, key: Hashable, fetch: Callable[[], Awaitable[V]], *, refresh: bool = False) -> Entry[V]:
        """Return the cache entry for `key`, fetching it once for all concurrent callers when missing.

        With `refresh`, the fresh entry is dropped first, so the value is fetched again. The last good
        value is still returned if that fetch fails.
        """
        if refresh and self._entries is not None:
            self._entries.pop(key, None)
        try:
            entry = self.peek_entry(key)
        except CacheMiss:
            self._metrics.cache_lookups.labels(result="miss").inc()
        else:
            self._metrics.cache_lookups.labels(result="hit").inc()
            return entry

        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch, refresh=refresh))
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))

        # A caller that gives up must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[Entry[V]]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]

        # Mark the error as retrieved: every waiter may have given up already.
        if not task.cancelled():
            task.exception()

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[V]], *, refresh: bool = False) -> Entry[V]:
        try:
            value, fetched_at = await self._fetch_value(key, fetch, refresh=refresh)
        except Exception as error:
            return self._stale_or_raise(key, error)

        entry = Entry(value, fetched_at)
        if self._entries is not None:
            self._entries[key] = entry
        if self._last_good is not None:
            self._last_good[key] = entry
        logger.debug("cache.stored", extra={"key": repr(key), "ttl": self._ttl})
        return entry

    async def _fetch_value(self, key: Hashable, fetch: Callable[[], Awaitable[V]], *, refresh: bool) -> tuple[V, datetime]:
        shared_key = _shareable(key)
        # Without a shared cache, or for a key it cannot hold, this process fetches on its own.
        if self._shared is None or self._ttl <= 0 or shared_key is None:
            return await fetch(), self._now()

        if refresh:
            value = await fetch()
            fetched_at = self._now()
            await self._shared.put(shared_key, value, fetched_at, self._ttl)
            return value, fetched_at

        # One replica fetches for all; the others wait up to `shared_wait` for its result.
        return await self._shared.fetch_once(shared_key, fetch, ttl=self._ttl, lock_ttl=self._shared_wait, wait=self._shared_wait)

    def _stale_or_raise(self, key: Hashable, error: Exception) -> Entry[V]:
        last_good = self._last_good.get(key) if self._last_good is not None else None
        if last_good is None or not self._stale_on(error):
            raise error

        self._metrics.cache_lookups.labels(result="stale").inc()
        logger.warning(
            "cache.serving_stale",
            extra={"key": repr(key), "fetched_at": last_good.fetched_at.isoformat(), "error_type": type(error).__name__},
        )
        return dataclasses.replace(last_good, stale_because=error)
