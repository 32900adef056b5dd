"""Tests for the Block Kit replies: Slack's limits, escaping, labels and the summary facts."""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from slack_sdk.models.blocks import Block, DividerBlock

from bot.autopilot import Listing
from bot.commands import parse_command
from bot.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    AutopilotError,
    InputError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from bot.formatting import PLACEHOLDER, humanize_duration, name
from bot.models import ModelBuild
from bot.render import (
    AssistantFailures,
    FailedReport,
    Reply,
    fit,
    render_api_error,
    render_assistant_builds,
    render_build_details,
    render_failed,
    render_help,
    render_input_error,
    render_internal_error,
    render_not_found,
)

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
ASSISTANT = "support-bot"
ASSISTANT_SID = "UA" + "0" * 32

# Block Kit limits for messages, as bot/render.py states them. slack-sdk checks the section and
# header limits itself, but not the block count or the length of one field.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10

HOSTILE_64 = "<&" * 32
MENTION = "<!channel>"
MIXED = "<@U123|x> & <https://evil|click>"
RAW_MARKUP = ("<!channel>", "<@U123", "<https://evil", "<&")


def _build(
    build_name: str | None = "v42",
    *,
    status: str | None = "completed",
    age: timedelta | None = timedelta(hours=1),
    duration: int | None = 190,
    error_code: int | None = None,
    sid: str | None = None,
) -> ModelBuild:
    created = None if age is None else NOW - age
    return ModelBuild(
        sid=sid,
        unique_name=build_name,
        status=status,
        assistant_sid=ASSISTANT_SID,
        date_created=created,
        date_updated=created,
        build_duration=duration,
        error_code=error_code,
    )


def _empty_build() -> ModelBuild:
    return ModelBuild(None, None, None, None, None, None, None, None)


def _report(groups: list[AssistantFailures], *, errors: list[tuple[str, AutopilotError]] | None = None) -> FailedReport:
    return FailedReport(
        window_text="24h",
        since=NOW - timedelta(hours=24),
        assistants_checked=len(groups) + len(errors or []),
        groups=groups,
        errors=errors or [],
    )


def _assistant_builds(builds: list[ModelBuild], *, status: str | None = None, assistant: str = ASSISTANT) -> Reply:
    return render_assistant_builds(assistant, Listing(builds), status=status, now=NOW)


def _build_details(build: ModelBuild) -> Reply:
    return render_build_details(ASSISTANT, build, now=NOW)


def _failed(build: ModelBuild) -> Reply:
    return render_failed(_report([AssistantFailures(ASSISTANT, [build])]), now=NOW)


RENDERERS: dict[str, Callable[[ModelBuild], Reply]] = {
    "assistant_builds": lambda build: _assistant_builds([build]),
    "assistant_builds_filtered": lambda build: _assistant_builds([build], status=build.status),
    "build_details": _build_details,
    "failed": _failed,
}


