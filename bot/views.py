"""The state of an interactive lookup, carried in its buttons' values and protected by an HMAC tag.

Slack sends a button's value back unchanged when it is clicked, so the bot
keeps no per-message state: a click on a message hours old works as long as
its value decodes. A value that was altered, truncated or built by hand fails
its tag and is rejected before any upstream request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from bot.errors import InputError, InvalidIdentifierError
from bot.identifiers import validate_assistant, validate_build

# Slack limits a button value to 2000 characters.
MAX_VALUE = 2000
TAG_LENGTH = 16
MAX_OFFSET = 10_000
STATUSES = frozenset({"enqueued", "building", "completed", "failed", "canceled"})

# Every lookup button carries the view state to show next; these name what the click does.
NEWER = "builds_newer"
OLDER = "builds_older"
FAILED_ONLY = "builds_failed_only"
ALL_BUILDS = "builds_all"
REFRESH = "builds_refresh"
DETAILS = "builds_details"
BACK = "builds_back"
SHARE = "builds_share"
VIEW_ACTIONS = (NEWER, OLDER, FAILED_ONLY, ALL_BUILDS, REFRESH, DETAILS, BACK, SHARE)


@dataclass(frozen=True, slots=True)
class ViewState:
    """The content of a lookup view: an assistant, an optional status filter, a page offset, or one build."""

    assistant: str
    status: str | None = None
    offset: int = 0
    build: str | None = None


class ButtonCodec:
    """Encode view states into button values and decode them back, checking their tag."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, state: ViewState) -> str:
        """Return the button value for `state`."""
        data = {"a": state.assistant, "s": state.status, "o": state.offset, "b": state.build}
        body = json.dumps({key: value for key, value in data.items() if value not in (None, 0)}, separators=(",", ":"))
        return f"{body}|{self._tag(body)}"

    def decode(self, value: str) -> ViewState:
        """Return the state in a button value, or raise `InputError` when it is malformed or forged."""
        body, _, tag = value.rpartition("|")
        if len(value) > MAX_VALUE or not body or not hmac.compare_digest(tag, self._tag(body)):
            raise InputError("This button's value is invalid. Run the command again for fresh buttons.")

        try:
            return _state(json.loads(body))
        except (ValueError, TypeError, KeyError, InvalidIdentifierError) as error:
            raise InputError("This button's value is invalid. Run the command again for fresh buttons.") from error

    def _tag(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:TAG_LENGTH]


def codec_key(secret: str) -> bytes:
    """Derive the button key from a secret the bot already has, so values survive restarts."""
    return hmac.new(secret.encode(), b"builds-bot button values", hashlib.sha256).digest()


def _state(data: object) -> ViewState:
    if not isinstance(data, dict):
        raise TypeError("a view state is a JSON object")

    offset = data.get("o", 0)
    status = data.get("s")
    build = data.get("b")
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"offset {offset!r} out of range")
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")

    return ViewState(
        assistant=validate_assistant(str(data["a"])),
        status=status,
        offset=offset,
        build=validate_build(build) if isinstance(build, str) else None,
    )
