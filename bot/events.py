"""Slack event listeners: the App Home tab and link previews.

Bolt acknowledges events itself once a listener returns. These listeners only
start background work, so the acknowledgement does not wait for the
Autopilot API or Slack.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import BuildsCore
from bot.delivery import slack_error_code
from bot.home import HOME_REFRESH, HomeTab
from bot.tasks import BackgroundTasks
from bot.unfurl import MAX_LINKS, BuildLink, parse_link

logger = logging.getLogger(__name__)


def register_events(
    app: AsyncApp, *, core: BuildsCore, home: HomeTab, tasks: BackgroundTasks, client: AsyncWebClient, token: str, base_url: str
) -> None:
    """Register the Home tab and link preview listeners on `app`."""

    async def on_home_opened(event: dict[str, Any]) -> None:
        user_id = event.get("user")
        if event.get("tab") != "home" or not user_id:
            return
        tasks.spawn(home.publish(user_id), name=f"home:{user_id}")

    async def on_home_refresh(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id")
        if user_id:
            tasks.spawn(home.publish(user_id, refresh=True), name=f"home:{user_id}")

    async def on_link_shared(event: dict[str, Any]) -> None:
        links = [link for link in (parse_link(str(item.get("url", "")), base_url) for item in event.get("links", [])[:MAX_LINKS]) if link]
        if not links:
            return
        tasks.spawn(_unfurl(core, client, token, event, links), name=f"unfurl:{event.get('message_ts')}")

    app.event("app_home_opened")(on_home_opened)
    app.action(HOME_REFRESH)(on_home_refresh)
    app.event("link_shared")(on_link_shared)


async def _unfurl(core: BuildsCore, client: AsyncWebClient, token: str, event: dict[str, Any], links: list[BuildLink]) -> None:
    unfurls = {}
    for link in links:
        reply = await core.link_preview(link.assistant, link.build)
        unfurls[link.url] = {"blocks": reply.to_dict()["blocks"]}

    ids = {"channel_id": event.get("channel"), "message_ts": event.get("message_ts"), "links": len(unfurls)}
    arguments: dict[str, Any] = {"channel": event.get("channel"), "ts": event.get("message_ts")}
    if event.get("unfurl_id") and event.get("source"):
        arguments = {"unfurl_id": event["unfurl_id"], "source": event["source"]}
    try:
        await client.chat_unfurl(token=token, unfurls=unfurls, **arguments)
    except SlackApiError as error:
        logger.error("unfurl.failed", extra={**ids, "slack_error": slack_error_code(error)})
        return
    except (ClientError, TimeoutError) as error:
        logger.error("unfurl.failed", extra={**ids, "error": repr(error)})
        return
    logger.info("unfurl.sent", extra=ids)
