"""Slack listeners for the slash command: acknowledge, look up, reply.

The listener does no network I/O before `ack()`. A reply that needs no
upstream request (help, bad input, or a cache hit) goes out in the
acknowledgement itself; anything else is acknowledged at once and delivered
through the command's `response_url` by a tracked background task.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.core import BuildsCore
from bot.errors import CacheMiss
from bot.mrkdwn import unescape
from bot.render import Reply
from bot.tasks import BackgroundTasks

logger = logging.getLogger(__name__)

MAX_LOGGED_TEXT = 200


def register_command(app: AsyncApp, *, command: str, core: BuildsCore, tasks: BackgroundTasks) -> None:
    """Register the `/builds` slash command listener on `app`."""

    async def on_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        text = unescape(body.get("text") or "")
        ids = _ids(body)
        logger.info("command.received", extra={**ids, "command_text": text[:MAX_LOGGED_TEXT]})

        try:
            reply = await core.reply(text, cached_only=True)
        except CacheMiss:
            await ack()
            tasks.spawn(_deliver(core, respond, text, ids), name=f"reply:{ids.get('trigger_id')}")
            return

        await ack(**_ack_payload(reply))
        logger.info("command.answered_in_ack", extra=ids)

    app.command(command)(on_command)


async def _deliver(core: BuildsCore, respond: AsyncRespond, text: str, ids: dict[str, str | None]) -> None:
    reply = await core.reply(text)
    payload = reply.to_dict()
    try:
        response = await respond(text=payload["text"], blocks=payload["blocks"], response_type="ephemeral")
    except (ClientError, TimeoutError) as error:
        logger.error("command.reply_failed", extra={**ids, "error": repr(error)})
        return

    if response.status_code != 200:
        logger.error("command.reply_rejected", extra={**ids, "status": response.status_code, "body": response.body[:200]})
        return
    logger.info("command.replied", extra=ids)


def _ack_payload(reply: Reply) -> dict[str, Any]:
    payload = reply.to_dict()
    return {"text": payload["text"], "blocks": payload["blocks"], "response_type": "ephemeral"}


def _ids(body: dict[str, Any]) -> dict[str, str | None]:
    return {
        "team_id": body.get("team_id"),
        "channel_id": body.get("channel_id"),
        "user_id": body.get("user_id"),
        "trigger_id": body.get("trigger_id"),
    }
