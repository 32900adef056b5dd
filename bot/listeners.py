"""Slack listeners for the slash command: acknowledge, look up, reply.

The listener does no network I/O before `ack()`. A reply that needs no
upstream request (help, bad input, or a cache hit) goes out in the
acknowledgement itself. Anything else is acknowledged at once and delivered
by a tracked background task through `ReplyDelivery`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.alerts.service import Invocation
from bot.core import BuildsCore
from bot.delivery import Mode, ReplyDelivery, ReplyTarget
from bot.commands import command_label
from bot.errors import CacheMiss
from bot.mrkdwn import unescape
from bot.render import Reply
from bot.tasks import BackgroundTasks

logger = logging.getLogger(__name__)

MAX_LOGGED_TEXT = 200


def register_command(
    app: AsyncApp, *, command: str, core: BuildsCore, tasks: BackgroundTasks, delivery: ReplyDelivery
) -> None:
    """Register the `/builds` slash command listener on `app`."""

    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        text = unescape(body.get("text") or "")
        target = ReplyTarget(body.get("response_url"), body.get("channel_id"), body.get("user_id"))
        invocation = _invocation(target)
        ids = {**target.ids(), "team_id": body.get("team_id"), "trigger_id": body.get("trigger_id")}
        logger.info("command.received", extra={**ids, "command_text": text[:MAX_LOGGED_TEXT]})
        if target.response_url:
            delivery.response_urls.register(target.response_url)

        label = command_label(text)
        try:
            reply = await core.reply(text, cached_only=True, invocation=invocation)
        except CacheMiss:
            await ack()
            core.metrics.ack_seconds.observe(time.perf_counter() - started)
            work = deliver_reply(core.reply(text, invocation=invocation), delivery, target, ids)
            tasks.spawn(_timed(work, core, label, started), name=f"reply:{ids.get('trigger_id')}")
            return

        await ack(**_ack_payload(reply))
        elapsed = time.perf_counter() - started
        core.metrics.ack_seconds.observe(elapsed)
        core.metrics.command_seconds.labels(command=label).observe(elapsed)
        logger.info("command.answered_in_ack", extra={**ids, "command": label})

    app.command(command)(on_command)


async def deliver_reply(
    answer: Awaitable[Reply], delivery: ReplyDelivery, target: ReplyTarget, ids: dict[str, Any], *, mode: Mode = "ephemeral"
) -> None:
    """Await the reply, then deliver it in `mode`, logging the outcome."""
    reply = await answer
    channel = await delivery.send(reply, target, mode=mode)
    if channel == "failed":
        logger.error("command.reply_lost", extra=ids)
        return
    logger.info("command.replied", extra={**ids, "via": channel})


async def _timed(work: Awaitable[None], core: BuildsCore, label: str, started: float) -> None:
    await work
    core.metrics.command_seconds.labels(command=label).observe(time.perf_counter() - started)


def _invocation(target: ReplyTarget) -> Invocation | None:
    if not target.user_id or not target.channel_id:
        return None
    return Invocation(user_id=target.user_id, channel_id=target.channel_id)


def _ack_payload(reply: Reply) -> dict[str, Any]:
    payload = reply.to_dict()
    return {"text": payload["text"], "blocks": payload["blocks"], "response_type": "ephemeral"}
