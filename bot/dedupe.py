"""Bolt middleware that drops Slack's retries of a request the bot already received.

Slack sends a request again, with `X-Slack-Retry-Num`, when the first one got
no timely response. Each request is recognised by an id Slack puts in its body
(event_id, trigger_id, or the response_url of a command). A repeat is
acknowledged with an empty 200 and never reaches a listener, so it causes no
second reply and no second upstream request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import TTLCache
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

logger = logging.getLogger(__name__)

# Slack retries within minutes; an hour of memory covers every retry.
SEEN_FOR_SECONDS = 3600.0
MAX_SEEN = 50_000


class RetryDeduplicator:
    """Remember request ids for an hour and acknowledge repeats without running listeners.

    NOTE: The memory is per process. Behind a load balancer, a retry that reaches another
    replica than the first attempt is not recognised.
    """

    def __init__(self, *, timer: Callable[[], float] | None = None) -> None:
        if timer is None:
            self._seen: TTLCache[str, bool] = TTLCache(maxsize=MAX_SEEN, ttl=SEEN_FOR_SECONDS)
        else:
            self._seen = TTLCache(maxsize=MAX_SEEN, ttl=SEEN_FOR_SECONDS, timer=timer)

    async def __call__(self, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        key = request_key(req.body)
        if key is None:
            return await next()

        if key in self._seen:
            logger.info(
                "request.duplicate_dropped",
                extra={"request_key": key[:80], "retry_num": _header(req, "x-slack-retry-num"), "retry_reason": _header(req, "x-slack-retry-reason")},
            )
            return BoltResponse(status=200, body="")

        self._seen[key] = True
        return await next()


def request_key(body: dict[str, Any]) -> str | None:
    """Return the id that Slack repeats on every retry of this request, or None."""
    for field in ("event_id", "trigger_id", "response_url"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return f"{field}:{value}"
    return None


def _header(req: AsyncBoltRequest, name: str) -> str | None:
    values = req.headers.get(name)
    return values[0] if values else None
