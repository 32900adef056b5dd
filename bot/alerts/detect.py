"""Pure change detection: compare a poll's builds with what was seen before.

The first poll of an assistant only records a baseline, so old failures cause
no alert storm. Later polls emit an event when a build reaches `failed`, if
it was created or updated within the catch-up window, so a failure during
downtime is still alerted once. The first `completed` build after a failure
is a recovery, and any other completed build is an event for channels that
want every build. A build that stays `enqueued` or `building` past the stuck
limit is an event once. `canceled` changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.models import ModelBuild
from bot.state.base import AlertKind, AssistantState, SeenBuild

IN_PROGRESS = frozenset({"enqueued", "building"})
TERMINAL = frozenset({"completed", "failed"})


@dataclass(frozen=True, slots=True)
class BuildEvent:
    """Something that happened to one build and may become an alert."""

    kind: AlertKind
    build: ModelBuild


@dataclass(frozen=True, slots=True)
class Detection:
    """The events of one poll, the builds to remember, and whether the assistant is now red."""

    events: list[BuildEvent]
    seen: list[SeenBuild]
    red: bool


def detect_changes(
    assistant: str,
    builds: Sequence[ModelBuild],
    *,
    previous: Mapping[str, SeenBuild],
    state: AssistantState | None,
    now: datetime,
    catchup_window: timedelta,
    stuck_after: timedelta,
) -> Detection:
    """Compare `builds` (newest first) with `previous` and return the events and the new state."""
    if state is None:
        return _baseline(assistant, builds, now=now, stuck_after=stuck_after)

    red = state.red
    events: list[BuildEvent] = []
    seen: list[SeenBuild] = []
    # Oldest first, so a failure and the completion after it come out in that order.
    for build in reversed(builds):
        if build.sid is None:
            continue

        before = previous.get(build.sid)
        if before is None or before.status != build.status:
            red = _status_events(build, red, events, now=now, catchup_window=catchup_window)

        stuck_alerted = before.stuck_alerted if before else False
        if not stuck_alerted and _is_stuck(build, now=now, stuck_after=stuck_after):
            events.append(BuildEvent("stuck", build))
            stuck_alerted = True
        seen.append(_seen(assistant, build, stuck_alerted))

    return Detection(events, seen, red)


def _status_events(build: ModelBuild, red: bool, events: list[BuildEvent], *, now: datetime, catchup_window: timedelta) -> bool:
    if build.status == "failed":
        if _changed_since(build, now - catchup_window):
            events.append(BuildEvent("failure", build))
        return True

    if build.status == "completed":
        events.append(BuildEvent("recovery" if red else "completed", build))
        return False
    return red


def _baseline(assistant: str, builds: Sequence[ModelBuild], *, now: datetime, stuck_after: timedelta) -> Detection:
    latest_terminal = next((build.status for build in builds if build.status in TERMINAL), None)
    # Builds already stuck at the first poll count as alerted, so a restart on an empty store stays quiet.
    seen = [_seen(assistant, build, _is_stuck(build, now=now, stuck_after=stuck_after)) for build in builds if build.sid]
    return Detection([], seen, latest_terminal == "failed")


def _is_stuck(build: ModelBuild, *, now: datetime, stuck_after: timedelta) -> bool:
    return build.status in IN_PROGRESS and build.date_created is not None and now - build.date_created >= stuck_after


def _changed_since(build: ModelBuild, since: datetime) -> bool:
    moment = build.date_updated or build.date_created
    return moment is not None and moment >= since


def _seen(assistant: str, build: ModelBuild, stuck_alerted: bool) -> SeenBuild:
    assert build.sid is not None
    return SeenBuild(assistant, build.sid, build.status, build.date_created, stuck_alerted)
