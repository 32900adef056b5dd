"""Tests for the TTL lookup cache and its single-flight fetching, with an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from bot.cache import LookupCache
from bot.errors import CacheMiss

TTL = 30.0
KEY = ("builds", "support")


class FakeClock:
    """A clock for the cache's `timer` that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingFetch:
    """A fetch function that counts its calls and can wait on an event before returning.

    Each call returns `value` followed by the call number, such as 'builds-1', so a
    test can tell a refetched value from a cached one.
    """

    def __init__(self, value: str = "builds", *, release: asyncio.Event | None = None, error: Exception | None = None) -> None:
        self.value = value
        self.release = release
        self.error = error
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return f"{self.value}-{self.calls}"


async def test_get_hit_within_ttl_skips_fetch() -> None:
    clock = FakeClock()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=clock)
    fetch = CountingFetch()

    first = await cache.get(KEY, fetch)
    clock.advance(TTL - 0.001)
    second = await cache.get(KEY, fetch)

    assert fetch.calls == 1
    assert first == "builds-1"
    assert second == "builds-1"


async def test_get_after_expiry_fetches_again() -> None:
    clock = FakeClock()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=clock)
    fetch = CountingFetch()

    await cache.get(KEY, fetch)
    clock.advance(TTL)
    refreshed = await cache.get(KEY, fetch)

    assert fetch.calls == 2
    assert refreshed == "builds-2"
    assert cache.peek(KEY) == "builds-2"


async def test_get_keys_cached_separately() -> None:
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    support = CountingFetch("support")
    sales = CountingFetch("sales")

    assert await cache.get(("builds", "support"), support) == "support-1"
    assert await cache.get(("builds", "sales"), sales) == "sales-1"
    assert await cache.get(("builds", "support"), support) == "support-1"
    assert support.calls == 1
    assert sales.calls == 1


async def test_get_error_not_cached() -> None:
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    failing = CountingFetch(error=LookupError("assistant 'support' not found"))

    with pytest.raises(LookupError, match="assistant 'support' not found"):
        await cache.get(KEY, failing)
    with pytest.raises(CacheMiss, match="is not cached"):
        cache.peek(KEY)
    with pytest.raises(LookupError, match="assistant 'support' not found"):
        await cache.get(KEY, failing)

    assert failing.calls == 2
    assert len(cache) == 0


async def test_get_after_error_fetches_again() -> None:
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    failing = CountingFetch(error=ConnectionError("connection reset"))
    working = CountingFetch()

    with pytest.raises(ConnectionError, match="connection reset"):
        await cache.get(KEY, failing)
    value = await cache.get(KEY, working)

    assert value == "builds-1"
    assert working.calls == 1


async def test_get_error_reaches_every_waiter() -> None:
    release = asyncio.Event()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    failing = CountingFetch(release=release, error=TimeoutError("upstream timed out"))

    waiters = [asyncio.create_task(cache.get(KEY, failing)) for _ in range(5)]
    await failing.started.wait()
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert failing.calls == 1
    assert all(isinstance(result, TimeoutError) for result in results)
    assert [str(result) for result in results] == ["upstream timed out"] * 5


async def test_get_concurrent_calls_share_one_fetch() -> None:
    release = asyncio.Event()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    fetch = CountingFetch(release=release)

    waiters = [asyncio.create_task(cache.get(KEY, fetch)) for _ in range(20)]
    await fetch.started.wait()
    release.set()
    results = await asyncio.gather(*waiters)

    assert fetch.calls == 1
    assert results == ["builds-1"] * 20


async def test_get_cancelled_waiter_keeps_shared_fetch() -> None:
    release = asyncio.Event()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    fetch = CountingFetch(release=release)

    cancelled = asyncio.create_task(cache.get(KEY, fetch))
    remaining = asyncio.create_task(cache.get(KEY, fetch))
    await fetch.started.wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()

    assert await remaining == "builds-1"
    assert fetch.calls == 1
    assert cache.peek(KEY) == "builds-1"


async def test_get_cancelled_only_waiter_keeps_fetch() -> None:
    """The fetch runs on after its only caller gives up, and a later caller shares its result."""
    release = asyncio.Event()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    fetch = CountingFetch(release=release)

    cancelled = asyncio.create_task(cache.get(KEY, fetch))
    await fetch.started.wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    late = asyncio.create_task(cache.get(KEY, fetch))
    release.set()

    assert await late == "builds-1"
    assert fetch.calls == 1


async def test_peek_empty_raises_cache_miss() -> None:
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())

    with pytest.raises(CacheMiss, match=r"\('builds', 'support'\) is not cached"):
        cache.peek(KEY)


async def test_peek_expired_raises_cache_miss() -> None:
    clock = FakeClock()
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=clock)
    await cache.get(KEY, CountingFetch())

    assert cache.peek(KEY) == "builds-1"
    clock.advance(TTL)
    with pytest.raises(CacheMiss, match="is not cached"):
        cache.peek(KEY)


async def test_peek_during_fetch_raises_cache_miss() -> None:
    cache: LookupCache[str] = LookupCache(ttl=TTL, timer=FakeClock())
    release = asyncio.Event()
    fetch = CountingFetch(release=release)
    pending = asyncio.create_task(cache.get(KEY, fetch))
    await fetch.started.wait()

    with pytest.raises(CacheMiss, match="is not cached"):
        cache.peek(KEY)
    release.set()
    await pending
    assert fetch.calls == 1


async def test_max_entries_bounds_cache_size() -> None:
    cache: LookupCache[str] = LookupCache(ttl=TTL, max_entries=2, timer=FakeClock())
    fetches = {name: CountingFetch(name) for name in ("support", "sales", "billing")}

    for name, fetch in fetches.items():
        await cache.get(name, fetch)

    assert len(cache) == 2
    assert cache.peek("billing") == "billing-1"
    with pytest.raises(CacheMiss, match="'support' is not cached"):
        cache.peek("support")


async def test_ttl_zero_caches_nothing() -> None:
    cache: LookupCache[str] = LookupCache(ttl=0, timer=FakeClock())
    fetch = CountingFetch()

    first = await cache.get(KEY, fetch)
    second = await cache.get(KEY, fetch)

    assert fetch.calls == 2
    assert (first, second) == ("builds-1", "builds-2")
    assert len(cache) == 0
    with pytest.raises(CacheMiss, match="is not cached"):
        cache.peek(KEY)


async def test_ttl_zero_still_shares_concurrent_fetch() -> None:
    release = asyncio.Event()
    cache: LookupCache[str] = LookupCache(ttl=0, timer=FakeClock())
    fetch = CountingFetch(release=release)

    waiters = [asyncio.create_task(cache.get(KEY, fetch)) for _ in range(10)]
    await fetch.started.wait()
    release.set()
    results = await asyncio.gather(*waiters)

    assert fetch.calls == 1
    assert results == ["builds-1"] * 10
