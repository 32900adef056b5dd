"""Seed data for the Autopilot sandbox: assistants and model builds as raw API dicts.

Records have the fields of the ``autopilot.v1.assistant`` and
``autopilot.v1.assistant.model_build`` schemas of Twilio's Autopilot v1 OpenAPI
description. Their ``url`` and ``links`` values are stored as paths such as
``/v1/Assistants/UA…`` and become absolute URLs in ``with_absolute_urls`` when
the sandbox serves them, because the server's address is set only when it starts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

JsonDict = dict[str, Any]

DEMO_ACCOUNT_SID = "AC" + "5a4db0c0" * 4
BUILD_STATUSES = ("enqueued", "building", "completed", "failed", "canceled")
DEMO_ERROR_CODES = (23001, 23002, 23003)

# Link names and path segments of an assistant's related resources, as in Twilio's examples.
_ASSISTANT_LINKS = {
    "field_types": "FieldTypes",
    "tasks": "Tasks",
    "model_builds": "ModelBuilds",
    "queries": "Queries",
    "style_sheet": "StyleSheet",
    "defaults": "Defaults",
    "dialogues": "Dialogues",
    "webhooks": "Webhooks",
}

_OLDEST = datetime.min.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime the way Twilio's examples do, e.g. ``2026-12-04T20:39:21Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: object) -> datetime | None:
    """Parse an ISO 8601 or RFC 2822 date string into an aware datetime, or return None."""
    if not isinstance(value, str):
        return None

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None

    # A date without an offset is read as UTC, the zone Twilio documents for its dates.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def with_absolute_urls(record: JsonDict, base_url: str) -> JsonDict:
    """Return a copy of a record whose path-only ``url`` and ``links`` values start with ``base_url``."""
    served = dict(record)
    served["url"] = _absolute(record.get("url"), base_url)

    links = record.get("links")
    if isinstance(links, dict):
        served["links"] = {name: _absolute(value, base_url) for name, value in links.items()}

    return served


def _absolute(value: object, base_url: str) -> object:
    if isinstance(value, str) and value.startswith("/"):
        return base_url.rstrip("/") + value
    return value


class SandboxDataset:
    """Assistants and their model builds, stored as the raw dicts the sandbox serves.

    The sandbox serves every value as stored, so tests may put odd data here:
    nulls, unknown statuses, RFC 2822 dates or extra keys.
    """

    def __init__(self, *, account_sid: str = DEMO_ACCOUNT_SID, now: datetime | None = None, seed: int = 0) -> None:
        self.account_sid = account_sid
        self.now = _require_aware(now) if now is not None else datetime.now(UTC).replace(microsecond=0)
        self.assistants: list[JsonDict] = []
        self.builds: dict[str, list[JsonDict]] = {}
        self._random = random.Random(seed)

    def add_assistant(
        self, *, unique_name: str | None, friendly_name: str | None, sid: str | None = None, **fields: Any
    ) -> JsonDict:
        """Add an assistant and return its record, with ``fields`` replacing the default values.

        Raises:
            ValueError: an assistant with this SID exists already.
        """
        assistant_sid = sid if sid is not None else self._new_sid("UA")
        if assistant_sid in self.builds:
            raise ValueError(f"an assistant with SID {assistant_sid!r} exists already: pass another sid or None")

        record = self._default_assistant(assistant_sid, unique_name, friendly_name)
        record.update(fields)

        self.assistants.append(record)
        self.builds[assistant_sid] = []
        return record

    def add_build(self, assistant_sid: str, **fields: Any) -> JsonDict:
        """Add a model build to an assistant (SID or unique_name) and return its record.

        Fields not given take the values of a completed build created at ``now``.
        The assistant's ``latest_model_build_sid`` becomes the SID of this build.

        Raises:
            KeyError: no assistant has that SID or unique_name.
        """
        assistant = self._require_assistant(assistant_sid)

        given_sid = fields.get("sid")
        build_sid = given_sid if isinstance(given_sid, str) else self._new_sid("UG")
        record = self._default_build(assistant["sid"], build_sid)
        record.update(fields)

        self.builds[assistant["sid"]].append(record)
        assistant["latest_model_build_sid"] = record["sid"]
        return record

    def find_assistant(self, sid_or_unique_name: str) -> JsonDict | None:
        """Return the assistant with this SID, else the one with this unique_name, else None."""
        return _find(self.assistants, sid_or_unique_name)

    def find_build(self, assistant_sid_or_unique_name: str, sid_or_unique_name: str) -> JsonDict | None:
        """Return a build of an assistant by SID, else by unique_name, else None."""
        assistant = self.find_assistant(assistant_sid_or_unique_name)
        if assistant is None:
            return None
        return _find(self.builds[assistant["sid"]], sid_or_unique_name)

    def assistants_newest_first(self) -> list[JsonDict]:
        """Return the assistants ordered by date_created, newest first."""
        return _newest_first(self.assistants)

    def builds_newest_first(self, assistant_sid_or_unique_name: str) -> list[JsonDict]:
        """Return an assistant's builds ordered by date_created, newest first.

        Raises:
            KeyError: no assistant has that SID or unique_name.
        """
        return _newest_first(self.builds[self._require_assistant(assistant_sid_or_unique_name)["sid"]])

    def iter_builds(self) -> Iterator[JsonDict]:
        """Yield every build of every assistant."""
        for builds in self.builds.values():
            yield from builds

    def _require_assistant(self, sid_or_unique_name: str) -> JsonDict:
        assistant = self.find_assistant(sid_or_unique_name)
        if assistant is None:
            message = f"no assistant with SID or unique_name {sid_or_unique_name!r}: add it with add_assistant() first"
            raise KeyError(message)
        return assistant

    def _new_sid(self, prefix: str) -> str:
        return f"{prefix}{self._random.getrandbits(128):032x}"

    def _default_assistant(self, sid: str, unique_name: str | None, friendly_name: str | None) -> JsonDict:
        path = f"/v1/Assistants/{sid}"
        created = format_timestamp(self.now)
        return {
            "account_sid": self.account_sid,
            "date_created": created,
            "date_updated": created,
            "friendly_name": friendly_name,
            "latest_model_build_sid": None,
            "links": {name: f"{path}/{segment}" for name, segment in _ASSISTANT_LINKS.items()},
            "log_queries": True,
            "development_stage": "in-development",
            "needs_model_build": False,
            "sid": sid,
            "unique_name": unique_name,
            "url": path,
            "callback_url": None,
            "callback_events": None,
        }

    def _default_build(self, assistant_sid: str, sid: str) -> JsonDict:
        created = format_timestamp(self.now)
        return {
            "account_sid": self.account_sid,
            "date_created": created,
            "date_updated": created,
            "assistant_sid": assistant_sid,
            "sid": sid,
            "status": "completed",
            "unique_name": None,
            "url": f"/v1/Assistants/{assistant_sid}/ModelBuilds/{sid}",
            "build_duration": 60,
            "error_code": None,
        }


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {moment!r}: pass e.g. datetime.now(UTC)")
    return moment.astimezone(UTC).replace(microsecond=0)


def _find(records: list[JsonDict], sid_or_unique_name: str) -> JsonDict | None:
    # SIDs win, so a unique_name that looks like another record's SID cannot shadow it.
    for key in ("sid", "unique_name"):
        for record in records:
            if record.get(key) == sid_or_unique_name:
                return record
    return None


def _newest_first(records: list[JsonDict]) -> list[JsonDict]:
    # Of records with equal dates, the later-added one comes first. Records without a
    # readable date_created sort last.
    indexed = list(enumerate(records))
    indexed.sort(key=lambda item: (parse_timestamp(item[1].get("date_created")) or _OLDEST, item[0]), reverse=True)
    return [record for _, record in indexed]


@dataclass(frozen=True, slots=True)
class _PlannedBuild:
    minutes_ago: int
    status: str
    unique_name: str | None
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class _AssistantPlan:
    unique_name: str
    friendly_name: str
    development_stage: str
    needs_model_build: bool
    history_size: int
    recent: tuple[_PlannedBuild, ...]


# "{date}" in a build name becomes the build's creation date, as in v2026-12-04-nightly.
_DEMO_PLANS = (
    _AssistantPlan(
        unique_name="support-bot",
        friendly_name="Support Bot",
        development_stage="in-production",
        needs_model_build=False,
        history_size=110,
        recent=(
            _PlannedBuild(35, "completed", "v{date}-nightly"),
            _PlannedBuild(20 * 60, "failed", "hotfix-refunds-intent", 23003),
            _PlannedBuild(21 * 60, "completed", "retrain-order-status-samples"),
        ),
    ),
    _AssistantPlan(
        unique_name="billing-assistant",
        friendly_name="Billing Assistant",
        development_stage="in-production",
        needs_model_build=True,
        history_size=80,
        recent=(
            _PlannedBuild(12, "failed", "hotfix-invoice-dates", 23002),
            _PlannedBuild(95, "failed", "v{date}-nightly", 23001),
            _PlannedBuild(7 * 60, "completed", "retrain-payment-methods"),
        ),
    ),
    _AssistantPlan(
        unique_name="booking-concierge",
        friendly_name="Booking Concierge",
        development_stage="in-production",
        needs_model_build=False,
        history_size=60,
        recent=(
            _PlannedBuild(3, "building", "add-cancellation-intent"),
            _PlannedBuild(40, "canceled", "add-cancellation-intent-draft"),
            _PlannedBuild(5 * 60, "completed", "v{date}-nightly"),
        ),
    ),
    _AssistantPlan(
        unique_name="emea-enterprise-customer-care-escalations-and-refunds-production",
        friendly_name="EMEA Care <!channel> & <@U123> *bold* _escalations_ `prod`",
        development_stage="in-production",
        needs_model_build=False,
        history_size=45,
        recent=(
            _PlannedBuild(2, "enqueued", "v{date}-nightly"),
            _PlannedBuild(50, "completed", "<!channel> & <@U123> *bold*"),
            _PlannedBuild(9 * 60, "failed", None, 23003),
        ),
    ),
    _AssistantPlan(
        unique_name="onboarding-guide",
        friendly_name="Onboarding Guide – Zürich pilot ✓",
        development_stage="in-development",
        needs_model_build=True,
        history_size=35,
        recent=(
            _PlannedBuild(14 * 60, "completed", "retrain-all-intents-after-importing-ten-thousand-samples-via-csv"),
            _PlannedBuild(23 * 60, "failed", "release/2026.12 (rc1) ünïcödé ~strike~", 23001),
            _PlannedBuild(23 * 60 + 30, "canceled", None),
        ),
    ),
    _AssistantPlan(
        unique_name="legacy-ivr-menu",
        friendly_name="Legacy IVR Menu (no builds yet)",
        development_stage="in-development",
        needs_model_build=True,
        history_size=0,
        recent=(),
    ),
)

_HISTORY_PREFIXES = ("hotfix", "retrain", "add", "tune", "rollback")
_HISTORY_TOPICS = ("refunds-intent", "greeting-samples", "order-status", "faq-fields", "handoff-task", "locale-es-mx")
_HISTORY_STATUSES = ("completed", "failed", "canceled")
_HISTORY_WEIGHTS = (78, 12, 10)


def build_demo_dataset(*, now: datetime, seed: int = 7) -> SandboxDataset:
    """Build six demo assistants and a few hundred builds, dated relative to ``now``.

    The same ``now`` and ``seed`` give the same data. There are failures in the
    24 hours before ``now`` and builds older than a week.
    """
    dataset = SandboxDataset(now=now, seed=seed)
    content_random = random.Random(seed)
    for plan in _DEMO_PLANS:
        _add_planned_assistant(dataset, content_random, plan)
    return dataset


def _add_planned_assistant(dataset: SandboxDataset, rng: random.Random, plan: _AssistantPlan) -> None:
    builds = list(plan.recent) + _plan_history(rng, plan)
    oldest_minutes = max((build.minutes_ago for build in builds), default=0)
    created = dataset.now - timedelta(minutes=oldest_minutes, days=rng.randint(3, 90))

    assistant = dataset.add_assistant(
        unique_name=plan.unique_name,
        friendly_name=plan.friendly_name,
        date_created=format_timestamp(created),
        date_updated=format_timestamp(created),
        development_stage=plan.development_stage,
        needs_model_build=plan.needs_model_build,
    )

    # Names are given newest first, so the planned recent names win over repeats in
    # the history. Builds are added oldest first, so latest_model_build_sid ends on
    # the newest build.
    newest_first = sorted(builds, key=lambda build: build.minutes_ago)
    names = _unique_build_names(dataset.now, newest_first)
    for planned, name in reversed(list(zip(newest_first, names, strict=True))):
        _add_planned_build(dataset, rng, assistant, planned, name)
        assistant["date_updated"] = format_timestamp(dataset.now - timedelta(minutes=planned.minutes_ago))


def _plan_history(rng: random.Random, plan: _AssistantPlan) -> list[_PlannedBuild]:
    history: list[_PlannedBuild] = []
    minutes_ago = max((build.minutes_ago for build in plan.recent), default=0) + 60
    for _ in range(plan.history_size):
        minutes_ago += rng.randint(2 * 60, 9 * 60)
        status = rng.choices(_HISTORY_STATUSES, weights=_HISTORY_WEIGHTS)[0]
        error_code = rng.choice(DEMO_ERROR_CODES) if status == "failed" else None
        history.append(_PlannedBuild(minutes_ago, status, _history_name(rng), error_code))
    return history


def _history_name(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.5:
        return "v{date}-nightly"
    return f"{rng.choice(_HISTORY_PREFIXES)}-{rng.choice(_HISTORY_TOPICS)}"


def _add_planned_build(
    dataset: SandboxDataset, rng: random.Random, assistant: JsonDict, planned: _PlannedBuild, name: str | None
) -> None:
    created = dataset.now - timedelta(minutes=planned.minutes_ago)
    duration = _planned_duration(rng, planned.status)
    seconds_to_update = duration if duration is not None else _unfinished_seconds(rng, planned.status)
    updated = created + timedelta(seconds=seconds_to_update)

    dataset.add_build(
        assistant["sid"],
        date_created=format_timestamp(created),
        date_updated=format_timestamp(min(updated, dataset.now)),
        status=planned.status,
        unique_name=name,
        build_duration=duration,
        error_code=planned.error_code,
    )


def _planned_duration(rng: random.Random, status: str) -> int | None:
    if status == "completed":
        return rng.randint(45, 600)
    if status == "failed":
        return rng.randint(10, 300)
    return None


def _unfinished_seconds(rng: random.Random, status: str) -> int:
    # Seconds from creation to the last update of a build without a duration.
    if status == "canceled":
        return rng.randint(30, 300)
    if status == "building":
        return 30
    return 0


def _unique_build_names(now: datetime, builds: list[_PlannedBuild]) -> list[str | None]:
    # Build unique names are unique per assistant, so repeats get a -2, -3, … suffix.
    used: set[str] = set()
    names: list[str | None] = []
    for build in builds:
        created = now - timedelta(minutes=build.minutes_ago)
        names.append(None if build.unique_name is None else _first_free_name(build.unique_name, created, used))
    return names


def _first_free_name(template: str, created: datetime, used: set[str]) -> str:
    base = template.replace("{date}", created.strftime("%Y-%m-%d"))
    name = base
    suffix = 2
    while name in used:
        name = f"{base}-{suffix}"
        suffix += 1

    used.add(name)
    return name
