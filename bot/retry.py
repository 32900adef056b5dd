"""Retry timing shared by the Autopilot client and the Slack clients.

Waits honour a server's `Retry-After` (delay-seconds or an HTTP date, RFC 9110
section 10.2.3) and otherwise use exponential backoff with full jitter. The
sleep function and the clock are injected, so tests run every retry path
without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Sleep = Callable[[float], Awaitable[None]]

DEFAULT_ATTEMPTS = 4
DEFAULT_LOOKUP_TIMEOUT = 30.0
BASE_DELAY = 0.5
MAX_DELAY = 8.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one lookup.

    `attempts` counts the first try. `deadline` caps the seconds from the first
    try to the last response, waits included.
    """

    attempts: int = DEFAULT_ATTEMPTS
    deadline: float = DEFAULT_LOOKUP_TIMEOUT
    base_delay: float = BASE_DELAY
    max_delay: float = MAX_DELAY
    sleep: Sleep = field(default=asyncio.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    jitter: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def backoff(self, retry: int) -> float:
        """Return the wait before retry number `retry` (1 for the first retry): full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return self.jitter(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait in seconds that a `Retry-After` header requests, or None when absent or invalid."""
    if value is None or not value.strip():
        return None

    text = value.strip()
    if text.isdigit():
        return float(text)

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)
