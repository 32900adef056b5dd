"""Tests for parsing Autopilot JSON into builds, assistants and pages, and for ordering builds."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.errors import InvalidResponseError
from bot.models import (
    Assistant,
    ModelBuild,
    newest_first,
    parse_assistant,
    parse_datetime,
    parse_model_build,
    parse_model_build_body,
    parse_page,
)
from tests.conftest import shared_file

BUILD_SID = "UG" + "a" * 32
ASSISTANT_SID = "UA" + "a" * 32
BUILD_FIELDS = ("sid", "unique_name", "status", "assistant_sid", "date_created", "date_updated", "build_duration", "error_code", "url")
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _build(
    sid: str | None,
    *,
    created: datetime | None = None,
    updated: datetime | None = None,
    status: str | None = "completed",
) -> ModelBuild:
    return ModelBuild(
        sid=sid,
        unique_name=None,
        status=status,
        assistant_sid=ASSISTANT_SID,
        date_created=created,
        date_updated=updated,
        build_duration=None,
        error_code=None,
    )


# --- parse_model_build ----------------------------------------------------------------------------


def test_parse_model_build_every_field_null() -> None:
    build = parse_model_build({field: None for field in BUILD_FIELDS})

    for field in BUILD_FIELDS:
        assert getattr(build, field) is None, field
    assert build.name is None


def test_parse_model_build_empty_object() -> None:
    build = parse_model_build({})

    for field in BUILD_FIELDS:
        assert getattr(build, field) is None, field


def test_parse_model_build_all_fields() -> None:
    build = parse_model_build(
        {
            "sid": BUILD_SID,
            "unique_name": "v42",
            "status": "completed",
            "assistant_sid": ASSISTANT_SID,
            "date_created": "2026-12-04T12:00:00Z",
            "date_updated": "2026-12-04T12:03:10Z",
            "build_duration": 190,
            "error_code": None,
            "url": "https://autopilot.twilio.com/v1/Assistants/x/ModelBuilds/y",
            "account_sid": "AC" + "a" * 32,
        }
    )

    assert build.sid == BUILD_SID
    assert build.unique_name == "v42"
    assert build.name == "v42"
    assert build.status == "completed"
    assert build.assistant_sid == ASSISTANT_SID
    assert build.date_created == T0
    assert build.date_updated == T0 + timedelta(minutes=3, seconds=10)
    assert build.build_duration == 190
    assert build.error_code is None
    assert build.url == "https://autopilot.twilio.com/v1/Assistants/x/ModelBuilds/y"


def test_model_build_name_falls_back_to_sid() -> None:
    assert parse_model_build({"sid": BUILD_SID, "unique_name": ""}).name == BUILD_SID


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12, 12),
        (0, 0),
        ("12", 12),
        (" 12 ", 12),
        (12.0, 12),
        (12.5, None),
        (True, None),
        (False, None),
        ("-5", None),
        ("1.5", None),
        ("twelve", None),
        ("", None),
        ("²", None),
        ("١٢", None),
        (float("nan"), None),
        (float("inf"), None),
        ([12], None),
        ({"seconds": 12}, None),
    ],
    ids=lambda value: repr(value),
)
def test_parse_model_build_duration_types(raw: object, expected: int | None) -> None:
    """Whole numbers, whole floats and ASCII digit strings are read, and any other value becomes None."""
    assert parse_model_build({"build_duration": raw}).build_duration == expected


@pytest.mark.parametrize(("raw", "expected"), [(23001, 23001), ("23001", 23001), (23001.0, 23001), (True, None), ("E23001", None)])
def test_parse_model_build_error_code_types(raw: object, expected: int | None) -> None:
    assert parse_model_build({"error_code": raw}).error_code == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("failed", "failed"),
        ("FAILED", "failed"),
        (" Completed ", "completed"),
        ("Paused", "paused"),
        ("re-TRAINING", "re-training"),
        ("", None),
        ("   ", None),
        (3, None),
        (True, None),
        (["failed"], None),
    ],
    ids=lambda value: repr(value),
)
def test_parse_model_build_status_normalized(raw: object, expected: str | None) -> None:
    """A known or unknown status is kept, lower-cased, so a new state still shows up."""
    assert parse_model_build({"status": raw}).status == expected


@pytest.mark.parametrize("field", ["sid", "unique_name", "assistant_sid", "url"])
@pytest.mark.parametrize("raw", [42, True, 1.5, ["x"], {"x": 1}, ""], ids=repr)
def test_parse_model_build_text_wrong_type(field: str, raw: object) -> None:
    assert getattr(parse_model_build({field: raw}), field) is None


@pytest.mark.parametrize("raw", [1438286400, 1438286400.0, True, ["2015-07-30T20:00:00Z"]], ids=repr)
def test_parse_model_build_date_wrong_type(raw: object) -> None:
    build = parse_model_build({"date_created": raw, "date_updated": raw})

    assert build.date_created is None
    assert build.date_updated is None


def test_parse_model_build_body_not_object() -> None:
    with pytest.raises(InvalidResponseError, match=r"expected a model build object, got list"):
        parse_model_build_body([{"sid": BUILD_SID}])


def test_parse_assistant_wrong_types() -> None:
    assistant = parse_assistant({"sid": 7, "unique_name": None, "friendly_name": ["x"], "date_created": "garbage"})

    assert assistant == Assistant(sid=None, unique_name=None, friendly_name=None, date_created=None)
    assert assistant.key is None


def test_assistant_key_prefers_sid() -> None:
    assert parse_assistant({"sid": ASSISTANT_SID, "unique_name": "support-bot"}).key == ASSISTANT_SID
    assert parse_assistant({"unique_name": "support-bot"}).key == "support-bot"


# --- parse_datetime -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-07-30T20:00:00Z", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("2015-07-30T20:00:00+00:00", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("2015-07-30T22:00:00+02:00", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("2015-07-30T13:00:00-07:00", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("2015-07-31T01:30:00+05:30", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("2015-07-30T20:00:00.123Z", datetime(2015, 7, 30, 20, 0, 0, 123_000, tzinfo=UTC)),
        ("2015-07-30T20:00:00.123456Z", datetime(2015, 7, 30, 20, 0, 0, 123_456, tzinfo=UTC)),
        ("2015-07-30T20:00:00.123456789Z", datetime(2015, 7, 30, 20, 0, 0, 123_456, tzinfo=UTC)),
        ("2015-07-30T20:00:00", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("2015-07-30 20:00:00", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("  2015-07-30T20:00:00Z\n", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("Thu, 30 Jul 2015 20:00:00 +0000", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("Thu, 30 Jul 2015 20:00:00 -0700", datetime(2015, 7, 31, 3, 0, tzinfo=UTC)),
        ("Thu, 30 Jul 2015 20:00:00 GMT", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("Thu, 30 Jul 2015 20:00:00 -0000", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
        ("30 Jul 2015 22:00:00 +0200", datetime(2015, 7, 30, 20, 0, tzinfo=UTC)),
    ],
)
def test_parse_datetime_accepted_formats(text: str, expected: datetime) -> None:
    """ISO 8601 and RFC 2822 dates become aware UTC datetimes, and a date without an offset is taken as UTC."""
    parsed = parse_datetime(text)

    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "   ",
        "2015-13-45T00:00:00Z",
        "30/07/2015 20:00",
        "Thu, 30 Jul 2015 25:00:00 +0000",
        "yesterday",
        None,
        1438286400,
        1438286400.0,
        ["2015-07-30T20:00:00Z"],
    ],
    ids=repr,
)
def test_parse_datetime_garbage_gives_none(value: object) -> None:
    assert parse_datetime(value) is None


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_parse_datetime_out_of_range_gives_none(text: str) -> None:
    """A date that has no UTC equivalent inside `datetime`'s range is unreadable, like garbage."""
    assert parse_datetime(text) is None


