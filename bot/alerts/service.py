"""Channel commands for alerts: subscribe, unsubscribe, subscriptions, mute and unmute.

Everyone may look up builds; when `BUILDS_ADMINS` is set, only those users may
change subscriptions and mutes, and a refusal names who can.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.alerts import replies
from bot.commands import (
    ALL,
    DigestOff,
    ListSubscriptions,
    MuteAssistant,
    SetDigest,
    StateCommand,
    Subscribe,
    UnmuteAssistant,
    Unsubscribe,
)
from bot.config import Settings
from bot.errors import StateUnavailableError
from bot.render import Reply
from bot.state.base import Digest, Mute, StateStore, Subscription

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Invocation:
    """The user who ran a command and the channel it ran in."""

    user_id: str
    channel_id: str


class AlertCommands:
    """Run the channel commands against the state store."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: StateStore,
        clock: Callable[[], datetime],
        on_subscribed: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_subscribed = on_subscribed
        # Replaced by the runtime with a check that the store has been opened.
        self.available: Callable[[], bool] = lambda: True

    def cached_mute(self, channel_id: str, assistant: str) -> Mute | None:
        """Return the active mute of an assistant in a channel from memory, without I/O."""
        if not self.available():
            return None
        return self._store.cached_mute(channel_id, assistant, now=self._clock())

    async def run(self, command: StateCommand, invocation: Invocation) -> Reply:
        """Run `command` for the user and channel of `invocation` and return the reply."""
        if not self.available():
            raise StateUnavailableError("the state store has not been opened yet; it is retried in the background")

        if isinstance(command, ListSubscriptions):
            return await self._list(invocation)

        if not self.may_change(invocation.user_id):
            logger.info("alerts.change_refused", extra={"user_id": invocation.user_id, "channel_id": invocation.channel_id})
            return replies.rejected_change(sorted(self._settings.admins))

        if isinstance(command, Subscribe):
            return await self._subscribe(command, invocation)
        if isinstance(command, Unsubscribe):
            return await self._unsubscribe(command, invocation)
        if isinstance(command, MuteAssistant):
            return await self.mute(command, invocation)
        if isinstance(command, SetDigest):
            return await self._set_digest(command, invocation)
        if isinstance(command, DigestOff):
            return await self._digest_off(invocation)
        return await self._unmute(command, invocation)

    def may_change(self, user_id: str) -> bool:
        """Return whether the user may change subscriptions and mutes."""
        return not self._settings.admins or user_id in self._settings.admins

    async def mute(self, command: MuteAssistant, invocation: Invocation) -> Reply:
        """Mute an assistant's alerts in the invocation's channel."""
        until = self._clock() + command.duration
        await self._store.mute(Mute(invocation.channel_id, command.assistant, invocation.user_id, until))
        logger.info("alerts.muted", extra={"channel_id": invocation.channel_id, "assistant": command.assistant, "user_id": invocation.user_id})
        return replies.muted(command.assistant, until, now=self._clock())

    async def _subscribe(self, command: Subscribe, invocation: Invocation) -> Reply:
        subscription = Subscription(invocation.channel_id, command.assistant, command.level, invocation.user_id, self._clock())
        await self._store.subscribe(subscription)
        logger.info("alerts.subscribed", extra={"channel_id": invocation.channel_id, "assistant": command.assistant, "alert_level": command.level})
        self._on_subscribed()
        return replies.subscribed(command.assistant, command.level)

    async def _unsubscribe(self, command: Unsubscribe, invocation: Invocation) -> Reply:
        existed = await self._store.unsubscribe(invocation.channel_id, command.assistant)
        logger.info("alerts.unsubscribed", extra={"channel_id": invocation.channel_id, "assistant": command.assistant, "existed": existed})
        return replies.unsubscribed(command.assistant, existed=existed)

    async def _unmute(self, command: UnmuteAssistant, invocation: Invocation) -> Reply:
        existed = await self._store.unmute(invocation.channel_id, command.assistant)
        logger.info("alerts.unmuted", extra={"channel_id": invocation.channel_id, "assistant": command.assistant, "existed": existed})
        return replies.unmuted(command.assistant, existed=existed)

    async def _set_digest(self, command: SetDigest, invocation: Invocation) -> Reply:
        digest = Digest(invocation.channel_id, command.time_of_day, command.timezone, invocation.user_id, self._clock())
        await self._store.set_digest(digest)
        logger.info("digest.set", extra={"channel_id": invocation.channel_id, "time_of_day": command.time_of_day, "timezone": command.timezone})
        return replies.digest_set(command.time_of_day, command.timezone)

    async def _digest_off(self, invocation: Invocation) -> Reply:
        existed = await self._store.remove_digest(invocation.channel_id)
        logger.info("digest.removed", extra={"channel_id": invocation.channel_id, "existed": existed})
        return replies.digest_off(existed=existed)

    async def _list(self, invocation: Invocation) -> Reply:
        subscriptions = await self._store.subscriptions(invocation.channel_id)
        pending = await self._store.pending_alerts(invocation.channel_id)
        return replies.subscription_list(subscriptions, pending, scope_all=ALL, now=self._clock())

    async def subscribe_at_start(self, channel_id: str, assistants: tuple[str, ...]) -> None:
        """Subscribe the configured alert channel to the configured assistants, or to every one."""
        existing = {subscription.assistant for subscription in await self._store.subscriptions(channel_id)}
        for assistant in assistants or (ALL,):
            if assistant in existing:
                continue
            await self._store.subscribe(Subscription(channel_id, assistant, "failures", "BUILDS_ALERT_CHANNEL", self._clock()))
            logger.info("alerts.subscribed_from_settings", extra={"channel_id": channel_id, "assistant": assistant})
