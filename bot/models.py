"""Autopilot resources and the pure functions that parse them from API JSON.

Twilio marks every field of a resource nullable, so every attribute here may be
None. A value of the wrong type becomes None (a string of digits becomes its
number), while a body of the wrong shape raises `InvalidResponseError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from bot.errors import InvalidResponseError

logger = logging.getLogger(__name__)

KNOWN_STATUSES = ("enqueued", "building", "completed", "failed", "canceled")
EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ModelBuild:
    """One model build of an assistant."""

    sid: str | None
    unique_name: str | None
    status: str | None
    assistant_sid: str | None
    date_created: datetime | None
    date_updated: datetime | None
    build_duration: int | None
    error_code: int | None
    url: str | None = None

    @property
    def name(self) -> str | None:
        """Return the unique name, or the SID when the build has no unique name."""
        return self.unique_name or self.sid


@dataclass(frozen=True, slots=True)
class Assistant:
    """One Autopilot assistant."""

    sid: str | None
    unique_name: str | None
    friendly_name: str | None
    date_created: datetime | None = None

    @property
    def key(self) -> str | None:
        """Return the identifier that addresses this assistant in a URL path."""
        return self.sid or self.unique_name


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list response: the raw items and the next page's URL."""

    items: list[Mapping[str, Any]]
    next_page_url: str | None


def parse_page(body: object, key: str) -> Page:
    """Return the items under `key` and `meta.next_page_url` of a list response."""
    if not isinstance(body, Mapping):
        raise InvalidResponseError(f"expected a JSON object with {key!r}, got {type(body).__name__}")

    items = body.get(key)
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise InvalidResponseError(f"expected a list of objects under {key!r}")

    meta = body.get("meta")
    if meta is not None and not isinstance(meta, Mapping):
        raise InvalidResponseError("expected 'meta' to be an object")

    next_url = meta.get("next_page_url") if meta else None
    if next_url is not None and not isinstance(next_url, str):
        raise InvalidResponseError("expected 'meta.next_page_url' to be a string or null")
    return Page(items=items, next_page_url=next_url or None)


def parse_model_build(raw: Mapping[str, Any]) -> ModelBuild:
    """Build a `ModelBuild` from one JSON object, tolerating nulls and odd types."""
    return ModelBuild(
        sid=_text(raw.get("sid")),
        unique_name=_text(raw.get("unique_name")),
        status=_status(raw.get("status")),
        assistant_sid=_text(raw.get("assistant_sid")),
        date_created=parse_datetime(raw.get("date_created")),
        date_updated=parse_datetime(raw.get("date_updated")),
        build_duration=_integer(raw.get("build_duration")),
        error_code=_integer(raw.get("error_code")),
        url=_text(raw.get("url")),
    )


def parse_model_build_body(body: object) -> ModelBuild:
    """Parse the response body of a fetch-one-build request."""
    if not isinstance(body, Mapping):
        raise InvalidResponseError(f"expected a model build object, got {type(body).__name__}")
    return parse_model_build(body)


def parse_assistant(raw: Mapping[str, Any]) -> Assistant:
    """Build an `Assistant` from one JSON object, tolerating nulls and odd types."""
    return Assistant(
        sid=_text(raw.get("sid")),
        unique_name=_text(raw.get("unique_name")),
        friendly_name=_text(raw.get("friendly_name")),
        date_created=parse_datetime(raw.get("date_created")),
    )


def newest_first(builds: Iterable[ModelBuild]) -> list[ModelBuild]:
    """Return the builds de-duplicated by SID and ordered newest first.

    Of two copies of one SID, the one updated last wins: a build that moved to
    a later page while the list was read was fetched later and is fresher.
    Builds without a SID are all kept, since nothing identifies a repeat, and
    builds without a creation date sort last.
    """
    by_sid: dict[str, ModelBuild] = {}
    unnamed: list[ModelBuild] = []
    for build in builds:
        if build.sid is None:
            unnamed.append(build)
            continue

        kept = by_sid.get(build.sid)
        if kept is None or (build.date_updated or EPOCH) > (kept.date_updated or EPOCH):
            by_sid[build.sid] = build

    unique = [*by_sid.values(), *unnamed]
    return sorted(unique, key=lambda build: (build.date_created or EPOCH, build.sid or ""), reverse=True)


def parse_datetime(value: object) -> datetime | None:
    """Parse an ISO 8601 or RFC 2822 date into an aware UTC datetime, or None.

    Twilio's schema calls its dates RFC 2822 while its examples use ISO 8601
    (`2015-07-30T20:00:00Z`), so both are accepted. A date without an offset is
    taken as UTC, which is what Twilio sends.
    """
    if not isinstance(value, str) or not value.strip():
        return None

    text = value.strip()
    parsed = _parse_iso(text) or _parse_rfc2822(text)
    if parsed is None:
        logger.warning("models.unparsed_date", extra={"value": text[:64]})
        return None

    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # Dates at the edge of year 1 or 9999 cannot be moved to UTC.
        logger.warning("models.unparsed_date", extra={"value": text[:64]})
        return None


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _parse_rfc2822(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


def _status(value: object) -> str | None:
    # An unknown status is kept as sent, so a new state shows up instead of vanishing.
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    return None


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None