# --- parse_page -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"sid": BUILD_SID}], r"expected a JSON object with 'model_builds', got list"),
        ("model_builds", r"expected a JSON object with 'model_builds', got str"),
        (None, r"expected a JSON object with 'model_builds', got NoneType"),
        ({"assistants": []}, r"expected a list of objects under 'model_builds'"),
        ({"model_builds": None}, r"expected a list of objects under 'model_builds'"),
        ({"model_builds": {"sid": BUILD_SID}}, r"expected a list of objects under 'model_builds'"),
        ({"model_builds": [BUILD_SID]}, r"expected a list of objects under 'model_builds'"),
        ({"model_builds": [{"sid": BUILD_SID}, None]}, r"expected a list of objects under 'model_builds'"),
        ({"model_builds": [], "meta": []}, r"expected 'meta' to be an object"),
        ({"model_builds": [], "meta": "next"}, r"expected 'meta' to be an object"),
        ({"model_builds": [], "meta": {"next_page_url": 2}}, r"expected 'meta\.next_page_url' to be a string or null"),
        ({"model_builds": [], "meta": {"next_page_url": ["https://x"]}}, r"expected 'meta\.next_page_url' to be a string or null"),
    ],
    ids=[
        "list-body",
        "string-body",
        "null-body",
        "missing-key",
        "null-items",
        "object-items",
        "string-items",
        "null-item",
        "list-meta",
        "string-meta",
        "number-next-page",
        "list-next-page",
    ],
)
def test_parse_page_wrong_shape(body: object, message: str) -> None:
    with pytest.raises(InvalidResponseError, match=message):
        parse_page(body, "model_builds")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (None, None),
        ({}, None),
        ({"next_page_url": None}, None),
        ({"next_page_url": ""}, None),
        ({"next_page_url": "https://autopilot.twilio.com/v1/Assistants?Page=1"}, "https://autopilot.twilio.com/v1/Assistants?Page=1"),
    ],
    ids=["no-meta", "empty-meta", "null", "empty-string", "url"],
)
def test_parse_page_next_page_url(meta: object, expected: str | None) -> None:
    body: dict[str, Any] = {"assistants": [{"sid": ASSISTANT_SID}]}
    if meta is not None:
        body["meta"] = meta

    page = parse_page(body, "assistants")

    assert page.next_page_url == expected
    assert page.items == [{"sid": ASSISTANT_SID}]


