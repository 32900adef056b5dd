"""Log lines: key=value text or one JSON object per event, with known secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.logs import MASK, configure_logging

SECRET = "xoxb-very-secret-token"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_event_and_ids() -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=[SECRET], stream=stream, json_lines=True)

    logging.getLogger("bot.listeners").info("command.received", extra={"user_id": "U1", "channel_id": "C1", "command": "failed_builds", "token": SECRET})

    entry = json.loads(stream.getvalue())
    assert entry["event"] == "command.received"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "bot.listeners"
    assert entry["user_id"] == "U1"
    assert entry["channel_id"] == "C1"
    assert entry["command"] == "failed_builds"
    assert entry["token"] == MASK
    assert SECRET not in stream.getvalue()


def test_json_lines_keep_traceback_on_one_line() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, json_lines=True)

    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("bot.core").exception("core.unexpected_error", extra={"reference": "abc"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "ValueError: boom" in json.loads(lines[0])["traceback"]


def test_text_lines_mask_secrets() -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=[SECRET], stream=stream)

    logging.getLogger("bot").warning("slack.retrying", extra={"url": f"https://slack.example/api?token={SECRET}"})

    assert "slack.retrying url=" in stream.getvalue()
    assert SECRET not in stream.getvalue()


def test_library_loggers_stay_at_warning() -> None:
    configure_logging("DEBUG", stream=io.StringIO())

    assert logging.getLogger("slack_bolt").level == logging.WARNING
    assert logging.getLogger("httpx").level == logging.WARNING


def test_log_format_setting() -> None:
    base = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "t"}

    assert load_settings({**base, "BUILDS_LOG_FORMAT": "json"}).log_json is True
    assert load_settings(base).log_json is False
    with pytest.raises(ConfigError, match=r"^BUILDS_LOG_FORMAT: invalid value 'yaml'"):
        load_settings({**base, "BUILDS_LOG_FORMAT": "yaml"})


def test_json_extra_cannot_replace_base_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, json_lines=True)

    logging.getLogger("bot.alerts").info("alerts.subscribed", extra={"level": "failures", "event": "other"})

    entry = json.loads(stream.getvalue())
    assert entry["level"] == "INFO"
    assert entry["event"] == "alerts.subscribed"
    assert entry["extra_level"] == "failures"
    assert entry["extra_event"] == "other"