def _texts(payload: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (type, text) of every text object in the payload's blocks."""
    for block in payload["blocks"]:
        if "text" in block:
            yield block["text"]["type"], block["text"]["text"]
        for item in [*block.get("fields", []), *block.get("elements", [])]:
            yield item["type"], item["text"]


def _sections(reply: Reply) -> list[str]:
    return [block["text"]["text"] for block in reply.to_dict()["blocks"] if block["type"] == "section" and "text" in block]


def _fields(reply: Reply) -> list[str]:
    return [item["text"] for block in reply.to_dict()["blocks"] for item in block.get("fields", [])]


def _contexts(reply: Reply) -> list[str]:
    return [item["text"] for block in reply.to_dict()["blocks"] if block["type"] == "context" for item in block["elements"]]


def _serialized(reply: Reply) -> str:
    return json.dumps(reply.to_dict(), ensure_ascii=False)


def assert_within_slack_limits(reply: Reply) -> None:
    """Check that slack-sdk accepts every block and that every Block Kit limit holds."""
    payload = reply.to_dict()
    blocks = payload["blocks"]

    assert 0 < len(blocks) <= MAX_BLOCKS
    assert payload["text"].strip()
    assert len(payload["text"]) < 3000

    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block["type"]
        parsed.validate_json()
        assert parsed.to_dict() == block

        if block["type"] == "header":
            assert 0 < len(block["text"]["text"]) <= MAX_HEADER_TEXT
        if block["type"] == "section" and "text" in block:
            assert 0 < len(block["text"]["text"]) <= MAX_SECTION_TEXT
        if block["type"] == "section":
            assert len(block.get("fields", [])) <= MAX_FIELDS
            for item in block.get("fields", []):
                assert 0 < len(item["text"]) <= MAX_FIELD_TEXT
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= MAX_CONTEXT_ELEMENTS
            for item in block["elements"]:
                assert 0 < len(item["text"]) <= MAX_SECTION_TEXT

    for _, text in _texts(payload):
        assert text.strip()


def _slack_date(moment: datetime) -> str:
    timestamp = calendar.timegm(moment.utctimetuple())
    return f"<!date^{timestamp}^{{date_short_pretty}} {{time}}|{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


# --- Slack limits at scale ------------------------------------------------------------------------


def test_render_assistant_builds_400_failed() -> None:
    """Only the first ten of 400 failed builds are listed, and the footer shows both counts."""
    builds = [_build(f"build-{index:03d}", status="failed", age=timedelta(minutes=index + 1), error_code=23001) for index in range(400)]

    reply = _assistant_builds(builds, status="failed")

    assert_within_slack_limits(reply)
    build_sections = [text for text in _sections(reply) if text.startswith("❌")]
    assert len(build_sections) == 10
    assert "*build-000*" in build_sections[0]
    assert "*build-009*" in build_sections[-1]
    assert any(text.startswith("Showing 10 of 400 builds.") for text in _contexts(reply))
    assert reply.text == "support-bot: latest build build-000, failed; 400 failed builds"


def test_render_assistant_builds_status_filter_counts() -> None:
    builds = [_build(f"b{index}", status="failed" if index % 3 == 0 else "completed", age=timedelta(hours=index)) for index in range(30)]

    reply = _assistant_builds(builds, status="failed")

    assert any(text.startswith("Showing 10 of 10 builds.") for text in _contexts(reply))
    assert all(text.startswith("❌") for text in _sections(reply))


def test_render_assistant_builds_incomplete_listing() -> None:
    reply = render_assistant_builds(ASSISTANT, Listing([_build()], complete=False), status=None, now=NOW)

    assert any("Paging stopped early" in text for text in _contexts(reply))


@pytest.mark.parametrize("with_errors", [False, True], ids=["no-errors", "with-errors"])
def test_render_failed_100_assistants(with_errors: bool) -> None:
    """Groups fill the blocks left after the header, the summary, the footers and room for a stale-data note."""
    groups = [
        AssistantFailures(f"assistant-{index:03d}", [_build(f"b{index}-{n}", status="failed", age=timedelta(minutes=index * 10 + n + 1)) for n in range(4)])
        for index in range(100)
    ]
    errors: list[tuple[str, AutopilotError]] = [(f"broken-{index}", ServerError("HTTP 503", status=503)) for index in range(12)] if with_errors else []
    # The header, the summary, the "Showing" footer and one block kept for a stale-data note,
    # plus one footer listing unreadable assistants.
    expected_shown = MAX_BLOCKS - 4 - (1 if with_errors else 0)

    reply = render_failed(_report(groups, errors=errors), now=NOW)

    assert_within_slack_limits(reply)
    assert len(reply.to_dict()["blocks"]) == MAX_BLOCKS - 1
    assert f"Showing {expected_shown} of 100 assistants with failures." in _contexts(reply)
    assert _sections(reply)[1].startswith("*assistant-000*: 4 failed")
    assert _sections(reply)[-1].startswith(f"*assistant-{expected_shown - 1:03d}*")
    assert reply.text == f"400 failed builds in 100 of {100 + len(errors)} assistants in the last 24h"


def test_render_failed_errors_footer_capped() -> None:
    errors: list[tuple[str, AutopilotError]] = [(f"broken-{index}", ApiTimeoutError("timed out")) for index in range(12)]

    reply = render_failed(_report([], errors=errors), now=NOW)

    assert_within_slack_limits(reply)
    footer = _contexts(reply)[0]
    assert footer.startswith(f"⚠️ Could not read 12 assistants: broken-0 ({ApiTimeoutError.summary}), broken-1 (")
    assert footer.endswith(", and 2 more.")
    assert "broken-10" not in footer


def test_render_failed_more_than_five_builds() -> None:
    builds = [_build(f"b{n}", status="failed", age=timedelta(minutes=n + 1)) for n in range(8)]

    reply = render_failed(_report([AssistantFailures(ASSISTANT, builds)]), now=NOW)

    group = _sections(reply)[1]
    assert group.count("❌") == 5
    assert group.endswith("…and 3 more: `/builds support-bot failed`")


def test_render_failed_no_failures() -> None:
    reply = render_failed(_report([AssistantFailures(ASSISTANT, [])]), now=NOW)

    assert_within_slack_limits(reply)
    assert _sections(reply)[0].startswith("No failed builds since ")
    assert reply.text == "0 failed builds in 0 of 1 assistants in the last 24h"


@pytest.mark.parametrize("renderer", RENDERERS)
def test_render_hostile_64_character_names(renderer: str) -> None:
    """Names of '<' and '&' grow four to five times when escaped and must still fit every limit."""
    builds = [_build(HOSTILE_64[:64 - len(str(n))] + str(n), status="failed", error_code=23001, age=timedelta(minutes=n + 1)) for n in range(12)]

    reply = _render_hostile(renderer, builds)

    assert_within_slack_limits(reply)
    for kind, text in _texts(reply.to_dict()):
        if kind == "mrkdwn":
            assert "<&" not in text
    assert "<&" not in reply.text
    assert "&lt;&amp;" in _serialized(reply)


def _render_hostile(renderer: str, builds: list[ModelBuild]) -> Reply:
    """Render every build at once where the renderer takes a list, with hostile assistant names where they come from Twilio."""
    if renderer == "build_details":
        return _build_details(builds[0])
    if renderer == "failed":
        groups = [AssistantFailures(HOSTILE_64, builds), AssistantFailures("&" * 64, builds)]
        return render_failed(_report(groups), now=NOW)
    return _assistant_builds(builds, status="failed" if renderer == "assistant_builds_filtered" else None)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_render_build_every_field_none(renderer: str) -> None:
    """A build with every field null shows the placeholder, never 'None' or an empty text."""
    reply = RENDERERS[renderer](_empty_build())

    assert_within_slack_limits(reply)
    assert "None" not in _serialized(reply)
    assert PLACEHOLDER in _serialized(reply)


def test_render_build_details_every_field_none() -> None:
    reply = _build_details(_empty_build())

    assert _fields(reply) == [
        "*Status*\n❔ unknown",
        "*Assistant*\nsupport-bot",
        f"*Build SID*\n{PLACEHOLDER}",
        f"*Unique name*\n{PLACEHOLDER}",
        f"*Created*\n{PLACEHOLDER}",
        f"*Updated*\n{PLACEHOLDER}",
        f"*Duration*\n{PLACEHOLDER}",
        f"*Error*\n{PLACEHOLDER}",
    ]
    assert reply.text == f"Build {PLACEHOLDER} of support-bot: unknown"


def test_render_assistant_builds_no_builds() -> None:
    reply = _assistant_builds([])

    assert_within_slack_limits(reply)
    assert reply.text == "No builds yet for support-bot"
    assert "No builds yet for support-bot." in _sections(reply)
    assert _fields(reply) == [
        "*Latest build*\nnone yet",
        "*Last successful*\nnone",
        "*Failed in 24 h*\n0",
        f"*Median duration*\n{PLACEHOLDER}",
        f"*Trend, last 20 builds*\nno finished builds of last 0, median {PLACEHOLDER}",
    ]


def test_render_assistant_builds_no_match_for_status() -> None:
    reply = _assistant_builds([_build(status="completed")] * 3, status="failed")

    assert "No builds with status failed among the 3 builds of support-bot." in _sections(reply)
    assert not any(text.startswith("Showing") for text in _contexts(reply))


def test_reply_too_many_blocks_rejected() -> None:
    with pytest.raises(ValueError, match=r"at most 50 blocks, got 51"):
        Reply(text="x", blocks=[DividerBlock() for _ in range(51)])


# --- escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "renderer",
    [
        "assistant_builds",
        "assistant_builds_filtered",
        "failed",
        "build_details",
    ],
)
@pytest.mark.parametrize("build_name", [MENTION, MIXED], ids=["channel-mention", "user-link-and-url"])
def test_render_build_name_escaped_everywhere(renderer: str, build_name: str) -> None:
    """Slack markup in a build name never reaches the payload unescaped, in blocks or fallback text."""
    reply = RENDERERS[renderer](_build(build_name, status="failed"))
    payload = _serialized(reply)

    for markup in RAW_MARKUP:
        assert markup not in payload, markup
    assert "&lt;" in payload


