"""A bounded TTL cache of lookups with single-flight fetching.

Concurrent callers of one key share one in-flight fetch, so twenty people
asking for the same assistant at once cause one upstream request. Only
successful results are stored: an error reaches every waiting caller and the
next call fetches again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

from bot.errors import CacheMiss

logger = logging.getLogger(__name__)

V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 1024


class LookupCache(Generic[V]):
    """Cache results by key for `ttl` seconds, fetching each missing key once at a time."""

    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._entries: TTLCache[Hashable, V] | None = None
        if ttl > 0:
            self._entries = TTLCache(maxsize=max_entries, ttl=ttl, timer=timer)
        self._in_flight: dict[Hashable, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return 0 if self._entries is None else len(self._entries)

    def peek(self, key: Hashable) -> V:
        """Return the cached value for `key` without fetching, or raise `CacheMiss`."""
        if self._entries is not None and key in self._entries:
            return self._entries[key]
        raise CacheMiss(f"{key!r} is not cached")

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> V:
        """Return the cached value for `key`, or await one shared call of `fetch`."""
        try:
            return self.peek(key)
        except CacheMiss:
            pass

        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))

        # A caller that gives up must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[V]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]

        # Mark the error as retrieved: every waiter may have given up already.
        if not task.cancelled():
            task.exception()

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> V:
        value = await fetch()
        if self._entries is not None:
            self._entries[key] = value
        logger.debug("cache.stored", extra={"key": repr(key), "ttl": self._ttl})
        return value
