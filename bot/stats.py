"""Pure summaries of a list of model builds, newest first."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.models import ModelBuild

RECENT_WINDOW = timedelta(hours=24)
# The median covers the durations among the latest builds, the same sample as the
# trend, so an old slow period does not hide a recent change.
MEDIAN_SAMPLE = 20


@dataclass(frozen=True, slots=True)
class BuildSummary:
    """The one-glance facts shown above an assistant's build list."""

    latest: ModelBuild | None
    last_success: ModelBuild | None
    failed_recently: int
    median_duration: float | None
    median_sample: int


def summarize(builds: Sequence[ModelBuild], *, now: datetime) -> BuildSummary:
    """Summarize builds ordered newest first, counting failures of the 24 hours before `now`."""
    since = now - RECENT_WINDOW
    durations = [build.build_duration for build in builds[:MEDIAN_SAMPLE] if build.build_duration is not None]

    return BuildSummary(
        latest=builds[0] if builds else None,
        last_success=next((build for build in builds if build.status == "completed"), None),
        failed_recently=sum(1 for build in builds if build.status == "failed" and _created_since(build, since)),
        median_duration=statistics.median(durations) if durations else None,
        median_sample=len(durations),
    )


def failed_within(builds: Sequence[ModelBuild], *, since: datetime) -> list[ModelBuild]:
    """Return the failed builds created at or after `since`, keeping their order."""
    return [build for build in builds if build.status == "failed" and _created_since(build, since)]


def _created_since(build: ModelBuild, since: datetime) -> bool:
    return build.date_created is not None and build.date_created >= since


SPARK_LEVELS = "▁▂▃▄▅▆▇█"
NO_DURATION = "·"
TREND_SAMPLE = 20


@dataclass(frozen=True, slots=True)
class Trend:
    """Failure rate and durations over the latest builds, for spotting a slowdown or a streak."""

    failure_rate: float | None
    finished: int
    median_duration: float | None
    sparkline: str


def trend(builds: Sequence[ModelBuild], *, sample: int = TREND_SAMPLE) -> Trend:
    """Return the trend of the latest `sample` builds (ordered newest first)."""
    recent = list(builds[:sample])
    finished = [build for build in recent if build.status in ("completed", "failed")]
    failed = sum(1 for build in finished if build.status == "failed")
    durations = [build.build_duration for build in recent if build.build_duration is not None]

    return Trend(
        failure_rate=failed / len(finished) if finished else None,
        finished=len(finished),
        median_duration=statistics.median(durations) if durations else None,
        sparkline=sparkline([build.build_duration for build in reversed(recent)]),
    )


def sparkline(values: Sequence[int | None]) -> str:
    """Return one block character per value, scaled between the smallest and largest, oldest first."""
    known = [value for value in values if value is not None]
    if not known:
        return ""

    low, high = min(known), max(known)
    span = high - low or 1
    top = len(SPARK_LEVELS) - 1
    return "".join(NO_DURATION if value is None else SPARK_LEVELS[round((value - low) / span * top)] for value in values)
