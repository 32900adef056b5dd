"""Slack listeners for buttons: on alert messages ("Recent builds", "Mute 1 h") and on lookup replies.

Each click is acknowledged at once and replied to from a background task. A
value that does not decode (an invalid identifier, or a lookup state whose
tag does not match) is rejected without any upstream request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.alerts.messages import MUTE_ACTION, MUTE_BUTTON_DURATION, RECENT_BUILDS_ACTION
from bot.alerts.service import AlertCommands, Invocation
from bot.commands import MuteAssistant
from bot.core import BuildsCore
from bot.delivery import ReplyDelivery, ReplyTarget
from bot import views
from bot.errors import InputError, InvalidIdentifierError
from bot.identifiers import validate_assistant
from bot.listeners import deliver_reply
from bot.render import Reply, without_buttons
from bot.tasks import BackgroundTasks
from bot.views import ButtonCodec, ViewState

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


def register_view_actions(
    app: AsyncApp, *, core: BuildsCore, tasks: BackgroundTasks, delivery: ReplyDelivery, codec: ButtonCodec
) -> None:
    """Register the listeners of the buttons on lookup replies: paging, filters, refresh, details and share."""

    async def on_view(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        clicked = _clicked_view(body, action, delivery, codec)
        if clicked is None:
            return

        state, target, invocation, ids = clicked
        action_id = str(action.get("action_id"))
        if action_id == views.SHARE:
            work = _shared(core.view(state, invocation=invocation), invocation.user_id)
            tasks.spawn(deliver_reply(work, delivery, target, ids, mode="in_channel"), name=f"share:{state.assistant}")
            return

        answer = core.view(state, invocation=invocation, refresh=action_id == views.REFRESH)
        tasks.spawn(deliver_reply(answer, delivery, target, ids, mode="replace"), name=f"view:{state.assistant}")

    for action_id in views.VIEW_ACTIONS:
        app.action(action_id)(on_view)


async def _shared(answer: Awaitable[Reply], user_id: str) -> Reply:
    reply = await answer
    return without_buttons(reply, note=f"📣 Shared by <@{user_id}>")


def _clicked_view(
    body: dict[str, Any], action: dict[str, Any], delivery: ReplyDelivery, codec: ButtonCodec
) -> tuple[ViewState, ReplyTarget, Invocation, dict[str, Any]] | None:
    user_id = (body.get("user") or {}).get("id")
    channel_id = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    ids = {"user_id": user_id, "channel_id": channel_id, "action_id": action.get("action_id")}
    if not user_id or not channel_id:
        logger.warning("action.missing_ids", extra=ids)
        return None

    try:
        state = codec.decode(str(action.get("value") or ""))
    except InputError:
        # No upstream request for a forged or damaged value; the click is acknowledged and dropped.
        logger.warning("action.invalid_value", extra=ids)
        return None

    target = ReplyTarget(body.get("response_url"), channel_id, user_id)
    if target.response_url:
        delivery.response_urls.register(target.response_url)
    logger.info("action.received", extra={**ids, "assistant": state.assistant})
    return state, target, Invocation(user_id=user_id, channel_id=channel_id), ids
