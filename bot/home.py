"""The App Home tab: the overview of every assistant in scope, and the user's subscriptions and mutes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, DividerBlock
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import context, section
from bot.core import BuildsCore, Clock
from bot.delivery import slack_error_code
from bot.errors import StateUnavailableError
from bot.formatting import name, slack_date
from bot.state.base import Mute, StateStore, Subscription

logger = logging.getLogger(__name__)

HOME_REFRESH = "home_refresh"
# Slack allows 100 blocks in a Home tab; the overview gets most of them.
MAX_HOME_BLOCKS = 100
OVERVIEW_BLOCKS = 80
MAX_LISTED = 15


class HomeTab:
    """Publish the Home tab for a user when they open it or press Refresh."""

    def __init__(
        self,
        *,
        core: BuildsCore,
        store: StateStore,
        client: AsyncWebClient,
        token: str,
        clock: Clock,
        available: Callable[[], bool] = lambda: True,
    ) -> None:
        self._core = core
        self._available = available
        self._store = store
        self._client = client
        self._token = token
        self._clock = clock

    async def publish(self, user_id: str, *, refresh: bool = False) -> bool:
        """Build the user's Home view and publish it with `views.publish`; return whether Slack accepted it.

        With `refresh` (the Refresh button) the overview is read from the API instead of the cache.
        """
        view = await self.build_view(user_id, refresh=refresh)
        try:
            await self._client.views_publish(token=self._token, user_id=user_id, view=view.to_dict())
        except SlackApiError as error:
            logger.error("home.publish_failed", extra={"user_id": user_id, "slack_error": slack_error_code(error)})
            return False
        except (ClientError, TimeoutError) as error:
            logger.error("home.publish_failed", extra={"user_id": user_id, "error": repr(error)})
            return False

        logger.info("home.published", extra={"user_id": user_id})
        return True

    async def build_view(self, user_id: str, *, refresh: bool = False) -> View:
        """Return the Home view of `user_id`, within Slack's 100-block limit."""
        now = self._clock()
        overview = await self._core.overview(max_blocks=OVERVIEW_BLOCKS, refresh=refresh)
        blocks: list[Block] = [*overview.blocks, DividerBlock(), *await self._state_blocks(user_id, now=now)]
        blocks.append(ActionsBlock(elements=[ButtonElement(text="Refresh", action_id=HOME_REFRESH, value="refresh")]))
        blocks.append(context(f"Updated {slack_date(now, now=now)}"))
        return View(type="home", blocks=blocks[:MAX_HOME_BLOCKS])

    async def _state_blocks(self, user_id: str, *, now: datetime) -> list[Block]:
        try:
            if not self._available():
                raise StateUnavailableError("the state store has not been opened yet")
            subscriptions = [item for item in await self._store.subscriptions() if item.created_by == user_id]
            mutes = [item for item in await self._store.mutes(now=now) if item.muted_by == user_id]
        except StateUnavailableError as error:
            logger.warning("home.state_unavailable", extra={"user_id": user_id, "error": str(error)})
            return [section("*Your subscriptions and mutes*\nUnavailable right now: the bot's state store does not respond.")]
        return [section(_subscriptions_text(subscriptions, now=now)), section(_mutes_text(mutes, now=now))]


def _subscriptions_text(subscriptions: Sequence[Subscription], *, now: datetime) -> str:
    if not subscriptions:
        return "*Your subscriptions*\nNone. `/builds subscribe <assistant|all>` in a channel adds one."

    lines = [
        f"<#{item.channel_id}> · {'every assistant' if item.assistant == 'all' else name(item.assistant)} · {item.level}"
        for item in subscriptions[:MAX_LISTED]
    ]
    more = f"\n…and {len(subscriptions) - MAX_LISTED} more" if len(subscriptions) > MAX_LISTED else ""
    return "*Your subscriptions*\n" + "\n".join(lines) + more


def _mutes_text(mutes: Sequence[Mute], *, now: datetime) -> str:
    if not mutes:
        return "*Your mutes*\nNone."

    lines = [f"<#{item.channel_id}> · {name(item.assistant)} until {slack_date(item.until, now=now)}" for item in mutes[:MAX_LISTED]]
    return "*Your mutes*\n" + "\n".join(lines)