# --- newest_first ---------------------------------------------------------------------------------


def test_newest_first_orders_by_creation() -> None:
    """Whatever the input order, the result is newest first."""
    builds = [_build(f"UG{index:032x}", created=T0 - timedelta(hours=index)) for index in range(8)]
    shuffled = builds[:]
    random.Random(7).shuffle(shuffled)

    assert newest_first(shuffled) == builds
    assert newest_first(list(reversed(builds))) == builds


@pytest.mark.parametrize("stale_first", [True, False], ids=["stale-first", "fresh-first"])
def test_newest_first_dedupes_by_later_update(stale_first: bool) -> None:
    """Of two copies of one SID, the copy with the later `date_updated` is kept, in either order."""
    stale = _build(BUILD_SID, created=T0, updated=T0 + timedelta(minutes=1), status="building")
    fresh = _build(BUILD_SID, created=T0, updated=T0 + timedelta(minutes=4), status="completed")
    other = _build("UG" + "b" * 32, created=T0 - timedelta(hours=1))

    result = newest_first([stale, other, fresh] if stale_first else [fresh, other, stale])

    assert result == [fresh, other]


def test_newest_first_dated_copy_beats_undated() -> None:
    undated = _build(BUILD_SID, created=T0, updated=None, status="building")
    dated = _build(BUILD_SID, created=T0, updated=T0, status="failed")

    assert newest_first([dated, undated]) == [dated]
    assert newest_first([undated, dated]) == [dated]


def test_newest_first_keeps_sidless_builds() -> None:
    """Builds without a SID cannot be matched, so even identical ones are all kept."""
    anonymous = _build(None, created=T0)
    named = _build(BUILD_SID, created=T0 - timedelta(hours=1))

    result = newest_first([anonymous, named, anonymous])

    assert result == [anonymous, anonymous, named]


def test_newest_first_dateless_builds_last() -> None:
    dateless = _build("UG" + "c" * 32, created=None)
    old = _build("UG" + "d" * 32, created=datetime(1970, 1, 1, tzinfo=UTC))
    recent = _build("UG" + "e" * 32, created=T0)
    anonymous_dateless = _build(None, created=None)

    result = newest_first([dateless, anonymous_dateless, old, recent])

    assert result[:2] == [recent, old]
    assert set(result[2:]) == {dateless, anonymous_dateless}


def test_newest_first_mixed_offsets_compared_as_instants() -> None:
    """Dates parsed from different offsets compare by the instant they denote."""
    earlier = _build("UG" + "1" * 32, created=datetime(2026, 12, 4, 13, 0, tzinfo=timezone(timedelta(hours=2))))
    later = _build("UG" + "2" * 32, created=datetime(2026, 12, 4, 12, 0, tzinfo=UTC))

    assert newest_first([earlier, later]) == [later, earlier]


def test_newest_first_empty() -> None:
    assert newest_first([]) == []


# --- the examples in Twilio's Autopilot OpenAPI description ----------------------------------------


@pytest.fixture(scope="module")
def spec() -> Mapping[str, Any]:
    return json.loads(shared_file("autopilot", "twilio_autopilot_v1.json").read_text(encoding="utf-8"))


