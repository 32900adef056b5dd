"""Leadership among replicas: one holder of a renewable lease polls, sends alerts and posts digests.

Every replica tries to take or renew the lease every half poll interval. The
lease lapses one and a half poll intervals after its last renewal, so when
the holder dies another replica takes over within two poll intervals. With
SQLite there is one process, and it always leads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable

from bot.errors import StateUnavailableError
from bot.state.base import StateStore

logger = logging.getLogger(__name__)

LEASE_NAME = "alerts-leader"


def make_holder_id() -> str:
    """Return an id for this process: host, pid and a random part, so a restarted process never reuses one."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """Hold, renew and report the alert lease, and record whether the state store responds."""

    def __init__(
        self, *, store: StateStore, poll_interval: float, holder: str | None = None, on_lead: Callable[[], None] = lambda: None
    ) -> None:
        self._store = store
        self._on_lead = on_lead
        # Replaced by the runtime with a check that the store has been opened.
        self.available: Callable[[], bool] = lambda: True
        self.holder = holder or make_holder_id()
        self.ttl = poll_interval * 1.5
        self.interval = poll_interval / 2
        self.is_leader = False
        self.store_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Renew or take the lease until `stop` is set, then release it."""
        logger.info("leadership.started", extra={"holder": self.holder, "ttl": self.ttl})
        while not stop.is_set():
            await self.renew()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass
        await self._release()
        logger.info("leadership.stopped", extra={"holder": self.holder})

    async def renew(self) -> bool:
        """Take or renew the lease once; return whether this process leads now."""
        if not self.available():
            self.is_leader = False
            return False
        try:
            leading = await self._store.acquire_lease(LEASE_NAME, self.holder, ttl=self.ttl)
        except StateUnavailableError as error:
            self._unavailable(error)
            return False

        if self.store_error is not None:
            logger.info("state.available_again", extra={"holder": self.holder})
        self.store_error = None
        changed = leading != self.is_leader
        self.is_leader = leading
        if changed:
            logger.info("leadership.changed", extra={"holder": self.holder, "leader": leading})
        if changed and leading:
            self._on_lead()
        return leading

    def _unavailable(self, error: StateUnavailableError) -> None:
        if self.store_error is None:
            # Logged once per outage. Alert work waits until the store responds again.
            logger.error("state.unavailable", extra={"holder": self.holder, "error": str(error)})
        if self.is_leader:
            logger.info("leadership.changed", extra={"holder": self.holder, "leader": False})
        self.store_error = str(error)
        self.is_leader = False

    async def _release(self) -> None:
        if not self.is_leader:
            return
        try:
            await self._store.release_lease(LEASE_NAME, self.holder)
        except StateUnavailableError as error:
            logger.warning("leadership.release_failed", extra={"holder": self.holder, "error": str(error)})
        self.is_leader = False
