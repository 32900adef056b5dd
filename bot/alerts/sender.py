"""The outbox sender: deliver enqueued alerts in order, paced per channel, and mark them sent.

An alert is marked sent only after Slack accepted it, in the same transaction
that saves the thread it opened or changed. A crash between the post and the
mark makes the alert go out once more after the restart; nothing else repeats
it. A failed alert stays in the outbox, is retried with backoff, and its
error shows on the channel's subscriptions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts import messages
from bot.delivery import slack_error_code
from bot.errors import StateUnavailableError
from bot.metrics import Metrics
from bot.models import ModelBuild
from bot.render import Reply
from bot.retry import Sleep
from bot.state.base import ALL_ASSISTANTS, OutboxItem, StateStore, Thread

logger = logging.getLogger(__name__)

# Slack accepts about one message per second per channel.
CHANNEL_PACE = 1.0
RETRY_BASE = timedelta(seconds=15)
RETRY_MAX = timedelta(minutes=10)
IDLE_CHECK = 5.0
# Long enough for one delivery with Slack's retries; a crashed claimant's alerts are retried after it.
CLAIM_TTL = 120.0


class DeliveryFailed(Exception):
    """Slack did not accept an alert; the message is Slack's error code or the transport error."""


class AlertSender:
    """Send outbox alerts to Slack, one channel at a time in order, channels in parallel."""

    def __init__(
        self,
        *,
        store: StateStore,
        client: AsyncWebClient,
        token: str,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        pace: float = CHANNEL_PACE,
        metrics: Metrics | None = None,
        holder: str = "local",
    ) -> None:
        self._store = store
        self._client = client
        self._token = token
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._pace = pace
        self._metrics = metrics or Metrics()
        self._holder = holder
        self._last_post: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def wake(self) -> None:
        """Send what is due now instead of at the next idle check."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, leading: Callable[[], bool] = lambda: True) -> None:
        """Send due alerts while `leading()` is true, until `stop` is set, waking on new alerts and every few seconds."""
        logger.info("sender.started")
        while not stop.is_set():
            self._wake.clear()
            if leading():
                try:
                    await self.send_due()
                except StateUnavailableError as error:
                    logger.warning("sender.state_unavailable", extra={"error": str(error)})
            waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            await asyncio.wait(waiters, timeout=IDLE_CHECK, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        logger.info("sender.stopped")

    async def send_due(self) -> int:
        """Send every alert that is due, keeping each channel's order, and return how many were sent."""
        async with self._lock:
            by_channel: dict[str, list[OutboxItem]] = defaultdict(list)
            for item in await self._store.pending_alerts():
                by_channel[item.alert.channel_id].append(item)
            sent = await asyncio.gather(*(self._send_channel(items) for items in by_channel.values()))
            self._metrics.outbox_size.set(len(await self._store.pending_alerts()))
        return sum(sent)

    async def _send_channel(self, items: list[OutboxItem]) -> int:
        sent = 0
        for item in items:
            # A later alert never overtakes an earlier one of the same channel.
            if item.next_attempt_at is not None and item.next_attempt_at > self._clock():
                break
            if not await self._send_one(item):
                break
            sent += 1
        return sent

    async def _send_one(self, item: OutboxItem) -> bool:
        alert = item.alert
        ids = {"outbox_id": item.id, "channel_id": alert.channel_id, "assistant": alert.assistant, "kind": alert.kind}
        # Another replica that still believes it leads may be sending this alert; only the claimant sends.
        if not await self._store.claim_alert(item.id, self._holder, ttl=CLAIM_TTL):
            logger.info("sender.alert_claimed_elsewhere", extra=ids)
            return False
        now = self._clock()
        mute = await self._store.active_mute(alert.channel_id, alert.assistant, now=now)
        if mute is not None:
            await self._store.mark_sent(item.id, at=now, thread=await self._muted_thread(item))
            logger.info("sender.alert_muted", extra={**ids, "muted_by": mute.muted_by})
            return True

        try:
            thread = await self._deliver(item)
        except DeliveryFailed as error:
            await self._record_failure(item, str(error), ids)
            return False

        await self._store.mark_sent(item.id, at=now, thread=thread)
        await self._record_delivery(alert.channel_id, alert.assistant, at=now, error=None)
        self._metrics.alerts_sent.labels(kind=alert.kind).inc()
        logger.info("sender.alert_sent", extra=ids)
        return True

    async def _muted_thread(self, item: OutboxItem) -> Thread | None:
        # A failure during a mute still lengthens an open streak, so its count stays true.
        thread = await self._store.thread(item.alert.channel_id, item.alert.assistant)
        if item.alert.kind != "failure" or thread is None or thread.state != "red":
            return None
        return dataclasses.replace(thread, failures=thread.failures + 1)

    async def _deliver(self, item: OutboxItem) -> Thread | None:
        alert = item.alert
        now = self._clock()
        build = messages.build_from_alert(alert.build)
        thread = await self._store.thread(alert.channel_id, alert.assistant)
        if alert.kind == "failure":
            return await self._failure(alert.channel_id, alert.assistant, build, thread, now=now)
        if alert.kind == "recovery":
            return await self._recovery(alert.channel_id, alert.assistant, build, thread, now=now)

        reply = messages.stuck_message(alert.assistant, build, now=now) if alert.kind == "stuck" else messages.completed_message(alert.assistant, build, now=now)
        await self._post(alert.channel_id, reply)
        return None

    async def _failure(self, channel: str, assistant: str, build: ModelBuild, thread: Thread | None, *, now: datetime) -> Thread:
        if thread is None or thread.state != "red":
            ts = await self._post(channel, messages.failure_parent(assistant, build, failures=1, now=now))
            return Thread(channel, assistant, ts, "red", 1, now, build.name)

        failures = thread.failures + 1
        await self._post(channel, messages.failure_reply(assistant, build, failures=failures, now=now), thread_ts=thread.parent_ts)
        parent = messages.failure_parent(assistant, build, failures=failures, now=now, first_build=thread.first_build)
        await self._update(channel, thread.parent_ts, parent)
        return dataclasses.replace(thread, failures=failures)

    async def _recovery(self, channel: str, assistant: str, build: ModelBuild, thread: Thread | None, *, now: datetime) -> Thread | None:
        if thread is None or thread.state != "red":
            # No streak was announced here, so only a channel that follows every build hears of it.
            if await self._follows_every_build(channel, assistant):
                await self._post(channel, messages.completed_message(assistant, build, now=now))
            else:
                logger.info("sender.recovery_without_thread", extra={"channel_id": channel, "assistant": assistant})
            return None

        await self._post(channel, messages.recovery_reply(assistant, build, failures=thread.failures, now=now), thread_ts=thread.parent_ts)
        await self._update(channel, thread.parent_ts, messages.recovered_parent(assistant, build, failures=thread.failures, now=now))
        return dataclasses.replace(thread, state="green")

    async def _follows_every_build(self, channel: str, assistant: str) -> bool:
        subscriptions = await self._store.subscriptions(channel)
        return any(item.level == "all" and item.assistant in (assistant, ALL_ASSISTANTS) for item in subscriptions)

    async def _post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str:
        await self._wait_for_turn(channel)
        payload = reply.to_dict()
        try:
            response = await self._client.chat_postMessage(
                token=self._token,
                channel=channel,
                text=payload["text"],
                blocks=payload["blocks"],
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                link_names=False,
                parse="none",
            )
        except SlackApiError as error:
            raise DeliveryFailed(slack_error_code(error)) from error
        except (ClientError, TimeoutError) as error:
            raise DeliveryFailed(type(error).__name__) from error
        return str(response["ts"])

    async def _update(self, channel: str, ts: str, reply: Reply) -> None:
        payload = reply.to_dict()
        try:
            await self._client.chat_update(token=self._token, channel=channel, ts=ts, text=payload["text"], blocks=payload["blocks"])
        except (SlackApiError, ClientError, TimeoutError) as error:
            # The thread reply went out; a stale parent is better than a repeated reply.
            logger.warning("sender.parent_update_failed", extra={"channel_id": channel, "ts": ts, "error": repr(error)})

    async def _wait_for_turn(self, channel: str) -> None:
        last = self._last_post.get(channel)
        if last is not None:
            wait = last + self._pace - self._monotonic()
            if wait > 0:
                await self._sleep(wait)
        self._last_post[channel] = self._monotonic()

    async def _record_failure(self, item: OutboxItem, error: str, ids: dict[str, object]) -> None:
        now = self._clock()
        delay = min(RETRY_MAX, RETRY_BASE * 2**item.attempts)
        await self._store.mark_failed(item.id, error=error, next_attempt_at=now + delay)
        self._metrics.alerts_failed.labels(kind=item.alert.kind).inc()
        await self._record_delivery(item.alert.channel_id, item.alert.assistant, at=now, error=error)
        logger.error("sender.alert_failed", extra={**ids, "error": error, "attempts": item.attempts + 1, "retry_in": delay.total_seconds()})

    async def _record_delivery(self, channel: str, assistant: str, *, at: datetime, error: str | None) -> None:
        # The alert may have come from a subscription to every assistant.
        await self._store.record_delivery(channel, assistant, at=at, error=error)
        await self._store.record_delivery(channel, ALL_ASSISTANTS, at=at, error=error)