def _examples(spec: Mapping[str, Any], operation_id: str) -> Iterator[tuple[str, Any]]:
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            if not isinstance(operation, Mapping) or operation.get("operationId") != operation_id:
                continue
            content = operation["responses"]["200"]["content"]["application/json"]
            for name, example in content["examples"].items():
                yield name, example["value"]


def _expected_date(raw: object) -> datetime | None:
    """Parse a spec example date with the standard library rather than with the code under test."""
    if raw is None:
        return None
    assert isinstance(raw, str)
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)


def _assert_build_matches(build: ModelBuild, raw: Mapping[str, Any]) -> None:
    assert build.sid == raw["sid"]
    assert build.unique_name == raw["unique_name"]
    assert build.status == raw["status"]
    assert build.assistant_sid == raw["assistant_sid"]
    assert build.date_created == _expected_date(raw["date_created"])
    assert build.date_updated == _expected_date(raw["date_updated"])
    assert build.build_duration == raw["build_duration"]
    assert build.error_code == raw["error_code"]
    assert build.url == raw["url"]


def _assert_assistant_matches(assistant: Assistant, raw: Mapping[str, Any]) -> None:
    assert assistant.sid == raw["sid"]
    assert assistant.unique_name == raw["unique_name"]
    assert assistant.friendly_name == raw["friendly_name"]
    assert assistant.date_created == _expected_date(raw["date_created"])


def test_spec_list_model_build_examples(spec: Mapping[str, Any]) -> None:
    examples = dict(_examples(spec, "ListModelBuild"))
    assert examples, "the spec has no ListModelBuild examples"

    for name, body in examples.items():
        page = parse_page(body, "model_builds")
        assert page.next_page_url == body["meta"]["next_page_url"], name
        assert len(page.items) == len(body["model_builds"]), name
        for item in page.items:
            _assert_build_matches(parse_model_build(item), item)


def test_spec_read_full_build_values(spec: Mapping[str, Any]) -> None:
    """The readFull example is a failed build with Twilio error 23001, created 2015-07-30 20:00 UTC."""
    body = dict(_examples(spec, "ListModelBuild"))["readFull"]

    [build] = [parse_model_build(item) for item in parse_page(body, "model_builds").items]

    assert build.status == "failed"
    assert build.error_code == 23001
    assert build.date_created == datetime(2015, 7, 30, 20, 0, tzinfo=UTC)
    assert build.sid == "UGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert build.assistant_sid == "UAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert build.build_duration is None


def test_spec_read_empty_builds(spec: Mapping[str, Any]) -> None:
    body = dict(_examples(spec, "ListModelBuild"))["readEmpty"]

    page = parse_page(body, "model_builds")

    assert page.items == []
    assert page.next_page_url is None


def test_spec_fetch_model_build_examples(spec: Mapping[str, Any]) -> None:
    examples = dict(_examples(spec, "FetchModelBuild"))
    assert examples, "the spec has no FetchModelBuild examples"

    for body in examples.values():
        _assert_build_matches(parse_model_build_body(body), body)


def test_spec_fetch_build_values(spec: Mapping[str, Any]) -> None:
    build = parse_model_build_body(dict(_examples(spec, "FetchModelBuild"))["fetch"])

    assert build.status == "enqueued"
    assert build.unique_name == "unique_name"
    assert build.error_code is None
    assert build.date_updated == datetime(2015, 7, 30, 20, 0, tzinfo=UTC)


def test_spec_list_assistant_examples(spec: Mapping[str, Any]) -> None:
    examples = dict(_examples(spec, "ListAssistant"))
    assert examples, "the spec has no ListAssistant examples"

    for name, body in examples.items():
        page = parse_page(body, "assistants")
        assert page.next_page_url == body["meta"]["next_page_url"], name
        assert len(page.items) == len(body["assistants"]), name
        for item in page.items:
            _assert_assistant_matches(parse_assistant(item), item)


def test_spec_fetch_assistant_examples(spec: Mapping[str, Any]) -> None:
    examples = dict(_examples(spec, "FetchAssistant"))
    assert examples, "the spec has no FetchAssistant examples"

    for body in examples.values():
        _assert_assistant_matches(parse_assistant(body), body)


def test_spec_fetch_assistant_values(spec: Mapping[str, Any]) -> None:
    assistant = parse_assistant(dict(_examples(spec, "FetchAssistant"))["fetch"])

    assert assistant.sid == "UAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert assistant.unique_name == "so-so-unique"
    assert assistant.friendly_name == "so so friendly"
    assert assistant.date_created == datetime(2017, 7, 4, 8, 34, tzinfo=UTC)
    assert assistant.key == "UAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
