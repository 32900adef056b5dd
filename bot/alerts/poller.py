"""The poller: read the newest builds of each subscribed assistant and enqueue alerts for changes.

Each poll reads one page per assistant, concurrently under a bound, compares
it with the stored state, and records the new state together with the
alerts for every subscribed channel in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from bot.alerts.detect import BuildEvent, detect_changes
from bot.alerts.messages import build_to_alert
from bot.autopilot import AutopilotClient
from bot.config import Settings
from bot.errors import AutopilotError, StateUnavailableError
from bot.metrics import Metrics
from bot.models import ModelBuild
from bot.state.base import ALL_ASSISTANTS, Alert, AssistantState, StateStore, Subscription

logger = logging.getLogger(__name__)

MAX_CONCURRENT_POLLS = 8
# Seen builds older than this cannot change any more, so they are dropped.
SEEN_RETENTION = timedelta(days=30)
FAILURE_KINDS = frozenset({"failure", "recovery", "stuck"})


class Poller:
    """Poll subscribed assistants every `settings.poll_interval` seconds, or at once when triggered."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: AutopilotClient,
        store: StateStore,
        clock: Callable[[], datetime],
        on_enqueued: Callable[[], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        self._clock = clock
        self._on_enqueued = on_enqueued
        self._metrics = metrics or Metrics()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_POLLS)
        self.triggers = 0

    def trigger(self) -> None:
        """Start the next poll now instead of at the end of the interval; `triggers` counts the calls."""
        self.triggers += 1
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, leading: Callable[[], bool] = lambda: True) -> None:
        """Poll while `leading()` is true, until `stop` is set; an unreachable store only delays the next poll."""
        logger.info("poller.started", extra={"interval": self._settings.poll_interval})
        while not stop.is_set():
            if leading():
                try:
                    await self.poll_all()
                except StateUnavailableError as error:
                    logger.warning("poller.state_unavailable", extra={"error": str(error)})
            await _wait_any(self._wake, stop, timeout=self._settings.poll_interval)
            self._wake.clear()
        logger.info("poller.stopped")

    async def poll_all(self) -> int:
        """Poll every subscribed assistant once and return how many alerts were enqueued."""
        by_assistant = await self._subscriptions_by_assistant()
        counts = await asyncio.gather(*(self._poll_bounded(assistant, subs) for assistant, subs in by_assistant.items()))
        await self._store.prune_seen(self._clock() - SEEN_RETENTION)
        return sum(counts)

    async def poll_one(self, assistant: str, subscriptions: list[Subscription]) -> int:
        """Poll one assistant, record what changed, and return how many alerts were enqueued."""
        now = self._clock()
        listing = await self._client.recent_builds(assistant)
        state = await self._store.assistant_state(assistant)
        previous = await self._store.seen_builds(assistant)

        detection = detect_changes(
            assistant,
            listing.items,
            previous=previous,
            state=state,
            now=now,
            catchup_window=self._settings.catchup_window,
            stuck_after=self._settings.stuck_after,
        )
        alerts = [alert for event in detection.events for alert in _alerts_for(assistant, event, subscriptions)]
        new_state = AssistantState(
            assistant,
            baseline_at=state.baseline_at if state else now,
            red=detection.red,
            assistant_sid=_assistant_sid(listing.items) or (state.assistant_sid if state else None),
        )
        ids = await self._store.record_poll(new_state, detection.seen, alerts, at=now)
        self._metrics.polled(assistant)

        if state is None:
            logger.info("poller.baseline_recorded", extra={"assistant": assistant, "builds": len(detection.seen)})
        if ids:
            logger.info("poller.alerts_enqueued", extra={"assistant": assistant, "outbox_ids": ids})
            self._on_enqueued()
        return len(ids)

    async def _poll_bounded(self, assistant: str, subscriptions: list[Subscription]) -> int:
        async with self._slots:
            try:
                return await self.poll_one(assistant, subscriptions)
            except AutopilotError as error:
                logger.warning("poller.poll_failed", extra={"assistant": assistant, "error_type": type(error).__name__, "error": str(error)})
                return 0

    async def _subscriptions_by_assistant(self) -> dict[str, list[Subscription]]:
        subscriptions = await self._store.subscriptions()
        by_assistant: dict[str, list[Subscription]] = defaultdict(list)
        for subscription in subscriptions:
            if subscription.assistant != ALL_ASSISTANTS:
                by_assistant[subscription.assistant].append(subscription)

        everything = [subscription for subscription in subscriptions if subscription.assistant == ALL_ASSISTANTS]
        if everything:
            for assistant in await self._scope():
                by_assistant[assistant].extend(everything)
        return dict(by_assistant)

    async def _scope(self) -> list[str]:
        if self._settings.assistants:
            return list(self._settings.assistants)

        try:
            listing = await self._client.list_assistants()
        except AutopilotError as error:
            logger.warning("poller.scope_failed", extra={"error_type": type(error).__name__, "error": str(error)})
            return []
        return [key for key in (assistant.unique_name or assistant.sid for assistant in listing.items) if key]


def wants(subscription: Subscription, kind: str) -> bool:
    """Return whether a subscription at its level receives alerts of `kind`."""
    return kind in FAILURE_KINDS or subscription.level == "all"


def _alerts_for(assistant: str, event: BuildEvent, subscriptions: Iterable[Subscription]) -> list[Alert]:
    channels = sorted({subscription.channel_id for subscription in subscriptions if wants(subscription, event.kind)})
    return [Alert(channel, assistant, event.kind, build_to_alert(event.build)) for channel in channels]


def _assistant_sid(builds: Iterable[ModelBuild]) -> str | None:
    return next((build.assistant_sid for build in builds if build.assistant_sid), None)


async def _wait_any(first: asyncio.Event, second: asyncio.Event, *, timeout: float) -> None:
    waiters = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
