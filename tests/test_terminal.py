"""Tests for turning Slack replies into plain terminal text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.autopilot import Listing
from bot.models import ModelBuild
from bot.render import AssistantFailures, FailedReport, Reply, render_assistant_builds, render_build_details, render_failed, render_help
from bot.terminal import mrkdwn_to_plain, strip_control_characters, to_plain_text

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
CREATED = datetime(2026, 12, 4, 17, 30, tzinfo=UTC)
ASSISTANT_SID = "UA" + "0" * 32


def _build(build_name: str = "v42", *, status: str = "failed", error_code: int | None = 23001) -> ModelBuild:
    return ModelBuild(
        sid="UG" + "1" * 32,
        unique_name=build_name,
        status=status,
        assistant_sid=ASSISTANT_SID,
        date_created=CREATED,
        date_updated=CREATED,
        build_duration=190,
        error_code=error_code,
    )


@pytest.mark.parametrize(
    ("mrkdwn", "plain"),
    [
        ("<!date^1438286400^{date_short_pretty} {time}|2015-07-30 20:00 UTC>", "2015-07-30 20:00 UTC"),
        ("built <!date^1438286400^{ago}|5m ago>", "built 5m ago"),
        ("<https://www.twilio.com/docs/errors/23001|23001>", "23001 (https://www.twilio.com/docs/errors/23001)"),
        ("see <https://example.com/docs>", "see https://example.com/docs"),
        ("R&amp;D &lt;beta&gt;", "R&D <beta>"),
        ("&amp;lt;", "&lt;"),
        ("*Status*\n✅ completed", "Status\n✅ completed"),
        ("*3* failed builds in *2* of 5", "3 failed builds in 2 of 5"),
        ("`/builds support-bot failed`", "/builds support-bot failed"),
        ("a*b*c", "a*b*c"),
        ("&lt;!channel&gt; &amp; &lt;@U123&gt;", "<!channel> & <@U123>"),
        ("⏹️ canceled · 🔨 building", "⏹️ canceled · 🔨 building"),
    ],
    ids=[
        "date-token",
        "relative-date-token",
        "link-with-label",
        "bare-link",
        "entities",
        "entity-unescaped-once",
        "bold-label",
        "bold-numbers",
        "backticks",
        "asterisks-inside-word",
        "escaped-mentions",
        "emoji",
    ],
)
def test_mrkdwn_to_plain_table(mrkdwn: str, plain: str) -> None:
    assert mrkdwn_to_plain(mrkdwn) == plain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("red\x1b[31mtext", "red[31mtext"),
        ("bell\x07", "bell"),
        ("csi\x9b31m", "csi31m"),
        ("nul\x00del\x7f", "nuldel"),
        ("tab\there", "tabhere"),
        ("line\nbreak", "line\nbreak"),
        ("carriage\rreturn", "carriagereturn"),
        ("✅ ❌ 🔨", "✅ ❌ 🔨"),
    ],
    ids=["escape", "bell", "c1-csi", "nul-and-del", "tab", "newline-kept", "carriage-return", "emoji-kept"],
)
def test_strip_control_characters_table(text: str, expected: str) -> None:
    assert strip_control_characters(text) == expected


def test_to_plain_text_build_details() -> None:
    """Fields become aligned 'label: value' lines with date fallbacks and 'label (url)' links."""
    output = to_plain_text(render_build_details("support-bot", _build("R&D <beta>"), now=NOW))

    assert "2026-12-04 17:30 UTC" in output
    assert "<!date" not in output
    assert "23001 (https://www.twilio.com/docs/errors/23001)" in output
    assert "R&D <beta>" in output
    assert "&amp;" not in output
    assert "&lt;" not in output
    assert "*" not in output
    assert "Status:            ❌ failed" in output
    assert output.endswith("\n")
    assert not output.endswith("\n\n")


def test_to_plain_text_help_drops_markup() -> None:
    output = to_plain_text(render_help("/builds"))

    assert "`" not in output
    assert "/builds <assistant>: the latest builds of an assistant" in output
    assert "/builds failed [window]" in output


def test_to_plain_text_failed_report() -> None:
    report = FailedReport(
        window_text="24h",
        since=NOW - timedelta(hours=24),
        assistants_checked=3,
        groups=[AssistantFailures("support-bot", [_build("v42"), _build("v41")])],
    )

    output = to_plain_text(render_failed(report, now=NOW))

    assert "2 failed builds in 1 of 3 assistants since 2026-12-03 20:00 UTC." in output
    assert "support-bot: 2 failed" in output
    assert "❌ v42 · 2026-12-04 17:30 UTC · 3m 10s · error 23001 (https://www.twilio.com/docs/errors/23001)" in output
    assert "*" not in output


@pytest.mark.parametrize("control", ["\x1b[31m", "\x1b]0;pwned\x07", "\x9b2J", "\x00", "\x08\x08"], ids=["color", "title", "c1-clear", "nul", "backspace"])
def test_to_plain_text_strips_control_characters(control: str) -> None:
    """Control characters in upstream data cannot drive the terminal."""
    reply = render_assistant_builds("support-bot", Listing([_build(f"evil{control}name")]), status=None, now=NOW)

    output = to_plain_text(reply)

    assert "evil" in output
    for character in control:
        if character.isprintable():
            continue
        assert character not in output, repr(character)


@pytest.mark.parametrize(("status", "emoji"), [("completed", "✅"), ("failed", "❌"), ("building", "🔨"), ("enqueued", "🕒"), ("canceled", "⏹️")])
def test_to_plain_text_keeps_emoji(status: str, emoji: str) -> None:
    reply = render_assistant_builds("support-bot", Listing([_build(status=status, error_code=None)]), status=None, now=NOW)

    output = to_plain_text(reply)

    assert f"{emoji} {status}  v42" in output


def test_to_plain_text_header_underlined() -> None:
    output = to_plain_text(render_help("/builds"))
    lines = output.splitlines()

    assert lines[1] == "Model builds: usage"
    assert lines[2] == "═" * len("Model builds: usage")


def test_to_plain_text_text_only_reply() -> None:
    """A reply without blocks prints its fallback text, unescaped and without control characters."""
    output = to_plain_text(Reply(text="⚠️ *R&amp;D* &lt;x&gt;\x1b[0m"))

    assert output == "⚠️ R&D <x>[0m\n"
