"""Alert messages: the thread parent of a failure streak, its replies, stuck and completed notices.

Every upstream string is escaped, and messages are sent with mention parsing
off, so no build name can ping a channel, a user or a user group.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from bot.blocks import context, section
from bot.formatting import error_link, humanize_duration, name, slack_date
from bot.models import ModelBuild, parse_model_build
from bot.mrkdwn import escape
from bot.render import Reply

RECENT_BUILDS_ACTION = "alert_recent_builds"
MUTE_ACTION = "alert_mute_1h"
MUTE_BUTTON_DURATION = timedelta(hours=1)


def build_from_alert(data: Mapping[str, Any]) -> ModelBuild:
    """Rebuild the `ModelBuild` stored with an alert."""
    return parse_model_build(data)


def build_to_alert(build: ModelBuild) -> dict[str, object]:
    """Return the fields of a build that an alert message shows, as JSON-ready data."""
    return {
        "sid": build.sid,
        "unique_name": build.unique_name,
        "status": build.status,
        "assistant_sid": build.assistant_sid,
        "error_code": build.error_code,
        "build_duration": build.build_duration,
        "date_created": build.date_created.isoformat() if build.date_created else None,
        "date_updated": build.date_updated.isoformat() if build.date_updated else None,
    }


def failure_parent(assistant: str, build: ModelBuild, *, failures: int, now: datetime, first_build: str | None = None) -> Reply:
    """Return the parent message of a failure streak: its latest failure and the streak's length."""
    streak = "1 failure so far" if failures == 1 else f"{failures} failures in a row"
    if failures > 1 and first_build:
        streak += f", since build {name(first_build)}"
    text = f"❌ {name(assistant)}: build {name(build.name)} failed"
    blocks: list[Block] = [
        section(f"❌ *{name(assistant)}*: build *{name(build.name)}* failed\n{_facts(build, now=now)}"),
        context(f"{streak} · replies in this thread follow the streak until a build completes"),
        _buttons(assistant),
    ]
    return Reply(text=text, blocks=blocks)


def recovered_parent(assistant: str, build: ModelBuild, *, failures: int, now: datetime) -> Reply:
    """Return the parent message turned green once a build completes after a streak."""
    streak = "1 failure" if failures == 1 else f"{failures} failures"
    text = f"✅ {name(assistant)} recovered after {streak}"
    blocks: list[Block] = [
        section(f"✅ *{name(assistant)}* recovered: build *{name(build.name)}* completed after {streak}\n{_facts(build, now=now)}"),
        _buttons(assistant),
    ]
    return Reply(text=text, blocks=blocks)


def failure_reply(assistant: str, build: ModelBuild, *, failures: int, now: datetime) -> Reply:
    """Return the thread reply for another failure in an open streak."""
    text = f"❌ Failure {failures} in a row: build {name(build.name)}"
    return Reply(text=text, blocks=[section(f"❌ Failure {failures} in a row: build *{name(build.name)}*\n{_facts(build, now=now)}")])


def recovery_reply(assistant: str, build: ModelBuild, *, failures: int, now: datetime) -> Reply:
    """Return the thread reply that closes a streak."""
    text = f"✅ Recovered: build {name(build.name)} of {name(assistant)} completed"
    return Reply(text=text, blocks=[section(f"✅ Recovered: build *{name(build.name)}* completed\n{_facts(build, now=now)}")])


def stuck_message(assistant: str, build: ModelBuild, *, now: datetime) -> Reply:
    """Return the notice for a build that has been enqueued or building for too long."""
    waiting = humanize_duration((now - build.date_created).total_seconds()) if build.date_created else "a long time"
    status = escape(build.status or "in progress")
    text = f"⏳ {name(assistant)}: build {name(build.name)} has been {status} for {waiting}"
    body = (
        f"⏳ *{name(assistant)}*: build *{name(build.name)}* has been {status} for {waiting}, "
        f"since {slack_date(build.date_created, now=now)}. Twilio stops a build after 60 minutes."
    )
    return Reply(text=text, blocks=[section(body), _buttons(assistant)])


def completed_message(assistant: str, build: ModelBuild, *, now: datetime) -> Reply:
    """Return the notice of a completed build, for channels that follow every build."""
    text = f"✅ {name(assistant)}: build {name(build.name)} completed"
    return Reply(text=text, blocks=[section(f"✅ *{name(assistant)}*: build *{name(build.name)}* completed\n{_facts(build, now=now)}")])


def _facts(build: ModelBuild, *, now: datetime) -> str:
    facts = [slack_date(build.date_created, now=now), humanize_duration(build.build_duration)]
    if build.error_code is not None:
        facts.append(f"error {error_link(build.error_code)}")
    return " · ".join(facts)


def _buttons(assistant: str) -> ActionsBlock:
    return ActionsBlock(
        elements=[
            ButtonElement(text="Recent builds", action_id=RECENT_BUILDS_ACTION, value=assistant),
            ButtonElement(text="Mute 1 h", action_id=MUTE_ACTION, value=assistant),
        ]
    )
