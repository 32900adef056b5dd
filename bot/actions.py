"""Slack listeners for the buttons on alert messages: "Recent builds" and "Mute 1 h".

Each click is acknowledged at once. The button's value names the assistant;
a value that is not a valid identifier is rejected without any lookup.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.alerts.messages import MUTE_ACTION, MUTE_BUTTON_DURATION, RECENT_BUILDS_ACTION
from bot.alerts.service import AlertCommands, Invocation
from bot.commands import MuteAssistant
from bot.core import BuildsCore
from bot.delivery import ReplyDelivery, ReplyTarget
from bot.errors import InvalidIdentifierError
from bot.identifiers import validate_assistant
from bot.listeners import deliver_reply
from bot.tasks import BackgroundTasks

logger = logging.getLogger(__name__)


def register_alert_actions(
    app: AsyncApp, *, core: BuildsCore, alerts: AlertCommands, tasks: BackgroundTasks, delivery: ReplyDelivery
) -> None:
    """Register the alert button listeners on `app`."""

    async def on_recent_builds(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        clicked = _clicked(body, action, delivery)
        if clicked is None:
            return

        assistant, target, invocation, ids = clicked
        tasks.spawn(deliver_reply(core.reply(assistant, invocation=invocation), delivery, target, ids), name=f"recent:{assistant}")

    async def on_mute(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        clicked = _clicked(body, action, delivery)
        if clicked is None:
            return

        assistant, target, invocation, ids = clicked
        command = MuteAssistant(assistant, MUTE_BUTTON_DURATION, "1h")
        tasks.spawn(deliver_reply(alerts.run(command, invocation), delivery, target, ids), name=f"mute:{assistant}")

    app.action(RECENT_BUILDS_ACTION)(on_recent_builds)
    app.action(MUTE_ACTION)(on_mute)


def _clicked(
    body: dict[str, Any], action: dict[str, Any], delivery: ReplyDelivery
) -> tuple[str, ReplyTarget, Invocation, dict[str, Any]] | None:
    user_id = (body.get("user") or {}).get("id")
    channel_id = (body.get("channel") or {}).get("id")
    ids = {"user_id": user_id, "channel_id": channel_id, "action_id": action.get("action_id")}
    try:
        assistant = validate_assistant(str(action.get("value") or ""))
    except InvalidIdentifierError:
        logger.warning("action.invalid_value", extra=ids)
        return None

    if not user_id or not channel_id:
        logger.warning("action.missing_ids", extra=ids)
        return None

    target = ReplyTarget(body.get("response_url"), channel_id, user_id)
    if target.response_url:
        delivery.response_urls.register(target.response_url)
    logger.info("action.received", extra={**ids, "assistant": assistant})
    return assistant, target, Invocation(user_id=user_id, channel_id=channel_id), ids