@pytest.mark.parametrize(
    ("build_name", "escaped"),
    [(MENTION, "&lt;!channel&gt;"), (MIXED, "&lt;@U123|x&gt; &amp; &lt;https://evil|click&gt;")],
    ids=["channel-mention", "user-link-and-url"],
)
def test_render_fallback_text_escaped(build_name: str, escaped: str) -> None:
    reply = _assistant_builds([_build(build_name)])

    assert reply.text == f"support-bot: latest build {escaped}, completed"
    assert f"*{escaped}*" in _sections(reply)[0]


def test_render_build_details_fallback_escaped() -> None:
    reply = _build_details(_build(MENTION))

    assert reply.text == "Build &lt;!channel&gt; of support-bot: completed"
    assert "*Unique name*\n&lt;!channel&gt;" in _fields(reply)


@pytest.mark.parametrize("typed", ["<!channel>", "<@U123|x>", "a&b", "<https://evil|click>"])
def test_render_input_error_escapes_typed_text(typed: str) -> None:
    """The error about a typed assistant quotes it escaped, in the section and the fallback text."""
    with pytest.raises(InputError, match="is not a valid assistant") as caught:
        parse_command(typed)

    reply = render_input_error("/builds", str(caught.value))
    payload = _serialized(reply)

    assert_within_slack_limits(reply)
    assert typed not in payload
    assert typed not in reply.text
    assert "<!" not in payload
    assert "<@" not in payload
    assert reply.text.startswith("⚠️ '")
    assert not reply.ok


