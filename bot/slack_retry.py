"""Retry handlers for slack-sdk's async Web API and webhook clients.

slack-sdk's own rate-limit handler misses two cases, so this module has its
own. A 429 whose body is not JSON reaches the Web API client as a
`SlackApiError` without a response, which that handler ignores. With aiohttp
it also reads only the first character of `Retry-After` (slack-sdk 3.48).
Connection and server errors use slack-sdk's handlers with a backoff that
takes an injected sleep.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler, AsyncServerErrorRetryHandler
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.retry import BASE_DELAY, MAX_DELAY, Sleep, parse_retry_after

logger = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 3
CONNECTION_RETRIES = 2
SERVER_ERROR_RETRIES = 2
# The wait when a 429 carries no Retry-After, as slack-sdk's own handler uses.
DEFAULT_RATE_LIMIT_WAIT = 1.0


class FullJitterInterval(RetryIntervalCalculator):
    """Exponential backoff with full jitter: a random wait up to `base * 2**attempt`, capped."""

    def __init__(self, *, base: float = BASE_DELAY, cap: float = MAX_DELAY, jitter: Callable[[float, float], float] = random.uniform) -> None:
        self._base = base
        self._cap = cap
        self._jitter = jitter

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        """Return the wait before the next attempt; `current_attempt` counts retries done so far."""
        return self._jitter(0.0, min(self._cap, self._base * 2**current_attempt))


class BackoffRetry(AsyncRetryHandler):
    """A slack-sdk retry handler whose waits go through an injected sleep function."""

    def __init__(self, *, max_retry_count: int, interval: RetryIntervalCalculator, sleep: Sleep) -> None:
        super().__init__(max_retry_count, interval)
        self._sleep = sleep

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        delay = self.interval_calculator.calculate_sleep_duration(state.current_attempt)
        logger.warning("slack.retrying", extra={"url": request.url, "attempt": state.current_attempt + 1, "delay": round(delay, 3)})
        state.next_attempt_requested = True
        await self._sleep(delay)
        state.increment_current_attempt()


class ConnectionErrorRetry(BackoffRetry, AsyncConnectionErrorRetryHandler):
    """Retry connection failures with backoff."""


class ServerErrorRetry(BackoffRetry, AsyncServerErrorRetryHandler):
    """Retry 500 and 503 responses from Slack with backoff."""


class RateLimitRetry(AsyncRetryHandler):
    """Retry 429 responses after the `Retry-After` wait, whatever the body's format."""

    def __init__(self, *, max_retry_count: int = RATE_LIMIT_RETRIES, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(max_retry_count)
        self._sleep = sleep

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return _rate_limit_headers(response, error) is not None

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        headers = _rate_limit_headers(response, error) or {}
        delay = _header_wait(headers)
        logger.warning("slack.rate_limited", extra={"url": request.url, "attempt": state.current_attempt + 1, "delay": delay})
        state.next_attempt_requested = True
        await self._sleep(delay)
        state.increment_current_attempt()


def build_retry_handlers(*, sleep: Sleep = asyncio.sleep, interval: RetryIntervalCalculator | None = None) -> list[AsyncRetryHandler]:
    """Return the handlers for every Slack client: rate limits, connection errors, server errors."""
    backoff = interval or FullJitterInterval()
    return [
        RateLimitRetry(sleep=sleep),
        ConnectionErrorRetry(max_retry_count=CONNECTION_RETRIES, interval=backoff, sleep=sleep),
        ServerErrorRetry(max_retry_count=SERVER_ERROR_RETRIES, interval=backoff, sleep=sleep),
    ]


def _rate_limit_headers(response: HttpResponse | None, error: Exception | None) -> Mapping[str, object] | None:
    if response is not None and response.status_code == 429:
        return response.headers

    # A 429 with a body that is not JSON arrives as an error carrying the aiohttp response.
    raw = getattr(error, "response", None) if isinstance(error, SlackApiError) else None
    if raw is not None and getattr(raw, "status", None) == 429:
        return dict(raw.headers)
    return None


def _header_wait(headers: Mapping[str, object]) -> float:
    for key, value in headers.items():
        if key.lower() != "retry-after":
            continue
        # slack-sdk keeps headers as lists of values; aiohttp keeps single strings.
        text = value[0] if isinstance(value, list) and value else value
        seconds = parse_retry_after(str(text))
        return DEFAULT_RATE_LIMIT_WAIT if seconds is None else seconds
    return DEFAULT_RATE_LIMIT_WAIT
