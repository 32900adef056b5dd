"""Tests for parsing the text after the slash command, and for identifier validation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.commands import (
    AssistantBuilds,
    BuildDetails,
    Command,
    FailedBuilds,
    Help,
    parse_command,
    parse_window,
)
from bot.errors import InputError, InvalidIdentifierError
from bot.identifiers import validate_assistant, validate_build

ASSISTANT_SID = "UA" + "0123456789abcdef" * 2
BUILD_SID = "UG" + "fedcba9876543210" * 2
NAME_64 = "a" + "b-_.9" * 12 + "c" * 3
NAME_65 = NAME_64 + "d"
ASSISTANT_FIX = r"Use the assistant's SID \(UA followed by 32 hex digits\) or its unique name"
BUILD_FIX = r"Use the build's SID \(UG followed by 32 hex digits\) or its unique name"
STATUS_FIX = r"Or filter by a status: building, canceled, completed, enqueued, failed\."


def _quoted_pattern(value: str) -> str:
    """Return the regex for `value` as an error message quotes it: the repr of its first 40 characters."""
    quoted = value if len(value) <= 40 else value[:40] + "…"
    return re.escape(repr(quoted))


def test_name_constants_have_documented_lengths() -> None:
    assert len(NAME_64) == 64
    assert len(NAME_65) == 65


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("HELP", Help()),
        ("help me please", Help()),
        ("support-bot", AssistantBuilds("support-bot")),
        (f"  {ASSISTANT_SID}  ", AssistantBuilds(ASSISTANT_SID)),
        (NAME_64, AssistantBuilds(NAME_64)),
        ("support-bot enqueued", AssistantBuilds("support-bot", "enqueued")),
        ("support-bot queued", AssistantBuilds("support-bot", "enqueued")),
        ("support-bot building", AssistantBuilds("support-bot", "building")),
        ("support-bot running", AssistantBuilds("support-bot", "building")),
        ("support-bot completed", AssistantBuilds("support-bot", "completed")),
        ("support-bot complete", AssistantBuilds("support-bot", "completed")),
        ("support-bot ok", AssistantBuilds("support-bot", "completed")),
        ("support-bot succeeded", AssistantBuilds("support-bot", "completed")),
        ("support-bot success", AssistantBuilds("support-bot", "completed")),
        ("support-bot failed", AssistantBuilds("support-bot", "failed")),
        ("support-bot failures", AssistantBuilds("support-bot", "failed")),
        ("support-bot failure", AssistantBuilds("support-bot", "failed")),
        ("support-bot FAILED", AssistantBuilds("support-bot", "failed")),
        ("support-bot canceled", AssistantBuilds("support-bot", "canceled")),
        ("support-bot cancelled", AssistantBuilds("support-bot", "canceled")),
        (f"support-bot {BUILD_SID}", BuildDetails("support-bot", BUILD_SID)),
        ("support-bot v42", BuildDetails("support-bot", "v42")),
        (f"{ASSISTANT_SID} release-2024.06", BuildDetails(ASSISTANT_SID, "release-2024.06")),
        (f"support-bot {NAME_64}", BuildDetails("support-bot", NAME_64)),
        (f"{ASSISTANT_SID} failed", AssistantBuilds(ASSISTANT_SID, "failed")),
        ("failed", FailedBuilds(timedelta(hours=24), "24h")),
        ("FAILED", FailedBuilds(timedelta(hours=24), "24h")),
        ("failed 30m", FailedBuilds(timedelta(minutes=30), "30m")),
        ("failed 6h", FailedBuilds(timedelta(hours=6), "6h")),
        ("failed 7d", FailedBuilds(timedelta(days=7), "7d")),
        ("failed 6H", FailedBuilds(timedelta(hours=6), "6h")),
        ("failed 1m", FailedBuilds(timedelta(minutes=1), "1m")),
        ("failed 90d", FailedBuilds(timedelta(days=90), "90d")),
        ("failed 2160h", FailedBuilds(timedelta(days=90), "2160h")),
    ],
    ids=lambda value: repr(value) if isinstance(value, str) else None,
)
def test_parse_command_valid_text(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("failed 0m", r"The window '0m' is out of range\. Use from 1m up to 90d\."),
        ("failed 0d", r"The window '0d' is out of range\."),
        ("failed 91d", r"The window '91d' is out of range\. Use from 1m up to 90d\."),
        ("failed 2161h", r"The window '2161h' is out of range\."),
        ("failed 5x", r"'5x' is not a time window\. Use minutes, hours or days, such as 30m, 6h or 7d\."),
        ("failed h", r"'h' is not a time window\."),
        ("failed -6h", r"'-6h' is not a time window\."),
        ("failed 1.5h", r"'1\.5h' is not a time window\."),
        ("failed 123456m", r"'123456m' is not a time window\."),
        ("failed 6 h", r"`failed` takes at most one time window, such as 6h, but got '6 h'\."),
        ("failed 6h now", r"`failed` takes at most one time window, such as 6h, but got '6h now'\."),
        ("support-bot failed 6h", r"Too many words in 'support-bot failed 6h': give an assistant, then optionally a status or a build\."),
        ("a b c d", r"Too many words in 'a b c d'"),
        ("support-bot paused!", r"'paused!' is not a valid build SID or unique name\. " + BUILD_FIX + r".* " + STATUS_FIX),
    ],
    ids=lambda value: repr(value) if isinstance(value, str) and " " in value and "\\" not in value else None,
)
def test_parse_command_invalid_text(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_command(text)


@pytest.mark.parametrize(
    "value",
    [
        "../etc",
        "..",
        ".",
        "a/b",
        "/etc/passwd",
        "a%2Fb",
        "%2e%2e",
        "a?b=c",
        "a#b",
        "a\\b",
        "-leading-dash",
        "_leading-underscore",
        "sales;rm",
        "ѕupport-bot",
        "bot\x00",
        "bot\x07",
        "bot\x1b[31m",
        "bot\x7f",
        "bot\u202egnp.exe",
        NAME_65,
        "UA" + "0" * 31 + "/",
    ],
    ids=lambda value: repr(value)[1:-1][:24],
)
def test_parse_command_hostile_assistant(value: str) -> None:
    """An assistant that could change the request path or query raises, naming the value and the fix."""
    with pytest.raises(InvalidIdentifierError, match=_quoted_pattern(value) + r" is not a valid assistant SID or unique name\. " + ASSISTANT_FIX) as caught:
        parse_command(value)

    assert isinstance(caught.value, InputError)
    assert caught.value.kind == "assistant"
    assert caught.value.value == value


@pytest.mark.parametrize(
    "value",
    ["../etc", "..", ".", "a/b", "a%2Fb", "%2e%2e", "a?b=c", "a#b", "bot\x1b[31m", NAME_65],
    ids=lambda value: repr(value)[1:-1][:24],
)
def test_parse_command_hostile_build(value: str) -> None:
    """A hostile second word is neither a status nor a build, and the error offers both."""
    with pytest.raises(InputError, match=_quoted_pattern(value) + r" is not a valid build SID or unique name\. " + BUILD_FIX + r".* " + STATUS_FIX):
        parse_command(f"support-bot {value}")


@pytest.mark.parametrize("value", ["a b", " support-bot", "support-bot\n", "a\tb", ""], ids=["space", "leading-space", "newline", "tab", "empty"])
def test_validate_assistant_whitespace_rejected(value: str) -> None:
    """Whitespace splits words in `parse_command`, so these cases reach only direct callers."""
    with pytest.raises(InvalidIdentifierError, match=_quoted_pattern(value) + r" is not a valid assistant SID or unique name\. " + ASSISTANT_FIX):
        validate_assistant(value)


@pytest.mark.parametrize("value", ["a", "9", "support-bot", "Support_Bot.v2", "a..b", NAME_64, ASSISTANT_SID, ASSISTANT_SID.upper()])
def test_validate_assistant_accepted(value: str) -> None:
    assert validate_assistant(value) == value


@pytest.mark.parametrize("value", ["v42", NAME_64, BUILD_SID])
def test_validate_build_accepted(value: str) -> None:
    assert validate_build(value) == value


def test_validate_build_names_build_kind() -> None:
    with pytest.raises(InvalidIdentifierError, match=r"'\.\.' is not a valid build SID or unique name\. " + BUILD_FIX) as caught:
        validate_build("..")

    assert caught.value.kind == "build"


def test_validate_assistant_long_value_shortened() -> None:
    """A long bad value is cut to 40 characters in the message, but kept whole on the error."""
    value = "x/" * 100

    with pytest.raises(InvalidIdentifierError, match=re.escape(repr("x/" * 20 + "…"))) as caught:
        validate_assistant(value)

    assert caught.value.value == value
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("7d", timedelta(days=7)),
        ("7D", timedelta(days=7)),
        ("99999m", timedelta(minutes=99_999)),
    ],
)
def test_parse_window_valid(text: str, expected: timedelta) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0m", r"The window '0m' is out of range"),
        ("00h", r"The window '00h' is out of range"),
        ("91d", r"The window '91d' is out of range"),
        ("5x", r"'5x' is not a time window"),
        ("6 h", r"'6 h' is not a time window"),
        ("", r"'' is not a time window"),
        ("6hours", r"'6hours' is not a time window"),
    ],
)
def test_parse_window_invalid(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_window(text)