@pytest.mark.parametrize("kind", ["assistant", "build"])
def test_render_not_found_escapes_typed_text(kind: str) -> None:
    reply = render_not_found(kind=kind, value=MENTION, assistant=MIXED, command="/builds")
    payload = _serialized(reply)

    assert_within_slack_limits(reply)
    for markup in RAW_MARKUP:
        assert markup not in payload, markup
    assert "&lt;!channel&gt;" in reply.text
    assert not reply.ok


def test_render_assistant_builds_escapes_assistant_in_mrkdwn() -> None:
    """An assistant name that bypassed validation is still escaped wherever it becomes mrkdwn."""
    reply = _assistant_builds([_build()], assistant="a&b<!here>")

    for kind, text in _texts(reply.to_dict()):
        if kind == "mrkdwn":
            assert "<!here>" not in text
    assert reply.text.startswith("a&amp;b&lt;!here&gt;: ")


# --- status labels, durations, dates and error links ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "label"),
    [
        ("completed", "✅ completed"),
        ("failed", "❌ failed"),
        ("building", "🔨 building"),
        ("enqueued", "🕒 enqueued"),
        ("canceled", "⏹️ canceled"),
        (None, "❔ unknown"),
        ("paused", "❔ paused"),
        ("<!here>", "❔ &lt;!here&gt;"),
    ],
)
def test_render_status_label(status: str | None, label: str) -> None:
    reply = _build_details(_build(status=status))

    assert _fields(reply)[0] == f"*Status*\n{label}"
    assert _sections(_assistant_builds([_build(status=status)]))[0].startswith(f"{label}  *v42*")


def test_render_status_labels_distinct() -> None:
    """Each known status has its own emoji and word, so canceled never reads as failed."""
    statuses = ["completed", "failed", "building", "enqueued", "canceled"]
    labels = [_fields(_build_details(_build(status=status)))[0].removeprefix("*Status*\n") for status in statuses]
    emojis = {label.split(" ", 1)[0] for label in labels}
    words = {label.split(" ", 1)[1] for label in labels}

    assert len(emojis) == len(statuses)
    assert words == set(statuses)
    assert "❔" not in emojis


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (59, "59s"),
        (60, "1m 0s"),
        (190, "3m 10s"),
        (3599, "59m 59s"),
        (3600, "1h 0m"),
        (7500, "2h 5m"),
        (86_399, "23h 59m"),
        (86_400, "1d 0h"),
        (97_200, "1d 3h"),
        (45.4, "45s"),
    ],
)
def test_render_duration_humanized(seconds: int | float, text: str) -> None:
    assert humanize_duration(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(190, "3m 10s"), (45, "45s"), (7500, "2h 5m"), (97_200, "1d 3h")])
def test_render_build_line_duration(seconds: int, text: str) -> None:
    line = _sections(_assistant_builds([_build(duration=seconds)]))[0]

    assert line.endswith(f" · {text}")


