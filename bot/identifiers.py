"""Validation of the assistant and build identifiers that users type.

An identifier ends up as one path segment of an Autopilot URL, so anything that
could change the path or the query (`/`, `%`, `?`, `#`, `..`, spaces) is
rejected here, before any request is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.errors import InvalidIdentifierError

ASSISTANT_SID = re.compile(r"UA[0-9a-fA-F]{32}")
BUILD_SID = re.compile(r"UG[0-9a-fA-F]{32}")

# Twilio documents unique names of up to 64 characters. The bot accepts the
# characters that need no percent-encoding in a path segment, starting with a
# letter or digit so that `.` and `..` can never pass.
UNIQUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
MAX_SHOWN_CHARACTERS = 40


def is_assistant_sid(value: str) -> bool:
    """Return whether `value` has the form of an assistant SID (`UA` + 32 hex digits)."""
    return ASSISTANT_SID.fullmatch(value) is not None


def is_build_sid(value: str) -> bool:
    """Return whether `value` has the form of a model build SID (`UG` + 32 hex digits)."""
    return BUILD_SID.fullmatch(value) is not None


def validate_assistant(value: str) -> str:
    """Return `value` if it can be an assistant SID or unique name, else raise."""
    return _validate("assistant", value, is_assistant_sid)


def validate_build(value: str) -> str:
    """Return `value` if it can be a model build SID or unique name, else raise."""
    return _validate("build", value, is_build_sid)


def _validate(kind: str, value: str, is_sid: Callable[[str], bool]) -> str:
    if is_sid(value):
        return value

    if UNIQUE_NAME.fullmatch(value):
        return value

    shown = value if len(value) <= MAX_SHOWN_CHARACTERS else value[:MAX_SHOWN_CHARACTERS] + "…"
    prefix = "UA" if kind == "assistant" else "UG"
    raise InvalidIdentifierError(
        kind,
        value,
        f"{shown!r} is not a valid {kind} SID or unique name. "
        f"Use the {kind}'s SID ({prefix} followed by 32 hex digits) "
        "or its unique name: up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit.",
    )
