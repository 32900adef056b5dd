"""Wiring of the alert machinery: state store, channel commands, poller, sender, daily digests and callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.callbacks import callback_handler
from bot.alerts.poller import Poller
from bot.alerts.sender import AlertSender
from bot.alerts.service import AlertCommands
from bot.autopilot import AutopilotClient
from bot.config import Settings
from bot.core import ScopedBuilds
from bot.alerts.leadership import Leadership
from bot.digest import DigestScheduler
from bot.errors import StateUnavailableError
from bot.metrics import Metrics
from bot.retry import Sleep
from bot.state.sqlite import store_from_url

logger = logging.getLogger(__name__)

LOOP_STOP_TIMEOUT = 10.0
# Seconds between tries to open a state store that did not respond at start-up.
OPEN_RETRY_FIRST = 0.5
OPEN_RETRY_MAX = 30.0


class AlertRuntime:
    """Open the store, serve the channel commands, and run the poller, the sender and the digests until closed."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: AutopilotClient,
        slack_client: AsyncWebClient,
        token: str,
        clock: Callable[[], datetime],
        sleep: Sleep = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._slack_client = slack_client
        self._token = token
        self._clock = clock
        self.store = store_from_url(settings.state_url)
        self.leadership = Leadership(store=self.store, poll_interval=settings.poll_interval, on_lead=self._start_leading)
        self.sender = AlertSender(
            store=self.store, client=slack_client, token=token, clock=clock, sleep=sleep, metrics=metrics, holder=self.leadership.holder
        )
        self.poller = Poller(settings=settings, client=client, store=self.store, clock=clock, on_enqueued=self.sender.wake, metrics=metrics)
        self.commands = AlertCommands(settings=settings, store=self.store, clock=clock, on_subscribed=self.poller.trigger)
        self.digests: DigestScheduler | None = None
        self.opened = asyncio.Event()
        self.commands.available = self.opened.is_set
        self.leadership.available = self.opened.is_set
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._opening: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AlertRuntime:
        try:
            await self._open()
        except StateUnavailableError as error:
            # Lookups work without the store. Alert work waits, and the store is opened once it responds.
            logger.error("state.unavailable_at_start", extra={"error": str(error)})
            self.leadership.store_error = str(error)
            self._opening = asyncio.create_task(self._open_when_available(), name="alerts.open_store")
        return self

    async def _open(self) -> None:
        await self.store.open()
        if self._settings.alert_channel:
            await self.commands.subscribe_at_start(self._settings.alert_channel, self._settings.assistants)
        self.opened.set()

    async def _open_when_available(self) -> None:
        delay = OPEN_RETRY_FIRST
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            if self._stop.is_set():
                return
            try:
                await self._open()
            except StateUnavailableError:
                delay = min(delay * 2, OPEN_RETRY_MAX)
                continue
            logger.info("state.opened_after_outage", extra={"store": type(self.store).__name__})
            return

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._opening is not None:
            await self._opening
        if self._loops:
            done, pending = await asyncio.wait(self._loops, timeout=LOOP_STOP_TIMEOUT)
            for task in pending:
                logger.warning("alerts.loop_cancelled", extra={"task": task.get_name()})
                task.cancel()
        await self.store.close()

    def attach_digest(self, load_builds: Callable[[], Awaitable[list[ScopedBuilds]]]) -> DigestScheduler:
        """Create the daily digest scheduler, which reads builds with `load_builds`. `start_loops` then runs it."""
        self.digests = DigestScheduler(
            store=self.store,
            load_builds=load_builds,
            client=self._slack_client,
            token=self._token,
            clock=self._clock,
            stuck_after=self._settings.stuck_after,
        )
        return self.digests

    def start_loops(self) -> None:
        """Start the lease, and polling, sending and digests while leading, in the background.

        Closing the runtime stops them.
        """
        self._loops = [
            asyncio.create_task(self.leadership.run(self._stop), name="alerts.leadership"),
            asyncio.create_task(self.poller.run(self._stop, leading=self._leading), name="alerts.poller"),
            asyncio.create_task(self.sender.run(self._stop, leading=self._leading), name="alerts.sender"),
        ]
        if self.digests is not None:
            self._loops.append(asyncio.create_task(self.digests.run(self._stop, leading=self._leading), name="alerts.digests"))

    def _leading(self) -> bool:
        return self.leadership.is_leader

    def _start_leading(self) -> None:
        # A new leader polls and sends at once instead of waiting out the interval.
        self.poller.trigger()
        self.sender.wake()

    def callback_route(self) -> Callable[[web.Request], Awaitable[web.Response]] | None:
        """Return the Twilio status callback handler, or None when BUILDS_PUBLIC_URL is not set."""
        if self._settings.public_url is None:
            return None
        if self._settings.auth_token is None:
            logger.warning("callback.unverifiable", extra={"reason": "X-Twilio-Signature needs TWILIO_AUTH_TOKEN; every callback gets 403"})

        token = self._settings.auth_token.reveal() if self._settings.auth_token else None
        return callback_handler(public_url=self._settings.public_url, auth_token=token, trigger_poll=self.poller.trigger)