@pytest.mark.parametrize("seconds", [None, -5])
def test_render_duration_missing_placeholder(seconds: int | None) -> None:
    assert humanize_duration(seconds) == PLACEHOLDER


def test_render_date_token() -> None:
    """Dates are Slack date tokens whose fallback is the UTC time, whatever the parsed offset."""
    created = datetime(2015, 7, 30, 22, 0, tzinfo=timezone(timedelta(hours=2)))
    build = ModelBuild("UG" + "1" * 32, "v1", "failed", ASSISTANT_SID, created, created, 190, None)

    fields = _fields(_build_details(build))

    assert _slack_date(created) == "<!date^1438286400^{date_short_pretty} {time}|2015-07-30 20:00 UTC>"
    assert f"*Created*\n{_slack_date(created)}" in fields
    assert _sections(_assistant_builds([build]))[0].endswith(f"\n{_slack_date(created)} · 3m 10s")


@pytest.mark.parametrize("code", [23001, 20003, 11200])
def test_render_error_code_linked(code: int) -> None:
    link = f"<https://www.twilio.com/docs/errors/{code}|{code}>"
    build = _build(status="failed", error_code=code)

    assert _sections(_assistant_builds([build]))[0].endswith(f" · error {link}")
    assert f"*Error*\n{link}" in _fields(_build_details(build))
    assert f"error {link}" in _sections(_failed(build))[1]


# --- the summary above an assistant's builds ------------------------------------------------------


def test_render_summary_fields() -> None:
    """The summary shows the latest build with its age in whole minutes, the last success, recent failures and the median duration."""
    builds = [
        _build("v45", status="building", age=timedelta(minutes=10, seconds=40), duration=None),
        _build("v44", status="completed", age=timedelta(hours=2), duration=120),
        _build("v43", status="failed", age=timedelta(hours=3), duration=60),
        _build("v42", status="failed", age=timedelta(hours=23), duration=600),
        _build("v41", status="failed", age=timedelta(hours=25), duration=300),
        _build("v40", status="completed", age=timedelta(hours=30), duration=100),
    ]
    latest_timestamp = calendar.timegm((NOW - timedelta(minutes=10, seconds=40)).utctimetuple())

    latest, last_success, failed, median, recent = _fields(_assistant_builds(builds))

    assert latest == f"*Latest build*\n🔨 building <!date^{latest_timestamp}^{{ago}}|10m ago>"
    assert last_success == f"*Last successful*\n{_slack_date(NOW - timedelta(hours=2))} (v44)"
    assert failed == "*Failed in 24 h*\n2"
    assert median == "*Median duration*\n2m 0s (last 5)"
    # 3 of the 5 finished builds failed; durations oldest first: 100, 300, 600, 60, 120, none.
    assert recent == "*Trend, last 20 builds*\n60% failed of last 5, median 2m 0s `▂▄█▁▂·`"


def test_render_summary_failure_25h_not_counted() -> None:
    builds = [_build("old", status="failed", age=timedelta(hours=25))]

    assert "*Failed in 24 h*\n0" in _fields(_assistant_builds(builds))


def test_render_summary_last_success_name_escaped() -> None:
    builds = [_build(MENTION, status="completed")]

    last_success = _fields(_assistant_builds(builds))[1]

    assert last_success.endswith("(&lt;!channel&gt;)")


# --- errors ---------------------------------------------------------------------------------------


