"""Replies to the channel commands for alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import Block

from bot.blocks import context, header, section
from bot.formatting import name, slack_date
from bot.render import Reply
from bot.state.base import Mute, OutboxItem, Subscription

MAX_LISTED = 40
LEVEL_WORDS = {"failures": "failures, recoveries and stuck builds", "all": "every completed build as well as failures"}


def rejected_change(admins: Sequence[str]) -> Reply:
    """Return the rejection for a user who may not change alerts, naming the users who can."""
    allowed = ", ".join(f"<@{admin}>" for admin in admins)
    text = f"⚠️ Only {allowed} can change subscriptions and mutes (BUILDS_ADMINS). Anyone can look up builds."
    return Reply(text=text, blocks=[section(text)], ok=False)


def subscribed(assistant: str, level: str) -> Reply:
    """Return the confirmation of a subscription."""
    target = "every assistant in scope" if assistant == "all" else name(assistant)
    text = f"🔔 This channel now gets alerts for {target}: {LEVEL_WORDS[level]}. The first poll records a baseline, so older failures are not announced."
    return Reply(text=text, blocks=[section(text)])


def unsubscribed(assistant: str, *, existed: bool) -> Reply:
    """Return the confirmation of an unsubscription, or a note that there was none."""
    target = "every assistant" if assistant == "all" else name(assistant)
    if not existed:
        text = f"This channel has no subscription to {target}. `/builds subscriptions` lists the ones it has."
        return Reply(text=text, blocks=[section(text)], ok=False)

    text = f"🔕 This channel no longer gets alerts for {target}."
    return Reply(text=text, blocks=[section(text)])


def muted(assistant: str, until: datetime, *, now: datetime) -> Reply:
    """Return the confirmation of a mute."""
    text = f"🔕 Alerts for {name(assistant)} are muted in this channel until {slack_date(until, now=now)}. `/builds unmute {name(assistant)}` ends it early."
    return Reply(text=text, blocks=[section(text)])


def unmuted(assistant: str, *, existed: bool) -> Reply:
    """Return the confirmation of an unmute, or a note that there was no mute."""
    if not existed:
        text = f"Alerts for {name(assistant)} are not muted in this channel."
        return Reply(text=text, blocks=[section(text)], ok=False)

    text = f"🔔 Alerts for {name(assistant)} are on again in this channel."
    return Reply(text=text, blocks=[section(text)])


def digest_set(time_of_day: str, timezone: str) -> Reply:
    """Return the confirmation of a daily digest."""
    text = f"🗞️ This channel gets a daily build digest at {time_of_day} ({name(timezone)}). `/builds digest off` stops it."
    return Reply(text=text, blocks=[section(text)])


def digest_off(*, existed: bool) -> Reply:
    """Return the confirmation that the digest stopped, or a note that there was none."""
    if not existed:
        text = "This channel has no daily digest. `/builds digest 09:00 Europe/Berlin` sets one."
        return Reply(text=text, blocks=[section(text)], ok=False)

    text = "🗞️ This channel no longer gets the daily build digest."
    return Reply(text=text, blocks=[section(text)])


def mute_note(mute: Mute, *, now: datetime) -> str:
    """Return the line that lookups show while an assistant is muted in the channel."""
    return f"🔕 Alerts muted in this channel by <@{mute.muted_by}> until {slack_date(mute.until, now=now)}."


def subscription_list(
    subscriptions: Sequence[Subscription], pending: Sequence[OutboxItem], *, scope_all: str, now: datetime
) -> Reply:
    """Return the channel's subscriptions with who created them, when, and their delivery state."""
    if not subscriptions:
        text = "This channel has no subscriptions. `/builds subscribe <assistant|all>` adds one."
        return Reply(text=text, blocks=[section(text)])

    blocks: list[Block] = [header("Alert subscriptions in this channel")]
    blocks.extend(section(_subscription_line(subscription, scope_all=scope_all, now=now)) for subscription in subscriptions[:MAX_LISTED])
    if len(subscriptions) > MAX_LISTED:
        blocks.append(context(f"Showing {MAX_LISTED} of {len(subscriptions)} subscriptions."))
    if pending:
        blocks.append(context(_pending_line(pending, now=now)))

    count = "1 alert subscription" if len(subscriptions) == 1 else f"{len(subscriptions)} alert subscriptions"
    return Reply(text=f"{count} in this channel", blocks=blocks)


def _subscription_line(subscription: Subscription, *, scope_all: str, now: datetime) -> str:
    target = "*every assistant*" if subscription.assistant == scope_all else f"*{name(subscription.assistant)}*"
    creator = f"<@{subscription.created_by}>" if subscription.created_by.startswith(("U", "W")) else name(subscription.created_by)
    lines = [f"{target} · {subscription.level} · added by {creator} {slack_date(subscription.created_at, now=now)}"]
    last_alert = slack_date(subscription.last_alert_at, now=now) if subscription.last_alert_at else "none yet"
    lines.append(f"Last alert delivered: {last_alert}")
    if subscription.last_error:
        lines.append(f"⚠️ Last delivery error: `{name(subscription.last_error)}` {slack_date(subscription.last_error_at, now=now)}")
    return "\n".join(lines)


def _pending_line(pending: Sequence[OutboxItem], *, now: datetime) -> str:
    failing = [item for item in pending if item.attempts]
    text = "⏳ 1 alert is waiting to be delivered." if len(pending) == 1 else f"⏳ {len(pending)} alerts are waiting to be delivered."
    if failing:
        latest = failing[-1]
        retry = slack_date(latest.next_attempt_at, now=now) if latest.next_attempt_at else "soon"
        attempts = "1 attempt" if latest.attempts == 1 else f"{latest.attempts} attempts"
        text += f" Last error: `{name(latest.last_error)}` after {attempts}; next try {retry}."
    return text
