"""Delivery of a reply after the acknowledgement: response_url first, chat.postEphemeral as fallback.

Slack accepts up to 5 messages through one response_url within 30 minutes of
the command. `ResponseUrls` counts uses and age, so a reply never relies on a
used-up or expired URL. When the URL fails anyway (404, expired, used), the
same reply goes to the same user and channel with `chat.postEphemeral`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import ClientError, ClientSession
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.render import Reply

logger = logging.getLogger(__name__)

RESPONSE_URL_MAX_USES = 5
# Slack's limit is 30 minutes; a minute of margin covers the time a request takes.
RESPONSE_URL_LIFETIME = 29 * 60.0
MAX_TRACKED_URLS = 10_000

Channel = Literal["response_url", "ephemeral", "channel", "failed"]
Mode = Literal["ephemeral", "replace", "in_channel"]


@dataclass
class _Usage:
    first_seen: float
    uses: int = 0


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """The destination of a reply: the command's response_url, and its channel and user for the fallback."""

    response_url: str | None
    channel_id: str | None
    user_id: str | None

    def ids(self) -> dict[str, str | None]:
        """Return the ids to log with every delivery event."""
        return {"channel_id": self.channel_id, "user_id": self.user_id}


class ResponseUrls:
    """Track when each response_url was first seen and how often it was used."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Entries expire RESPONSE_URL_LIFETIME after the command; uses update them in place.
        self._usage: TTLCache[str, _Usage] = TTLCache(maxsize=MAX_TRACKED_URLS, ttl=RESPONSE_URL_LIFETIME, timer=clock)

    def register(self, url: str) -> None:
        """Start tracking a response_url when its command arrives."""
        if url not in self._usage:
            self._usage[url] = _Usage(first_seen=self._clock())

    def usable(self, url: str) -> bool:
        """Return whether `url` is known, younger than its lifetime and has uses left."""
        usage = self._usage.get(url)
        return usage is not None and usage.uses < RESPONSE_URL_MAX_USES

    def record_use(self, url: str) -> None:
        """Count one message sent through `url`."""
        usage = self._usage.get(url)
        if usage is not None:
            usage.uses += 1


class ReplyDelivery:
    """Send replies through response_url, falling back to `chat.postEphemeral`."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        token: str,
        response_urls: ResponseUrls,
        retry_handlers: list[AsyncRetryHandler],
        session: ClientSession | None = None,
    ) -> None:
        self._client = client
        self._token = token
        self.response_urls = response_urls
        self._retry_handlers = retry_handlers
        # Without a session, slack-sdk opens a new one, and so a new connection, for every message.
        # A given session's timeout replaces slack-sdk's 30 s, and its owner closes it after the last reply.
        self._session = session

    async def send(self, reply: Reply, target: ReplyTarget, *, mode: Mode = "ephemeral") -> Channel:
        """Deliver `reply` and return the channel that worked, or `failed`.

        `ephemeral` posts a new message visible only to the user, `replace` updates the message whose
        button was clicked, and `in_channel` posts for everyone in the channel.
        """
        payload = _payload(reply, mode)
        url = target.response_url
        if url and self.response_urls.usable(url):
            if await self._via_response_url(url, payload, target):
                return "response_url"
        else:
            logger.warning("delivery.response_url_unusable", extra=target.ids())

        if mode == "in_channel":
            return "channel" if await self._via_channel(payload, target) else "failed"
        if await self._via_ephemeral(payload, target):
            return "ephemeral"
        return "failed"

    async def _via_response_url(self, url: str, payload: Mapping[str, Any], target: ReplyTarget) -> bool:
        webhook = AsyncWebhookClient(url, retry_handlers=list(self._retry_handlers), session=self._session)
        self.response_urls.record_use(url)
        try:
            response = await webhook.send_dict(dict(payload))
        except (ClientError, TimeoutError) as error:
            logger.warning("delivery.response_url_failed", extra={**target.ids(), "error": repr(error)})
            return False

        if response.status_code != 200:
            logger.warning(
                "delivery.response_url_rejected",
                extra={**target.ids(), "status": response.status_code, "body": (response.body or "")[:100]},
            )
            return False
        return True

    async def _via_channel(self, payload: Mapping[str, Any], target: ReplyTarget) -> bool:
        if not target.channel_id:
            return False
        try:
            await self._client.chat_postMessage(
                token=self._token, channel=target.channel_id, text=payload["text"], blocks=payload["blocks"], link_names=False, parse="none"
            )
        except (SlackApiError, ClientError, TimeoutError) as error:
            logger.error("delivery.failed", extra={**target.ids(), "error": repr(error)})
            return False
        return True

    async def _via_ephemeral(self, payload: Mapping[str, Any], target: ReplyTarget) -> bool:
        if not target.channel_id or not target.user_id:
            logger.error("delivery.failed", extra={**target.ids(), "reason": "no channel or user for chat.postEphemeral"})
            return False

        try:
            await self._client.chat_postEphemeral(
                token=self._token, channel=target.channel_id, user=target.user_id, text=payload["text"], blocks=payload["blocks"]
            )
        except SlackApiError as error:
            logger.error("delivery.failed", extra={**target.ids(), "slack_error": slack_error_code(error)})
            return False
        except (ClientError, TimeoutError) as error:
            logger.error("delivery.failed", extra={**target.ids(), "error": repr(error)})
            return False

        logger.info("delivery.sent_ephemeral", extra=target.ids())
        return True


def _payload(reply: Reply, mode: Mode) -> dict[str, Any]:
    payload = reply.to_dict()
    if mode == "replace":
        return {**payload, "replace_original": True}
    # A new message: a button's response_url must not overwrite the message it belongs to.
    response_type = "in_channel" if mode == "in_channel" else "ephemeral"
    return {**payload, "response_type": response_type, "replace_original": False}


def slack_error_code(error: SlackApiError) -> str:
    """Return Slack's error code (such as `not_in_channel`), or the HTTP status when the body was not JSON."""
    response = error.response
    if isinstance(response, Mapping) or hasattr(response, "get") and not hasattr(response, "status"):
        return str(response.get("error"))
    return f"HTTP {getattr(response, 'status', '?')}"