API_ERRORS: list[tuple[AutopilotError, str]] = [
    (AuthenticationError("HTTP 401", status=401, code=20003), r"rejected the bot's credentials\. An admin should check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
    (RateLimitedError("HTTP 429", retry_after=17, status=429, code=20429), r"rate limiting requests\. Try again in 17 s\.$"),
    (RateLimitedError("HTTP 429", status=429), r"rate limiting requests\. Try again in a minute\.$"),
    (ServerError("HTTP 503", status=503), r"failed with HTTP 503\. Try again in a minute\.$"),
    (ApiTimeoutError("timed out"), r"timed out\. Try again in a minute\.$"),
    (ApiConnectionError("refused"), r"could not be reached\. Check AUTOPILOT_BASE_URL and the network"),
    (InvalidResponseError("not JSON", status=200), r"not the documented JSON\. Check that AUTOPILOT_BASE_URL"),
    (RequestRejectedError("HTTP 400", status=400, code=20001), r"rejected the request with HTTP 400\.$"),
    (NotFoundError("HTTP 404", status=404, code=20404), r"not found\.$"),
]


@pytest.mark.parametrize(("error", "sentence"), API_ERRORS, ids=lambda value: type(value).__name__ if isinstance(value, AutopilotError) else None)
def test_render_api_error_plain_sentence(error: AutopilotError, sentence: str) -> None:
    """Each API error becomes one short plain line about the subject, with the cause and the next step."""
    reply = render_api_error(error, subject=f"the builds of {name(ASSISTANT)}")

    assert_within_slack_limits(reply)
    assert re.search(sentence, reply.text)
    assert reply.text.startswith("⚠️ Could not read the builds of support-bot: ")
    assert "\n" not in reply.text
    assert len(reply.text) < 250
    assert "None" not in _serialized(reply)
    assert _sections(reply) == [reply.text]
    assert not reply.ok


@pytest.mark.parametrize("error", [pytest.param(error, id=type(error).__name__) for error, _ in API_ERRORS if error.code is not None])
def test_render_api_error_code_linked(error: AutopilotError) -> None:
    reply = render_api_error(error, subject="the model builds")

    assert _contexts(reply) == [f"Twilio error <https://www.twilio.com/docs/errors/{error.code}|{error.code}> · HTTP {error.status}"]


def test_render_api_error_without_details() -> None:
    reply = render_api_error(ApiTimeoutError("timed out"), subject="the model builds")

    assert _contexts(reply) == []


def test_render_help_uses_command_name() -> None:
    reply = render_help("/deploys")
    payload = _serialized(reply)
    usage = _sections(reply)[0].splitlines()

    assert_within_slack_limits(reply)
    assert "/builds" not in payload
    assert reply.text.startswith("Usage: /deploys <assistant> | /deploys <assistant> <status>")
    assert len(usage) == 5
    for line in usage:
        assert line.startswith("`/deploys "), line
    assert "`/deploys failed 6h`" in usage[3]


@pytest.mark.parametrize(
    ("make_reply", "ok"),
    [
        (lambda: render_help("/builds"), True),
        (lambda: _assistant_builds([_build()]), True),
        (lambda: _build_details(_build()), True),
        (lambda: _failed(_build(status="failed")), True),
        (lambda: render_input_error("/builds", "'x/y' is not valid."), False),
        (lambda: render_api_error(ServerError("HTTP 500", status=500), subject="the model builds"), False),
        (lambda: render_not_found(kind="assistant", value="nope", assistant=None, command="/builds"), False),
        (lambda: render_internal_error("a1b2c3d4"), False),
    ],
    ids=["help", "assistant-builds", "build-details", "failed", "input-error", "api-error", "not-found", "internal-error"],
)
def test_reply_ok_flag(make_reply: Callable[[], Reply], ok: bool) -> None:
    reply = make_reply()

    assert reply.ok is ok
    assert_within_slack_limits(reply)


def test_render_internal_error_reference() -> None:
    reply = render_internal_error("a1b2c3d4")

    assert "`a1b2c3d4`" in reply.text


# --- fit ------------------------------------------------------------------------------------------


LINES = [
    f"❌ {name('R&D <beta>')} · <!date^1438286400^{{date_short_pretty}} {{time}}|2015-07-30 20:00 UTC> · error <https://www.twilio.com/docs/errors/23001|23001>",
    "a &amp; b &lt;c&gt;",
    "<https://www.twilio.com/docs/errors/20003|20003>",
]
FIT_TEXT = "\n".join(LINES[index % len(LINES)] for index in range(60))


def test_fit_short_text_unchanged() -> None:
    assert fit(FIT_TEXT, len(FIT_TEXT)) == FIT_TEXT


@pytest.mark.parametrize("limit", range(200, len(FIT_TEXT), 37))
def test_fit_cuts_only_at_line_breaks(limit: int) -> None:
    """With lines shorter than the limit, every kept line is whole, so no entity or `<…>` token is split."""
    fitted = fit(FIT_TEXT, limit)
    *kept, marker = fitted.split("\n")

    assert len(fitted) <= limit
    assert marker == "…"
    assert kept
    assert kept == FIT_TEXT.split("\n")[: len(kept)]
    assert fitted.count("<") == fitted.count(">")


def test_fit_single_long_line_truncated() -> None:
    text = "x" * 5000

    fitted = fit(text, 3000)

    assert len(fitted) == 3000
    assert fitted.endswith("…")
